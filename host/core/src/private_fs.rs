//! Directories and files for their owner alone: the data directory and its database, the
//! compiled-plugin cache and its key. One place decides how an existing one that is open to other
//! users is restricted (and says so).

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;

/// Create `dir` (and missing parents) with mode 0700, or restrict an existing one to its owner.
pub fn dir(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    restrict(dir, 0o700)
}

/// Set `path` to `mode` if group or others have any access to it, and say so.
pub fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        tracing::warn!(
            path = %path.display(),
            was = format!("{current:o}"),
            now = format!("{mode:o}"),
            "restricted to its owner: it was open to other users"
        );
    }
    Ok(())
}
