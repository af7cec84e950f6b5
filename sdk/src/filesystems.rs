//! The host's mounted file systems and their usage, from the host's own mount table (not the
//! sandbox's). Needs [`Capability::FilesystemsRead`](crate::Capability).

use crate::Error;
use crate::bindings::toolgate::plugin::filesystems as wit;

pub use wit::Filesystem;

/// Every real file system mounted on the host, pseudo file systems left out.
pub fn list() -> Result<Vec<Filesystem>, Error> {
    crate::host::call(wit::list)
}
