//! The execute pipeline ([`Governor`]) in process: the real store (redb in a temporary
//! directory), the real journal and audit chain, the real policy engine with the repository's
//! policies, and a fake of the tool port ([`FakeTools`]) that records what the pipeline asked of
//! it. Each test checks what a user would see: the outcome of the call, the action record as read
//! back, the audit entries, and which tool calls happened (or never did).
//!
//! Codes (error codes, denial reasons) are compared in their wire form, through `serde_json`.
//!
//! This file: approvals of CRITICAL calls, their expiry, manual rollback and dry runs.

#[allow(dead_code)] // each test file uses part of it
mod support;

use support::harness::*;

#[tokio::test]
async fn a_critical_call_waits_for_a_second_admin_then_runs() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let requested = h.run(&alice(), CRITICAL, Some(WHY)).await?;
    assert_eq!(requested.action.state, ActionState::PendingApproval);
    assert!(h.fake.calls().is_empty(), "nothing runs before the approval");
    let id = requested.action.id.clone();
    let pending = h.governor.pending_approvals().await?;
    assert_eq!(pending.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    let approval = pending[0].approval.clone().context("no approval")?;
    assert!(approval.expires_at > OffsetDateTime::now_utc());
    assert_eq!(reason_codes(&pending[0])?, [json!("approval_required")]);

    let approved = h.governor.approve(&bob(), &id, Some("checked with alice".into())).await?;
    assert_eq!(approved.action.state, ActionState::Completed);
    assert_eq!(approved.output, Some(json!({ "done": CRITICAL })));

    let stored = h.stored(&id).await?;
    assert_eq!(states(&stored), ["requested", "pending_approval", "approved", "running", "verifying", "completed"]);
    let step = &stored.history[2];
    assert_eq!((step.by.as_deref(), step.note.as_deref()), (Some("bob"), Some("checked with alice")));
    let decided = stored.approval.clone().context("no approval")?;
    assert_eq!(decided.decided_by.as_deref(), Some("bob"));
    assert_eq!(decided.params_sha256, approval.params_sha256, "the approval stays bound to the same params");
    assert!(reason_codes(&stored)?.is_empty(), "decided again with the approval: allowed");

    let audit = h.audit_of(&id).await?;
    assert_eq!(kinds(&audit), ["approval_requested", "approval_granted", "action_completed"]);
    assert_eq!(audit[0].actor.as_deref(), Some("alice"));
    assert_eq!(audit[1].actor.as_deref(), Some("bob"));
    assert!(audit[1].allowed);

    let calls = h.fake.calls();
    assert_eq!(calls.len(), 2, "invoke and verify: {calls:?}");
    assert!(
        matches!(&calls[0], Call::Invoke { caller, action_id, .. } if caller == "alice" && *action_id == id),
        "it runs as its requester: {calls:?}"
    );
    assert!(h.governor.pending_approvals().await?.is_empty(), "no longer pending");
    let twice = h.governor.approve(&bob(), &id, None).await;
    assert!(matches!(twice, Err(GovernanceError::NotPending { state: ActionState::Completed, .. })), "{twice:?}");
    assert_eq!(invocations(&h.fake), 1, "approved once, run once");
    Ok(())
}

