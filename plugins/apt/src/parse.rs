//! Parsers of `apt-get` (apt 2.6) and `dpkg-query -s` output (Debian 12).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One package index source line of `apt-get update` (`Hit:1 http://... bookworm InRelease`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Source {
    /// `hit` (unchanged), `get` (downloaded), `ign` (ignored) or `err` (failed).
    pub kind: String,
    /// The source and index, e.g. `http://deb.debian.org/debian bookworm InRelease`.
    pub index: String,
}

/// What `apt-get update` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Update {
    /// Each index source, in order.
    pub sources: Vec<Source>,
    /// The download summary, e.g. `349 kB in 1s (412 kB/s)`.
    pub fetched: Option<String>,
    /// `W:` lines.
    pub warnings: Vec<String>,
    /// `E:` lines.
    pub errors: Vec<String>,
}

/// Parse `apt-get update` standard output and error together.
pub fn update(stdout: &str, stderr: &str) -> Update {
    let mut update = Update::default();
    for line in stdout.lines().chain(stderr.lines()) {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("W: ") {
            update.warnings.push(rest.to_owned());
        } else if let Some(rest) = line.strip_prefix("E: ") {
            update.errors.push(rest.to_owned());
        } else if let Some(rest) = line.strip_prefix("Fetched ") {
            update.fetched = Some(rest.to_owned());
        } else if let Some((kind, rest)) = line.split_once(':') {
            let known = matches!(kind, "Hit" | "Get" | "Ign" | "Err");
            if let (true, Some((n, index))) = (known, rest.split_once(' '))
                && n.bytes().all(|b| b.is_ascii_digit())
            {
                update.sources.push(Source { kind: kind.to_lowercase(), index: index.to_owned() });
            }
        }
    }
    update
}

/// A package `apt-get install` set up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SetUp {
    /// Package name, without the `:arch` qualifier.
    pub name: String,
    /// Version installed.
    pub version: String,
}

/// What `apt-get install` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Install {
    /// Packages set up (the one asked for and its new dependencies), in order.
    pub set_up: Vec<SetUp>,
    /// The version already present, when apt said it `is already the newest version`.
    pub already_newest: Option<String>,
    /// The counts line: `0 upgraded, 3 newly installed, 0 to remove and 0 not upgraded.`
    pub summary: Option<String>,
}

/// Parse `apt-get install -y -q` standard output.
pub fn install(stdout: &str) -> Install {
    let mut install = Install::default();
    for line in stdout.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Setting up ") {
            // `Setting up libnl-3-200:amd64 (3.7.0-0.2+b1) ...`
            if let Some((name, rest)) = rest.split_once(" (")
                && let Some((version, _)) = rest.split_once(')')
            {
                let name = name.split(':').next().unwrap_or(name);
                install.set_up.push(SetUp { name: name.to_owned(), version: version.to_owned() });
            }
        } else if let Some((_, rest)) = line.split_once(" is already the newest version (") {
            install.already_newest = rest.split_once(')').map(|(v, _)| v.to_owned());
        } else if line.contains(" upgraded, ") && line.contains(" newly installed, ") {
            install.summary = Some(line.to_owned());
        }
    }
    install
}

/// What `dpkg-query -s PKG` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PackageState {
    /// Whether the package is installed (status `install ok installed` or `hold ok installed`).
    pub installed: bool,
    /// The `Status:` field, e.g. `deinstall ok config-files`; none when dpkg knows nothing of it.
    pub status: Option<String>,
    /// The `Version:` field.
    pub version: Option<String>,
}

