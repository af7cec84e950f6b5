//! Who is calling and why.

use crate::bindings::toolgate::plugin::context as wit;

pub use wit::CallContext;

/// The context of the call in progress: action id, tool, caller, role and justification.
///
/// # Panics
///
/// In a native build (a plugin's unit tests), where there is no call and so no context.
pub fn current() -> CallContext {
    if !cfg!(target_arch = "wasm32") {
        panic!("toolgate_sdk::context::current() exists only inside the Toolgate host");
    }
    wit::current()
}
