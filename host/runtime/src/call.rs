//! One plugin call, off the async I/O threads. Plugin code is arbitrary CPU work: run on the
//! runtime's worker threads, a few plugins spinning would starve every request (`/healthz`
//! included). So each call runs on a blocking-pool thread (at most `max_concurrent_calls` at once,
//! later calls wait for a slot), where it drives its own future; host calls still do their I/O
//! on the shared runtime (its drivers and its tasks), only the wasm runs here.
//!
//! Two deadlines bound a call: the plugin's execution time (`timeout_ms`, the CPU time of the
//! call's thread, so host calls and waits excluded, checked by epoch interruption), and the
//! wall-clock time of the whole call (`deadline_ms`, host calls included), so that a plugin
//! looping on host calls, or sleeping, also ends. What a plugin returns is
//! refused above `max_output_bytes`, before anything parses it.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument as _;
use wasmtime::{Engine, Store};

use super::bindings::exports::toolgate::plugin::tool::{InvokeResult, Manifest, Verdict as WitVerdict};
use super::bindings::{Error as WitError, Pre};
use super::state::{self, CallInfo, HostState};
use super::types::ToolErrorKind;
use super::{HostServices, PluginError};
use toolgate_core::model::PluginName;
use toolgate_core::redact::Secrets;

const MIB: u64 = 1024 * 1024;

/// A loaded plugin: its instantiation template and limits.
pub struct Plugin {
    pub name: PluginName,
    pub pre: Pre<HostState>,
    pub memory_cap: usize,
    /// Plugin execution time of one call.
    pub timeout: Duration,
    /// Wall-clock time of one call, host calls included.
    pub deadline: Duration,
    /// Largest output (undo record, verify detail, rollback output) it may return, in bytes.
    pub max_output: usize,
}

/// What a call asks the plugin.
pub enum Op {
    Manifest,
    Invoke(String),
    Verify(String, String),
    Rollback(String),
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Manifest => "manifest",
            Op::Invoke(_) => "invoke",
            Op::Verify(..) => "verify",
            Op::Rollback(_) => "rollback",
        }
    }
}

/// What the plugin answered.
pub enum Outcome {
    Manifest(Box<Manifest>),
    Invoke(InvokeResult),
    Verify(WitVerdict),
    Rollback(String),
}

/// Everything one call needs, owned, so that it can move to its thread.
pub struct Job {
    pub engine: Engine,
    pub services: Arc<HostServices>,
    pub plugin: Arc<Plugin>,
    /// `None` while the manifest is read: host calls then trap.
    pub call: Option<Arc<CallInfo>>,
    /// The tool, or the file name while the manifest is read.
    pub tool: String,
    pub action: String,
    pub secrets: Secrets,
    pub op: Op,
}

/// Run `job` on a blocking thread once one of `slots` is free, inside the current span.
pub async fn run(slots: &Arc<tokio::sync::Semaphore>, job: Job) -> Result<Outcome, PluginError> {
    let tool = job.tool.clone();
    let permit = Arc::clone(slots)
        .acquire_owned()
        .await
        .map_err(|e| PluginError::Trap { tool: tool.clone(), message: e.to_string() })?;
    let handle = tokio::runtime::Handle::current();
    let span = tracing::Span::current();
    let ran = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        handle.block_on(job.run().instrument(span))
    })
    .await;
    ran.unwrap_or_else(|e| Err(PluginError::Trap { tool, message: format!("the plugin call was aborted: {e}") }))
}

