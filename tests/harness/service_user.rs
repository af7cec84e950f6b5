//! The real binary as a deployment runs it: as a dedicated non-root user, not as the root the
//! tests run as. polkit judges a D-Bus caller by its uid, so the host-system tests need this.
//!
//! Everything that user must read is copied where it can (the build's target directory may sit
//! in root's private home): the binary, the built-in plugins and the policy set go into a fresh
//! directory that user owns, with its own audit key (outside the data directory) and plugin
//! cache. Its group is one that may use the engine's socket, as the shipped unit's
//! `SupplementaryGroups=docker` gives the service.

use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::{AUDIT_KEY, SECRET, Server, USER_PASSWORD, binary, plugins_dir};

/// Who the server runs as.
#[derive(Debug, Clone, Copy)]
pub struct RunAs {
    /// Its uid (it need not exist on this machine: the Debian system under test has it).
    pub uid: u32,
    /// Its gid: one that may use the engine's socket.
    pub gid: u32,
}

impl RunAs {
    /// `uid`, with the gid of the group that owns the engine's socket (`/var/run/docker.sock`).
    pub fn with_engine_group(uid: u32) -> anyhow::Result<RunAs> {
        use std::os::unix::fs::MetadataExt;
        let socket = std::fs::metadata("/var/run/docker.sock").context("the engine's socket")?;
        Ok(RunAs { uid, gid: socket.gid() })
    }
}

/// Copy `from` (a file) to `to`, readable by everyone.
fn copy_readable(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// A directory tree given to `who`: `chown -R`.
fn give(path: &Path, who: RunAs) -> anyhow::Result<()> {
    chown(path, Some(who.uid), Some(who.gid))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            give(&entry?.path(), who)?;
        }
    }
    Ok(())
}

impl Server {
    /// Start as `who` with the policy set of `policies` and `env` on top of the test defaults;
    /// `env` may name a configuration file (`TOOLGATE_CONFIG`), which is copied for `who` too.
    /// The data directory is `<root>/data`, the workspace `<root>/workspace`. Before it starts,
    /// the host itself creates the admins `admins` (`toolgate users add`, as `who`), each with
    /// [`USER_PASSWORD`](crate::USER_PASSWORD).
    pub fn start_as(who: RunAs, policies: &Path, env: &[(&str, &str)], admins: &[&str]) -> anyhow::Result<Server> {
        let root = tempfile::tempdir()?;
        let dir = root.path();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        let bin = dir.join("toolgate");
        copy_readable(&binary()?, &bin, 0o755)?;
        crate::copy_tree(&plugins_dir(), &dir.join("plugins"))?;
        crate::copy_tree(policies, &dir.join("policies"))?;
        for owned in ["data", "workspace", "key", "cache"] {
            std::fs::create_dir_all(dir.join(owned))?;
            std::fs::set_permissions(dir.join(owned), std::fs::Permissions::from_mode(0o700))?;
        }
        let key = dir.join("key").join("audit.key");
        std::fs::write(&key, AUDIT_KEY)?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        if let Some((_, config)) = env.iter_mut().find(|(k, _)| k == "TOOLGATE_CONFIG") {
            let copy = dir.join("toolgate.toml");
            copy_readable(Path::new(config.as_str()), &copy, 0o644)?;
            *config = copy.display().to_string();
        }
        for owned in ["data", "workspace", "key", "cache"] {
            give(&dir.join(owned), who)?;
        }
        let path = |p: PathBuf| p.display().to_string();
        let command = || {
            let mut cmd = Command::new(&bin);
            cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
            cmd.envs([
                ("TOOLGATE_MODE", "production".to_owned()),
                ("TOOLGATE_JWT_SECRET", SECRET.to_owned()),
                ("TOOLGATE_LISTEN", "127.0.0.1:0".to_owned()),
                ("TOOLGATE_AUTH_SCRYPT_LOG_N", "8".to_owned()),
                ("TOOLGATE_LOG", "warn".to_owned()),
                ("TOOLGATE_SANDBOX_POOL_SIZE", "0".to_owned()),
                ("TOOLGATE_POLICY_DIR", path(dir.join("policies"))),
                ("TOOLGATE_PLUGINS_DIR", path(dir.join("plugins"))),
                ("TOOLGATE_PLUGINS_CACHE_DIR", path(dir.join("cache").join("plugins"))),
                ("TOOLGATE_PLUGINS_CACHE_KEY_FILE", path(dir.join("key").join("plugin-cache.key"))),
                ("TOOLGATE_AUDIT_KEY_FILE", path(key.clone())),
                ("TOOLGATE_DATA_DIR", path(dir.join("data"))),
                ("TOOLGATE_SANDBOX_WORKSPACE", path(dir.join("workspace"))),
                ("HOME", path(dir.join("data"))),
            ]);
            cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            cmd.uid(who.uid).gid(who.gid);
            cmd
        };
        let twice = format!("{USER_PASSWORD}\n{USER_PASSWORD}\n");
        for name in admins {
            use std::io::Write;
            let mut child = command()
                .args(["users", "add", name, "--role", "admin"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(mut input) = child.stdin.take() {
                input.write_all(twice.as_bytes())?;
            }
            let out = child.wait_with_output()?;
            anyhow::ensure!(out.status.success(), "users add {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut server = Server::spawn(command(), root)?;
        if admins.contains(&"admin") {
            server.admin_password = Some(USER_PASSWORD.to_owned());
        }
        Ok(server)
    }
}
