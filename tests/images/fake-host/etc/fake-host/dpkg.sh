# Package state shared by the fake apt-get and dpkg-query.
# $FAKE_DIR/dpkg/PKG holds "STATUS VERSION" once apt changed it; /etc/fake-host/dpkg-installed
# lists what the host starts with.

# Print "STATUS VERSION" for a package dpkg knows (STATUS: installed | config-files), or return 1.
pkg_state() {
    if [ -f "$FAKE_DIR/dpkg/$1" ]; then
        cat "$FAKE_DIR/dpkg/$1"
        return 0
    fi
    version=$(awk -v p="$1" '$1 == p { print $2 }' /etc/fake-host/dpkg-installed)
    [ -n "$version" ] || return 1
    echo "installed $version"
}

pkg_installed() {
    state=$(pkg_state "$1") || return 1
    [ "${state%% *}" = installed ]
}

# Print "VERSION SIZE SECTION DESCRIPTION|DEPENDS" of an installable package, or return 1.
pkg_available() {
    row=$(awk -v p="$1" '$1 == p { $1 = ""; sub(/^ /, ""); print }' /etc/fake-host/apt-available)
    [ -n "$row" ] || return 1
    echo "$row"
}
