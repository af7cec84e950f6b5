//! Action records (`actions_v1`) and their state machine; undo records (`rollback_log_v1`).
//!
//! ```text
//! requested ─┬─> denied
//!            ├─> pending_approval ─┬─> approved ──> running
//!            │                     ├─> rejected
//!            │                     └─> expired
//!            └─> running ─┬─> verifying ─┬─> completed ──> rolled_back
//!                         ├─> completed   └─> failed ─────> rolled_back
//!                         └─> failed
//! ```
//!
//! `requested` and `approved` may also go to `failed` (start-up recovery after a crash). Every
//! record carries its history; the journal refuses a write whose history is not the stored one
//! extended by legal steps ([`ActionState::can_go`]), so no state is ever skipped.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use toolgate_core::Code;
use toolgate_core::model::{Caller, Category};
use toolgate_policy::Decision;
use toolgate_runtime::ToolInfo;

/// Where an action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    /// Received and being decided.
    Requested,
    /// Refused by policy.
    Denied,
    /// Waiting for a second admin (CRITICAL).
    PendingApproval,
    /// Approved; about to run.
    Approved,
    /// Approval refused.
    Rejected,
    /// Not approved in time.
    Expired,
    /// The plugin is running.
    Running,
    /// The plugin's `verify` is running.
    Verifying,
    /// Done (and verified where required).
    Completed,
    /// The tool, its verify, or the host failed.
    Failed,
    /// Undone by the plugin's `rollback`.
    RolledBack,
}

impl ActionState {
    /// Every state, for filters and metrics.
    pub const ALL: [ActionState; 11] = [
        ActionState::Requested,
        ActionState::Denied,
        ActionState::PendingApproval,
        ActionState::Approved,
        ActionState::Rejected,
        ActionState::Expired,
        ActionState::Running,
        ActionState::Verifying,
        ActionState::Completed,
        ActionState::Failed,
        ActionState::RolledBack,
    ];

    /// Whether `self → next` is a step of the state machine.
    pub fn can_go(self, next: ActionState) -> bool {
        use ActionState as S;
        matches!(
            (self, next),
            (S::Requested, S::Denied | S::PendingApproval | S::Running | S::Failed)
                | (S::PendingApproval, S::Approved | S::Rejected | S::Expired)
                | (S::Approved, S::Running | S::Failed)
                | (S::Running, S::Verifying | S::Completed | S::Failed)
                | (S::Verifying, S::Completed | S::Failed)
                | (S::Completed | S::Failed, S::RolledBack)
        )
    }

    /// The wire name (`pending_approval`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionState::Requested => "requested",
            ActionState::Denied => "denied",
            ActionState::PendingApproval => "pending_approval",
            ActionState::Approved => "approved",
            ActionState::Rejected => "rejected",
            ActionState::Expired => "expired",
            ActionState::Running => "running",
            ActionState::Verifying => "verifying",
            ActionState::Completed => "completed",
            ActionState::Failed => "failed",
            ActionState::RolledBack => "rolled_back",
        }
    }

    /// Whether an action in this state can still change without a new request.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            ActionState::Requested
                | ActionState::PendingApproval
                | ActionState::Approved
                | ActionState::Running
                | ActionState::Verifying
        )
    }
}

impl std::str::FromStr for ActionState {
    type Err = toolgate_core::model::UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ActionState::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| toolgate_core::model::UnknownValue {
            kind: "action state",
            value: s.to_owned(),
            expected: "requested, denied, pending_approval, approved, rejected, expired, running, verifying, completed, failed, rolled_back",
        })
    }
}

/// What an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Run the tool (`POST /api/v1/tools/{tool}/execute`).
    Execute,
    /// Undo an earlier action (`POST /api/v1/actions/{id}/rollback`, or automatically).
    Rollback,
}

/// One step of an action's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Step {
    /// The state entered.
    pub state: ActionState,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// Who caused it, when not the requester (the approver, `system` for recovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Why (approval comment, error code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An approval of a CRITICAL action: who may decide, until when, and what they decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    /// The approval is void after this instant.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// SHA-256 of the canonical parameters the approval is bound to.
    pub params_sha256: String,
    /// The admin who approved or rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Their comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Why an action failed: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActionError {
    /// `tool_failed`, `invalid_params`, `exec_denied`, `unavailable`, `timeout`, `plugin_failed`,
    /// `plugin_output_too_large`, `verify_failed`, `verify_unavailable`, `rollback_failed`,
    /// `rollback_unavailable`, `interrupted`.
    #[schema(value_type = String)]
    pub code: Code,
    /// For people.
    pub message: String,
}

