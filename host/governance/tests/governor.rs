//! The execute pipeline ([`Governor`]) in process: the real store (redb in a temporary
//! directory), the real journal and audit chain, the real policy engine with the repository's
//! policies, and a fake of the tool port ([`FakeTools`]) that records what the pipeline asked of
//! it. Each test checks what a user would see: the outcome of the call, the action record as read
//! back, the audit entries, and which tool calls happened (or never did).
//!
//! Codes (error codes, denial reasons) are compared in their wire form, through `serde_json`.

mod support;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use time::OffsetDateTime;

use toolgate_core::AuditEvent;
use toolgate_core::model::{AuthMethod, Caller, Category, Role};
use toolgate_governance::action::{Operation, Step};
use toolgate_governance::audit::{self, ChainKey};
use toolgate_governance::journal::Write;
use toolgate_governance::pipeline::{ActionFilter, Outcome, Recovery};
use toolgate_governance::{
    ActionRecord, ActionState, ExecuteRequest, GovernanceConfig, GovernanceError, Governor, Journal, StoredEntry,
    UndoRecord, UndoState,
};
use toolgate_policy::{PolicyConfig, PolicyEngine};
use toolgate_runtime::{ToolErrorKind, Tools};
use toolgate_store::{Store, UserRecord};

use support::fake_tools::{Call, FakeTool, FakeTools};

/// The shortest justification the policy and the governor accept.
const MIN_JUSTIFICATION: u64 = 10;

/// A justification long enough.
const WHY: &str = "nginx answers 502 to every client";

const READ: &str = "fake_read";
const MODERATE: &str = "fake_moderate";
const UNVERIFIED: &str = "fake_unverified";
const SENSITIVE: &str = "fake_sensitive";
const CRITICAL: &str = "fake_critical";

/// A store with four accounts, the shipped policies, the fake tools, a journal and a governor.
struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    key: ChainKey,
    policy: Arc<PolicyEngine>,
    fake: Arc<FakeTools>,
    config: GovernanceConfig,
    journal: Arc<Journal>,
    governor: Arc<Governor>,
}

impl Harness {
    fn new() -> anyhow::Result<Harness> {
        Harness::with_config(GovernanceConfig::default())
    }

    fn with_config(config: GovernanceConfig) -> anyhow::Result<Harness> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("data"))?;
        // Accounts made by the host: independent people, so that either admin may approve the
        // other's request.
        for (name, role) in
            [("alice", Role::Admin), ("bob", Role::Admin), ("olga", Role::Operator), ("vic", Role::Viewer)]
        {
            store.insert_user(&UserRecord::new(name, String::new(), role))?;
        }
        let policy = Arc::new(PolicyEngine::load(&PolicyConfig {
            dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies"),
            min_justification_len: MIN_JUSTIFICATION,
            // The policy's own tests run in its own suite.
            test_on_reload: false,
        })?);
        let fake = Arc::new(FakeTools::new([
            FakeTool::new(READ, Category::Read)?,
            FakeTool::new(MODERATE, Category::Moderate)?,
            FakeTool::new(UNVERIFIED, Category::Moderate)?.without_verify(),
            FakeTool::new(SENSITIVE, Category::Sensitive)?,
            FakeTool::new(CRITICAL, Category::Critical)?,
        ]));
        let key = ChainKey::random();
        let journal = Arc::new(Journal::start(store.clone(), key.clone())?);
        let governor = governor_of(&journal, &policy, &fake, &config);
        Ok(Harness { _dir: dir, store, key, policy, fake, config, journal, governor })
    }

    /// A restart after a crash: the governor and the journal are gone, new ones open the same
    /// store with the same chain key (and the same tools).
    fn restart(self) -> anyhow::Result<Harness> {
        let Harness { _dir, store, key, policy, fake, config, journal, governor } = self;
        drop(governor);
        drop(journal);
        let journal = Arc::new(Journal::start(store.clone(), key.clone())?);
        let governor = governor_of(&journal, &policy, &fake, &config);
        Ok(Harness { _dir, store, key, policy, fake, config, journal, governor })
    }

    async fn execute(
        &self,
        who: &Caller,
        tool: &str,
        justification: Option<&str>,
        dry_run: bool,
    ) -> anyhow::Result<Outcome> {
        let request = ExecuteRequest {
            params: json!({ "unit": "nginx" }),
            justification: justification.map(str::to_owned),
            dry_run,
        };
        Ok(self.governor.execute(who, tool, request).await?)
    }

    async fn run(&self, who: &Caller, tool: &str, justification: Option<&str>) -> anyhow::Result<Outcome> {
        self.execute(who, tool, justification, false).await
    }

    /// The stored action `id`, read back through the governor.
    async fn stored(&self, id: &str) -> anyhow::Result<ActionRecord> {
        self.governor.action(id).await?.with_context(|| format!("action `{id}` is not stored"))
    }

    /// The rollback actions of `original`, oldest first.
    async fn rollbacks_of(&self, original: &str) -> anyhow::Result<Vec<ActionRecord>> {
        let filter = ActionFilter { state: None, tool: None, actor: None, before: None, limit: 1000 };
        let mut found: Vec<ActionRecord> = self
            .governor
            .actions(filter)
            .await?
            .into_iter()
            .filter(|a| a.operation == Operation::Rollback && a.rollback_of.as_deref() == Some(original))
            .collect();
        found.reverse();
        Ok(found)
    }

    /// Every audit entry about action `id`, oldest first; the whole chain must verify.
    async fn audit_of(&self, id: &str) -> anyhow::Result<Vec<AuditEvent>> {
        let verification = audit::verify(&self.store, &self.key, None)?;
        ensure!(verification.broken.is_none(), "the audit chain is broken: {:?}", verification.broken);
        let entries: Vec<StoredEntry> = self.store.call(|s| audit::recent(s, 100_000, None)).await?;
        Ok(entries.into_iter().rev().map(|e| e.event).filter(|e| e.action_id.as_deref() == Some(id)).collect())
    }
}

