//! A CRITICAL call waits for a second admin: it is requested, then approved (and run exactly
//! once), rejected, or expired.

use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::super::action::{ActionRecord, ActionState, Approval};
use super::super::command::{at_decided_category, command_line};
use super::super::journal::{JournalError, Write};
use super::execute::count_call;
use super::{ExecuteRequest, GovernanceError, Governor, Outcome, system};
use toolgate_core::Code;
use toolgate_core::model::{AuthMethod, Caller, Role};
use toolgate_policy::ApprovalState;

impl Governor {
    /// Record `record` (requested; the policy asks only for an approval) as waiting for one,
    /// bound to its exact parameters until the approval window closes.
    pub(super) async fn request_approval(&self, mut record: ActionRecord) -> Result<Outcome, GovernanceError> {
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
        self.track_pending(&record.id);
        Ok(Outcome::of(record))
    }

    /// Approve a pending CRITICAL action as `approver` (an admin other than the requester), then
    /// run it, exactly once.
    pub async fn approve(
        self: &Arc<Self>,
        approver: &Caller,
        id: &str,
        comment: Option<String>,
    ) -> Result<Outcome, GovernanceError> {
        let (approver, id) = (approver.clone(), id.to_owned());
        self.to_the_end(|this| async move { this.approve_inner(&approver, &id, comment).await }).await
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
            .map_err(|e| conflict_as_not_pending(e, id))?;
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
            .map_err(|e| conflict_as_not_pending(e, id))?;
        self.forget_pending(id);
        Ok(Outcome::of(record))
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
        let event = self.event("approval_expired", &record, &system(), false, Code::ApprovalExpired.into());
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

    /// Pending approvals, oldest first (expired ones are marked expired first).
    pub async fn pending_approvals(&self) -> Result<Vec<ActionRecord>, GovernanceError> {
        let mut pending = self.expire_due().await?;
        pending.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(pending)
    }

    /// Track `id` as waiting for an approval, for [`Governor::expire_due`].
    pub(super) fn track_pending(&self, id: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(id.to_owned());
        }
    }

    fn forget_pending(&self, id: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(id);
        }
    }
}

/// A compare-and-set lost to a concurrent decision: the action is no longer pending.
fn conflict_as_not_pending(error: GovernanceError, id: &str) -> GovernanceError {
    match error {
        GovernanceError::Journal(JournalError::Conflict { found, .. }) => {
            GovernanceError::NotPending { id: id.to_owned(), state: found.parse().unwrap_or(ActionState::Running) }
        }
        other => other,
    }
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
