//! `workspace`: files under the workspace root. Paths are relative; absolute paths and `..` are
//! `denied`, and so is any symbolic link on the way. Every component is opened relative to its
//! parent directory's handle with `O_NOFOLLOW`, starting from a handle on the root, so there is
//! no check-then-reopen-by-path: a directory swapped for a symlink after it was looked at is
//! never followed. Writes are atomic (temp file + rename in the parent's handle). File system
//! work runs off the async workers.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{require, traced};
use crate::bindings::Error;
use crate::bindings::toolgate::plugin::workspace::{DirEntry, EntryKind, Host};
use crate::manifest::Capability;
use crate::state::HostState;

/// Largest file `read` returns and `write` accepts.
pub const FILE_CAP: u64 = 8 * 1024 * 1024;

impl HostState {
    /// In a `host.call` span of `workspace.<function>`: check the grant, then run `op` on a
    /// blocking thread, charging its time to the host.
    async fn fs<T: Send + 'static>(
        &mut self,
        function: &'static str,
        capability: Capability,
        op: impl FnOnce(&Path) -> Result<T, Error> + Send + 'static,
    ) -> wasmtime::Result<Result<T, Error>> {
        traced("workspace", function, async move {
            let call = match self.call() {
                Ok(call) => call,
                Err(trap) => return Err(trap),
            };
            if let Err(e) = require(&call, &capability) {
                return wasmtime::Result::Ok(Err(e));
            }
            let root = self.services.workspace.clone();
            let result = tokio::task::spawn_blocking(move || op(&root)).await;
            Ok(result.unwrap_or_else(|e| Err(Error::Failed(format!("workspace operation aborted: {e}")))))
        })
        .await
    }
}

impl Host for HostState {
    async fn read(&mut self, path: String) -> wasmtime::Result<Result<Vec<u8>, Error>> {
        self.fs("read", Capability::WorkspaceRead, move |root| {
            read_file(root, &path)?.ok_or_else(|| Error::Failed(format!("no file `{path}` in the workspace")))
        })
        .await
    }

    async fn list(&mut self, path: String) -> wasmtime::Result<Result<Vec<DirEntry>, Error>> {
        self.fs("list", Capability::WorkspaceRead, move |root| list_dir(root, &path)).await
    }

    async fn write(&mut self, path: String, content: Vec<u8>) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        self.fs("write", Capability::WorkspaceWrite, move |root| write_file(root, &path, &content)).await
    }

    async fn remove(&mut self, path: String) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        self.fs("remove", Capability::WorkspaceWrite, move |root| remove_file(root, &path)).await
    }
}

fn failed(path: &str, what: &str, err: &std::io::Error) -> Error {
    Error::Failed(format!("cannot {what} `{path}`: {err}"))
}

fn symlink_denied(rel: &str) -> Error {
    Error::Denied(format!("path `{rel}` goes through a symbolic link, which the workspace does not follow"))
}

/// The parts of `rel`, refusing anything that could lead outside.
fn parts(rel: &str) -> Result<Vec<&OsStr>, Error> {
    if rel.is_empty() {
        return Err(Error::InvalidParams("the path is empty (use `.` for the workspace root)".into()));
    }
    let mut parts = Vec::new();
    for component in Path::new(rel).components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(Error::Denied(format!("path `{rel}` contains `..`"))),
            Component::RootDir | Component::Prefix(_) => {
                return Err(Error::Denied(format!("path `{rel}` is absolute; workspace paths are relative")));
            }
        }
    }
    Ok(parts)
}