impl Job {
    async fn run(self) -> Result<Outcome, PluginError> {
        let Job { engine, services, plugin, call, tool, action, secrets, op } = self;
        let state = HostState::new(services, call, plugin.memory_cap, plugin.timeout, plugin.deadline);
        let first_check = state.clock.next_ticks();
        let mut store = Store::new(&engine, state);
        store.limiter(|s| &mut s.limits);
        // INVARIANT: a new store's deadline is 0 (already expired): set it on every store.
        store.set_epoch_deadline(first_check);
        store.epoch_deadline_callback(state::on_epoch);
        // The epoch callback stops the plugin while it runs; this stops the call while it waits
        // in a host call (a command, say), which the epoch cannot interrupt.
        let result = tokio::time::timeout(plugin.deadline, execute(&plugin, &mut store, &tool, op)).await;
        let state = store.data();
        for (stream, capture) in [("stdout", &state.stdout), ("stderr", &state.stderr)] {
            let text = capture.text();
            if !text.is_empty() {
                let text = secrets.scrub(text.trim_end());
                tracing::debug!(plugin = %plugin.name, tool = %tool, action = %action, stream, "{text}");
            }
        }
        let Ok(result) = result else {
            return Err(PluginError::DeadlineExceeded { tool, limit_ms: millis(plugin.deadline) });
        };
        match result {
            Ok(Ok(outcome)) => check_size(&tool, &outcome, plugin.max_output).map(|()| outcome),
            Ok(Err(err)) => Err(tool_error(&tool, err)),
            Err(trap) => Err(classify(tool, trap, state, &plugin)),
        }
    }
}

/// Instantiate and run `op`: the outer error is a trap, the inner one the plugin's answer.
async fn execute(
    plugin: &Plugin,
    store: &mut Store<HostState>,
    tool: &str,
    op: Op,
) -> wasmtime::Result<Result<Outcome, WitError>> {
    match &plugin.pre {
        Pre::Current(pre) => {
            let exports = pre.instantiate_async(&mut *store).await?;
            let exports = exports.toolgate_plugin_tool();
            Ok(match op {
                Op::Manifest => Ok(Outcome::Manifest(Box::new(exports.call_get_manifest(&mut *store).await?))),
                Op::Invoke(params) => exports.call_invoke(&mut *store, tool, &params).await?.map(Outcome::Invoke),
                Op::Verify(params, output) => {
                    exports.call_verify(&mut *store, tool, &params, &output).await?.map(Outcome::Verify)
                }
                Op::Rollback(undo) => exports.call_rollback(&mut *store, tool, &undo).await?.map(Outcome::Rollback),
            })
        }
        // A 0.1.0 component: the same calls, its answers read into the current types.
        Pre::V0_1(pre) => {
            let exports = pre.instantiate_async(&mut *store).await?;
            let exports = exports.toolgate_plugin_tool();
            let outcome = match op {
                Op::Manifest => Ok(Outcome::Manifest(Box::new(exports.call_get_manifest(&mut *store).await?.into()))),
                Op::Invoke(params) => {
                    exports.call_invoke(&mut *store, tool, &params).await?.map(|r| Outcome::Invoke(r.into()))
                }
                Op::Verify(params, output) => {
                    exports.call_verify(&mut *store, tool, &params, &output).await?.map(|v| Outcome::Verify(v.into()))
                }
                Op::Rollback(undo) => exports.call_rollback(&mut *store, tool, &undo).await?.map(Outcome::Rollback),
            };
            Ok(outcome.map_err(Into::into))
        }
    }
}

