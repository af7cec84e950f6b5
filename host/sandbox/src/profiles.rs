//! The sandbox profiles of the embedded default configuration: `default`, and one per built-in
//! plugin command that reads the host (`journal`, `host-net`), and `host-admin`, the one profile
//! that may opt in to root (no built-in tool uses it since packages go through PackageKit). Each mounts only the
//! exact host paths its tools read, read-only, as nobody, without network; `validate` holds the
//! list of the few paths under denied trees they may mount, and why.
//!
//! A host path that does not exist on this machine (no systemd, not Debian) does not stop
//! anything: a `required` mount that is missing makes its profile answer `unavailable` naming the
//! path, an `optional` one is left out. The image is the project's busybox image unless the
//! operator names another: a program it lacks (`systemctl`, `dpkg-query`) also answers
//! `unavailable`, naming the `image` key to set. `toolgate.example.toml` shows what a real
//! deployment sets.

use std::collections::BTreeMap;

use super::{MountConfig, ProfileConfig, WorkspaceAccess};

/// Where the `host-net` profile shows the host's `/proc/1/net`: the `network` plugin reads its
/// socket tables there. Not `/proc/net`: the container runtime refuses mounts inside `/proc`.
pub const HOST_NET_TARGET: &str = "/host/proc/net";

/// The one profile that may opt in to running commands as root (`allow_root = true`).
pub const ROOT_PROFILE: &str = "host-admin";

/// The image of the `journal` profile: a minimal Debian 12 with `journalctl`, built offline from
/// Debian's packages by `cargo xtask images` (see `deploy/README.md` for a server). Missing, the
/// profile's commands answer `unavailable` naming it.
pub const DEBIAN_IMAGE: &str = "toolgate-debian:12";

fn ro(source: &str, required: bool) -> MountConfig {
    MountConfig { source: source.into(), target: source.to_owned(), read_only: true, optional: !required }
}

/// `default`, `journal`, `host-net` and `host-admin`, as [`super::SandboxConfig::default`] declares them.
pub(super) fn builtin() -> BTreeMap<String, ProfileConfig> {
    let host = |mounts: Vec<MountConfig>| ProfileConfig {
        mounts,
        // None of these tools reads the workspace: do not show it to them.
        workspace: WorkspaceAccess::None,
        ..ProfileConfig::default()
    };
    let journal = ProfileConfig {
        // `journalctl` of Debian 12's systemd; busybox has none.
        image: DEBIAN_IMAGE.into(),
        // Reading the journal's files needs the host's `systemd-journal` group.
        groups: vec!["systemd-journal".into()],
        ..host(vec![
            // The journal: persistent, volatile, or both; `journalctl` picks the host's files by
            // its machine id.
            ro("/var/log/journal", false),
            ro("/run/log/journal", false),
            ro("/etc/machine-id", true),
        ])
    };
    let host_net = host(vec![MountConfig {
        // The socket tables of the host's network namespace (pid 1's), without joining it:
        // the container keeps no network at all.
        source: "/proc/1/net".into(),
        target: HOST_NET_TARGET.into(),
        read_only: true,
        optional: false,
    }]);
    let host_admin = host(vec![
        // What `dpkg-query -s` reads; missing on a host that is not Debian-based.
        ro("/var/lib/dpkg", true),
        ro("/var/lib/apt/lists", false),
        ro("/etc/apt", false),
    ]);
    BTreeMap::from([
        ("default".to_owned(), ProfileConfig::default()),
        ("journal".to_owned(), journal),
        ("host-net".to_owned(), host_net),
        (ROOT_PROFILE.to_owned(), host_admin),
    ])
}