fn governor_of(
    journal: &Arc<Journal>,
    policy: &Arc<PolicyEngine>,
    fake: &Arc<FakeTools>,
    config: &GovernanceConfig,
) -> Arc<Governor> {
    let tools: Arc<dyn Tools> = fake.clone();
    Arc::new(Governor::new(journal.clone(), policy.clone(), tools, config.clone(), MIN_JUSTIFICATION))
}

fn person(name: &str, role: Role) -> Caller {
    Caller { name: name.into(), role, auth_method: AuthMethod::Password, source_ip: None }
}

fn alice() -> Caller {
    person("alice", Role::Admin)
}

fn bob() -> Caller {
    person("bob", Role::Admin)
}

fn olga() -> Caller {
    person("olga", Role::Operator)
}

fn vic() -> Caller {
    person("vic", Role::Viewer)
}

fn states(record: &ActionRecord) -> Vec<&'static str> {
    record.history.iter().map(|s| s.state.as_str()).collect()
}

fn kinds(events: &[AuditEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// The wire form of `value`'s field `field` (an error's `code`, say).
fn wire(value: &impl serde::Serialize, field: &str) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(value)?.get(field).cloned().unwrap_or(Value::Null))
}

/// The codes of the reasons of an action's decision, in their wire form.
fn reason_codes(record: &ActionRecord) -> anyhow::Result<Vec<Value>> {
    let reasons = wire(&record.decision, "reasons")?;
    Ok(reasons.as_array().into_iter().flatten().map(|r| r["code"].clone()).collect())
}

fn last_step(record: &ActionRecord) -> anyhow::Result<&Step> {
    record.history.last().context("an empty history")
}

/// The one event of `kind` among `events`.
fn event<'a>(events: &'a [AuditEvent], kind: &str) -> anyhow::Result<&'a AuditEvent> {
    match events.iter().filter(|e| e.kind == kind).collect::<Vec<_>>().as_slice() {
        [one] => Ok(one),
        other => bail!("{} `{kind}` entries in {:?}", other.len(), kinds(events)),
    }
}