/// Refuse an answer above the cap before anything parses it.
fn check_size(tool: &str, outcome: &Outcome, cap: usize) -> Result<(), PluginError> {
    let parts: Vec<(&'static str, usize)> = match outcome {
        // The manifest is bounded by the plugin's memory, read once at load.
        Outcome::Manifest(_) => vec![],
        Outcome::Invoke(result) => {
            vec![("output", result.output.len()), ("undo record", result.undo.as_ref().map_or(0, String::len))]
        }
        Outcome::Verify(verdict) => vec![("verify detail", verdict.detail.len())],
        Outcome::Rollback(text) => vec![("rollback output", text.len())],
    };
    match parts.into_iter().find(|(_, size)| *size > cap) {
        Some((what, size)) => Err(PluginError::OutputTooLarge { tool: tool.to_owned(), what, size, cap }),
        None => Ok(()),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The `status` of a call for spans and metrics: `ok`, `denied`, `timeout`, `trap` (the plugin
/// was stopped: trap, panic, memory cap) or `error` (it answered with an error).
pub fn status(result: &Result<Outcome, PluginError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(PluginError::Tool { kind: ToolErrorKind::Denied, .. }) => "denied",
        Err(
            PluginError::Tool { kind: ToolErrorKind::Timeout, .. }
            | PluginError::Timeout { .. }
            | PluginError::DeadlineExceeded { .. },
        ) => "timeout",
        Err(PluginError::Trap { .. } | PluginError::Panicked { .. } | PluginError::MemoryExhausted { .. }) => "trap",
        Err(_) => "error",
    }
}

/// Name a failed call by what the store saw: a deadline, the memory cap, a panic, or a trap.
fn classify(tool: String, trap: wasmtime::Error, state: &HostState, plugin: &Plugin) -> PluginError {
    if state.clock.past_deadline {
        return PluginError::DeadlineExceeded { tool, limit_ms: millis(plugin.deadline) };
    }
    if state.clock.timed_out {
        return PluginError::Timeout { tool, limit_ms: millis(plugin.timeout) };
    }
    if state.limits.exhausted {
        return PluginError::MemoryExhausted { tool, cap_mib: plugin.memory_cap as u64 / MIB };
    }
    if let Some(message) = panic_message(&state.stderr.text()) {
        return PluginError::Panicked { tool, message };
    }
    PluginError::Trap { tool, message: format!("{trap:#}") }
}

/// `src/lib.rs:3:5: boom` from Rust's `thread '<unnamed>' panicked at src/lib.rs:3:5:\nboom`.
fn panic_message(stderr: &str) -> Option<String> {
    let (_, rest) = stderr.split_once("panicked at ")?;
    let lines: Vec<&str> = rest.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("note:")).collect();
    let mut message = lines.join(" ");
    message.truncate(message.char_indices().nth(1024).map_or(message.len(), |(i, _)| i));
    Some(message)
}

fn tool_error(tool: &str, err: WitError) -> PluginError {
    let (kind, message) = match err {
        WitError::InvalidParams(m) => (ToolErrorKind::InvalidParams, m),
        WitError::Denied(m) => (ToolErrorKind::Denied, m),
        WitError::Failed(m) => (ToolErrorKind::Failed, m),
        WitError::Unavailable(m) => (ToolErrorKind::Unavailable, m),
        WitError::Timeout(m) => (ToolErrorKind::Timeout, m),
        WitError::NotAllowed(m) => (ToolErrorKind::NotAllowed, m),
        WitError::NotFound(m) => (ToolErrorKind::NotFound, m),
        WitError::PermissionDenied(m) => (ToolErrorKind::PermissionDenied, m),
    };
    PluginError::Tool { tool: tool.to_owned(), kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_extracted_from_stderr() {
        let stderr = "thread '<unnamed>' panicked at src/lib.rs:3:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(panic_message(stderr).as_deref(), Some("src/lib.rs:3:5: boom"));
        assert_eq!(panic_message("memory allocation failed"), None);
    }

    #[test]
    fn answers_above_the_cap_are_refused_naming_what_and_how_big() {
        let result = InvokeResult { output: "x".repeat(11), undo: Some("u".into()) };
        let err = check_size("echo", &Outcome::Invoke(result), 10).err();
        assert!(
            matches!(err, Some(PluginError::OutputTooLarge { what: "output", size: 11, cap: 10, ref tool }) if tool == "echo"),
            "{err:?}"
        );
        let result = InvokeResult { output: "x".repeat(10), undo: Some("u".repeat(11)) };
        let err = check_size("echo", &Outcome::Invoke(result), 10).err();
        assert!(matches!(err, Some(PluginError::OutputTooLarge { what: "undo record", .. })), "{err:?}");
        assert!(check_size("echo", &Outcome::Rollback("r".repeat(10)), 10).is_ok());
    }
}