/// One action, as stored. The API shows it without the raw parameters ([`ActionView`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// UUIDv7: sorts by creation time.
    pub id: String,
    /// Run or undo.
    pub operation: Operation,
    /// For a rollback: the action it undoes.
    pub rollback_of: Option<String>,
    /// The tool.
    pub tool: String,
    /// The plugin that provides it.
    pub plugin: String,
    /// Its category.
    pub category: Category,
    /// Who asked.
    pub caller: Caller,
    /// The parameters as given: needed to run an approved action later. Never shown or audited.
    pub params: serde_json::Value,
    /// The parameters with secrets redacted: what the API and the audit log show.
    pub params_redacted: serde_json::Value,
    /// The caller's justification.
    pub justification: Option<String>,
    /// Current state (the last step of `history`).
    pub state: ActionState,
    /// Every state it went through, in order.
    pub history: Vec<Step>,
    /// The action decision.
    pub decision: Option<Decision>,
    /// For CRITICAL actions.
    pub approval: Option<Approval>,
    /// The tool's output (capped by `governance.max_stored_output_bytes`).
    pub output: Option<serde_json::Value>,
    /// What `verify` found.
    pub verify: Option<toolgate_runtime::Verdict>,
    /// Why it failed.
    pub error: Option<ActionError>,
    /// Whether the rollback log holds an undo record for it.
    pub undo_available: bool,
    /// The rollback action that undid it.
    pub rolled_back_by: Option<String>,
    /// The trace of the request that created it.
    pub trace_id: Option<String>,
    /// Sequence number of the latest audit entry about it.
    pub audit_seq: Option<u64>,
    /// Salt of the approval's parameter hash (never shown: with it, the shown hash would let
    /// anyone test guesses of a secret parameter).
    #[serde(default)]
    pub binding_salt: String,
}

impl ActionRecord {
    /// A call of `tool` by `caller` as the pipeline checked and decided it, `requested`.
    pub fn requested(
        tool: &ToolInfo,
        caller: &Caller,
        params: serde_json::Value,
        params_redacted: serde_json::Value,
        justification: Option<String>,
        decision: Decision,
    ) -> ActionRecord {
        let mut record = ActionRecord::new(
            Operation::Execute,
            tool.name.to_string(),
            tool.plugin.to_string(),
            tool.category,
            caller,
        );
        record.params = params;
        record.params_redacted = params_redacted;
        record.justification = justification;
        record.decision = Some(decision);
        record
    }

    /// The undoing of `original` by `caller`, `requested`: its tool, at the category it ran at.
    pub fn rollback_of(original: &ActionRecord, caller: &Caller, justification: Option<&str>) -> ActionRecord {
        let mut record = ActionRecord::new(
            Operation::Rollback,
            original.tool.clone(),
            original.plugin.clone(),
            original.category,
            caller,
        );
        record.rollback_of = Some(original.id.clone());
        record.params_redacted = serde_json::json!({ "rollback_of": original.id });
        record.justification = justification.map(str::to_owned);
        record
    }

    /// A new action (id, trace, first step), with nothing decided or run yet.
    fn new(operation: Operation, tool: String, plugin: String, category: Category, caller: &Caller) -> ActionRecord {
        let mut record = ActionRecord {
            id: uuid::Uuid::now_v7().to_string(),
            operation,
            rollback_of: None,
            tool,
            plugin,
            category,
            caller: caller.clone(),
            params: serde_json::Value::Null,
            params_redacted: serde_json::Value::Null,
            justification: None,
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
        record.enter(ActionState::Requested, None, None);
        record
    }

    /// Move to `state` (appends to the history; the journal checks the step is legal).
    pub fn enter(&mut self, state: ActionState, by: Option<&str>, note: Option<&str>) {
        self.state = state;
        self.history.push(Step {
            state,
            at: OffsetDateTime::now_utc(),
            by: by.map(str::to_owned),
            note: note.map(str::to_owned),
        });
    }

    /// When it was requested.
    pub fn created_at(&self) -> Option<OffsetDateTime> {
        self.history.first().map(|s| s.at)
    }
}

/// An action as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActionView {
    /// Action id.
    pub id: String,
    /// `execute` or `rollback`.
    pub operation: Operation,
    /// For a rollback: the action it undoes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
    /// The tool.
    pub tool: String,
    /// Its category.
    #[schema(value_type = String)]
    pub category: Category,
    /// Who asked.
    pub requested_by: String,
    /// Parameters, secrets redacted.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// The justification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// Current state.
    pub status: ActionState,
    /// Every state it went through.
    pub history: Vec<Step>,
    /// The action decision: `allow`, `reasons`, `requirements`, `category`, `revision`.
    #[schema(value_type = Option<Object>)]
    pub decision: Option<Decision>,
    /// The approval, for CRITICAL actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// The tool's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<serde_json::Value>,
    /// What verify found.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub verify: Option<toolgate_runtime::Verdict>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ActionError>,
    /// Whether it can be rolled back (an undo record exists and was not applied).
    pub undo_available: bool,
    /// The rollback action that undid it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back_by: Option<String>,
    /// Trace id of the request that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Sequence number of the latest audit entry about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<u64>,
}