/// A handle on the workspace root, opened one component at a time from `/` without following a
/// symbolic link: the root is the real path checked at start-up, so a directory above it swapped
/// for a link since (to `/`, say) is refused, not followed.
fn open_root(root: &Path) -> Result<OwnedFd, Error> {
    let unavailable = |e: Errno| {
        if matches!(e, Errno::LOOP | Errno::NOTDIR) {
            Error::Denied(format!(
                "workspace_refused: the workspace `{}` no longer leads to itself (a directory on its path was replaced by a link)",
                root.display()
            ))
        } else {
            Error::Unavailable(format!("the workspace `{}` is not available: {e}", root.display()))
        }
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let absolute = std::path::absolute(root).map_err(|e| Error::Unavailable(e.to_string()))?;
    let mut dir = rustix::fs::openat(rustix::fs::CWD, "/", flags, Mode::empty()).map_err(unavailable)?;
    for component in absolute.components() {
        match component {
            Component::Normal(part) => {
                dir = rustix::fs::openat(&dir, part, flags, Mode::empty()).map_err(unavailable)?
            }
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::Unavailable(format!("the workspace `{}` is not a plain path", root.display())));
            }
        }
    }
    Ok(dir)
}

/// The directory `dirs` under `dir`, each opened from its parent's handle without following a
/// symlink; `None` when one is missing (created instead with `create`).
fn open_dir(mut dir: OwnedFd, dirs: &[&OsStr], rel: &str, create: bool) -> Result<Option<OwnedFd>, Error> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for part in dirs {
        let mut opened = rustix::fs::openat(&dir, *part, flags, Mode::empty());
        if create && matches!(opened, Err(Errno::NOENT)) {
            match rustix::fs::mkdirat(&dir, *part, Mode::from_raw_mode(0o777)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(failed(rel, "create the directory of", &e.into())),
            }
            opened = rustix::fs::openat(&dir, *part, flags, Mode::empty());
        }
        dir = match opened {
            Ok(next) => next,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(not_opened(&dir, part, rel, e)),
        };
    }
    Ok(Some(dir))
}

/// Why `part` of `rel` could not be opened: a symlink (`ELOOP`, or `ENOTDIR` for a directory
/// opened with `O_NOFOLLOW`) is `denied`, the rest `failed`.
fn not_opened(dir: &OwnedFd, part: &OsStr, rel: &str, err: Errno) -> Error {
    let is_link = rustix::fs::statat(dir, part, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Symlink);
    if is_link || err == Errno::LOOP { symlink_denied(rel) } else { failed(rel, "open", &err.into()) }
}

/// The parent directory of `rel` (created with `create`) and its last part; `None` for the
/// parent when a directory on the way is missing.
fn parent<'a>(root: &Path, rel: &'a str, create: bool) -> Result<(Option<OwnedFd>, &'a OsStr), Error> {
    let parts = parts(rel)?;
    let Some((last, dirs)) = parts.split_last() else {
        return Err(Error::Failed(format!("`{rel}` is not a file path")));
    };
    Ok((open_dir(open_root(root)?, dirs, rel, create)?, *last))
}

/// The content of the regular file `name` in `dir`, `None` when nothing is there.
fn read_at(dir: &OwnedFd, name: &OsStr, rel: &str) -> Result<Option<Vec<u8>>, Error> {
    // NONBLOCK: opening a FIFO must not hang the call.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(not_opened(dir, name, rel, e)),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| failed(rel, "read", &e.into()))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(Error::Failed(format!("`{rel}` is not a regular file")));
    }
    let size = u64::try_from(stat.st_size).unwrap_or_default();
    if size > FILE_CAP {
        return Err(Error::Failed(format!("`{rel}` is {size} bytes, above the {FILE_CAP}-byte cap")));
    }
    let mut content = Vec::new();
    std::fs::File::from(fd).take(FILE_CAP + 1).read_to_end(&mut content).map_err(|e| failed(rel, "read", &e))?;
    if content.len() as u64 > FILE_CAP {
        return Err(Error::Failed(format!("`{rel}` grew above the {FILE_CAP}-byte cap while being read")));
    }
    Ok(Some(content))
}

/// The content of the regular file at `rel`, `None` when nothing is there.
fn read_file(root: &Path, rel: &str) -> Result<Option<Vec<u8>>, Error> {
    match parent(root, rel, false)? {
        (Some(dir), name) => read_at(&dir, name, rel),
        (None, _) => Ok(None),
    }
}

