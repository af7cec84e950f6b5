//! The bind mounts of a sandbox container, resolved and checked when it is created.

use std::path::Path;

use bollard::models::{Mount, MountType};

use crate::{MountConfig, SandboxError};

/// The bind mounts of profile `name`'s host paths, each checked and resolved now (the engine is
/// given the resolved path). A source missing on this machine leaves an `optional` mount out, and
/// makes the profile unavailable otherwise: Docker would refuse the container anyway, with a
/// message naming neither the profile nor the key.
pub(super) fn host_mounts(name: &str, profile_mounts: &[MountConfig]) -> Result<Vec<Mount>, SandboxError> {
    let key = format!("sandbox.profiles.{name}.mounts");
    let mut mounts = Vec::new();
    for m in profile_mounts {
        match std::fs::symlink_metadata(&m.source) {
            Ok(_) => mounts.push(bind(&crate::paths::check_mount(name, &key, m)?, &m.target, m.read_only)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && m.optional => {}
            Err(e) => {
                return Err(SandboxError::Unavailable(format!(
                    "sandbox profile `{name}` mounts `{}`, which this machine does not have ({e}); \
                     see `sandbox.profiles.{name}.mounts`",
                    m.source.display()
                )));
            }
        }
    }
    Ok(mounts)
}

pub(super) fn bind(source: &Path, target: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(target.to_owned()),
        source: Some(source.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProfileConfig;

    #[test]
    fn a_missing_host_path_makes_its_profile_unavailable_unless_optional() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mount = |source: std::path::PathBuf, optional| MountConfig {
            source,
            target: "/m".into(),
            read_only: true,
            optional,
        };
        let mut profile = ProfileConfig {
            mounts: vec![mount(dir.path().to_owned(), false), mount(dir.path().join("gone"), true)],
            ..ProfileConfig::default()
        };
        let mounts = host_mounts("p", &profile.mounts)?;
        assert_eq!(mounts.len(), 1, "the optional missing path is left out");
        assert_eq!(mounts[0].read_only, Some(true));

        profile.mounts.push(mount(dir.path().join("needed"), false));
        let err = host_mounts("p", &profile.mounts).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("sandbox unavailable: sandbox profile `p` mounts `"), "{err}");
        assert!(err.contains("needed") && err.contains("sandbox.profiles.p.mounts"), "{err}");
        Ok(())
    }
}
