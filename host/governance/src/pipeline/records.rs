//! What the pipeline writes about an action besides its record (its audit events), and reads
//! of action and undo records.

use serde_json::{Value, json};

use super::super::action::{ActionRecord, ActionState, UndoRecord};
use super::{GovernanceError, Governor};
use toolgate_core::AuditEvent;
use toolgate_core::model::Caller;
use toolgate_policy::Decision;

impl Governor {
    /// An audit event about `record`, acted by `actor`.
    pub(super) fn event(
        &self,
        kind: &str,
        record: &ActionRecord,
        actor: &Caller,
        allowed: bool,
        reason: String,
    ) -> AuditEvent {
        let mut event = AuditEvent::new(kind, allowed, reason).by(actor);
        event.tool = Some(record.tool.clone());
        event.category = Some(record.category);
        event.action_id = Some(record.id.clone());
        event.command = Some(format!("{} {}", record.tool, record.params_redacted));
        event.trace_id = toolgate_telemetry::current_trace_id().or_else(|| record.trace_id.clone());
        event
    }

    /// The entry of an action's decision: its params, justification and decision document.
    pub(super) fn decision_event(&self, kind: &str, record: &ActionRecord, dry_run: bool) -> AuditEvent {
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
    pub(super) fn outcome_event(&self, record: &ActionRecord, duration_ms: u64, decision: bool) -> AuditEvent {
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

    /// One action.
    pub async fn action(&self, id: &str) -> Result<Option<ActionRecord>, GovernanceError> {
        let id = id.to_owned();
        Ok(self.store().call(move |s| s.action(&id)).await?)
    }

    /// The undo record of action `id`.
    pub(super) async fn undo(&self, id: &str) -> Result<Option<UndoRecord>, GovernanceError> {
        let id = id.to_owned();
        Ok(self.store().call(move |s| s.undo(&id)).await?)
    }

    /// Actions, newest first, matching `filter`, at most `limit`, strictly older than `before`.
    pub async fn actions(&self, filter: ActionFilter) -> Result<Vec<ActionRecord>, GovernanceError> {
        Ok(self
            .store()
            .call(move |s| s.snapshot()?.actions_page(filter.before.as_deref(), filter.limit, |r| filter.matches(r)))
            .await?)
    }
}

/// Add what a `decision` entry holds to `detail`.
pub(super) fn with_decision(detail: &mut Value, record: &ActionRecord) {
    detail["params"] = record.params_redacted.clone();
    detail["justification"] = json!(record.justification);
    detail["decision"] = json!(record.decision);
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
