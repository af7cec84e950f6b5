//! The execute pipeline ([`Governor`]) in process: the real store (redb in a temporary
//! directory), the real journal and audit chain, the real policy engine with the repository's
//! policies, and a fake of the tool port ([`FakeTools`]) that records what the pipeline asked of
//! it. Each test checks what a user would see: the outcome of the call, the action record as read
//! back, the audit entries, and which tool calls happened (or never did).
//!
//! Codes (error codes, denial reasons) are compared in their wire form, through `serde_json`.
//!
//! This file: crash recovery at start-up (`action_interrupted`, `rollback_interrupted`).

#[allow(dead_code)] // each test file uses part of it
mod support;

use support::harness::*;

/// The crash point of an execute: alice's SENSITIVE call decided and `running`, committed as the
/// pipeline commits it before the tool runs. Returns the record.
async fn commit_running(h: &Harness) -> anyhow::Result<ActionRecord> {
    let decision = toolgate_policy::Decision {
        allow: true,
        reasons: Vec::new(),
        requirements: Vec::new(),
        category: Some(Category::Sensitive),
        revision: String::new(),
    };
    let params = json!({ "unit": "nginx" });
    let tool = FakeTool::new(SENSITIVE, Category::Sensitive)?;
    let mut running =
        ActionRecord::requested(tool.info(), &alice(), params.clone(), params, Some(WHY.into()), decision);
    running.enter(ActionState::Running, None, None);
    h.journal
        .submit(vec![
            audit_write("decision", &running),
            Write::Action { expect: None, record: Box::new(running.clone()) },
        ])
        .await?;
    Ok(running)
}

fn audit_write(kind: &str, record: &ActionRecord) -> Write {
    let mut event = AuditEvent::new(kind, true, "allowed").by(&record.caller);
    event.action_id = Some(record.id.clone());
    event.tool = Some(record.tool.clone());
    Write::Audit(Box::new(event))
}

#[tokio::test]
async fn recovery_fails_an_action_a_crash_left_running_and_tracks_pending_approvals_again() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let pending = h.run(&alice(), CRITICAL, Some(WHY)).await?.action.id;
    // The crash point: the decision and the `running` state are committed, the tool is running.
    let running = commit_running(&h).await?;

    let h = h.restart()?;
    let recovery = h.governor.recover().await?;
    assert_eq!(recovery, Recovery { failed: 1, rolled_back: 0, undo_failed: 0, pending: 1 });

    let stored = h.stored(&running.id).await?;
    assert_eq!(states(&stored), ["requested", "running", "failed"]);
    let step = last_step(&stored)?;
    assert_eq!((step.by.as_deref(), step.note.as_deref()), (Some("system"), Some("interrupted")));
    assert_eq!(wire(&stored.error, "code")?, json!("interrupted"));
    assert_eq!(stored.params, Value::Null, "the raw parameters go once it is closed");

    let audit = h.audit_of(&running.id).await?;
    assert_eq!(kinds(&audit), ["decision", "action_interrupted"]);
    let interrupted = &audit[1];
    assert_eq!((interrupted.actor.as_deref(), interrupted.allowed), (Some("system"), false));
    assert_eq!(interrupted.detail["state_at_crash"], json!("running"));
    assert_eq!(interrupted.detail["undo_available"], json!(false));

    // The approval requested before the crash is still waiting, and can be given.
    let waiting = h.governor.pending_approvals().await?;
    assert_eq!(waiting.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), [pending.as_str()]);
    assert!(h.fake.calls().is_empty(), "recovery re-runs nothing");
    let approved = h.governor.approve(&bob(), &pending, None).await?;
    assert_eq!(approved.action.state, ActionState::Completed);

    // Recovering again finds nothing left to do.
    assert_eq!(h.governor.recover().await?, Recovery::default());
    Ok(())
}

