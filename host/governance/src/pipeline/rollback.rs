//! Undoing an action with the plugin's `rollback` and the undo record the action left: by hand
//! (an admin, with a justification) or automatically (a failed verify, recovery after a crash).
//! A rollback is an action of its own, decided by the action policy.

use std::sync::Arc;

use serde_json::json;

use super::super::action::{ActionError, ActionRecord, ActionState, UndoRecord, UndoState};
use super::super::command::command_line;
use super::super::journal::{JournalError, Write};
use super::error::action_error;
use super::{GovernanceError, Governor, Outcome, action_write, system};
use toolgate_core::Code;
use toolgate_core::model::{AuthMethod, Caller, ToolName};
use toolgate_policy::{ActionInput, ApprovalState, CallerInput, Decision, RollbackInput, ToolInput};
use toolgate_runtime::{CallContext, PluginError, ToolErrorKind};

impl Governor {
    /// Roll back action `id` by hand: admin (checked by the caller), with a justification.
    pub async fn rollback(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        justification: Option<String>,
    ) -> Result<Outcome, GovernanceError> {
        let (caller, id) = (caller.clone(), id.to_owned());
        self.to_the_end(|this| async move { this.rollback_inner(&caller, &id, justification).await }).await
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
    pub(super) async fn apply_rollback(
        &self,
        mut original: ActionRecord,
        undo: UndoRecord,
        caller: &Caller,
        justification: Option<&str>,
    ) -> Result<Outcome, GovernanceError> {
        // Only the host acts as the local `system` caller: a user called `system` logs in with a
        // password or a key.
        let automatic = caller.auth_method == AuthMethod::Local && caller.name == system().name;
        let mut rollback = ActionRecord::rollback_of(&original, caller, justification);
        // A rollback changes state like any call: the action policy decides it (a change freeze
        // stops it), before the undo record is claimed. Refused, it stays available.
        let decision = self.decide_rollback(&original, caller, justification, automatic);
        rollback.decision = Some(decision.clone());
        if !decision.allow {
            let note = decision.reason_codes();
            rollback.enter(ActionState::Denied, None, Some(&note));
            let event = self.decision_event("decision", &rollback, false);
            self.commit(&mut rollback, None, vec![Write::Audit(Box::new(event))]).await?;
            return Ok(Outcome::of(if automatic { original } else { rollback }));
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
                let code = if nothing_ran { Code::RollbackUnavailable } else { Code::RollbackFailed };
                let error = ActionError { code, message: error.message };
                let mut event = self.event("rollback_failed", &rollback, caller, false, error.code.into());
                event.detail =
                    json!({ "result": "failed", "rollback_of": original.id, "error": error, "undo_kept": nothing_ran });
                rollback.enter(ActionState::Failed, None, Some(error.code.as_str()));
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
            Ok(Outcome::of(original))
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