/// Parse `dpkg-query -s` output (empty for a package dpkg knows nothing of).
pub fn dpkg_status(stdout: &str) -> PackageState {
    let field = |name: &str| stdout.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned());
    let status = field("Status:");
    let installed = status.as_deref().is_some_and(|s| {
        let words: Vec<&str> = s.split_whitespace().collect();
        matches!(words[..], ["install" | "hold", "ok", "installed"])
    });
    PackageState { installed, status, version: field("Version:") }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    #[test]
    fn update_lists_sources_fetched_and_warnings() {
        let stdout = "Hit:1 http://deb.debian.org/debian bookworm InRelease
Get:2 http://deb.debian.org/debian bookworm-updates InRelease [55.4 kB]
Get:3 http://deb.debian.org/debian-security bookworm-security InRelease [48.0 kB]
Get:4 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages [245 kB]
Err:5 http://mirror.invalid/debian bookworm InRelease
  Temporary failure resolving 'mirror.invalid'
Fetched 349 kB in 1s (412 kB/s)
Reading package lists...
";
        let stderr = "W: Failed to fetch http://mirror.invalid/debian/dists/bookworm/InRelease  Temporary failure resolving 'mirror.invalid'
W: Some index files failed to download. They have been ignored, or old ones used instead.
";
        let u = update(stdout, stderr);
        let kinds: Vec<&str> = u.sources.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, ["hit", "get", "get", "get", "err"]);
        assert_eq!(u.sources[1].index, "http://deb.debian.org/debian bookworm-updates InRelease [55.4 kB]");
        assert_eq!(u.fetched.as_deref(), Some("349 kB in 1s (412 kB/s)"));
        assert_eq!(u.warnings.len(), 2);
        assert!(u.errors.is_empty());
    }

    #[test]
    fn install_lists_what_was_set_up() {
        let stdout = "Reading package lists...
Building dependency tree...
Reading state information...
The following additional packages will be installed:
  libnl-3-200 libnl-genl-3-200
Suggested packages:
  lm-sensors lsof strace
The following NEW packages will be installed:
  htop libnl-3-200 libnl-genl-3-200
0 upgraded, 3 newly installed, 0 to remove and 0 not upgraded.
Need to get 244 kB of archives.
After this operation, 585 kB of additional disk space will be used.
Get:1 http://deb.debian.org/debian bookworm/main amd64 libnl-3-200 amd64 3.7.0-0.2+b1 [63.1 kB]
Fetched 244 kB in 0s (2331 kB/s)
Selecting previously unselected package libnl-3-200:amd64.
(Reading database ... 10123 files and directories currently installed.)
Preparing to unpack .../libnl-3-200_3.7.0-0.2+b1_amd64.deb ...
Unpacking libnl-3-200:amd64 (3.7.0-0.2+b1) ...
Setting up libnl-3-200:amd64 (3.7.0-0.2+b1) ...
Setting up libnl-genl-3-200:amd64 (3.7.0-0.2+b1) ...
Setting up htop (3.2.2-2) ...
Processing triggers for libc-bin (2.36-9+deb12u4) ...
";
        let i = install(stdout);
        let names: Vec<&str> = i.set_up.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["libnl-3-200", "libnl-genl-3-200", "htop"]);
        assert_eq!(i.set_up[2].version, "3.2.2-2");
        assert_eq!(i.already_newest, None);
        assert_eq!(i.summary.as_deref(), Some("0 upgraded, 3 newly installed, 0 to remove and 0 not upgraded."));
    }

    #[test]
    fn install_of_a_present_package_says_so() {
        let stdout = "Reading package lists...\nBuilding dependency tree...\nReading state information...\ncurl is already the newest version (7.88.1-10+deb12u5).\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n";
        let i = install(stdout);
        assert!(i.set_up.is_empty());
        assert_eq!(i.already_newest.as_deref(), Some("7.88.1-10+deb12u5"));
    }

    #[test]
    fn dpkg_status_tells_installed_removed_and_unknown_apart() {
        let installed = "Package: htop\nStatus: install ok installed\nPriority: optional\nSection: utils\nInstalled-Size: 377\nMaintainer: Daniel Lange <DLange@debian.org>\nArchitecture: amd64\nVersion: 3.2.2-2\nDepends: libc6 (>= 2.34), libncursesw6 (>= 6), libnl-3-200 (>= 3.2.7), libnl-genl-3-200 (>= 3.2.7), libtinfo6 (>= 6)\nDescription: interactive processes viewer\n";
        let s = dpkg_status(installed);
        assert!(s.installed);
        assert_eq!(s.version.as_deref(), Some("3.2.2-2"));
        let held = dpkg_status("Package: nginx\nStatus: hold ok installed\nVersion: 1.22.1-9\n");
        assert!(held.installed);
        let removed = dpkg_status("Package: htop\nStatus: deinstall ok config-files\nVersion: 3.2.2-2\n");
        assert!(!removed.installed);
        assert_eq!(removed.status.as_deref(), Some("deinstall ok config-files"));
        let unknown = dpkg_status("");
        assert_eq!(unknown, PackageState { installed: false, status: None, version: None });
    }
}
