//! Who is calling and why.

use crate::bindings::toolgate::plugin::context as wit;

pub use wit::CallContext;

/// The context of the call in progress: action id, tool, caller, role and justification.
pub fn current() -> CallContext {
    wit::current()
}
