//! The execute pipeline ([`Governor`]) in process: the real store (redb in a temporary
//! directory), the real journal and audit chain, the real policy engine with the repository's
//! policies, and a fake of the tool port ([`FakeTools`]) that records what the pipeline asked of
//! it. Each test checks what a user would see: the outcome of the call, the action record as read
//! back, the audit entries, and which tool calls happened (or never did).
//!
//! Codes (error codes, denial reasons) are compared in their wire form, through `serde_json`.
//!
//! This file: calls that run at once (READ to SENSITIVE): decisions, verify, automatic rollback.

#[allow(dead_code)] // each test file uses part of it
mod support;

use support::harness::*;

#[tokio::test]
async fn a_read_call_completes_at_once_and_its_output_goes_to_the_caller_only() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let outcome = h.run(&vic(), READ, None).await?;
    assert_eq!(outcome.action.state, ActionState::Completed);
    assert_eq!(outcome.output, Some(json!({ "done": READ })));
    assert!(!outcome.dry_run);

    let stored = h.stored(&outcome.action.id).await?;
    assert_eq!(states(&stored), ["requested", "running", "completed"]);
    assert_eq!(stored.output, None, "a read's output is not stored");
    assert!(!stored.undo_available);
    assert_eq!(stored.caller.name, "vic");

    // One entry: the decision and the result together.
    let audit = h.audit_of(&stored.id).await?;
    assert_eq!(kinds(&audit), ["action_completed"]);
    assert!(audit[0].allowed);
    assert_eq!(audit[0].actor.as_deref(), Some("vic"));
    assert_eq!(audit[0].detail["decision"]["allow"], json!(true));
    assert_eq!(stored.audit_seq, Some(1));

    assert_eq!(
        h.fake.calls(),
        [Call::Invoke {
            tool: READ.into(),
            action_id: stored.id.clone(),
            caller: "vic".into(),
            params: json!({ "unit": "nginx" }),
        }],
        "a READ call is not verified"
    );
    Ok(())
}

#[tokio::test]
async fn a_viewer_running_a_sensitive_tool_is_denied_and_the_tool_never_runs() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let outcome = h.run(&vic(), SENSITIVE, Some(WHY)).await?;
    assert_eq!(outcome.action.state, ActionState::Denied);

    let stored = h.stored(&outcome.action.id).await?;
    assert_eq!(states(&stored), ["requested", "denied"]);
    assert_eq!(reason_codes(&stored)?, [json!("role_insufficient")]);
    assert_eq!(last_step(&stored)?.note.as_deref(), Some("role_insufficient"));
    assert_eq!(stored.params, Value::Null, "raw parameters are dropped once the action is closed");
    assert_eq!(stored.params_redacted, json!({ "unit": "nginx" }));

    let audit = h.audit_of(&stored.id).await?;
    assert_eq!(kinds(&audit), ["decision"]);
    assert!(!audit[0].allowed);
    assert_eq!(audit[0].reason, "role_insufficient");

    assert!(h.fake.calls().is_empty(), "a denied call reaches no tool");
    Ok(())
}

#[tokio::test]
async fn a_sensitive_call_without_a_justification_is_denied_and_the_tool_never_runs() -> anyhow::Result<()> {
    let h = Harness::new()?;
    for justification in [None, Some("too short"), Some("          padded          ")] {
        let outcome = h.run(&alice(), SENSITIVE, justification).await?;
        let stored = h.stored(&outcome.action.id).await?;
        assert_eq!(states(&stored), ["requested", "denied"], "{justification:?}");
        assert_eq!(reason_codes(&stored)?, [json!("justification_required")], "{justification:?}");
        let audit = h.audit_of(&stored.id).await?;
        assert_eq!(kinds(&audit), ["decision"]);
        assert_eq!(audit[0].reason, "justification_required");
    }
    assert!(h.fake.calls().is_empty());
    Ok(())
}