fn list_dir(root: &Path, rel: &str) -> Result<Vec<DirEntry>, Error> {
    let parts = parts(rel)?;
    let dir = open_dir(open_root(root)?, &parts, rel, false)?
        .ok_or_else(|| Error::Failed(format!("cannot list `{rel}`: no such directory")))?;
    let entries = rustix::fs::Dir::read_from(&dir).map_err(|e| failed(rel, "list", &e.into()))?;
    let mut listing = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| failed(rel, "list", &e.into()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "." || name == ".." {
            continue;
        }
        let stat = rustix::fs::statat(&dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| failed(rel, "list", &e.into()))?;
        let (kind, size) = match FileType::from_raw_mode(stat.st_mode) {
            FileType::Symlink => (EntryKind::Symlink, 0),
            FileType::RegularFile => (EntryKind::File, u64::try_from(stat.st_size).unwrap_or_default()),
            FileType::Directory => (EntryKind::Directory, 0),
            _ => (EntryKind::Other, 0),
        };
        listing.push(DirEntry { name, kind, size });
    }
    listing.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listing)
}

fn write_file(root: &Path, rel: &str, content: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    if content.len() as u64 > FILE_CAP {
        return Err(Error::Failed(format!("content of {} bytes is above the {FILE_CAP}-byte cap", content.len())));
    }
    let (dir, name) = parent(root, rel, true)?;
    let dir = dir.ok_or_else(|| Error::Failed(format!("cannot create the directory of `{rel}`")))?;
    write_at(&dir, name, content, rel)
}

/// Replace `name` in `dir` with `content` atomically; what it replaced.
fn write_at(dir: &OwnedFd, name: &OsStr, content: &[u8], rel: &str) -> Result<Option<Vec<u8>>, Error> {
    let previous = read_at(dir, name, rel)?;
    let tmp = format!(".{}.{}.tmp", name.to_string_lossy(), uuid::Uuid::new_v4());
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let written = rustix::fs::openat(dir, tmp.as_str(), flags, Mode::from_raw_mode(0o666))
        .map_err(std::io::Error::from)
        .and_then(|fd| {
            let mut file = std::fs::File::from(fd);
            file.write_all(content)?;
            file.sync_all()
        });
    // The rename replaces the name itself: a symlink put there meanwhile is replaced, not followed.
    if let Err(e) = written.and_then(|()| rustix::fs::renameat(dir, tmp.as_str(), dir, name).map_err(Into::into)) {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
        return Err(failed(rel, "write", &e));
    }
    Ok(previous)
}