fn invocations(fake: &FakeTools) -> usize {
    fake.calls().iter().filter(|c| matches!(c, Call::Invoke { .. })).count()
}

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
async fn a_moderate_tool_that_cannot_verify_completes_without_verify() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let outcome = h.run(&olga(), UNVERIFIED, None).await?;
    let stored = h.stored(&outcome.action.id).await?;
    assert_eq!(states(&stored), ["requested", "running", "completed"], "MODERATE only recommends a verify");
    assert_eq!(stored.verify, None);
    assert_eq!(kinds(&h.audit_of(&stored.id).await?), ["decision", "action_completed"]);
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

/// An action record as the pipeline writes it, in `states` (from `requested`).
fn in_flight(tool: &str, category: Category, who: &Caller, states: &[ActionState]) -> ActionRecord {
    ActionRecord {
        id: uuid::Uuid::now_v7().to_string(),
        operation: Operation::Execute,
        rollback_of: None,
        tool: tool.into(),
        plugin: "fake".into(),
        category,
        caller: who.clone(),
        params: json!({ "unit": "nginx" }),
        params_redacted: json!({ "unit": "nginx" }),
        justification: Some(WHY.into()),
        state: states.last().copied().unwrap_or(ActionState::Requested),
        history: states
            .iter()
            .map(|&state| Step { state, at: OffsetDateTime::now_utc(), by: None, note: None })
            .collect(),
        decision: None,
        approval: None,
        output: None,
        verify: None,
        error: None,
        undo_available: false,
        rolled_back_by: None,
        trace_id: None,
        audit_seq: None,
        binding_salt: String::new(),
    }
}

fn audit_write(kind: &str, record: &ActionRecord) -> Write {
    let mut event = AuditEvent::new(kind, true, "allowed").by(&record.caller);
    event.action_id = Some(record.id.clone());
    event.tool = Some(record.tool.clone());
    Write::Audit(Box::new(event))
}

fn advanced(record: &ActionRecord, state: ActionState) -> ActionRecord {
    let mut next = record.clone();
    next.state = state;
    next.history.push(Step { state, at: OffsetDateTime::now_utc(), by: None, note: None });
    next
}

#[tokio::test]
async fn recovery_fails_an_action_a_crash_left_running_and_tracks_pending_approvals_again() -> anyhow::Result<()> {
    let h = Harness::new()?;
    let pending = h.run(&alice(), CRITICAL, Some(WHY)).await?.action.id;
    // The crash point: the decision and the `running` state are committed, the tool is running.
    let running = in_flight(SENSITIVE, Category::Sensitive, &alice(), &[ActionState::Requested, ActionState::Running]);
    h.journal
        .submit(vec![
            audit_write("decision", &running),
            Write::Action { expect: None, record: Box::new(running.clone()) },
        ])
        .await?;

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
    let running = in_flight(SENSITIVE, Category::Sensitive, &alice(), &[ActionState::Requested, ActionState::Running]);
    h.journal
        .submit(vec![
            audit_write("decision", &running),
            Write::Action { expect: None, record: Box::new(running.clone()) },
        ])
        .await?;
    let mut verifying = advanced(&running, ActionState::Verifying);
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
    let mut rollback =
        in_flight(SENSITIVE, Category::Sensitive, &bob(), &[ActionState::Requested, ActionState::Running]);
    rollback.operation = Operation::Rollback;
    rollback.rollback_of = Some(original.id.clone());
    rollback.params = Value::Null;
    rollback.params_redacted = json!({ "rollback_of": original.id });
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

/// BUG (reported, not fixed here): after `rollback_interrupted`, recovery marks the undo record
/// failed but leaves the original action's `undo_available: true`, so the API offers a rollback
/// that `POST /actions/{id}/rollback` then refuses (`AlreadyRolledBack`, "failed"). Every other
/// path that spends an undo record clears the flag with it.
#[tokio::test]
#[ignore = "BUG: recovery's rollback_interrupted branch leaves the original's undo_available true"]
async fn after_an_interrupted_rollback_the_action_no_longer_offers_a_rollback() -> anyhow::Result<()> {
    let (h, original, _) = crash_during_a_rollback().await?;
    h.governor.recover().await?;
    let stored = h.stored(&original.id).await?;
    assert!(!stored.undo_available, "the undo record is failed, yet the action says it can be rolled back");
    Ok(())
}
