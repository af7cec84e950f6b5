//! Why a governance operation could not be carried out, and the stable code of a failed
//! invocation.

use super::super::action::{ActionError, ActionState};
use super::super::journal::JournalError;
use toolgate_core::Code;
use toolgate_policy::Decision;
use toolgate_runtime::{PluginError, ToolErrorKind};
use toolgate_store::StoreError;

/// Why a governance operation could not be carried out. (An action that ran and failed is not
/// an error: it is an [`Outcome`](super::Outcome) in state `failed`.)
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

fn reasons(decision: &Decision) -> String {
    decision.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(", ")
}

/// The stable code and message of a failed invocation.
pub(super) fn action_error(error: &PluginError) -> ActionError {
    let code = match error {
        PluginError::InvalidParams { .. } | PluginError::Tool { kind: ToolErrorKind::InvalidParams, .. } => {
            Code::InvalidParams
        }
        PluginError::Tool { kind: ToolErrorKind::Denied, .. } => Code::ExecDenied,
        PluginError::Tool { kind: ToolErrorKind::NotAllowed, .. } => Code::NotAllowed,
        PluginError::Tool { kind: ToolErrorKind::NotFound, .. } => Code::NotFound,
        PluginError::Tool { kind: ToolErrorKind::PermissionDenied, .. } => Code::PermissionDenied,
        PluginError::Tool { kind: ToolErrorKind::Unavailable, .. } => Code::Unavailable,
        PluginError::Tool { kind: ToolErrorKind::Timeout, .. }
        | PluginError::Timeout { .. }
        | PluginError::DeadlineExceeded { .. } => Code::Timeout,
        PluginError::Tool { kind: ToolErrorKind::Failed, .. } => Code::ToolFailed,
        PluginError::OutputTooLarge { .. } => Code::PluginOutputTooLarge,
        _ => Code::PluginFailed,
    };
    ActionError { code, message: error.to_string() }
}
