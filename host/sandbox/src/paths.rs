//! Which host paths the sandbox may show: the workspace and the profiles' mount sources.
//!
//! Both are checked at start-up and again at each container creation, on the path the engine
//! would follow then (every symbolic link resolved): a link swapped after start-up is refused
//! at the next container, not followed. A refusal is [`SandboxError::WorkspaceRefused`] or
//! [`SandboxError::MountRefused`], naming the path and why.

use std::path::{Component, Path, PathBuf};

use super::{MountConfig, ROOT_PROFILE, SandboxError};

/// Host trees the workspace may not be, contain or lie inside: the machine's own files (a viewer
/// reads the workspace, an admin writes it) and the container engines' state and sockets.
/// Directories in homes (`/root/.cache/...`, `/home/...`), `/tmp`, `/srv/...` and `/opt` are
/// fine: operators and CI put workspaces there; root's credentials ([`ROOT_CREDENTIALS`]) are not.
const SYSTEM_TREES: [&str; 21] = [
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/kubelet",
    "/var/log",
    "/var/backups",
    "/var/spool",
    "/var/mail",
];

/// Root's credentials: neither a workspace nor a mount source may be, hold or lie inside one.
/// (Not `/root` as a whole: CI and operators keep work directories under `/root/.cache`; `/root`
/// itself holds these, so it is refused.)
const ROOT_CREDENTIALS: [&str; 9] = [
    "/root/.ssh",
    "/root/.gnupg",
    "/root/.docker",
    "/root/.config",
    "/root/.aws",
    "/root/.kube",
    "/root/.netrc",
    "/root/.pgpass",
    "/root/.git-credentials",
];

/// Directories that hold other people's or other services' trees: a workspace may lie inside
/// one (`/home/ops/workspace`, `/var/lib/toolgate/workspace`) but not be it.
const SHARED_PARENTS: [&str; 5] = ["/home", "/var/lib", "/mnt", "/media", "/srv"];

/// Host trees no profile may mount, nor anything in them, nor any directory above them (but the
/// read-only exceptions below), and [`ROOT_CREDENTIALS`] likewise.
const DENIED_TREES: [&str; 8] =
    ["/proc", "/sys", "/dev", "/boot", "/etc", "/var/lib/docker", "/var/lib/containerd", "/var/lib/kubelet"];

/// Directories no profile may mount whole, nor any directory above them: they hold the engine's
/// socket (`/run/docker.sock`, `/run/containerd/containerd.sock`) next to what profiles do mount
/// from them (an operator's profile may mount `/run/systemd/journal` or another single socket).
const SOCKET_DIRS: [&str; 6] = ["/run", "/var/run", "/run/containerd", "/run/docker", "/run/podman", "/run/user"];

/// Engine sockets, wherever they are: one of those is root on the host.
const DENIED_SOCKETS: [&str; 3] = ["docker.sock", "containerd.sock", "podman.sock"];

/// INVARIANT: the only paths inside [`DENIED_TREES`] a profile may mount: each exactly (nothing
/// above or below it as a source), only read-only, and only in the one built-in profile named.
const READ_ONLY_EXCEPTIONS: [(&str, &str); 3] = [
    // Not the host network namespace (`network = "host"` stays refused): only the kernel's socket
    // tables of pid 1's namespace, which is what `ss -ltnup` reads, for `network_listeners`.
    ("/proc/1/net", "host-net"),
    // 32 hex digits naming the machine, no secret: `journalctl` finds the host's journal by it.
    ("/etc/machine-id", "journal"),
    // apt's sources and settings (no keys to anything: repository signing keys are public).
    ("/etc/apt", ROOT_PROFILE),
];

/// How far below a mounted directory an engine socket is looked for, and how many entries are
/// read at most (`/var/lib/dpkg` holds thousands); the socket directories above are refused
/// whatever this finds.
const SOCKET_SCAN_DEPTH: usize = 3;
const SOCKET_SCAN_ENTRIES: usize = 20_000;

