//! The host side of the WIT world: one file per imported interface. Shared here: the grant check
//! every gated host call starts with, and the mapping of sandbox errors to WIT errors.

use super::bindings::Error;
use super::manifest::Capability;
use super::state::CallInfo;
use crate::sandbox::SandboxError;

mod audit;
mod containers;
mod context;
mod log;
mod sandbox;
mod workspace;

impl super::bindings::toolgate::plugin::types::Host for super::state::HostState {}

/// `denied` unless the calling tool declared `capability`.
fn require(call: &CallInfo, capability: &Capability) -> Result<(), Error> {
    if call.capabilities.contains(capability) {
        Ok(())
    } else {
        Err(Error::Denied(format!("tool `{}` did not declare capability `{capability}`", call.tool.name)))
    }
}

/// `Refused` → denied, `Unavailable` and `Config` (the host's own misconfiguration) →
/// unavailable, `Timeout` → timeout, others → failed.
fn sandbox_error(err: SandboxError) -> Error {
    let message = err.to_string();
    match err {
        SandboxError::Refused(_) => Error::Denied(message),
        SandboxError::Unavailable(_) | SandboxError::Config(_) => Error::Unavailable(message),
        SandboxError::Timeout(_) => Error::Timeout(message),
        SandboxError::UnknownProfile(_) | SandboxError::Failed(_) => Error::Failed(message),
    }
}