#[tokio::test]
async fn an_unknown_tool_or_invalid_params_are_refused_before_anything_is_recorded() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let request = ExecuteRequest { params: json!({}), justification: Some(WHY.into()), dry_run: false };
    let unknown = h.governor.execute(&alice(), "no_such_tool", request).await;
    assert!(matches!(unknown, Err(GovernanceError::Plugin(_))), "{unknown:?}");
    let request = ExecuteRequest { params: json!("nginx"), justification: Some(WHY.into()), dry_run: false };
    let invalid = h.governor.execute(&alice(), SENSITIVE, request).await;
    assert!(matches!(invalid, Err(GovernanceError::Plugin(_))), "{invalid:?}");

    let filter = ActionFilter { state: None, tool: None, actor: None, before: None, limit: 10 };
    assert!(h.governor.actions(filter).await?.is_empty());
    assert_eq!(audit::verify(&h.store, &h.key, None)?.entries, 0, "no audit entry either");
    assert!(h.fake.calls().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_moderate_call_is_verified_before_it_completes() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let outcome = h.run(&olga(), MODERATE, None).await?;
    assert_eq!(outcome.action.state, ActionState::Completed);

    let stored = h.stored(&outcome.action.id).await?;
    assert_eq!(states(&stored), ["requested", "running", "verifying", "completed"]);
    assert_eq!(stored.output, Some(json!({ "done": MODERATE })), "a change's output is kept");
    assert_eq!(stored.verify.as_ref().map(|v| v.ok), Some(true));
    assert!(stored.undo_available);
    assert_eq!(wire(&stored.decision, "requirements")?, json!(["verify"]));

    let audit = h.audit_of(&stored.id).await?;
    assert_eq!(kinds(&audit), ["decision", "action_completed"]);
    assert_eq!(audit[1].detail["verify"]["ok"], json!(true));
    assert_eq!(audit[1].detail["undo_recorded"], json!(true));

    assert_eq!(
        h.fake.calls(),
        [
            Call::Invoke {
                tool: MODERATE.into(),
                action_id: stored.id.clone(),
                caller: "olga".into(),
                params: json!({ "unit": "nginx" }),
            },
            Call::Verify { tool: MODERATE.into(), action_id: stored.id.clone(), output: json!({ "done": MODERATE }) },
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_moderate_tool_that_cannot_verify_completes_and_says_it_was_not_verified() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let outcome = h.run(&olga(), UNVERIFIED, None).await?;
    let stored = h.stored(&outcome.action.id).await?;
    assert_eq!(states(&stored), ["requested", "running", "completed"], "MODERATE only recommends a verify");
    let verdict = stored.verify.as_ref().expect("a verdict saying verify was skipped");
    assert!(verdict.skipped && !verdict.ok, "{verdict:?}");
    assert!(verdict.detail.starts_with("not verified: tool `fake_unverified` cannot check its effect"), "{verdict:?}");
    let audit = h.audit_of(&stored.id).await?;
    assert_eq!(kinds(&audit), ["decision", "action_completed"]);
    assert_eq!(audit[1].detail["verify"]["skipped"], json!(true), "{:?}", audit[1].detail);
    assert_eq!(invocations(&h.fake), 1);
    assert_eq!(h.fake.calls().len(), 1, "no verify asked of a tool that has none");
    Ok(())
}

#[tokio::test]
async fn verify_required_refuses_a_tool_that_cannot_verify_before_it_runs() -> anyhow::Result<()> {
    let h = Harness::with_config(GovernanceConfig { verify_required: true, ..GovernanceConfig::default() })?;
    let outcome = h.run(&olga(), UNVERIFIED, None).await?;
    let stored = h.stored(&outcome.action.id).await?;
    assert_eq!(states(&stored), ["requested", "failed"]);
    assert_eq!(wire(&stored.error, "code")?, json!("verify_unavailable"));
    assert_eq!(kinds(&h.audit_of(&stored.id).await?), ["decision"]);
    assert!(h.fake.calls().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_justified_sensitive_call_is_verified_and_completed() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let outcome = h.run(&alice(), SENSITIVE, Some(WHY)).await?;
    assert_eq!(outcome.action.state, ActionState::Completed);
    assert_eq!(outcome.output, Some(json!({ "done": SENSITIVE })));

    let stored = h.stored(&outcome.action.id).await?;
    assert_eq!(states(&stored), ["requested", "running", "verifying", "completed"]);
    assert_eq!(stored.justification.as_deref(), Some(WHY));
    assert!(stored.undo_available);
    assert_eq!(wire(&stored.decision, "requirements")?, json!(["justification", "rollback", "verify"]));

    let audit = h.audit_of(&stored.id).await?;
    assert_eq!(kinds(&audit), ["decision", "action_completed"]);
    assert_eq!(audit[0].detail["justification"], json!(WHY));
    assert_eq!(stored.audit_seq, Some(2), "the record points at its latest audit entry");
    assert_eq!(h.fake.calls().len(), 2, "invoke and verify");
    Ok(())
}

#[tokio::test]
async fn a_failed_verify_rolls_the_action_back_automatically() -> anyhow::Result<()> {
    let h = Harness::new()?;
    h.fake.script(SENSITIVE, |s| s.verify_ok = false)?;
    let outcome = h.run(&alice(), SENSITIVE, Some(WHY)).await?;
    assert_eq!(outcome.action.state, ActionState::RolledBack);
    assert_eq!(outcome.output, Some(json!({ "done": SENSITIVE })), "the caller still sees what the tool said");

    let original = h.stored(&outcome.action.id).await?;
    assert_eq!(states(&original), ["requested", "running", "verifying", "failed", "rolled_back"]);
    assert_eq!(wire(&original.error, "code")?, json!("verify_failed"));
    assert_eq!(original.verify.as_ref().map(|v| v.ok), Some(false));
    assert!(!original.undo_available, "the undo record is spent");
    assert_eq!(last_step(&original)?.by.as_deref(), Some("system"));

    let rollbacks = h.rollbacks_of(&original.id).await?;
    let [rollback] = rollbacks.as_slice() else { bail!("rollbacks: {rollbacks:?}") };
    assert_eq!(original.rolled_back_by.as_ref(), Some(&rollback.id));
    assert_eq!(states(rollback), ["requested", "running", "completed"]);
    assert_eq!(rollback.caller.name, "system");
    assert_eq!(rollback.output, Some(json!({ "restored": SENSITIVE })));

    assert_eq!(kinds(&h.audit_of(&original.id).await?), ["decision", "action_failed"]);
    let rollback_audit = h.audit_of(&rollback.id).await?;
    assert_eq!(kinds(&rollback_audit), ["rollback_started", "rollback_completed"]);
    assert_eq!(rollback_audit[0].detail["automatic"], json!(true));
    assert_eq!(rollback_audit[1].detail["rollback_of"], json!(original.id));

    let calls = h.fake.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(
        calls[2],
        Call::Rollback {
            tool: SENSITIVE.into(),
            action_id: rollback.id.clone(),
            caller: "system".into(),
            undo: json!({ "restore": SENSITIVE }),
        },
        "the rollback got the undo record the invocation returned"
    );

    let again = h.governor.rollback(&bob(), &original.id, Some(WHY.into())).await;
    assert!(matches!(again, Err(GovernanceError::AlreadyRolledBack { .. })), "{again:?}");
    assert_eq!(h.fake.calls().len(), 3, "never undone twice");
    Ok(())
}

#[tokio::test]
async fn a_failed_verify_of_a_call_with_nothing_to_undo_leaves_it_failed_not_rolled_back() -> anyhow::Result<()> {
    // A restart: the tool returns no undo record, so nothing can be rolled back or claimed.
    let h = Harness::new()?;
    h.fake.script(SENSITIVE, |s| {
        s.verify_ok = false;
        s.invoke = Ok((json!({ "restarted": true }), None));
    })?;
    let outcome = h.run(&alice(), SENSITIVE, Some(WHY)).await?;
    assert_eq!(outcome.action.state, ActionState::Failed);
    assert!(!outcome.action.undo_available);
    let stored = h.stored(&outcome.action.id).await?;
    assert_eq!(states(&stored), ["requested", "running", "verifying", "failed"]);
    assert_eq!(wire(&stored.error, "code")?, json!("verify_failed"));
    assert!(stored.rolled_back_by.is_none());
    assert!(h.rollbacks_of(&stored.id).await?.is_empty(), "no rollback action");
    assert_eq!(h.fake.calls().len(), 2, "invoke and verify, no rollback call");
    let asked = h.governor.rollback(&bob(), &stored.id, Some(WHY.into())).await;
    assert!(matches!(asked, Err(GovernanceError::NoUndo(_))), "{asked:?}");
    Ok(())
}

#[tokio::test]
async fn a_rollback_that_fails_leaves_the_action_failed_and_its_undo_record_spent() -> anyhow::Result<()> {
    let h = Harness::new()?;
    h.fake.script(SENSITIVE, |s| {
        s.verify_ok = false;
        s.rollback = Err(ToolErrorKind::Failed);
    })?;
    let outcome = h.run(&alice(), SENSITIVE, Some(WHY)).await?;
    assert_eq!(outcome.action.state, ActionState::Failed);

    let original = h.stored(&outcome.action.id).await?;
    assert_eq!(states(&original), ["requested", "running", "verifying", "failed"]);
    assert_eq!(wire(&original.error, "code")?, json!("verify_failed"), "the action's own error stays");
    assert!(!original.undo_available, "a rollback that may have done something is not offered again");
    assert_eq!(original.rolled_back_by, None);

    let rollbacks = h.rollbacks_of(&original.id).await?;
    let [rollback] = rollbacks.as_slice() else { bail!("rollbacks: {rollbacks:?}") };
    assert_eq!(states(rollback), ["requested", "running", "failed"]);
    assert_eq!(wire(&rollback.error, "code")?, json!("rollback_failed"));
    let rollback_audit = h.audit_of(&rollback.id).await?;
    assert_eq!(kinds(&rollback_audit), ["rollback_started", "rollback_failed"]);
    assert_eq!(rollback_audit[1].detail["undo_kept"], json!(false));

    let again = h.governor.rollback(&bob(), &original.id, Some(WHY.into())).await;
    assert!(matches!(again, Err(GovernanceError::AlreadyRolledBack { .. })), "{again:?}");
    let rollback_calls = h.fake.calls().iter().filter(|c| matches!(c, Call::Rollback { .. })).count();
    assert_eq!(rollback_calls, 1);
    Ok(())
}

#[tokio::test]
async fn a_rollback_that_cannot_start_keeps_the_undo_record_for_a_later_attempt() -> anyhow::Result<()> {
    let h = Harness::new()?;
    h.fake.script(SENSITIVE, |s| {
        s.verify_ok = false;
        s.rollback = Err(ToolErrorKind::Unavailable);
    })?;
    let outcome = h.run(&alice(), SENSITIVE, Some(WHY)).await?;
    let original = h.stored(&outcome.action.id).await?;
    assert_eq!(states(&original), ["requested", "running", "verifying", "failed"]);
    assert!(original.undo_available, "nothing ran: the undo record is still there");
    let rollbacks = h.rollbacks_of(&original.id).await?;
    let [first] = rollbacks.as_slice() else { bail!("rollbacks: {rollbacks:?}") };
    assert_eq!(wire(&first.error, "code")?, json!("rollback_unavailable"));
    assert_eq!(event(&h.audit_of(&first.id).await?, "rollback_failed")?.detail["undo_kept"], json!(true));

    // Once the tool is back, an admin rolls the failed action back by hand.
    h.fake.script(SENSITIVE, |s| s.rollback = Ok(json!({ "restored": SENSITIVE })))?;
    let manual = h.governor.rollback(&bob(), &original.id, Some(WHY.into())).await?;
    assert_eq!(manual.action.state, ActionState::Completed);
    let original = h.stored(&original.id).await?;
    assert_eq!(states(&original), ["requested", "running", "verifying", "failed", "rolled_back"]);
    assert_eq!(original.rolled_back_by.as_ref(), Some(&manual.action.id));
    Ok(())
}

#[tokio::test]
async fn an_invoke_error_fails_the_action_without_verify_or_rollback() -> anyhow::Result<()> {
    let h = Harness::new()?;
    h.fake.script(SENSITIVE, |s| s.invoke = Err(ToolErrorKind::Failed))?;
    let outcome = h.run(&alice(), SENSITIVE, Some(WHY)).await?;
    assert_eq!(outcome.action.state, ActionState::Failed);
    assert_eq!(outcome.output, None);
    let stored = h.stored(&outcome.action.id).await?;
    assert_eq!(states(&stored), ["requested", "running", "failed"]);
    assert_eq!(wire(&stored.error, "code")?, json!("tool_failed"));
    assert_eq!(last_step(&stored)?.note.as_deref(), Some("tool_failed"));
    assert!(!stored.undo_available);
    let audit = h.audit_of(&stored.id).await?;
    assert_eq!(kinds(&audit), ["decision", "action_failed"]);
    assert_eq!(audit[1].reason, "tool_failed");

    // A READ call that fails is written once, failed, with its decision.
    h.fake.script(READ, |s| s.invoke = Err(ToolErrorKind::Timeout))?;
    let read = h.run(&vic(), READ, None).await?;
    let stored = h.stored(&read.action.id).await?;
    assert_eq!(states(&stored), ["requested", "running", "failed"]);
    assert_eq!(wire(&stored.error, "code")?, json!("timeout"));
    let audit = h.audit_of(&stored.id).await?;
    assert_eq!(kinds(&audit), ["action_failed"]);
    assert_eq!(audit[0].detail["decision"]["allow"], json!(true));

    assert_eq!(h.fake.calls().len(), 2, "two invocations, nothing else: {:?}", h.fake.calls());
    Ok(())
}