/// A directory the server keeps its own state or code in, which the workspace must not expose.
#[derive(Debug, Clone)]
pub struct Protected {
    /// What it is, for the message (`the data directory`).
    pub what: &'static str,
    /// Where it is (need not exist).
    pub path: PathBuf,
    /// Whether the workspace may be a directory inside it (the data directory: its files sit at
    /// its top, a sub-directory shows none of them).
    pub inside_ok: bool,
}

/// Check the workspace at start-up and return its canonical path, which is what the sandbox and
/// the `workspace` interface use from then on. Created when missing (only where it would be
/// accepted); refused when it is not a directory, is `/`, is, contains or lies inside a system
/// tree, or is or contains one of `protected` (or lies inside one that is not `inside_ok`).
pub fn check_workspace(workspace: &Path, protected: &[Protected]) -> Result<PathBuf, SandboxError> {
    let refused = |path: &Path, why: String| {
        SandboxError::WorkspaceRefused(format!("sandbox workspace `{}` is refused: {why}", path.display()))
    };
    let absolute = std::path::absolute(workspace).map_err(|e| refused(workspace, e.to_string()))?;
    if absolute.components().any(|c| c == Component::ParentDir) {
        return Err(refused(workspace, "`..` is not allowed in it".into()));
    }
    // Before creating anything, the path as written must pass too.
    workspace_tree(&absolute).map_err(|why| refused(workspace, why))?;
    if std::fs::symlink_metadata(&absolute).is_err() {
        std::fs::create_dir_all(&absolute).map_err(|e| refused(workspace, format!("cannot create it: {e}")))?;
    }
    let real = absolute.canonicalize().map_err(|e| refused(workspace, e.to_string()))?;
    let shown = |why: String| if real == absolute { why } else { format!("it leads to `{}`: {why}", real.display()) };
    if !real.is_dir() {
        return Err(refused(workspace, shown("it is not a directory".into())));
    }
    workspace_tree(&real).map_err(|why| refused(workspace, shown(why)))?;
    for p in protected {
        let dir = std::path::absolute(&p.path).map_err(|e| refused(workspace, e.to_string()))?;
        let dir = dir.canonicalize().unwrap_or(dir);
        let why = if real == dir {
            Some(format!("it is {}", p.what))
        } else if dir.starts_with(&real) {
            Some(format!("it contains {} `{}`", p.what, dir.display()))
        } else if real.starts_with(&dir) && !p.inside_ok {
            Some(format!("it lies inside {} `{}`", p.what, dir.display()))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(refused(workspace, shown(why)));
        }
    }
    Ok(real)
}

/// At each container creation: the workspace checked at start-up (`checked`, canonical) must
/// still lead to itself; a component swapped for a symbolic link since is refused.
pub fn recheck_workspace(checked: &Path) -> Result<PathBuf, SandboxError> {
    let refused = |why: String| {
        SandboxError::WorkspaceRefused(format!("sandbox workspace `{}` is refused: {why}", checked.display()))
    };
    let real = checked.canonicalize().map_err(|e| refused(format!("it cannot be resolved: {e}")))?;
    if real != checked {
        return Err(refused(format!("it now leads to `{}`, not to itself as at start-up", real.display())));
    }
    workspace_tree(&real).map_err(refused)?;
    if !real.is_dir() {
        return Err(refused("it is no longer a directory".into()));
    }
    Ok(real)
}

