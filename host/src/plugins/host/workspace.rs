//! `workspace`: files under the workspace root. Paths are relative; absolute paths, `..`, and
//! symlinks that lead outside are `denied`, and a final symlink is never followed. Writes are
//! atomic (temp file + rename). File system work runs off the async workers.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use super::{require, traced};
use crate::plugins::bindings::Error;
use crate::plugins::bindings::toolgate::plugin::workspace::{DirEntry, EntryKind, Host};
use crate::plugins::manifest::Capability;
use crate::plugins::state::HostState;

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
        traced("workspace", function, async {
            let call = match self.call() {
                Ok(call) => call,
                Err(trap) => return Err(trap),
            };
            if let Err(e) = require(&call, &capability) {
                return wasmtime::Result::Ok(Err(e));
            }
            let root = self.services.workspace.clone();
            let started = Instant::now();
            let result = tokio::task::spawn_blocking(move || op(&root)).await;
            self.clock.host_time(started.elapsed());
            Ok(result.unwrap_or_else(|e| Err(Error::Failed(format!("workspace operation aborted: {e}")))))
        })
        .await
    }
}

impl Host for HostState {
    async fn read(&mut self, path: String) -> wasmtime::Result<Result<Vec<u8>, Error>> {
        self.fs("read", Capability::WorkspaceRead, move |root| {
            let target = resolve(root, &path)?;
            read_file(&target, &path)?.ok_or_else(|| Error::Failed(format!("no file `{path}` in the workspace")))
        })
        .await
    }

    async fn list(&mut self, path: String) -> wasmtime::Result<Result<Vec<DirEntry>, Error>> {
        self.fs("list", Capability::WorkspaceRead, move |root| list_dir(&resolve(root, &path)?, &path)).await
    }

    async fn write(&mut self, path: String, content: Vec<u8>) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        self.fs("write", Capability::WorkspaceWrite, move |root| write_file(root, &path, &content)).await
    }

    async fn remove(&mut self, path: String) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        self.fs("remove", Capability::WorkspaceWrite, move |root| {
            let target = resolve(root, &path)?;
            let previous = read_file(&target, &path)?;
            if previous.is_some() {
                std::fs::remove_file(&target).map_err(|e| failed(&path, "remove", &e))?;
            }
            Ok(previous)
        })
        .await
    }
}

fn failed(path: &str, what: &str, err: &std::io::Error) -> Error {
    Error::Failed(format!("cannot {what} `{path}`: {err}"))
}

/// The absolute path of `rel` under `root`, refusing anything that could lead outside.
pub fn resolve(root: &Path, rel: &str) -> Result<PathBuf, Error> {
    let root = root
        .canonicalize()
        .map_err(|e| Error::Unavailable(format!("the workspace `{}` is not available: {e}", root.display())))?;
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
    let Some((last, dirs)) = parts.split_last() else {
        return Ok(root);
    };
    // Resolve the deepest existing ancestor (following any symlink in it) and check it is still
    // inside; the missing rest cannot be a symlink.
    let mut existing = root.clone();
    let mut rest = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let next = existing.join(dir);
        if std::fs::symlink_metadata(&next).is_err() {
            rest.extend_from_slice(&dirs[i..]);
            break;
        }
        existing = next;
    }
    let existing = existing.canonicalize().map_err(|e| failed(rel, "resolve", &e))?;
    if !existing.starts_with(&root) {
        return Err(Error::Denied(format!("path `{rel}` leads outside the workspace")));
    }
    let target = rest.iter().fold(existing, |p, part| p.join(part)).join(last);
    if std::fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::Denied(format!("path `{rel}` is a symbolic link, which the workspace does not follow")));
    }
    Ok(target)
}

/// The content of a regular file, `None` when nothing is there.
fn read_file(target: &Path, rel: &str) -> Result<Option<Vec<u8>>, Error> {
    let meta = match std::fs::symlink_metadata(target) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(rel, "read", &e)),
    };
    if !meta.is_file() {
        return Err(Error::Failed(format!("`{rel}` is not a regular file")));
    }
    if meta.len() > FILE_CAP {
        return Err(Error::Failed(format!("`{rel}` is {} bytes, above the {FILE_CAP}-byte cap", meta.len())));
    }
    let mut content = Vec::new();
    std::fs::File::open(target)
        .and_then(|f| f.take(FILE_CAP + 1).read_to_end(&mut content))
        .map_err(|e| failed(rel, "read", &e))?;
    if content.len() as u64 > FILE_CAP {
        return Err(Error::Failed(format!("`{rel}` grew above the {FILE_CAP}-byte cap while being read")));
    }
    Ok(Some(content))
}

fn list_dir(dir: &Path, rel: &str) -> Result<Vec<DirEntry>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| failed(rel, "list", &e))?;
    let mut listing = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| failed(rel, "list", &e))?;
        let meta = entry.metadata().map_err(|e| failed(rel, "list", &e))?;
        let kind = if meta.file_type().is_symlink() {
            EntryKind::Symlink
        } else if meta.is_file() {
            EntryKind::File
        } else if meta.is_dir() {
            EntryKind::Directory
        } else {
            EntryKind::Other
        };
        let size = if meta.is_file() { meta.len() } else { 0 };
        listing.push(DirEntry { name: entry.file_name().to_string_lossy().into_owned(), kind, size });
    }
    listing.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listing)
}

fn write_file(root: &Path, rel: &str, content: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    if content.len() as u64 > FILE_CAP {
        return Err(Error::Failed(format!("content of {} bytes is above the {FILE_CAP}-byte cap", content.len())));
    }
    let target = resolve(root, rel)?;
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(Error::Failed(format!("`{rel}` is not a file path")));
    };
    std::fs::create_dir_all(parent).map_err(|e| failed(rel, "create the directory of", &e))?;
    // Check again now that the directories exist: another writer may have raced us.
    let target = resolve(root, rel)?;
    let previous = read_file(&target, rel)?;
    let tmp = parent.join(format!(".{}.{}.tmp", name.to_string_lossy(), uuid::Uuid::new_v4()));
    let written = std::fs::File::create_new(&tmp).and_then(|mut f| {
        f.write_all(content)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &target)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(failed(rel, "write", &e));
    }
    Ok(previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(result: Result<PathBuf, Error>) -> bool {
        matches!(result, Err(Error::Denied(_)))
    }

    #[test]
    fn escapes_are_denied() -> anyhow::Result<()> {
        let outside = tempfile::tempdir()?;
        let root = tempfile::tempdir()?;
        std::fs::create_dir(root.path().join("sub"))?;
        std::os::unix::fs::symlink(outside.path(), root.path().join("out"))?;
        std::os::unix::fs::symlink(outside.path().join("f"), root.path().join("link"))?;
        assert!(denied(resolve(root.path(), "../x")));
        assert!(denied(resolve(root.path(), "sub/../../x")));
        assert!(denied(resolve(root.path(), "/etc/passwd")));
        assert!(denied(resolve(root.path(), "out/f")));
        assert!(denied(resolve(root.path(), "out/new/dir/f")));
        assert!(denied(resolve(root.path(), "link")));
        let inside = resolve(root.path(), "./sub/new/f").map_err(|e| anyhow::anyhow!("{e:?}"))?;
        assert!(inside.starts_with(root.path().canonicalize()?));
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
        Ok(())
    }
}
