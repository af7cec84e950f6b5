//! Start-up recovery: what a crash left open is closed, with an audit entry each.

use serde_json::json;

use super::super::action::{ActionError, ActionRecord, ActionState, UndoRecord, UndoState};
use super::super::journal::Write;
use super::{GovernanceError, Governor, action_write, system};
use toolgate_core::{AuditEvent, Code};
use toolgate_runtime::PluginError;

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

impl Governor {
    /// Start-up recovery: actions a crash left `requested`, `approved`, `running` or `verifying`
    /// are marked `failed` (`interrupted`), each with an audit entry, and rolled back where an
    /// undo record is available; undo records left being applied are marked failed (applying them
    /// again could do harm). Pending approvals are tracked again. Returns what was done.
    pub async fn recover(&self) -> Result<Recovery, GovernanceError> {
        let (actions, undos) = self
            .store()
            .call(|s| {
                // One snapshot: the undo records as of the actions read.
                let snapshot = s.snapshot()?;
                let actions = snapshot.actions(|r: &ActionRecord| r.state.is_open())?;
                let undos = snapshot.undo_records(|u: &UndoRecord| u.state == UndoState::Applying)?;
                Ok((actions, undos))
            })
            .await?;
        let mut recovery = Recovery::default();
        // The gauge starts at zero in this process: count what a previous one left open.
        for record in &actions {
            toolgate_telemetry::metrics::actions_active(record.state.as_str(), 1);
        }
        for undo in undos {
            let mut event = AuditEvent::new("rollback_interrupted", false, Code::Interrupted.as_str()).by(&system());
            event.action_id = Some(undo.action_id.clone());
            event.tool = Some(undo.tool.clone());
            event.detail = json!({ "rollback_action": undo.applied_by, "note": "the server stopped while this rollback ran; it is not retried" });
            let record = UndoRecord { state: UndoState::Failed, ..undo.clone() };
            let mut writes = vec![
                Write::Audit(Box::new(event)),
                Write::Undo { expect: Some(UndoState::Applying), record: Box::new(record) },
            ];
            // The undo record is spent: the original no longer offers a rollback, as on every
            // other path that spends one.
            if let Some(mut original) = self.action(&undo.action_id).await?.filter(|o| o.undo_available) {
                original.undo_available = false;
                writes.push(action_write(Some(original.state), &original));
            }
            self.journal.submit(writes).await?;
            recovery.undo_failed += 1;
        }
        for record in actions {
            if record.state == ActionState::PendingApproval {
                self.track_pending(&record.id);
                recovery.pending += 1;
                continue;
            }
            let from = record.state;
            let id = record.id.clone();
            let undo = self.undo(&id).await?.filter(|u| u.state == UndoState::Available);
            let error = ActionError {
                code: Code::Interrupted,
                message: format!("the server stopped while the action was {}", from.as_str()),
            };
            let mut failed = record.clone();
            let mut event = self.event("action_interrupted", &failed, &system(), false, Code::Interrupted.into());
            event.detail =
                json!({ "result": "failed", "state_at_crash": from.as_str(), "undo_available": undo.is_some() });
            failed.enter(ActionState::Failed, Some("system"), Some(Code::Interrupted.as_str()));
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