#[tokio::test]
async fn the_requester_cannot_approve_their_own_action() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let requested = h.run(&alice(), CRITICAL, Some(WHY)).await?;
    let refused = h.governor.approve(&alice(), &requested.action.id, None).await;
    assert!(matches!(refused, Err(GovernanceError::SelfApproval)), "{refused:?}");
    let stored = h.stored(&requested.action.id).await?;
    assert_eq!(states(&stored), ["requested", "pending_approval"], "still waiting for someone else");
    assert_eq!(kinds(&h.audit_of(&stored.id).await?), ["approval_requested"]);
    assert!(h.fake.calls().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_rejected_action_never_runs() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let requested = h.run(&alice(), CRITICAL, Some(WHY)).await?;
    let id = requested.action.id;
    let rejected = h.governor.reject(&bob(), &id, Some("not during business hours".into())).await?;
    assert_eq!(rejected.action.state, ActionState::Rejected);

    let stored = h.stored(&id).await?;
    assert_eq!(states(&stored), ["requested", "pending_approval", "rejected"]);
    assert_eq!(last_step(&stored)?.by.as_deref(), Some("bob"));
    assert_eq!(stored.approval.as_ref().and_then(|a| a.comment.as_deref()), Some("not during business hours"));
    let audit = h.audit_of(&id).await?;
    assert_eq!(kinds(&audit), ["approval_requested", "approval_rejected"]);
    assert!(!audit[1].allowed);
    assert_eq!(audit[1].actor.as_deref(), Some("bob"));

    let late = h.governor.approve(&bob(), &id, None).await;
    assert!(matches!(late, Err(GovernanceError::NotPending { state: ActionState::Rejected, .. })), "{late:?}");
    assert!(h.governor.pending_approvals().await?.is_empty());
    assert!(h.fake.calls().is_empty());
    Ok(())
}

#[tokio::test]
async fn an_approval_not_given_in_time_expires_and_the_action_never_runs() -> anyhow::Result<()> {
    // A window of zero seconds: every approval is due as soon as it is requested, no sleep needed.
    let h = Harness::with_config(GovernanceConfig { approval_ttl_secs: 0, ..GovernanceConfig::default() })?;
    let first = h.run(&alice(), CRITICAL, Some(WHY)).await?.action.id;
    let second = h.run(&alice(), CRITICAL, Some(WHY)).await?.action.id;
    assert_eq!(h.stored(&first).await?.state, ActionState::PendingApproval);

    // Approving one past its window expires it instead.
    let late = h.governor.approve(&bob(), &second, None).await;
    assert!(matches!(late, Err(GovernanceError::ApprovalExpired(_))), "{late:?}");
    assert_eq!(states(&h.stored(&second).await?), ["requested", "pending_approval", "expired"]);

    // The periodic sweep expires the other.
    assert!(h.governor.expire_due().await?.is_empty(), "nothing is still pending");
    let stored = h.stored(&first).await?;
    assert_eq!(states(&stored), ["requested", "pending_approval", "expired"]);
    assert_eq!(last_step(&stored)?.by.as_deref(), Some("system"));
    let audit = h.audit_of(&first).await?;
    assert_eq!(kinds(&audit), ["approval_requested", "approval_expired"]);
    assert_eq!((audit[1].actor.as_deref(), audit[1].allowed), (Some("system"), false));
    assert_eq!(kinds(&h.audit_of(&second).await?), ["approval_requested", "approval_expired"]);

    let after = h.governor.approve(&bob(), &first, None).await;
    assert!(matches!(after, Err(GovernanceError::NotPending { state: ActionState::Expired, .. })), "{after:?}");
    assert!(h.fake.calls().is_empty());
    Ok(())
}

