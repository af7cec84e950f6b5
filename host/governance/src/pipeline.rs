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

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use redb::ReadableTable;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::action::{ActionError, ActionRecord, ActionState, Approval, Operation, UndoRecord, UndoState};
use super::command::{at_decided_category, command_line};
use super::journal::{Journal, JournalError, Write};
use toolgate_core::AuditEvent;
use toolgate_core::redact::redact;

use super::GovernanceConfig;
use toolgate_core::model::{AuthMethod, Caller, Category, Role, ToolName};
use toolgate_policy::{ActionInput, ApprovalState, CallerInput, Decision, PolicyEngine, RollbackInput, ToolInput};
use toolgate_runtime::{CallContext, PluginError, ToolErrorKind, ToolInfo, Tools};
use toolgate_store::{Store, StoreError, decode, tables};

/// Why a governance operation could not be carried out. (An action that ran and failed is not
/// an error: it is an [`Outcome`] in state `failed`.)
#[derive(Debug, thiserror::Error)]
pub enum GovernanceError {
    /// Unknown tool or parameters that do not match its schema.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// No action with that id.
    #[error("no action `{0}`")]
    NoAction(String),
    /// The action is not waiting for an approval.
    #[error("action `{id}` is `{}`, not waiting for an approval", state.as_str())]
    NotPending {
        /// The action.
        id: String,
        /// Where it is.
        state: ActionState,
    },
    /// The approval window closed; the action will not run.
    #[error("the approval of action `{0}` expired; request the action again")]
    ApprovalExpired(String),
    /// The requester (or the owner of the requesting API key) cannot approve their own action.
    #[error("an action must be approved by an admin other than the one who requested it")]
    SelfApproval,
    /// The approver and the requester are not independent people (see [`toolgate_auth::provenance`]).
    #[error("approval refused: {0}")]
    ConflictOfInterest(String),
    /// The policy refuses the action even with the approval (policy changed meanwhile).
    #[error("the policy refuses action `{id}` even with an approval: {}", reasons(.decision))]
    ApprovalRefused {
        /// The action.
        id: String,
        /// The decision with `approval: approved`.
        decision: Decision,
    },
    /// The stored parameters no longer match the ones the approval was requested for.
    #[error("the parameters of action `{0}` do not match the ones its approval is bound to")]
    ApprovalMismatch(String),
    /// The requester can no longer act (disabled, deleted, key revoked or expired).
    #[error("action `{id}` cannot run: {why}")]
    RequesterGone {
        /// The action.
        id: String,
        /// What happened to the requester.
        why: String,
    },
    /// A justification is needed (manual rollback).
    #[error("a justification of at least {0} characters is required")]
    JustificationRequired(usize),
    /// The action cannot be rolled back in its state.
    #[error("action `{id}` is `{}`; only completed or failed actions can be rolled back", state.as_str())]
    NotRollbackable {
        /// The action.
        id: String,
        /// Where it is.
        state: ActionState,
    },
    /// The action left no undo record.
    #[error("action `{0}` left no undo record: there is nothing to roll back")]
    NoUndo(String),
    /// The undo record was already used (or its rollback failed and must not be retried).
    #[error("action `{id}` cannot be rolled back again: its undo record is {state}")]
    AlreadyRolledBack {
        /// The action.
        id: String,
        /// The undo record's state.
        state: String,
    },
    /// The journal refused or failed: nothing is acknowledged without its audit entry.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A read failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The task running the pipeline panicked or was cancelled.
    #[error("the action's task failed: {0}")]
    Task(String),
}

/// Run a pipeline in a task of its own and wait for it: a client that hangs up drops the
/// waiting handler, never an action half-way (its state, undo record and audit entries are
/// written to the end). The task's future is boxed, so that only a pointer is moved on its way
/// into the runtime.
fn to_the_end<T: Send + 'static>(
    work: impl Future<Output = Result<T, GovernanceError>> + Send + 'static,
) -> impl Future<Output = Result<T, GovernanceError>> {
    use tracing::Instrument as _;
    let task = tokio::spawn(Box::pin(work.instrument(tracing::Span::current())));
    async move { task.await.map_err(|e| GovernanceError::Task(e.to_string()))? }
}

