//! The execute pipeline, approvals, rollback and crash recovery: [`Governor`].
//!
//! One call: check the parameters against the tool's schema → action decision (policy) → for
//! CRITICAL, wait for a second admin → invoke the plugin (each command it runs is decided by the
//! exec policy) → verify when the category requires it or `VERIFY_REQUIRED` → complete, or roll
//! back automatically when verify fails. Every step is an audit entry and a state of the action
//! record, written through the [`Journal`]; the caller's answer waits for the last commit.
//!
//! Durability points: a tool that changes state (any category but READ) starts only once its
//! `running` state is committed, and its undo record is committed before `verify` runs; the
//! answer to every call waits for its final audit entry. A READ call does not wait in between:
//! it has no effect to recover from.
//!
//! By step:
//! - `execute`: decide, invoke, verify, complete or fail.
//! - `approval`: a CRITICAL call waiting for a second admin: approve, reject, expire.
//! - `rollback`: undo an action, by hand or automatically.
//! - `recovery`: start-up recovery of the actions a crash left open.
//! - `records`: the audit events about an action, and reads of actions and undo records.
//! - `error`: [`GovernanceError`], and the [`ActionError`](super::action::ActionError) of a
//!   failed invocation.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::GovernanceConfig;
use super::action::{ActionRecord, ActionState};
use super::journal::{Journal, Write};
use toolgate_core::model::{AuthMethod, Caller, Role, ToolName};
use toolgate_policy::PolicyEngine;
use toolgate_runtime::{PluginError, ToolInfo, Tools};
use toolgate_store::Store;

mod approval;
mod error;
mod execute;
mod records;
mod recovery;
mod rollback;

pub use error::GovernanceError;
pub use records::ActionFilter;
pub use recovery::Recovery;

/// A tool call as the API receives it.
#[derive(Debug, Clone)]
pub struct ExecuteRequest {
    /// Parameters, checked against the tool's schema.
    pub params: Value,
    /// Why the caller runs it.
    pub justification: Option<String>,
    /// Decide only; run nothing.
    pub dry_run: bool,
}

/// Where a call ended up: the action record (as stored), and the tool's output in full.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The action.
    pub action: ActionRecord,
    /// The output as the tool returned it (the record keeps a capped copy).
    pub output: Option<Value>,
    /// A dry run: nothing was stored but the audit entry.
    pub dry_run: bool,
}

impl Outcome {
    /// Where `action` ended up, with no output to return.
    fn of(action: ActionRecord) -> Outcome {
        Outcome { action, output: None, dry_run: false }
    }
}

/// The governance service: shared by the HTTP handlers, the CLI and start-up recovery.
pub struct Governor {
    journal: Arc<Journal>,
    policy: Arc<PolicyEngine>,
    plugins: Arc<dyn Tools>,
    config: GovernanceConfig,
    min_justification_len: usize,
    /// Ids of actions waiting for an approval, so that expiry does not scan the table.
    pending: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Governor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Governor").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The identity recovery and automatic rollbacks act as.
fn system() -> Caller {
    Caller { name: "system".into(), role: Role::Admin, auth_method: AuthMethod::Local, source_ip: None }
}

impl Governor {
    /// A governor over `journal`, deciding with `policy` and running tools through `plugins`
    /// (the plugin runtime; a fake in the pipeline's own tests).
    pub fn new(
        journal: Arc<Journal>,
        policy: Arc<PolicyEngine>,
        plugins: Arc<dyn Tools>,
        config: GovernanceConfig,
        min_justification_len: u64,
    ) -> Governor {
        Governor {
            journal,
            policy,
            plugins,
            config,
            min_justification_len: usize::try_from(min_justification_len).unwrap_or(usize::MAX),
            pending: Mutex::new(HashSet::new()),
        }
    }

    fn store(&self) -> &Store {
        self.journal.store()
    }

    /// Run `work` on a clone of this governor in a task of its own and wait for it: a client
    /// that hangs up drops the waiting handler, never an action half-way (its state, undo record
    /// and audit entries are written to the end). The task starts at once; its future is boxed,
    /// so that only a pointer is moved on its way into the runtime.
    fn to_the_end<T, F>(
        self: &Arc<Self>,
        work: impl FnOnce(Arc<Governor>) -> F,
    ) -> impl Future<Output = Result<T, GovernanceError>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, GovernanceError>> + Send + 'static,
    {
        use tracing::Instrument as _;
        let task = tokio::spawn(Box::pin(work(Arc::clone(self)).instrument(tracing::Span::current())));
        async move { task.await.map_err(|e| GovernanceError::Task(e.to_string()))? }
    }

    /// Commit `record` (advanced from `from`, or created) with `writes`; sets its audit seq.
    async fn commit(
        &self,
        record: &mut ActionRecord,
        from: Option<ActionState>,
        mut writes: Vec<Write>,
    ) -> Result<(), GovernanceError> {
        writes.push(action_write(from, record));
        let committed = self.journal.submit(writes).await?;
        if let Some(seq) = committed.last_seq() {
            record.audit_seq = Some(seq);
        }
        Ok(())
    }

    /// The output as an action record keeps it: whole, or a note when it is too large.
    fn capped(&self, output: &Value) -> Value {
        let size = serde_json::to_vec(output).map_or(usize::MAX, |b| b.len());
        if u64::try_from(size).unwrap_or(u64::MAX) <= self.config.max_stored_output_bytes {
            output.clone()
        } else {
            json!({ "truncated": true, "bytes": size, "note": "the output was returned to the caller but is too large to store" })
        }
    }

    /// The loaded tool an action record names.
    fn tool_of(&self, record: &ActionRecord) -> Result<ToolInfo, GovernanceError> {
        let name: ToolName = record.tool.parse().map_err(|_| PluginError::UnknownTool(record.tool.clone()))?;
        Ok(self.plugins.tool(&name).ok_or_else(|| PluginError::UnknownTool(record.tool.clone()))?.clone())
    }
}

/// The journal write of `record`, compare-and-set against `from` (`None`: a new record).
fn action_write(expect: Option<ActionState>, record: &ActionRecord) -> Write {
    let mut stored = record.clone();
    if !stored.state.is_open() {
        // The raw parameters (secrets included) are kept only while the action may still run;
        // `params_redacted` is what stays.
        stored.params = Value::Null;
    }
    Write::Action { expect, record: Box::new(stored) }
}
