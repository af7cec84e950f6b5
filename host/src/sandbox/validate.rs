//! Start-up checks of the `[sandbox]` configuration: what must refuse to start, and what must be
//! said loudly.

use std::path::Path;

use super::{ExecuteMode, SandboxError};
use crate::config::{Config, Mode};

/// Host paths no profile may mount: the machine itself, and the container engines' sockets (one
/// of those is root on the host).
const DENIED_SOURCES: [&str; 8] = ["/", "/proc", "/sys", "/dev", "/boot", "/etc", "/root", "/var/lib/docker"];
const DENIED_SOCKETS: [&str; 3] = ["docker.sock", "containerd.sock", "podman.sock"];

/// Check the sandbox section against the mode. Refused: `ALLOW_DIRECT_FALLBACK=true` or
/// `EXECUTE_MODE=direct` outside development, a profile running as root, with the host network,
/// mounting a system path or an engine socket, or with a limit of zero. Returns the warnings the
/// serve command must print (direct mode).
pub fn validate(config: &Config) -> Result<Vec<String>, SandboxError> {
    let sandbox = &config.sandbox;
    let development = config.mode == Mode::Development;
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
        if uid.is_empty() || uid == "0" || uid == "root" {
            return bad(format!("`{}`: commands never run as root (got `{}`)", key("user"), p.user));
        }
        for m in &p.mounts {
            check_mount(&key("mounts"), &m.source, &m.target)?;
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

fn check_mount(key: &str, source: &Path, target: &str) -> Result<(), SandboxError> {
    let shown = source.display();
    if !source.is_absolute() || !target.starts_with('/') || target == "/" {
        return Err(SandboxError::Config(format!(
            "`{key}`: `{shown}` -> `{target}` needs absolute paths, not `/` as target"
        )));
    }
    let normal: std::path::PathBuf = source.components().collect();
    if DENIED_SOURCES.iter().any(|d| normal == Path::new(d))
        || normal.file_name().is_some_and(|f| DENIED_SOCKETS.iter().any(|s| f == *s))
    {
        return Err(SandboxError::Config(format!("`{key}`: mounting `{shown}` is refused")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{MountConfig, ProfileConfig};

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
            ("mounts", |p| {
                p.mounts.push(MountConfig {
                    source: "/var/run/docker.sock".into(),
                    target: "/s".into(),
                    read_only: true,
                })
            }),
            ("mounts", |p| p.mounts.push(MountConfig { source: "/etc/".into(), target: "/e".into(), read_only: true })),
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
        profile.mounts.push(MountConfig {
            source: "/run/systemd/private".into(),
            target: "/run/systemd/private".into(),
            read_only: true,
        });
        config.sandbox.profiles.insert("systemd".into(), profile);
        assert!(validate(&config).is_ok(), "the systemd socket read-only is the operator's choice");
    }
}