fn remove_file(root: &Path, rel: &str) -> Result<Option<Vec<u8>>, Error> {
    let (Some(dir), name) = parent(root, rel, false)? else {
        return Ok(None);
    };
    let previous = read_at(&dir, name, rel)?;
    if previous.is_some() {
        rustix::fs::unlinkat(&dir, name, AtFlags::empty()).map_err(|e| failed(rel, "remove", &e.into()))?;
    }
    Ok(previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied<T: std::fmt::Debug>(result: Result<T, Error>) -> bool {
        matches!(result, Err(Error::Denied(_)))
    }

    #[test]
    fn escapes_are_denied() -> anyhow::Result<()> {
        let outside = tempfile::tempdir()?;
        std::fs::write(outside.path().join("f"), "outside")?;
        let root = tempfile::tempdir()?;
        std::fs::create_dir(root.path().join("sub"))?;
        std::os::unix::fs::symlink(outside.path(), root.path().join("out"))?;
        std::os::unix::fs::symlink(outside.path().join("f"), root.path().join("link"))?;
        std::os::unix::fs::symlink(root.path().join("sub"), root.path().join("inside_link"))?;
        let root = root.path();
        assert!(denied(read_file(root, "../x")));
        assert!(denied(read_file(root, "sub/../../x")));
        assert!(denied(read_file(root, "/etc/passwd")));
        assert!(denied(read_file(root, "out/f")));
        assert!(denied(write_file(root, "out/new/dir/f", b"x")));
        assert!(denied(read_file(root, "link")));
        assert!(denied(write_file(root, "link", b"x")));
        assert!(denied(list_dir(root, "out")));
        // Even a link that stays inside is not followed: no path component is ever a symlink.
        assert!(denied(write_file(root, "inside_link/f", b"x")));
        assert_eq!(std::fs::read_to_string(outside.path().join("f"))?, "outside");
        assert!(!outside.path().join("new").exists());
        write_file(root, "./sub/new/f", b"in").map_err(|e| anyhow::anyhow!("{e:?}"))?;
        assert_eq!(std::fs::read(root.join("sub/new/f"))?, b"in");
        Ok(())
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_after_it_was_opened_is_not_followed() -> anyhow::Result<()> {
        let outside = tempfile::tempdir()?;
        let root = tempfile::tempdir()?;
        std::fs::create_dir(root.path().join("sub"))?;
        let err = |e: Error| anyhow::anyhow!("{e:?}");
        let (dir, name) = parent(root.path(), "sub/f", false).map_err(err)?;
        let dir = dir.ok_or_else(|| anyhow::anyhow!("sub exists"))?;
        // The race: between the look at `sub` and the write, `sub` becomes a link to outside.
        std::fs::rename(root.path().join("sub"), root.path().join("moved"))?;
        std::os::unix::fs::symlink(outside.path(), root.path().join("sub"))?;
        write_at(&dir, name, b"raced", "sub/f").map_err(err)?;
        assert!(!outside.path().join("f").exists(), "the swapped-in symlink was followed");
        assert_eq!(std::fs::read(root.path().join("moved/f"))?, b"raced");
        // A new call through the swapped path is refused.
        assert!(denied(write_file(root.path(), "sub/f", b"x")));
        assert!(denied(read_file(root.path(), "sub/f")));
        Ok(())
    }

    #[test]
    fn a_directory_above_the_workspace_swapped_for_a_link_is_refused_not_followed() -> anyhow::Result<()> {
        let base = tempfile::tempdir()?;
        let outside = tempfile::tempdir()?;
        std::fs::write(outside.path().join("secret"), "host file")?;
        let root = base.path().join("srv/workspace");
        std::fs::create_dir_all(&root)?;
        std::fs::write(root.join("notes"), "hi")?;
        let err = |e: Error| anyhow::anyhow!("{e:?}");
        assert_eq!(read_file(&root, "notes").map_err(err)?, Some(b"hi".to_vec()));
        // `srv` (above the checked root) becomes a link to a tree holding `workspace/secret`.
        std::fs::create_dir(outside.path().join("workspace"))?;
        std::fs::rename(outside.path().join("secret"), outside.path().join("workspace/secret"))?;
        std::fs::rename(base.path().join("srv"), base.path().join("old"))?;
        std::os::unix::fs::symlink(outside.path(), base.path().join("srv"))?;
        let refused = read_file(&root, "secret");
        assert!(matches!(&refused, Err(Error::Denied(m)) if m.contains("workspace_refused")), "{refused:?}");
        Ok(())
    }

    #[test]
    fn write_is_atomic_and_returns_what_it_replaced() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        let err = |e: Error| anyhow::anyhow!("{e:?}");
        assert_eq!(write_file(root.path(), "a/b.txt", b"one").map_err(err)?, None);
        assert_eq!(write_file(root.path(), "a/b.txt", b"two").map_err(err)?, Some(b"one".to_vec()));
        assert_eq!(std::fs::read(root.path().join("a/b.txt"))?, b"two");
        let names: Vec<String> = list_dir(root.path(), ".").map_err(err)?.into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["a"], "no temp file is left behind");
        assert_eq!(remove_file(root.path(), "a/b.txt").map_err(err)?, Some(b"two".to_vec()));
        assert_eq!(remove_file(root.path(), "a/b.txt").map_err(err)?, None);
        assert_eq!(remove_file(root.path(), "nowhere/b.txt").map_err(err)?, None);
        Ok(())
    }
}
