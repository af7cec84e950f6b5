//! Start-up checks of the `[sandbox]` configuration: what must refuse to start, and what must be
//! said loudly.

use super::paths::check_mount;
use toolgate_core::Mode;

use super::{ExecuteMode, ROOT_PROFILE, SandboxConfig, SandboxError, WorkspaceAccess};

/// Check the sandbox section against the mode. Refused: `ALLOW_DIRECT_FALLBACK=true` or
/// `EXECUTE_MODE=direct` outside development, a profile running as root (but `host-admin` with
/// `allow_root`), with the host network, mounting a system path (but the read-only exceptions of
/// `paths`), `/run` or an engine socket, or with a limit of zero. Returns the warnings the serve command
/// must print (direct mode, a root profile).
pub fn validate(sandbox: &SandboxConfig, mode: Mode) -> Result<Vec<String>, SandboxError> {
    let development = mode == Mode::Development;
    let bad = |msg: String| Err(SandboxError::Config(msg));
    if sandbox.allow_direct_fallback && !development {
        return bad("`ALLOW_DIRECT_FALLBACK=true` is refused outside development mode".into());
    }
    let mut warnings = Vec::new();
    if sandbox.execute_mode == ExecuteMode::Direct {
        if !development {
            return bad("`EXECUTE_MODE=direct` is refused outside development mode".into());
        }
        warnings.push("EXECUTE_MODE=direct: commands run on this host without a sandbox (development only)".into());
    }
    if sandbox.allow_direct_fallback {
        warnings.push("ALLOW_DIRECT_FALLBACK=true has no effect: a sandbox failure is always an error".into());
    }
    check_network("sandbox.network", &sandbox.network)?;
    if sandbox.timeout_secs == 0 || sandbox.max_timeout_secs < sandbox.timeout_secs {
        return bad("`sandbox.timeout_secs` must be at least 1 and at most `sandbox.max_timeout_secs`".into());
    }
    if sandbox.output_limit == 0 {
        return bad("`sandbox.output_limit` must be at least 1".into());
    }
    for (name, p) in &sandbox.profiles {
        let key = |field: &str| format!("sandbox.profiles.{name}.{field}");
        if !network_ok(&p.network) && !p.network.is_empty() {
            return bad(format!("`{}`: network `{}` would share the host's network", key("network"), p.network));
        }
        if !(p.cpus > 0.0 && p.cpus.is_finite()) || p.memory_mib < 8 || p.pids_limit < 1 || p.tmp_mib < 1 {
            return bad(format!(
                "`{}`: cpus, memory_mib (at least 8), pids_limit and tmp_mib must be positive",
                key("*")
            ));
        }
        let uid = p.user.split(':').next().unwrap_or_default();
        let root = uid.is_empty() || uid == "0" || uid == "root";
        if p.allow_root {
            // The narrow case: apt installing packages, admins only with approval by policy.
            if name != ROOT_PROFILE {
                return bad(format!("`{}`: only profile `{ROOT_PROFILE}` may run as root", key("allow_root")));
            }
            if !root {
                return bad(format!("`{}`: `allow_root = true` needs `user = \"0:0\"`", key("allow_root")));
            }
            if p.workspace != WorkspaceAccess::None {
                return bad(format!("`{}`: a root profile never mounts the workspace: set `none`", key("workspace")));
            }
            warnings.push(format!(
                "sandbox profile `{name}` runs its commands as ROOT (uid 0) in its container \
                 (`sandbox.profiles.{name}.allow_root = true`): every capability stays dropped, but root \
                 writes whatever its read-write mounts hold"
            ));
        } else if root {
            return bad(format!(
                "`{}`: commands never run as root (got `{}`); only `{ROOT_PROFILE}` may opt in with `allow_root`",
                key("user"),
                p.user
            ));
        }
        if let Some(g) =
            p.groups.iter().find(|g| matches!(g.as_str(), "0" | "root" | "docker" | "sudo" | "disk" | "shadow"))
        {
            return bad(format!("`{}`: group `{g}` is refused: it is root-equivalent or reads secrets", key("groups")));
        }
        for m in &p.mounts {
            check_mount(name, &key("mounts"), m)?;
        }
    }
    Ok(warnings)
}