#[tokio::test]
async fn an_admin_rolls_back_a_completed_action_by_hand() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let done = h.run(&alice(), SENSITIVE, Some(WHY)).await?;
    let id = done.action.id;

    let unjustified = h.governor.rollback(&bob(), &id, Some("oops".into())).await;
    assert!(matches!(unjustified, Err(GovernanceError::JustificationRequired(10))), "{unjustified:?}");

    // An operator's rollback is an action the policy denies; the undo record stays.
    let denied = h.governor.rollback(&olga(), &id, Some(WHY.into())).await?;
    assert_eq!(denied.action.state, ActionState::Denied);
    let codes = reason_codes(&denied.action)?;
    assert!(!codes.is_empty() && codes.iter().all(|c| c == "role_insufficient"), "{codes:?}");
    let original = h.stored(&id).await?;
    assert_eq!(original.state, ActionState::Completed);
    assert!(original.undo_available);
    assert_eq!(h.fake.calls().len(), 2, "no rollback ran yet");

    let rollback = h.governor.rollback(&bob(), &id, Some(WHY.into())).await?;
    assert_eq!(rollback.action.state, ActionState::Completed);
    assert_eq!(wire(&rollback.action, "operation")?, json!("rollback"));
    assert_eq!(rollback.action.rollback_of.as_deref(), Some(id.as_str()));
    assert_eq!(rollback.output, Some(json!({ "restored": SENSITIVE })));
    let stored_rollback = h.stored(&rollback.action.id).await?;
    assert_eq!(states(&stored_rollback), ["requested", "running", "completed"]);
    assert_eq!(stored_rollback.justification.as_deref(), Some(WHY));

    let original = h.stored(&id).await?;
    assert_eq!(states(&original), ["requested", "running", "verifying", "completed", "rolled_back"]);
    let step = last_step(&original)?;
    assert_eq!((step.by.as_deref(), step.note.as_deref()), (Some("bob"), Some(rollback.action.id.as_str())));
    assert_eq!(original.rolled_back_by.as_ref(), Some(&rollback.action.id));
    assert!(!original.undo_available);

    let audit = h.audit_of(&rollback.action.id).await?;
    assert_eq!(kinds(&audit), ["rollback_started", "rollback_completed"]);
    assert_eq!((audit[0].actor.as_deref(), &audit[0].detail["automatic"]), (Some("bob"), &json!(false)));
    assert_eq!(
        h.fake.calls().last(),
        Some(&Call::Rollback {
            tool: SENSITIVE.into(),
            action_id: rollback.action.id.clone(),
            caller: "bob".into(),
            undo: json!({ "restore": SENSITIVE }),
        })
    );

    let again = h.governor.rollback(&bob(), &id, Some(WHY.into())).await;
    assert!(matches!(again, Err(GovernanceError::AlreadyRolledBack { .. })), "{again:?}");
    let read = h.run(&alice(), READ, None).await?;
    let nothing = h.governor.rollback(&bob(), &read.action.id, Some(WHY.into())).await;
    assert!(matches!(nothing, Err(GovernanceError::NoUndo(_))), "{nothing:?}");
    let rollbacks = h.fake.calls().iter().filter(|c| matches!(c, Call::Rollback { .. })).count();
    assert_eq!(rollbacks, 1);
    Ok(())
}

#[tokio::test]
async fn a_dry_run_decides_without_running_or_storing_anything_but_its_audit_entry() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let allowed = h.execute(&alice(), SENSITIVE, Some(WHY), true).await?;
    assert!(allowed.dry_run);
    assert_eq!(allowed.action.state, ActionState::Requested);
    assert_eq!(wire(&allowed.action.decision, "allow")?, json!(true));
    assert_eq!(h.governor.action(&allowed.action.id).await?, None, "a dry run is not an action");
    let audit = h.audit_of(&allowed.action.id).await?;
    assert_eq!(kinds(&audit), ["decision"]);
    assert_eq!(audit[0].detail["dry_run"], json!(true));
    assert!(audit[0].allowed);

    let denied = h.execute(&vic(), SENSITIVE, Some(WHY), true).await?;
    assert_eq!(wire(&denied.action.decision, "allow")?, json!(false));
    assert_eq!(reason_codes(&denied.action)?, [json!("role_insufficient")]);
    assert_eq!(h.audit_of(&denied.action.id).await?.first().map(|e| e.allowed), Some(false));

    // A CRITICAL dry run says an approval is needed, and asks nobody for one.
    let critical = h.execute(&alice(), CRITICAL, Some(WHY), true).await?;
    assert_eq!(reason_codes(&critical.action)?, [json!("approval_required")]);
    assert!(h.governor.pending_approvals().await?.is_empty());

    let filter = ActionFilter { state: None, tool: None, actor: None, before: None, limit: 10 };
    assert!(h.governor.actions(filter).await?.is_empty());
    assert!(h.fake.calls().is_empty());
    Ok(())
}