/// Why `path` (absolute, normalised) may not be the workspace, if it may not.
fn workspace_tree(path: &Path) -> Result<(), String> {
    if path == Path::new("/") {
        return Err("it is the host's root".into());
    }
    if SHARED_PARENTS.iter().any(|p| path == Path::new(p)) {
        return Err(format!("`{}` holds other users' or services' trees: use a directory inside it", path.display()));
    }
    for tree in SYSTEM_TREES.iter().chain(&ROOT_CREDENTIALS) {
        let tree = Path::new(tree);
        if path.starts_with(tree) {
            return Err(format!("`{}` is a system tree", tree.display()));
        }
        if tree.starts_with(path) {
            return Err(format!("it contains the system tree `{}`", tree.display()));
        }
    }
    Ok(())
}

/// Check one mount of `profile` as configured (start-up) and return the path the engine must
/// be given: the source with every symbolic link resolved, itself checked again. A source
/// missing on this machine is returned as written (the caller decides: `optional` or
/// `unavailable`). Called again at each container creation.
pub fn check_mount(profile: &str, key: &str, mount: &MountConfig) -> Result<PathBuf, SandboxError> {
    let (source, target) = (&mount.source, &mount.target);
    let shown = source.display();
    let refused = |why: &str| SandboxError::MountRefused(format!("`{key}`: mounting `{shown}` is refused: {why}"));
    if !source.is_absolute() || !target.starts_with('/') || target == "/" {
        return Err(SandboxError::Config(format!(
            "`{key}`: `{shown}` -> `{target}` needs absolute paths, not `/` as target"
        )));
    }
    if source.components().any(|c| c == Component::ParentDir) {
        return Err(refused("`..` is not allowed in a source"));
    }
    let normal: PathBuf = source.components().collect();
    check_source(profile, &normal, mount.read_only).map_err(|why| refused(&why))?;
    // A symbolic link is followed by the engine: the path it leads to must pass too, and is what
    // the engine gets.
    let Ok(real) = normal.canonicalize() else { return Ok(normal) };
    if real != normal {
        check_source(profile, &real, mount.read_only)
            .map_err(|why| refused(&format!("it leads to `{}`: {why}", real.display())))?;
    }
    if let Some(socket) = engine_socket_below(&real) {
        return Err(refused(&format!("it holds the container engine's socket `{}`", socket.display())));
    }
    Ok(real)
}

/// Why `source` (absolute, normalised) may not be mounted in `profile`, if it may not.
fn check_source(profile: &str, source: &Path, read_only: bool) -> Result<(), String> {
    if source == Path::new("/") {
        return Err("it is the host's root".into());
    }
    if source.file_name().is_some_and(|f| DENIED_SOCKETS.iter().any(|s| f == *s)) {
        return Err("it is a container engine's socket".into());
    }
    let denied = DENIED_TREES.iter().chain(&ROOT_CREDENTIALS).chain(&SOCKET_DIRS);
    if let Some(tree) = denied.clone().find(|t| Path::new(t).starts_with(source)) {
        return Err(if SOCKET_DIRS.contains(tree) {
            format!("it is or contains `{tree}`, which holds container engine sockets")
        } else {
            format!("it contains the protected tree `{tree}`")
        });
    }
    let Some(tree) = DENIED_TREES.iter().chain(&ROOT_CREDENTIALS).find(|t| source.starts_with(t)) else {
        return Ok(());
    };
    match READ_ONLY_EXCEPTIONS.iter().find(|(path, _)| source == Path::new(path)) {
        Some((_, only)) if *only != profile => Err(format!("only profile `{only}` may mount it")),
        Some(_) if !read_only => Err("it is mounted read-only or not at all".into()),
        Some(_) => Ok(()),
        None => Err(format!("`{tree}` is a protected tree")),
    }
}

