# Shared by the fake host's scripts: where state lives, how calls are recorded.
FAKE_DIR=/var/log/fake-calls
HOSTNAME_SHOWN=web1

# Record this call (program and arguments, single spaces) and make sure state can be kept.
fake_record() {
    if [ ! -d "$FAKE_DIR" ] || [ ! -w "$FAKE_DIR" ]; then
        echo "fake-host: $FAKE_DIR must be a writable mounted directory" >&2
        exit 70
    fi
    mkdir -p "$FAKE_DIR/units" "$FAKE_DIR/journal" "$FAKE_DIR/dpkg"
    line=${0##*/}
    for arg in "$@"; do line="$line $arg"; done
    echo "$line" >> "$FAKE_DIR/calls.log"
}

# Append a journal line for a unit, as journald would have stored it.
fake_journal() { # unit identifier pid message
    echo "$(date -u '+%b %d %H:%M:%S') $HOSTNAME_SHOWN $2[$3]: $4" >> "$FAKE_DIR/journal/$1"
}
