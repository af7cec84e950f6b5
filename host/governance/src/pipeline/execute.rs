//! A call, from its parameters to its end: decide, invoke, verify, complete or fail.

use std::sync::Arc;

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::super::action::{ActionError, ActionRecord, ActionState, UndoRecord, UndoState};
use super::super::command::{at_decided_category, command_line};
use super::super::journal::Write;
use super::error::action_error;
use super::records::with_decision;
use super::{ExecuteRequest, GovernanceError, Governor, Outcome, action_write, system};
use toolgate_core::Code;
use toolgate_core::model::{Caller, Category, ToolName};
use toolgate_core::redact::redact;
use toolgate_policy::{ActionInput, ApprovalState, CallerInput, Decision, Requirement, ToolInput};
use toolgate_runtime::{CallContext, PluginError, ToolInfo, Verdict};

impl Governor {
    /// Run a tool for `caller`: the whole pipeline. Errors are refusals before anything was
    /// recorded (unknown tool, invalid params) or journal failures.
    pub async fn execute(
        self: &Arc<Self>,
        caller: &Caller,
        tool: &str,
        request: ExecuteRequest,
    ) -> Result<Outcome, GovernanceError> {
        let (caller, tool) = (caller.clone(), tool.to_owned());
        self.to_the_end(|this| async move {
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
        let only_approval_missing = !decision.allow && decision.only_missing(&[Code::ApprovalRequired]);
        let (allow, note) = (decision.allow, decision.reason_codes());
        let mut record =
            ActionRecord::requested(info, caller, request.params, params_redacted, request.justification, decision);
        if request.dry_run {
            // Nothing is stored but the audit entry: a dry run is not an action.
            let event = self.decision_event("decision", &record, true);
            let committed = self.journal.submit(vec![Write::Audit(Box::new(event))]).await?;
            record.audit_seq = committed.last_seq();
            return Ok(Outcome { action: record, output: None, dry_run: true });
        }
        if only_approval_missing {
            return self.request_approval(record).await;
        }
        if !allow {
            record.enter(ActionState::Denied, None, Some(&note));
            let event = self.decision_event("decision", &record, false);
            self.commit(&mut record, None, vec![Write::Audit(Box::new(event))]).await?;
            return Ok(Outcome::of(record));
        }
        if let Some(refusal) = self.verify_unavailable(info) {
            record.error = Some(refusal);
            record.enter(ActionState::Failed, None, Some(Code::VerifyUnavailable.as_str()));
            let event = self.decision_event("decision", &record, false);
            self.commit(&mut record, None, vec![Write::Audit(Box::new(event))]).await?;
            return Ok(Outcome::of(record));
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
                || decision.requires(Requirement::Verify))
    }

    /// `VERIFY_REQUIRED` asks for a verify the tool cannot do: refuse before anything runs.
    pub(super) fn verify_unavailable(&self, info: &ToolInfo) -> Option<ActionError> {
        (self.config.verify_required && info.category != Category::Read && !info.supports_verify).then(|| ActionError {
            code: Code::VerifyUnavailable,
            message: format!(
                "VERIFY_REQUIRED is set and tool `{}` cannot verify its effect, so it is not run",
                info.name
            ),
        })
    }

    pub(super) fn decide(
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
    pub(super) async fn run(
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
            // Never skipped silently: a call whose category asks for verify, of a tool that
            // cannot, says so in its verdict.
            if record.decision.as_ref().is_some_and(|d| d.requires(Requirement::Verify)) {
                record.verify = Some(Verdict::skipped(format!(
                    "not verified: tool `{}` cannot check its effect, which {} calls should have checked",
                    info.name, info.category
                )));
            }
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
                        ActionError { code: Code::VerifyFailed, message }
                    }
                    Err(e) => ActionError { code: Code::VerifyFailed, message: format!("verify failed: {e}") },
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
    pub(super) async fn fail(
        &self,
        mut record: ActionRecord,
        from: Option<ActionState>,
        error: ActionError,
        undo: Option<UndoRecord>,
        mut writes: Vec<Write>,
    ) -> Result<Outcome, GovernanceError> {
        let mut event = self.event("action_failed", &record, &record.caller, false, error.code.into());
        event.detail = json!({ "result": "failed", "error": error });
        if from.is_none() {
            with_decision(&mut event.detail, &record);
        }
        record.enter(ActionState::Failed, None, Some(error.code.as_str()));
        record.error = Some(error);
        writes.push(Write::Audit(Box::new(event)));
        self.commit(&mut record, from, writes).await?;
        match undo {
            Some(undo) => self.apply_rollback(record, undo, &system(), Some("automatic: verify failed")).await,
            None => Ok(Outcome::of(record)),
        }
    }
}

/// `toolgate_tool_calls_total` and the call latency, by final status.
pub(super) fn count_call(tool: &str, outcome: &Result<Outcome, GovernanceError>, started: std::time::Instant) {
    let status = match outcome {
        Ok(o) if o.dry_run => "dry_run",
        Ok(o) => o.action.state.as_str(),
        Err(GovernanceError::Plugin(PluginError::UnknownTool(_))) => return,
        Err(GovernanceError::Plugin(_)) => Code::InvalidParams.as_str(),
        Err(_) => "error",
    };
    toolgate_telemetry::metrics::tool_call(tool, status, started.elapsed());
}