fn reasons(decision: &Decision) -> String {
    decision.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(", ")
}

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

    /// Run a tool for `caller`: the whole pipeline. Errors are refusals before anything was
    /// recorded (unknown tool, invalid params) or journal failures.
    pub async fn execute(
        self: &Arc<Self>,
        caller: &Caller,
        tool: &str,
        request: ExecuteRequest,
    ) -> Result<Outcome, GovernanceError> {
        let (this, caller, tool) = (Arc::clone(self), caller.clone(), tool.to_owned());
        to_the_end(async move {
            let started = std::time::Instant::now();
            let outcome = this.execute_inner(&caller, &tool, request).await;
            count_call(&tool, &outcome, started);
            outcome
        })
        .await
    }

    async fn execute_inner(
        &self,
        caller: &Caller,
        tool: &str,
        request: ExecuteRequest,
    ) -> Result<Outcome, GovernanceError> {
        let name: ToolName = tool.parse().map_err(|_| PluginError::UnknownTool(tool.to_owned()))?;
        let info = self.plugins.tool(&name).ok_or_else(|| PluginError::UnknownTool(tool.to_owned()))?;
        self.plugins.check_params(&name, &request.params)?;
        let params_redacted = redact(&info.params_schema, &request.params);
        let command = command_line(info, &params_redacted)?;
        let decision = self.decide(caller, info, &params_redacted, command, &request, ApprovalState::None);
        // From here on the call is at the category the policy decided (a `run_command` call is
        // the class of its command), for its requirements, its record and its commands.
        let decided = at_decided_category(info, &decision);
        let info = decided.as_ref();
        let mut record = ActionRecord {
            id: uuid::Uuid::now_v7().to_string(),
            operation: Operation::Execute,
            rollback_of: None,
            tool: info.name.to_string(),
            plugin: info.plugin.to_string(),
            category: info.category,
            caller: caller.clone(),
            params: request.params,
            params_redacted,
            justification: request.justification,
            state: ActionState::Requested,
            history: Vec::new(),
            decision: Some(decision.clone()),
            approval: None,
            output: None,
            verify: None,
            error: None,
            undo_available: false,
            rolled_back_by: None,
            trace_id: toolgate_telemetry::current_trace_id(),
            audit_seq: None,
            binding_salt: String::new(),
        };
        record.enter(ActionState::Requested, None, None);
        if request.dry_run {
            // Nothing is stored but the audit entry: a dry run is not an action.
            let event = self.decision_event("decision", &record, true);
            let committed = self.journal.submit(vec![Write::Audit(Box::new(event))]).await?;
            record.audit_seq = committed.last_seq();
            return Ok(Outcome { action: record, output: None, dry_run: true });
        }
        let only_approval_missing = !decision.allow && decision.reasons.iter().all(|r| r.code == "approval_required");
        if only_approval_missing {
            record.binding_salt = hex::encode(rand::random::<[u8; 16]>());
            record.approval = Some(Approval {
                expires_at: OffsetDateTime::now_utc() + ttl(self.config.approval_ttl_secs),
                params_sha256: params_sha256(&record.binding_salt, &record.params),
                decided_by: None,
                comment: None,
            });
            record.enter(ActionState::PendingApproval, None, None);
            let event = self.decision_event("approval_requested", &record, false);
            self.commit(&mut record, None, vec![Write::Audit(Box::new(event))]).await?;
            if let Ok(mut pending) = self.pending.lock() {
                pending.insert(record.id.clone());
            }
            return Ok(Outcome { action: record, output: None, dry_run: false });
        }
        if !decision.allow {
            let note = decision.reason_codes();
            record.enter(ActionState::Denied, None, Some(&note));
            let event = self.decision_event("decision", &record, false);
            self.commit(&mut record, None, vec![Write::Audit(Box::new(event))]).await?;
            return Ok(Outcome { action: record, output: None, dry_run: false });
        }
        if let Some(refusal) = self.verify_unavailable(info) {
            record.error = Some(refusal);
            record.enter(ActionState::Failed, None, Some("verify_unavailable"));
            let event = self.decision_event("decision", &record, false);
            self.commit(&mut record, None, vec![Write::Audit(Box::new(event))]).await?;
            return Ok(Outcome { action: record, output: None, dry_run: false });
        }
        record.enter(ActionState::Running, None, None);
        if info.category == Category::Read {
            // Nothing to recover from: the record and one audit entry (the decision and the
            // result together) are written once, when the call ends.
            return self.run(record, info, None).await;
        }
        let event = self.decision_event("decision", &record, false);
        self.journal.submit(vec![Write::Audit(Box::new(event)), action_write(None, &record)]).await?;
        self.run(record, info, Some(ActionState::Running)).await
    }

    /// Whether a call of `info` decided by `decision` is verified: where the decision requires it
    /// (MODERATE only recommends it, so it happens where the tool can) or `VERIFY_REQUIRED` asks
    /// for it on a state-changing tool, and the tool can verify.
    pub fn verifies(&self, info: &ToolInfo, decision: &Decision) -> bool {
        info.supports_verify
            && (self.config.verify_required && info.category != Category::Read
                || decision.requirements.iter().any(|r| r == "verify"))
    }

    /// `VERIFY_REQUIRED` asks for a verify the tool cannot do: refuse before anything runs.
    fn verify_unavailable(&self, info: &ToolInfo) -> Option<ActionError> {
        (self.config.verify_required && info.category != Category::Read && !info.supports_verify).then(|| ActionError {
            code: "verify_unavailable".into(),
            message: format!(
                "VERIFY_REQUIRED is set and tool `{}` cannot verify its effect, so it is not run",
                info.name
            ),
        })
    }

    fn decide(
        &self,
        caller: &Caller,
        info: &ToolInfo,
        params_redacted: &Value,
        command: Option<Vec<String>>,
        request: &ExecuteRequest,
        approval: ApprovalState,
    ) -> Decision {
        self.policy.decide_action(&ActionInput {
            caller: CallerInput::from(caller),
            tool: ToolInput::from(info),
            params: params_redacted.clone(),
            justification: request.justification.clone(),
            approval,
            dry_run: request.dry_run,
            command,
            rollback: None,
        })
    }

    /// The action is `running`, committed (`from` is `Some(Running)`) or, for a READ tool, not yet
    /// written (`None`): invoke, verify, finish.
    async fn run(
        &self,
        mut record: ActionRecord,
        info: &ToolInfo,
        from: Option<ActionState>,
    ) -> Result<Outcome, GovernanceError> {
        let ctx = CallContext {
            action_id: record.id.clone(),
            caller: record.caller.clone(),
            justification: record.justification.clone(),
            category: Some(info.category),
        };
        let invocation = match self.plugins.invoke(&ctx, &info.name, record.params.clone()).await {
            Ok(invocation) => invocation,
            Err(e) => return self.fail(record, from, action_error(&e), None, Vec::new()).await,
        };
        let duration_ms = u64::try_from(invocation.duration.as_millis()).unwrap_or(u64::MAX);
        let undo = invocation.undo.map(|undo| UndoRecord {
            action_id: record.id.clone(),
            tool: record.tool.clone(),
            undo,
            recorded_at: OffsetDateTime::now_utc(),
            state: UndoState::Available,
            applied_by: None,
        });
        record.undo_available = undo.is_some();
        // A READ tool's output goes to its caller only: it changed nothing worth keeping, and
        // storing every read would make the store grow with each call.
        record.output = (info.category != Category::Read).then(|| self.capped(&invocation.output));
        let output = Some(invocation.output);
        if !record.decision.as_ref().is_some_and(|d| self.verifies(info, d)) {
            record.enter(ActionState::Completed, None, None);
            let mut writes = vec![Write::Audit(Box::new(self.outcome_event(&record, duration_ms, from.is_none())))];
            writes.extend(undo.map(|u| Write::Undo { expect: None, record: Box::new(u) }));
            self.commit(&mut record, from, writes).await?;
            return Ok(Outcome { action: record, output, dry_run: false });
        }
        record.enter(ActionState::Verifying, None, None);
        let mut writes = vec![action_write(from, &record)];
        writes.extend(undo.clone().map(|u| Write::Undo { expect: None, record: Box::new(u) }));
        // The undo record must survive a crash during verify, so that recovery can use it.
        self.journal.submit(writes).await?;
        let verdict =
            self.plugins.verify(&ctx, &info.name, &record.params, output.as_ref().unwrap_or(&Value::Null)).await;
        match verdict {
            Ok(verdict) if verdict.ok => {
                record.verify = Some(verdict);
                record.enter(ActionState::Completed, None, None);
                let event = self.outcome_event(&record, duration_ms, false);
                self.commit(&mut record, Some(ActionState::Verifying), vec![Write::Audit(Box::new(event))]).await?;
                Ok(Outcome { action: record, output, dry_run: false })
            }
            verdict => {
                let error = match verdict {
                    Ok(verdict) => {
                        let message = format!("verify found the effect missing: {}", verdict.detail);
                        record.verify = Some(verdict);
                        ActionError { code: "verify_failed".into(), message }
                    }
                    Err(e) => ActionError { code: "verify_failed".into(), message: format!("verify failed: {e}") },
                };
                self.fail(record, Some(ActionState::Verifying), error, undo, Vec::new()).await.map(|mut o| {
                    o.output = output;
                    o
                })
            }
        }
    }

    /// Mark the action (stored in state `from`, or not yet written) failed, committing `writes`
    /// with it; roll it back when an undo record exists.
    async fn fail(
        &self,
        mut record: ActionRecord,
        from: Option<ActionState>,
        error: ActionError,
        undo: Option<UndoRecord>,
        mut writes: Vec<Write>,
    ) -> Result<Outcome, GovernanceError> {
        let mut event = self.event("action_failed", &record, &record.caller, false, error.code.clone());
        event.detail = json!({ "result": "failed", "error": error });
        if from.is_none() {
            with_decision(&mut event.detail, &record);
        }
        record.enter(ActionState::Failed, None, Some(&error.code));
        record.error = Some(error);
        writes.push(Write::Audit(Box::new(event)));
        self.commit(&mut record, from, writes).await?;
        match undo {
            Some(undo) => self.apply_rollback(record, undo, &system(), Some("automatic: verify failed")).await,
            None => Ok(Outcome { action: record, output: None, dry_run: false }),
        }
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

    fn capped(&self, output: &Value) -> Value {
        let size = serde_json::to_vec(output).map_or(usize::MAX, |b| b.len());
        if u64::try_from(size).unwrap_or(u64::MAX) <= self.config.max_stored_output_bytes {
            output.clone()
        } else {
            json!({ "truncated": true, "bytes": size, "note": "the output was returned to the caller but is too large to store" })
        }
    }

    /// An audit event about `record`, acted by `actor`.
    fn event(&self, kind: &str, record: &ActionRecord, actor: &Caller, allowed: bool, reason: String) -> AuditEvent {
        let mut event = AuditEvent::new(kind, allowed, reason).by(actor);
        event.tool = Some(record.tool.clone());
        event.category = Some(record.category);
        event.action_id = Some(record.id.clone());
        event.command = Some(format!("{} {}", record.tool, record.params_redacted));
        event.trace_id = toolgate_telemetry::current_trace_id().or_else(|| record.trace_id.clone());
        event
    }

    /// The entry of an action's decision: its params, justification and decision document.
    fn decision_event(&self, kind: &str, record: &ActionRecord, dry_run: bool) -> AuditEvent {
        let decision = record.decision.as_ref();
        let allowed = decision.is_some_and(|d| d.allow);
        let reason = decision.map_or_else(String::new, Decision::reason_codes);
        let mut event = self.event(kind, record, &record.caller, allowed, reason);
        event.detail = json!({ "dry_run": dry_run });
        with_decision(&mut event.detail, record);
        event
    }

    /// The entry of a completed action; `decision`: it is the action's only entry (a READ call),
    /// so it carries the decision, the params and the justification too.
    fn outcome_event(&self, record: &ActionRecord, duration_ms: u64, decision: bool) -> AuditEvent {
        let mut event = self.event("action_completed", record, &record.caller, true, "completed".into());
        event.detail = json!({
            "result": "completed",
            "duration_ms": duration_ms,
            "verify": record.verify,
            "undo_recorded": record.undo_available,
        });
        if decision {
            with_decision(&mut event.detail, record);
        }
        event
    }

    /// Approve a pending CRITICAL action as `approver` (an admin other than the requester), then
    /// run it, exactly once.
    pub async fn approve(
        self: &Arc<Self>,
        approver: &Caller,
        id: &str,
        comment: Option<String>,
    ) -> Result<Outcome, GovernanceError> {
        let (this, approver, id) = (Arc::clone(self), approver.clone(), id.to_owned());
        to_the_end(async move { this.approve_inner(&approver, &id, comment).await }).await
    }

    async fn approve_inner(
        &self,
        approver: &Caller,
        id: &str,
        comment: Option<String>,
    ) -> Result<Outcome, GovernanceError> {
        let mut record = self.pending_action(id).await?;
        // The action runs as its requester is now: disabled, deleted or revoked means no run, and
        // a demotion takes effect (the policy decides again below with the current role).
        record.caller.role = self.requester_role(approver, &record).await?;
        let info = self.tool_of(&record)?;
        let Some(approval) = record.approval.clone() else {
            return Err(GovernanceError::ApprovalMismatch(id.to_owned()));
        };
        if approval.params_sha256 != params_sha256(&record.binding_salt, &record.params) {
            return Err(GovernanceError::ApprovalMismatch(id.to_owned()));
        }
        let request = ExecuteRequest {
            params: record.params.clone(),
            justification: record.justification.clone(),
            dry_run: false,
        };
        // Split at request time already: a line that no longer splits is no command to classify.
        let command = command_line(&info, &record.params_redacted).ok().flatten();
        let decision =
            self.decide(&record.caller, &info, &record.params_redacted, command, &request, ApprovalState::Approved);
        if !decision.allow {
            return Err(GovernanceError::ApprovalRefused { id: id.to_owned(), decision });
        }
        let info = at_decided_category(&info, &decision).into_owned();
        let mut event = self.event("approval_granted", &record, approver, true, "approved".into());
        event.detail = json!({ "comment": comment, "decision": decision, "params_sha256": approval.params_sha256 });
        record.approval =
            Some(Approval { decided_by: Some(approver.name.clone()), comment: comment.clone(), ..approval });
        record.decision = Some(decision);
        record.enter(ActionState::Approved, Some(&approver.name), comment.as_deref());
        if let Some(refusal) = self.verify_unavailable(&info) {
            let granted = vec![Write::Audit(Box::new(event))];
            return self.fail(record, Some(ActionState::PendingApproval), refusal, None, granted).await;
        }
        record.enter(ActionState::Running, None, None);
        // Approved and running in one compare-and-set: of two concurrent approvals, one runs.
        self.commit(&mut record, Some(ActionState::PendingApproval), vec![Write::Audit(Box::new(event))])
            .await
            .map_err(|e| self.conflict_as_not_pending(e, id))?;
        self.forget_pending(id);
        let started = std::time::Instant::now();
        let outcome = self.run(record, &info, Some(ActionState::Running)).await;
        count_call(info.name.as_str(), &outcome, started);
        outcome
    }

    /// Refuse a pending action (any admin, the requester included: it withdraws the request).
    pub async fn reject(
        &self,
        approver: &Caller,
        id: &str,
        comment: Option<String>,
    ) -> Result<Outcome, GovernanceError> {
        let mut record = self.pending_action(id).await?;
        let mut event = self.event("approval_rejected", &record, approver, false, "rejected".into());
        event.detail = json!({ "comment": comment });
        if let Some(approval) = record.approval.as_mut() {
            approval.decided_by = Some(approver.name.clone());
            approval.comment.clone_from(&comment);
        }
        record.enter(ActionState::Rejected, Some(&approver.name), comment.as_deref());
        self.commit(&mut record, Some(ActionState::PendingApproval), vec![Write::Audit(Box::new(event))])
            .await
            .map_err(|e| self.conflict_as_not_pending(e, id))?;
        self.forget_pending(id);
        Ok(Outcome { action: record, output: None, dry_run: false })
    }

    /// The action `id`, pending and not expired (an expired one is marked so on the way).
    async fn pending_action(&self, id: &str) -> Result<ActionRecord, GovernanceError> {
        let record = self.action(id).await?.ok_or_else(|| GovernanceError::NoAction(id.to_owned()))?;
        if record.state != ActionState::PendingApproval {
            return Err(GovernanceError::NotPending { id: id.to_owned(), state: record.state });
        }
        if record.approval.as_ref().is_none_or(|a| a.expires_at <= OffsetDateTime::now_utc()) {
            self.expire(record).await?;
            return Err(GovernanceError::ApprovalExpired(id.to_owned()));
        }
        Ok(record)
    }

    fn conflict_as_not_pending(&self, error: GovernanceError, id: &str) -> GovernanceError {
        match error {
            GovernanceError::Journal(JournalError::Conflict { found, .. }) => {
                GovernanceError::NotPending { id: id.to_owned(), state: found.parse().unwrap_or(ActionState::Running) }
            }
            other => other,
        }
    }

    /// The requester's role now, read once. Refuses an approver who is the requester or the
    /// admin who created the requesting API key (`SelfApproval`, checked first), a requester
    /// that can no longer act (`RequesterGone`), and an approver who is not a person independent
    /// of the requester (`ConflictOfInterest`).
    async fn requester_role(&self, approver: &Caller, record: &ActionRecord) -> Result<Role, GovernanceError> {
        if approver.name == record.caller.name {
            return Err(GovernanceError::SelfApproval);
        }
        let name = record.caller.name.clone();
        let gone = |why: &str| GovernanceError::RequesterGone { id: record.id.clone(), why: why.to_owned() };
        // The person behind the request: for an API key, the admin who created it.
        let (role, person) = match record.caller.auth_method {
            AuthMethod::Local => (record.caller.role, name),
            AuthMethod::Password => match self.store().call(move |s| s.user(&name)).await? {
                Some(user) if !user.disabled => (user.role, user.username),
                Some(_) => return Err(gone("the requesting user is disabled")),
                None => return Err(gone("the requesting user no longer exists")),
            },
            AuthMethod::ApiKey => {
                let keys = self.store().call(|s| s.api_keys()).await?;
                match keys.into_iter().find(|k| k.name == name) {
                    Some(k) if k.created_by == approver.name => return Err(GovernanceError::SelfApproval),
                    Some(k) if k.revoked => return Err(gone("the requesting api key is revoked")),
                    Some(k) if k.expires_at <= OffsetDateTime::now_utc() => {
                        return Err(gone("the requesting api key expired"));
                    }
                    Some(k) => (k.role, k.created_by),
                    None => return Err(gone("the requesting api key no longer exists")),
                }
            }
        };
        let requested_at = record.created_at().unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let users = self.store().call(|s| s.users()).await?;
        if let Some(why) = toolgate_auth::provenance::conflict(&users, &approver.name, &person, requested_at) {
            return Err(GovernanceError::ConflictOfInterest(why));
        }
        Ok(role)
    }

    async fn expire(&self, mut record: ActionRecord) -> Result<(), GovernanceError> {
        let id = record.id.clone();
        let event = self.event("approval_expired", &record, &system(), false, "approval_expired".into());
        record.enter(ActionState::Expired, Some("system"), None);
        match self.commit(&mut record, Some(ActionState::PendingApproval), vec![Write::Audit(Box::new(event))]).await {
            // Someone decided it meanwhile: nothing to expire.
            Ok(()) | Err(GovernanceError::Journal(JournalError::Conflict { .. })) => {
                self.forget_pending(&id);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Expire every pending approval past its deadline; returns the actions still pending.
    pub async fn expire_due(&self) -> Result<Vec<ActionRecord>, GovernanceError> {
        let ids: Vec<String> = self.pending.lock().map(|p| p.iter().cloned().collect()).unwrap_or_default();
        let now = OffsetDateTime::now_utc();
        let mut pending = Vec::new();
        for id in ids {
            match self.action(&id).await? {
                Some(record) if record.state == ActionState::PendingApproval => {
                    if record.approval.as_ref().is_none_or(|a| a.expires_at <= now) {
                        self.expire(record).await?;
                    } else {
                        pending.push(record);
                    }
                }
                _ => self.forget_pending(&id),
            }
        }
        Ok(pending)
    }

    fn forget_pending(&self, id: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(id);
        }
    }

    /// Pending approvals, oldest first (expired ones are marked expired first).
    pub async fn pending_approvals(&self) -> Result<Vec<ActionRecord>, GovernanceError> {
        let mut pending = self.expire_due().await?;
        pending.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(pending)
    }

    /// Roll back action `id` by hand: admin (checked by the caller), with a justification.
    pub async fn rollback(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        justification: Option<String>,
    ) -> Result<Outcome, GovernanceError> {
        let (this, caller, id) = (Arc::clone(self), caller.clone(), id.to_owned());
        to_the_end(async move { this.rollback_inner(&caller, &id, justification).await }).await
    }

    async fn rollback_inner(
        &self,
        caller: &Caller,
        id: &str,
        justification: Option<String>,
    ) -> Result<Outcome, GovernanceError> {
        let justification = justification.unwrap_or_default();
        if justification.trim().chars().count() < self.min_justification_len {
            return Err(GovernanceError::JustificationRequired(self.min_justification_len));
        }
        let record = self.action(id).await?.ok_or_else(|| GovernanceError::NoAction(id.to_owned()))?;
        if record.state == ActionState::RolledBack {
            return Err(GovernanceError::AlreadyRolledBack { id: id.to_owned(), state: "already applied".into() });
        }
        if !matches!(record.state, ActionState::Completed | ActionState::Failed) {
            return Err(GovernanceError::NotRollbackable { id: id.to_owned(), state: record.state });
        }
        let undo = self.undo(id).await?.ok_or_else(|| GovernanceError::NoUndo(id.to_owned()))?;
        if undo.state != UndoState::Available {
            return Err(GovernanceError::AlreadyRolledBack { id: id.to_owned(), state: undo_state_name(undo.state) });
        }
        self.apply_rollback(record, undo, caller, Some(&justification)).await
    }

    /// Claim `undo`, run the plugin's rollback as an action of its own, and record the result on
    /// both actions. Returns the rollback action for a manual rollback, the original otherwise.
    async fn apply_rollback(
        &self,
        mut original: ActionRecord,
        undo: UndoRecord,
        caller: &Caller,
        justification: Option<&str>,
    ) -> Result<Outcome, GovernanceError> {
        // Only the host acts as the local `system` caller: a user called `system` logs in with a
        // password or a key.
        let automatic = caller.auth_method == AuthMethod::Local && caller.name == system().name;
        let mut rollback = ActionRecord {
            id: uuid::Uuid::now_v7().to_string(),
            operation: Operation::Rollback,
            rollback_of: Some(original.id.clone()),
            tool: original.tool.clone(),
            plugin: original.plugin.clone(),
            category: original.category,
            caller: caller.clone(),
            params: Value::Null,
            params_redacted: json!({ "rollback_of": original.id }),
            justification: justification.map(str::to_owned),
            state: ActionState::Requested,
            history: Vec::new(),
            decision: None,
            approval: None,
            output: None,
            verify: None,
            error: None,
            undo_available: false,
            rolled_back_by: None,
            trace_id: toolgate_telemetry::current_trace_id(),
            audit_seq: None,
            binding_salt: String::new(),
        };
        rollback.enter(ActionState::Requested, None, None);
        // A rollback changes state like any call: the action policy decides it (a change freeze
        // stops it), before the undo record is claimed. Refused, it stays available.
        let decision = self.decide_rollback(&original, caller, justification, automatic);
        rollback.decision = Some(decision.clone());
        if !decision.allow {
            let note = decision.reason_codes();
            rollback.enter(ActionState::Denied, None, Some(&note));
            let event = self.decision_event("decision", &rollback, false);
            self.commit(&mut rollback, None, vec![Write::Audit(Box::new(event))]).await?;
            let action = if automatic { original } else { rollback };
            return Ok(Outcome { action, output: None, dry_run: false });
        }
        rollback.enter(ActionState::Running, None, None);
        let mut started = self.event("rollback_started", &rollback, caller, true, "rollback".into());
        started.detail = json!({
            "rollback_of": original.id, "justification": justification, "automatic": automatic, "decision": decision,
        });
        let claimed = UndoRecord { state: UndoState::Applying, applied_by: Some(rollback.id.clone()), ..undo.clone() };
        let claim = self
            .journal
            .submit(vec![
                Write::Audit(Box::new(started)),
                action_write(None, &rollback),
                Write::Undo { expect: Some(UndoState::Available), record: Box::new(claimed.clone()) },
            ])
            .await;
        match claim {
            Ok(_) => {}
            Err(JournalError::Conflict { .. }) => {
                return Err(GovernanceError::AlreadyRolledBack { id: original.id, state: "already claimed".into() });
            }
            Err(e) => return Err(e.into()),
        }
        let ctx = CallContext {
            action_id: rollback.id.clone(),
            caller: caller.clone(),
            justification: rollback.justification.clone(),
            category: Some(original.category),
        };
        let tool = original.tool.parse::<ToolName>().map_err(|_| PluginError::UnknownTool(original.tool.clone()))?;
        let result = self.plugins.rollback(&ctx, &tool, &undo.undo).await;
        let original_from = original.state;
        let (undo_state, event) = match &result {
            Ok(restored) => {
                rollback.output = Some(self.capped(restored));
                rollback.enter(ActionState::Completed, None, None);
                original.undo_available = false;
                original.rolled_back_by = Some(rollback.id.clone());
                original.enter(ActionState::RolledBack, Some(&caller.name), Some(&rollback.id));
                let mut event = self.event("rollback_completed", &rollback, caller, true, "rolled_back".into());
                event.detail = json!({ "result": "rolled_back", "rollback_of": original.id, "restored": restored });
                (UndoState::Applied, event)
            }
            Err(e) => {
                // Nothing started (the plugin is not loaded, the sandbox is down): the undo record
                // stays available for a later attempt. Any other failure may have changed
                // something, so applying the record again could do harm: it is spent.
                let nothing_ran = matches!(
                    e,
                    PluginError::UnknownTool(_) | PluginError::Tool { kind: ToolErrorKind::Unavailable, .. }
                );
                let error = action_error(e);
                let code = if nothing_ran { "rollback_unavailable" } else { "rollback_failed" };
                let error = ActionError { code: code.into(), message: error.message };
                let mut event = self.event("rollback_failed", &rollback, caller, false, error.code.clone());
                event.detail =
                    json!({ "result": "failed", "rollback_of": original.id, "error": error, "undo_kept": nothing_ran });
                rollback.enter(ActionState::Failed, None, Some(&error.code));
                rollback.error = Some(error);
                original.undo_available = nothing_ran;
                (if nothing_ran { UndoState::Available } else { UndoState::Failed }, event)
            }
        };
        let mut writes = vec![
            Write::Audit(Box::new(event)),
            Write::Undo {
                expect: Some(UndoState::Applying),
                record: Box::new(UndoRecord { state: undo_state, ..claimed }),
            },
            action_write(Some(original_from), &original),
        ];
        writes.push(action_write(Some(ActionState::Running), &rollback));
        let committed = self.journal.submit(writes).await?;
        rollback.audit_seq = committed.last_seq();
        original.audit_seq = committed.last_seq();
        let restored = result.ok();
        if automatic {
            Ok(Outcome { action: original, output: None, dry_run: false })
        } else {
            Ok(Outcome { action: rollback, output: restored, dry_run: false })
        }
    }

    /// The action decision on undoing `original`: its tool at the category it ran at, its
    /// parameters, and `rollback` naming it.
    fn decide_rollback(
        &self,
        original: &ActionRecord,
        caller: &Caller,
        justification: Option<&str>,
        automatic: bool,
    ) -> Decision {
        let loaded = self.tool_of(original).ok();
        let tool = ToolInput {
            name: original.tool.clone(),
            plugin: original.plugin.clone(),
            category: original.category,
            supports_verify: loaded.as_ref().is_some_and(|t| t.supports_verify),
            supports_rollback: loaded.as_ref().is_some_and(|t| t.supports_rollback),
            capabilities: loaded.as_ref().map(|t| ToolInput::from(t).capabilities).unwrap_or_default(),
        };
        let command = loaded.as_ref().and_then(|t| command_line(t, &original.params_redacted).ok().flatten());
        self.policy.decide_action(&ActionInput {
            caller: CallerInput::from(caller),
            tool,
            params: original.params_redacted.clone(),
            justification: justification.map(str::to_owned),
            approval: ApprovalState::None,
            dry_run: false,
            command,
            rollback: Some(RollbackInput { of: original.id.clone(), automatic }),
        })
    }

    fn tool_of(&self, record: &ActionRecord) -> Result<ToolInfo, GovernanceError> {
        let name: ToolName = record.tool.parse().map_err(|_| PluginError::UnknownTool(record.tool.clone()))?;
        Ok(self.plugins.tool(&name).ok_or_else(|| PluginError::UnknownTool(record.tool.clone()))?.clone())
    }

    /// One action.
    pub async fn action(&self, id: &str) -> Result<Option<ActionRecord>, GovernanceError> {
        let id = id.to_owned();
        Ok(self.store().call(move |s| read_action(s, &id)).await?)
    }

    async fn undo(&self, id: &str) -> Result<Option<UndoRecord>, GovernanceError> {
        let id = id.to_owned();
        Ok(self
            .store()
            .call(move |s| {
                let tx = s.read()?;
                let table = tx.open_table(tables::ROLLBACK_LOG)?;
                table.get(id.as_str())?.map(|v| decode("rollback_log_v1", v.value())).transpose()
            })
            .await?)
    }

    /// Actions, newest first, matching `filter`, at most `limit`, strictly older than `before`.
    pub async fn actions(&self, filter: ActionFilter) -> Result<Vec<ActionRecord>, GovernanceError> {
        Ok(self
            .store()
            .call(move |s| {
                let tx = s.read()?;
                let table = tx.open_table(tables::ACTIONS)?;
                let range = match filter.before.as_deref() {
                    Some(before) => table.range(..before)?,
                    None => table.range::<&str>(..)?,
                };
                let mut out = Vec::new();
                for item in range.rev() {
                    if out.len() >= filter.limit {
                        break;
                    }
                    let (_, v) = item?;
                    let record: ActionRecord = decode("actions_v1", v.value())?;
                    if filter.matches(&record) {
                        out.push(record);
                    }
                }
                Ok(out)
            })
            .await?)
    }

    /// Start-up recovery: actions a crash left `requested`, `approved`, `running` or `verifying`
    /// are marked `failed` (`interrupted`), each with an audit entry, and rolled back where an
    /// undo record is available; undo records left being applied are marked failed (applying them
    /// again could do harm). Pending approvals are tracked again. Returns what was done.
    pub async fn recover(&self) -> Result<Recovery, GovernanceError> {
        let (actions, undos) = self
            .store()
            .call(|s| {
                let tx = s.read()?;
                let mut actions = Vec::new();
                for item in tx.open_table(tables::ACTIONS)?.iter()? {
                    let (_, v) = item?;
                    let record: ActionRecord = decode("actions_v1", v.value())?;
                    if record.state.is_open() {
                        actions.push(record);
                    }
                }
                let mut undos = Vec::new();
                for item in tx.open_table(tables::ROLLBACK_LOG)?.iter()? {
                    let (_, v) = item?;
                    let undo: UndoRecord = decode("rollback_log_v1", v.value())?;
                    if undo.state == UndoState::Applying {
                        undos.push(undo);
                    }
                }
                Ok((actions, undos))
            })
            .await?;
        let mut recovery = Recovery::default();
        // The gauge starts at zero in this process: count what a previous one left open.
        for record in &actions {
            toolgate_telemetry::metrics::actions_active(record.state.as_str(), 1);
        }
        for undo in undos {
            let mut event = AuditEvent::new("rollback_interrupted", false, "interrupted").by(&system());
            event.action_id = Some(undo.action_id.clone());
            event.tool = Some(undo.tool.clone());
            event.detail = json!({ "rollback_action": undo.applied_by, "note": "the server stopped while this rollback ran; it is not retried" });
            let record = UndoRecord { state: UndoState::Failed, ..undo.clone() };
            self.journal
                .submit(vec![
                    Write::Audit(Box::new(event)),
                    Write::Undo { expect: Some(UndoState::Applying), record: Box::new(record) },
                ])
                .await?;
            recovery.undo_failed += 1;
        }
        for record in actions {
            if record.state == ActionState::PendingApproval {
                if let Ok(mut pending) = self.pending.lock() {
                    pending.insert(record.id.clone());
                }
                recovery.pending += 1;
                continue;
            }
            let from = record.state;
            let id = record.id.clone();
            let undo = self.undo(&id).await?.filter(|u| u.state == UndoState::Available);
            let error = ActionError {
                code: "interrupted".into(),
                message: format!("the server stopped while the action was {}", from.as_str()),
            };
            let mut failed = record.clone();
            let mut event = self.event("action_interrupted", &failed, &system(), false, "interrupted".into());
            event.detail =
                json!({ "result": "failed", "state_at_crash": from.as_str(), "undo_available": undo.is_some() });
            failed.enter(ActionState::Failed, Some("system"), Some("interrupted"));
            failed.error = Some(error);
            self.commit(&mut failed, Some(from), vec![Write::Audit(Box::new(event))]).await?;
            recovery.failed += 1;
            if let Some(undo) = undo
                && self
                    .plugins
                    .tool(&failed.tool.parse().map_err(|_| PluginError::UnknownTool(failed.tool.clone()))?)
                    .is_some()
            {
                let outcome =
                    self.apply_rollback(failed, undo, &system(), Some("automatic: recovery after a crash")).await?;
                if outcome.action.state == ActionState::RolledBack {
                    recovery.rolled_back += 1;
                }
            }
        }
        self.journal.flush().await?;
        Ok(recovery)
    }
}

/// What start-up recovery did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Actions marked failed.
    pub failed: usize,
    /// Of those, rolled back.
    pub rolled_back: usize,
    /// Undo records left being applied, marked failed.
    pub undo_failed: usize,
    /// Pending approvals tracked again.
    pub pending: usize,
}

/// Which actions to list.
#[derive(Debug, Clone)]
pub struct ActionFilter {
    /// Only this state.
    pub state: Option<ActionState>,
    /// Only this tool.
    pub tool: Option<String>,
    /// Only this requester.
    pub actor: Option<String>,
    /// Only ids before this one (the previous page's last id).
    pub before: Option<String>,
    /// Page size.
    pub limit: usize,
}

impl ActionFilter {
    fn matches(&self, record: &ActionRecord) -> bool {
        self.state.is_none_or(|s| s == record.state)
            && self.tool.as_ref().is_none_or(|t| *t == record.tool)
            && self.actor.as_ref().is_none_or(|a| *a == record.caller.name)
    }
}

fn read_action(store: &Store, id: &str) -> Result<Option<ActionRecord>, StoreError> {
    let tx = store.read()?;
    let table = tx.open_table(tables::ACTIONS)?;
    table.get(id)?.map(|v| decode("actions_v1", v.value())).transpose()
}

/// Add what a `decision` entry holds to `detail`.
fn with_decision(detail: &mut Value, record: &ActionRecord) {
    detail["params"] = record.params_redacted.clone();
    detail["justification"] = json!(record.justification);
    detail["decision"] = json!(record.decision);
}

/// `toolgate_tool_calls_total` and the call latency, by final status.
fn count_call(tool: &str, outcome: &Result<Outcome, GovernanceError>, started: std::time::Instant) {
    let status = match outcome {
        Ok(o) if o.dry_run => "dry_run",
        Ok(o) => o.action.state.as_str(),
        Err(GovernanceError::Plugin(PluginError::UnknownTool(_))) => return,
        Err(GovernanceError::Plugin(_)) => "invalid_params",
        Err(_) => "error",
    };
    toolgate_telemetry::metrics::tool_call(tool, status, started.elapsed());
}

fn action_write(expect: Option<ActionState>, record: &ActionRecord) -> Write {
    let mut stored = record.clone();
    if !stored.state.is_open() {
        // The raw parameters (secrets included) are kept only while the action may still run;
        // `params_redacted` is what stays.
        stored.params = Value::Null;
    }
    Write::Action { expect, record: Box::new(stored) }
}

fn ttl(secs: u64) -> Duration {
    Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 2))
}