fn network_ok(network: &str) -> bool {
    network != "host" && !network.starts_with("container:")
}

fn check_network(key: &str, network: &str) -> Result<(), SandboxError> {
    if network.is_empty() || !network_ok(network) {
        return Err(SandboxError::Config(format!(
            "`{key}`: network `{network}` is refused (use `none` or a named network)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MountConfig, ProfileConfig, WorkspaceAccess};

    /// The two sections `validate` reads, as the server's configuration holds them.
    #[derive(Default)]
    struct Config {
        mode: Mode,
        sandbox: SandboxConfig,
    }

    fn validate(config: &Config) -> Result<Vec<String>, SandboxError> {
        super::validate(&config.sandbox, config.mode)
    }

    #[test]
    fn direct_fallback_and_direct_mode_are_refused_in_production() {
        let mut config = Config::default();
        assert!(validate(&config).is_ok());
        config.sandbox.allow_direct_fallback = true;
        let err = validate(&config).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("ALLOW_DIRECT_FALLBACK"), "{err}");
        config.mode = Mode::Development;
        assert!(validate(&config).is_ok());
        config.sandbox.allow_direct_fallback = false;
        config.sandbox.execute_mode = ExecuteMode::Direct;
        let warnings = validate(&config).unwrap_or_default();
        assert!(warnings.iter().any(|w| w.contains("without a sandbox")), "{warnings:?}");
        config.mode = Mode::Production;
        assert!(validate(&config).is_err());
    }

    #[test]
    fn dangerous_profiles_are_refused_with_their_key() {
        type BreakIt = fn(&mut ProfileConfig);
        let cases: [(&str, BreakIt); 5] = [
            ("user", |p| p.user = "0:0".into()),
            ("network", |p| p.network = "host".into()),
            ("mounts", |p| p.mounts.push(mount("/var/run/docker.sock", true))),
            ("mounts", |p| p.mounts.push(mount("/etc/", true))),
            ("*", |p| p.pids_limit = 0),
        ];
        for (field, break_it) in cases {
            let mut config = Config::default();
            let mut profile = ProfileConfig::default();
            break_it(&mut profile);
            config.sandbox.profiles.insert("bad".into(), profile);
            let err = validate(&config).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(&format!("sandbox.profiles.bad.{field}")), "{field}: {err}");
        }
        let mut config = Config::default();
        let mut profile = ProfileConfig::default();
        profile.mounts.push(mount("/run/systemd/private", true));
        config.sandbox.profiles.insert("systemd".into(), profile);
        assert!(validate(&config).is_ok(), "the systemd socket read-only is the operator's choice");
    }

    fn mount(source: &str, read_only: bool) -> MountConfig {
        MountConfig { source: source.into(), target: "/m".into(), read_only, optional: false }
    }

    /// The error of `validate` with one more mount in `profile` (created if missing).
    fn with_mount(profile: &str, m: MountConfig) -> Option<String> {
        let mut config = Config::default();
        config.sandbox.profiles.entry(profile.to_owned()).or_default().mounts.push(m);
        validate(&config).err().map(|e| e.to_string())
    }

    #[test]
    fn the_default_profiles_pass_without_a_warning() {
        let config = Config::default();
        for profile in ["default", "journal", "host-net", "host-admin"] {
            assert!(config.sandbox.profiles.contains_key(profile), "{profile}");
        }
        assert_eq!(validate(&config).ok(), Some(Vec::new()));
    }

    #[test]
    fn system_paths_are_allowed_only_as_the_exact_read_only_exceptions_of_their_profile() {
        for (profile, source) in
            [("host-net", "/proc/1/net"), ("journal", "/etc/machine-id"), ("host-admin", "/etc/apt")]
        {
            assert_eq!(with_mount(profile, mount(source, true)), None, "{profile}: {source}");
            let err = with_mount(profile, mount(source, false)).unwrap_or_default();
            assert!(err.contains("read-only or not at all"), "{source} read-write: {err}");
            let err = with_mount("other", mount(source, true)).unwrap_or_default();
            assert!(err.contains(&format!("only profile `{profile}`")), "{source} elsewhere: {err}");
        }
        // The neighbours of the exceptions, above, below and beside them, stay refused.
        for source in [
            "/",
            "/proc",
            "/proc/1",
            "/proc/1/root",
            "/proc/1/environ",
            "/proc/1/net/tcp",
            "/proc/self/net",
            "/proc/2/net",
            "/proc/1/net/../environ",
            "/proc/1/net/../../1/net",
            "/sys/fs/cgroup",
            "/etc",
            "/etc/shadow",
            "/etc/apt/../shadow",
            "/etc/apt/trusted.gpg.d",
            "/etc/machine-id/..",
            "/dev/sda",
            "/root/.ssh",
            "/var/lib/docker/volumes",
            "/run/docker.sock",
            "/var/run/containerd/containerd.sock",
            "/run",
            "/var/run",
            "/var",
            "/run/containerd",
            "/run/user",
        ] {
            for profile in ["host-net", "journal", "host-admin", "default"] {
                let err = with_mount(profile, mount(source, true)).unwrap_or_default();
                assert!(err.contains("sandbox.profiles.") && err.contains("is refused"), "{profile}: {source}: {err}");
            }
        }
    }

    #[test]
    fn a_symbolic_link_into_a_system_tree_is_refused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let link = dir.path().join("innocent");
        std::os::unix::fs::symlink("/etc", &link)?;
        let err = with_mount("default", mount(&link.display().to_string(), true)).unwrap_or_default();
        assert!(err.contains("leads to `/etc`"), "{err}");
        assert_eq!(with_mount("default", mount(&dir.path().display().to_string(), true)), None);
        Ok(())
    }

    #[test]
    fn root_is_an_opt_in_of_host_admin_alone_and_said_loudly() {
        let run = |profile: &str, change: fn(&mut ProfileConfig)| {
            let mut config = Config::default();
            change(config.sandbox.profiles.entry(profile.to_owned()).or_default());
            validate(&config).map_err(|e| e.to_string())
        };
        let root_admin = |p: &mut ProfileConfig| {
            p.allow_root = true;
            p.user = "0:0".into();
        };
        let warnings = run("host-admin", root_admin).unwrap_or_default();
        assert!(warnings.iter().any(|w| w.contains("`host-admin` runs its commands as ROOT")), "{warnings:?}");

        let err = run("host-admin", |p| p.user = "0:0".into()).err().unwrap_or_default();
        assert!(err.contains("sandbox.profiles.host-admin.user") && err.contains("allow_root"), "{err}");
        let err = run("host-admin", |p| p.user = "root".into()).err().unwrap_or_default();
        assert!(err.contains("sandbox.profiles.host-admin.user"), "{err}");
        for profile in ["journal", "default", "host-admin2"] {
            let err = run(profile, root_admin).err().unwrap_or_default();
            assert!(err.contains(&format!("sandbox.profiles.{profile}.allow_root")), "{err}");
        }
        let err = run("host-admin", |p| p.allow_root = true).err().unwrap_or_default();
        assert!(err.contains("needs `user = \"0:0\"`"), "{err}");
        let err = run("host-admin", |p| {
            p.allow_root = true;
            p.user = "0:0".into();
            p.workspace = WorkspaceAccess::Rw;
        })
        .err()
        .unwrap_or_default();
        assert!(err.contains("sandbox.profiles.host-admin.workspace"), "{err}");
        // Root does not lift a single mount refusal.
        let err = run("host-admin", |p| {
            p.allow_root = true;
            p.user = "0:0".into();
            p.mounts.push(mount("/etc", false));
        })
        .err()
        .unwrap_or_default();
        assert!(err.contains("sandbox.profiles.host-admin.mounts"), "{err}");
    }
}