#[tokio::test]
async fn recovery_rolls_back_an_action_a_crash_left_verifying() -> anyhow::Result<()> {
    let h = Harness::new()?;
    // The crash point: the invocation returned an undo record, committed with `verifying`, and
    // the server stopped while verify ran.
    let running = commit_running(&h).await?;
    let mut verifying = running.clone();
    verifying.enter(ActionState::Verifying, None, None);
    verifying.undo_available = true;
    verifying.output = Some(json!({ "done": SENSITIVE }));
    let undo = UndoRecord {
        action_id: running.id.clone(),
        tool: SENSITIVE.into(),
        undo: json!({ "restore": "the config before" }),
        recorded_at: OffsetDateTime::now_utc(),
        state: UndoState::Available,
        applied_by: None,
    };
    h.journal
        .submit(vec![
            Write::Action { expect: Some(ActionState::Running), record: Box::new(verifying) },
            Write::Undo { expect: None, record: Box::new(undo) },
        ])
        .await?;

    let h = h.restart()?;
    let recovery = h.governor.recover().await?;
    assert_eq!(recovery, Recovery { failed: 1, rolled_back: 1, undo_failed: 0, pending: 0 });

    let stored = h.stored(&running.id).await?;
    assert_eq!(states(&stored), ["requested", "running", "verifying", "failed", "rolled_back"]);
    assert_eq!(wire(&stored.error, "code")?, json!("interrupted"));
    assert!(!stored.undo_available);
    let rollbacks = h.rollbacks_of(&running.id).await?;
    let [rollback] = rollbacks.as_slice() else { bail!("rollbacks: {rollbacks:?}") };
    assert_eq!(stored.rolled_back_by.as_ref(), Some(&rollback.id));
    assert_eq!((rollback.state, rollback.caller.name.as_str()), (ActionState::Completed, "system"));

    let audit = h.audit_of(&running.id).await?;
    assert_eq!(kinds(&audit), ["decision", "action_interrupted"]);
    assert_eq!(audit[1].detail["state_at_crash"], json!("verifying"));
    assert_eq!(audit[1].detail["undo_available"], json!(true));
    assert_eq!(kinds(&h.audit_of(&rollback.id).await?), ["rollback_started", "rollback_completed"]);

    assert_eq!(
        h.fake.calls(),
        [Call::Rollback {
            tool: SENSITIVE.into(),
            action_id: rollback.id.clone(),
            caller: "system".into(),
            undo: json!({ "restore": "the config before" }),
        }],
        "recovery undoes the change from its undo record, and runs nothing else"
    );
    Ok(())
}

/// Complete a SENSITIVE action, then crash while an admin's rollback of it runs: the rollback
/// action is `running` and the undo record claimed (`applying`), as `apply_rollback` commits
/// them before calling the plugin. Returns the harness after the restart, the original action
/// and the rollback action.
async fn crash_during_a_rollback() -> anyhow::Result<(Harness, ActionRecord, ActionRecord)> {
    let h = Harness::new()?;
    let original = h.stored(&h.run(&alice(), SENSITIVE, Some(WHY)).await?.action.id).await?;
    ensure!(original.undo_available, "{original:?}");
    let mut rollback = ActionRecord::rollback_of(&original, &bob(), Some(WHY));
    rollback.enter(ActionState::Running, None, None);
    let claimed = UndoRecord {
        action_id: original.id.clone(),
        tool: SENSITIVE.into(),
        undo: json!({ "restore": SENSITIVE }),
        recorded_at: OffsetDateTime::now_utc(),
        state: UndoState::Applying,
        applied_by: Some(rollback.id.clone()),
    };
    h.journal
        .submit(vec![
            audit_write("rollback_started", &rollback),
            Write::Action { expect: None, record: Box::new(rollback.clone()) },
            Write::Undo { expect: Some(UndoState::Available), record: Box::new(claimed) },
        ])
        .await?;
    Ok((h.restart()?, original, rollback))
}

#[tokio::test]
async fn recovery_marks_a_rollback_a_crash_interrupted_failed_and_never_applies_it_again() -> anyhow::Result<()> {
    let (h, original, rollback) = crash_during_a_rollback().await?;
    let recovery = h.governor.recover().await?;
    // The undo record is spent, and the rollback action itself was left running.
    assert_eq!(recovery, Recovery { failed: 1, rolled_back: 0, undo_failed: 1, pending: 0 });

    let audit = h.audit_of(&original.id).await?;
    let interrupted = event(&audit, "rollback_interrupted")?;
    assert_eq!((interrupted.actor.as_deref(), interrupted.allowed), (Some("system"), false));
    assert_eq!(interrupted.detail["rollback_action"], json!(rollback.id));

    let stored_rollback = h.stored(&rollback.id).await?;
    assert_eq!(states(&stored_rollback), ["requested", "running", "failed"]);
    assert_eq!(wire(&stored_rollback.error, "code")?, json!("interrupted"));
    assert_eq!(kinds(&h.audit_of(&rollback.id).await?), ["rollback_started", "action_interrupted"]);

    let stored = h.stored(&original.id).await?;
    assert_eq!(stored.state, ActionState::Completed, "whether it was undone is unknown: it stays as it was");
    let again = h.governor.rollback(&bob(), &original.id, Some(WHY.into())).await;
    assert!(matches!(again, Err(GovernanceError::AlreadyRolledBack { .. })), "{again:?}");
    assert!(
        !h.fake.calls().iter().any(|c| matches!(c, Call::Rollback { .. })),
        "a rollback that may have half happened is not applied again"
    );
    Ok(())
}

/// After `rollback_interrupted` the undo record is spent, so the original no longer offers a
/// rollback (it did, and `POST /actions/{id}/rollback` then refused it): as on every other path
/// that spends an undo record.
#[tokio::test]
async fn after_an_interrupted_rollback_the_action_no_longer_offers_a_rollback() -> anyhow::Result<()> {
    let (h, original, _) = crash_during_a_rollback().await?;
    h.governor.recover().await?;
    let stored = h.stored(&original.id).await?;
    assert!(!stored.undo_available, "the undo record is failed, yet the action says it can be rolled back");
    Ok(())
}