/// SHA-256 of a secret salt and the parameters' JSON (serde_json writes object keys in a stable
/// order). The hash is shown in the API; without the salt, which is not, it says nothing about a
/// secret parameter.
fn params_sha256(salt: &str, params: &Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(params.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

fn undo_state_name(state: UndoState) -> String {
    match state {
        UndoState::Available => "available",
        UndoState::Applying => "being applied",
        UndoState::Applied => "already applied",
        UndoState::Failed => "failed (a rollback was attempted and failed)",
    }
    .to_owned()
}

/// The stable code and message of a failed invocation.
fn action_error(error: &PluginError) -> ActionError {
    let code = match error {
        PluginError::InvalidParams { .. } | PluginError::Tool { kind: ToolErrorKind::InvalidParams, .. } => {
            "invalid_params"
        }
        PluginError::Tool { kind: ToolErrorKind::Denied, .. } => "exec_denied",
        PluginError::Tool { kind: ToolErrorKind::Unavailable, .. } => "unavailable",
        PluginError::Tool { kind: ToolErrorKind::Timeout, .. }
        | PluginError::Timeout { .. }
        | PluginError::DeadlineExceeded { .. } => "timeout",
        PluginError::Tool { kind: ToolErrorKind::Failed, .. } => "tool_failed",
        PluginError::OutputTooLarge { .. } => "plugin_output_too_large",
        _ => "plugin_failed",
    };
    ActionError { code: code.into(), message: error.to_string() }
}
