//! The host's audit log, newest first. Needs [`Capability::AuditRead`](crate::Capability). The host
//! scopes what it returns to the caller of the current call: an admin sees every entry, anyone
//! else only the entries they caused.

use crate::Error;
use crate::bindings::toolgate::plugin::audit as wit;

pub use wit::Entry;

/// The newest `last_n` entries the caller may see (1 to 1000), newest first.
pub fn recent(last_n: u32) -> Result<Vec<Entry>, Error> {
    crate::host::call(|| wit::recent(last_n))
}
