//! The host side of the WIT world: one file per imported interface. Shared here: the grant check
//! every gated host call starts with, and the mapping of sandbox errors to WIT errors.

use tracing::Instrument as _;

use super::bindings::Error;
use super::manifest::Capability;
use super::state::CallInfo;
use toolgate_sandbox::SandboxError;
use toolgate_telemetry::span;

mod audit;
mod containers;
mod context;
mod log;
mod sandbox;
mod system;
mod workspace;

impl super::bindings::toolgate::plugin::types::Host for super::state::HostState {}

/// Run one host function inside a `host.call` span (a child of `plugin.invoke`: wasmtime polls
/// host futures inside the invoke future), marked failed on a trap or an error the plugin sees.
async fn traced<T: Answer>(
    interface: &'static str,
    function: &'static str,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let span = span::host_call(interface, function);
    let result = call.instrument(span.clone()).await;
    finish(&span, result)
}

/// [`traced`] for a host function that does not wait: it runs inside the span at once, so the
/// plugin's `&self` is not held by a future (the store's state is `Send`, not `Sync`).
fn traced_now<T: Answer>(
    interface: &'static str,
    function: &'static str,
    call: impl FnOnce() -> wasmtime::Result<T>,
) -> wasmtime::Result<T> {
    let span = span::host_call(interface, function);
    let result = span.in_scope(call);
    finish(&span, result)
}

fn finish<T: Answer>(span: &tracing::Span, result: wasmtime::Result<T>) -> wasmtime::Result<T> {
    if !result.as_ref().is_ok_and(Answer::succeeded) {
        span::record_error(span);
    }
    result
}

/// What a host function answers the plugin, for the `host.call` span's status.
trait Answer {
    fn succeeded(&self) -> bool;
}

impl<T> Answer for Result<T, Error> {
    fn succeeded(&self) -> bool {
        self.is_ok()
    }
}

impl Answer for () {
    fn succeeded(&self) -> bool {
        true
    }
}

impl Answer for super::bindings::toolgate::plugin::context::CallContext {
    fn succeeded(&self) -> bool {
        true
    }
}

/// `denied` unless the calling tool declared `capability`.
fn require(call: &CallInfo, capability: &Capability) -> Result<(), Error> {
    if call.capabilities.contains(capability) {
        Ok(())
    } else {
        Err(Error::Denied(format!("tool `{}` did not declare capability `{capability}`", call.tool.name)))
    }
}

/// `Refused` (and a refused workspace or mount) → denied, `Unavailable` and `Config` (the host's own misconfiguration) →
/// unavailable, `Timeout` → timeout, others → failed.
fn sandbox_error(err: SandboxError) -> Error {
    let message = err.to_string();
    match err {
        SandboxError::Refused(_) | SandboxError::WorkspaceRefused(_) | SandboxError::MountRefused(_) => {
            Error::Denied(message)
        }
        SandboxError::Unavailable(_) | SandboxError::Config(_) => Error::Unavailable(message),
        SandboxError::Timeout(_) => Error::Timeout(message),
        SandboxError::UnknownProfile(_) | SandboxError::Failed(_) => Error::Failed(message),
    }
}