impl From<&ActionRecord> for ActionView {
    fn from(r: &ActionRecord) -> Self {
        ActionView {
            id: r.id.clone(),
            operation: r.operation,
            rollback_of: r.rollback_of.clone(),
            tool: r.tool.clone(),
            category: r.category,
            requested_by: r.caller.name.clone(),
            params: r.params_redacted.clone(),
            justification: r.justification.clone(),
            status: r.state,
            history: r.history.clone(),
            decision: r.decision.clone(),
            approval: r.approval.clone(),
            output: r.output.clone(),
            verify: r.verify.clone(),
            error: r.error.clone(),
            undo_available: r.undo_available,
            rolled_back_by: r.rolled_back_by.clone(),
            trace_id: r.trace_id.clone(),
            audit_seq: r.audit_seq,
        }
    }
}

/// Where an undo record stands. `available → applying → applied | failed`, and back to
/// `available` only when the rollback could not start (plugin not loaded, sandbox down): a
/// rollback is claimed atomically before it runs, so it is never applied twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UndoState {
    /// Not used yet.
    Available,
    /// A rollback claimed it and is running.
    Applying,
    /// Undone.
    Applied,
    /// The rollback failed or was interrupted; applying it again could do harm, so it is not
    /// offered again.
    Failed,
}

impl UndoState {
    /// Whether `self → next` is allowed.
    pub fn can_go(self, next: UndoState) -> bool {
        matches!(
            (self, next),
            (UndoState::Available, UndoState::Applying)
                | (UndoState::Applying, UndoState::Applied | UndoState::Failed | UndoState::Available)
        )
    }
}

/// An entry of the rollback log: what the plugin needs to undo an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UndoRecord {
    /// The action that made the change.
    pub action_id: String,
    /// The tool whose `rollback` undoes it.
    pub tool: String,
    /// The plugin's undo record, as it returned it.
    pub undo: serde_json::Value,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// Where it stands.
    pub state: UndoState,
    /// The rollback action that claimed it.
    pub applied_by: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_machine_never_skips_a_state() {
        use ActionState as S;
        assert!(S::Requested.can_go(S::PendingApproval));
        assert!(S::PendingApproval.can_go(S::Approved));
        assert!(S::Approved.can_go(S::Running));
        assert!(S::Running.can_go(S::Verifying));
        assert!(S::Verifying.can_go(S::Failed));
        assert!(S::Failed.can_go(S::RolledBack));
        // Skips and reversals.
        assert!(!S::PendingApproval.can_go(S::Running), "an approval is a state of its own");
        assert!(!S::Requested.can_go(S::Completed));
        assert!(!S::Denied.can_go(S::Running));
        assert!(!S::Rejected.can_go(S::Approved));
        assert!(!S::Expired.can_go(S::Approved));
        assert!(!S::RolledBack.can_go(S::RolledBack));
        assert!(!S::Completed.can_go(S::Running));
        for state in S::ALL {
            assert_eq!(state.as_str().parse::<S>().ok(), Some(state));
            assert!(!state.can_go(S::Requested));
        }
    }

    #[test]
    fn an_undo_record_is_applied_at_most_once() {
        assert!(UndoState::Available.can_go(UndoState::Applying));
        assert!(!UndoState::Applied.can_go(UndoState::Applying));
        assert!(!UndoState::Failed.can_go(UndoState::Applying));
        assert!(!UndoState::Available.can_go(UndoState::Applied), "it must be claimed first");
        assert!(UndoState::Applying.can_go(UndoState::Available), "a rollback that could not start");
    }
}
