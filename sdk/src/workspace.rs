//! Files in the host's workspace directory, by paths relative to its root (the host refuses
//! absolute paths, `..` and symlinks leading out). Reading and listing need
//! [`Capability::WorkspaceRead`](crate::Capability); writing and removing need
//! [`Capability::WorkspaceWrite`](crate::Capability).

use crate::Error;
use crate::bindings::toolgate::plugin::workspace as wit;

pub use wit::{DirEntry, EntryKind};

/// The content of the file at `path`.
pub fn read(path: &str) -> Result<Vec<u8>, Error> {
    crate::host::call(|| wit::read(path))
}

/// The content of the file at `path` as text; `failed` when it is not UTF-8.
pub fn read_to_string(path: &str) -> Result<String, Error> {
    String::from_utf8(read(path)?).map_err(|e| Error::failed(format!("`{path}` is not UTF-8 text: {e}")))
}

/// The entries of the directory at `path` (`.` for the root), sorted by name.
pub fn list(path: &str) -> Result<Vec<DirEntry>, Error> {
    crate::host::call(|| wit::list(path))
}

/// Replace the file at `path` with `content` (creating parent directories), atomically. Returns
/// the previous content, or `None` when the file did not exist: keep it as an undo record.
pub fn write(path: &str, content: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, Error> {
    crate::host::call(|| wit::write(path, content.as_ref()))
}

/// Remove the file at `path`. Returns its content, or `None` when it did not exist.
pub fn remove(path: &str) -> Result<Option<Vec<u8>>, Error> {
    crate::host::call(|| wit::remove(path))
}