/// An engine socket at most [`SOCKET_SCAN_DEPTH`] levels below `dir`, if one is there (symbolic
/// links are not followed: the engine does not follow them inside a bind mount either).
fn engine_socket_below(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::FileTypeExt as _;
    let mut stack = vec![(dir.to_owned(), 0)];
    let mut seen = 0;
    while let Some((path, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else { continue };
        for entry in entries.flatten() {
            seen += 1;
            if seen > SOCKET_SCAN_ENTRIES {
                return None;
            }
            let Ok(kind) = entry.file_type() else { continue };
            let name = entry.file_name();
            if kind.is_socket() && DENIED_SOCKETS.iter().any(|s| name == *s) {
                return Some(entry.path());
            }
            if kind.is_dir() && depth < SOCKET_SCAN_DEPTH {
                stack.push((entry.path(), depth + 1));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protected(data: &Path) -> [Protected; 1] {
        [Protected { what: "the data directory", path: data.to_owned(), inside_ok: true }]
    }

    #[test]
    fn system_trees_and_the_root_are_refused_as_workspace_and_homes_are_not() -> anyhow::Result<()> {
        let data = tempfile::tempdir()?;
        for bad in [
            "/",
            "/etc",
            "/etc/ssl",
            "/proc/1",
            "/usr/share",
            "/var",
            "/run",
            "/var/run",
            "/var/lib/docker",
            "/root",
            "/home",
            "/var/lib",
            "/var/log/apt",
        ] {
            let err = check_workspace(Path::new(bad), &protected(data.path())).err();
            let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
            assert!(matches!(err, Some(SandboxError::WorkspaceRefused(_))), "{bad}: {err:?}");
            assert!(message.starts_with("workspace_refused: ") && message.contains(&format!("`{bad}`")), "{message}");
        }
        // CI's temporary directories live under /root/.cache: a home is no system tree.
        for fine in [
            Path::new("/root/.cache/toolgate-ci/tmp"),
            Path::new("/home/ops/ws"),
            Path::new("/var/lib/toolgate/workspace"),
            Path::new("/tmp"),
            data.path(),
        ] {
            assert!(workspace_tree(fine).is_ok(), "{}", fine.display());
        }
        let inside = data.path().join("workspace");
        assert_eq!(check_workspace(&inside, &protected(data.path()))?, inside.canonicalize()?);
        Ok(())
    }

    #[test]
    fn a_workspace_exposing_the_servers_own_files_is_refused() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        let data = root.path().join("data");
        std::fs::create_dir_all(&data)?;
        let err = check_workspace(root.path(), &protected(&data)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("it contains the data directory"), "{err}");
        let err = check_workspace(&data, &protected(&data)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("it is the data directory"), "{err}");
        let policies = root.path().join("policies");
        let code = [Protected { what: "the policy directory", path: policies.clone(), inside_ok: false }];
        let err = check_workspace(&policies.join("ws"), &code).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("it lies inside the policy directory"), "{err}");
        let file = root.path().join("file");
        std::fs::write(&file, "x")?;
        let err = check_workspace(&file, &[]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("not a directory"), "{err}");
        Ok(())
    }

    #[test]
    fn a_workspace_link_swapped_after_start_up_is_refused() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        let real = root.path().join("real");
        std::fs::create_dir(&real)?;
        let link = root.path().join("ws");
        std::os::unix::fs::symlink(&real, &link)?;
        let checked = check_workspace(&link, &[])?;
        assert_eq!(recheck_workspace(&checked)?, checked);
        // The directory itself replaced by a link to `/etc`.
        std::fs::remove_dir(&real)?;
        std::os::unix::fs::symlink("/etc", &real)?;
        let err = recheck_workspace(&checked).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("workspace_refused: ") && err.contains("now leads to `/etc`"), "{err}");
        Ok(())
    }

    #[test]
    fn a_directory_holding_an_engine_socket_is_refused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested)?;
        let mount = MountConfig { source: dir.path().into(), target: "/m".into(), read_only: true, optional: false };
        assert!(check_mount("default", "k", &mount).is_ok());
        let _socket = std::os::unix::net::UnixListener::bind(nested.join("containerd.sock"))?;
        let err = check_mount("default", "k", &mount).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("mount_refused: ") && err.contains("containerd.sock"), "{err}");
        Ok(())
    }
}
