//! The governor under test: a store with four accounts, the shipped policies, the fake tools, a
//! journal and a governor, and the helpers the tests read results with. Its imports are a prelude
//! for the test files (`use support::harness::*`), each of which uses part of them.

#![allow(unused_imports)]

pub use std::path::Path;
pub use std::sync::Arc;

pub use anyhow::{Context, bail, ensure};
pub use serde_json::{Value, json};
pub use time::OffsetDateTime;

pub use toolgate_core::AuditEvent;
pub use toolgate_core::model::{AuthMethod, Caller, Category, Role};
pub use toolgate_governance::action::{Operation, Step};
pub use toolgate_governance::audit::{self, ChainKey};
pub use toolgate_governance::journal::Write;
pub use toolgate_governance::pipeline::{ActionFilter, Outcome, Recovery};
pub use toolgate_governance::{
    ActionRecord, ActionState, ExecuteRequest, GovernanceConfig, GovernanceError, Governor, Journal, StoredEntry,
    UndoRecord, UndoState,
};
pub use toolgate_policy::{PolicyConfig, PolicyEngine};
pub use toolgate_runtime::{ToolErrorKind, Tools};
pub use toolgate_store::{Store, UserRecord};

pub use super::fake_tools::{Call, FakeTool, FakeTools};

/// The shortest justification the policy and the governor accept.
pub const MIN_JUSTIFICATION: u64 = 10;

/// A justification long enough.
pub const WHY: &str = "nginx answers 502 to every client";

pub const READ: &str = "fake_read";
pub const MODERATE: &str = "fake_moderate";
pub const UNVERIFIED: &str = "fake_unverified";
pub const SENSITIVE: &str = "fake_sensitive";
pub const CRITICAL: &str = "fake_critical";

/// A store with four accounts, the shipped policies, the fake tools, a journal and a governor.
pub struct Harness {
    pub _dir: tempfile::TempDir,
    pub store: Store,
    pub key: ChainKey,
    pub policy: Arc<PolicyEngine>,
    pub fake: Arc<FakeTools>,
    pub config: GovernanceConfig,
    pub journal: Arc<Journal>,
    pub governor: Arc<Governor>,
}

impl Harness {
    pub fn new() -> anyhow::Result<Harness> {
        Harness::with_config(GovernanceConfig::default())
    }

    pub fn with_config(config: GovernanceConfig) -> anyhow::Result<Harness> {
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
    pub fn restart(self) -> anyhow::Result<Harness> {
        let Harness { _dir, store, key, policy, fake, config, journal, governor } = self;
        drop(governor);
        drop(journal);
        let journal = Arc::new(Journal::start(store.clone(), key.clone())?);
        let governor = governor_of(&journal, &policy, &fake, &config);
        Ok(Harness { _dir, store, key, policy, fake, config, journal, governor })
    }

    pub async fn execute(
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

    pub async fn run(&self, who: &Caller, tool: &str, justification: Option<&str>) -> anyhow::Result<Outcome> {
        self.execute(who, tool, justification, false).await
    }

    /// The stored action `id`, read back through the governor.
    pub async fn stored(&self, id: &str) -> anyhow::Result<ActionRecord> {
        self.governor.action(id).await?.with_context(|| format!("action `{id}` is not stored"))
    }

    /// The rollback actions of `original`, oldest first.
    pub async fn rollbacks_of(&self, original: &str) -> anyhow::Result<Vec<ActionRecord>> {
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
    pub async fn audit_of(&self, id: &str) -> anyhow::Result<Vec<AuditEvent>> {
        let verification = audit::verify(&self.store, &self.key, None)?;
        ensure!(verification.broken.is_none(), "the audit chain is broken: {:?}", verification.broken);
        let entries: Vec<StoredEntry> = self.store.call(|s| audit::recent(s, 100_000, None)).await?;
        Ok(entries.into_iter().rev().map(|e| e.event).filter(|e| e.action_id.as_deref() == Some(id)).collect())
    }
}

pub fn governor_of(
    journal: &Arc<Journal>,
    policy: &Arc<PolicyEngine>,
    fake: &Arc<FakeTools>,
    config: &GovernanceConfig,
) -> Arc<Governor> {
    let tools: Arc<dyn Tools> = fake.clone();
    Arc::new(Governor::new(journal.clone(), policy.clone(), tools, config.clone(), MIN_JUSTIFICATION))
}

pub fn person(name: &str, role: Role) -> Caller {
    Caller { name: name.into(), role, auth_method: AuthMethod::Password, source_ip: None }
}

pub fn alice() -> Caller {
    person("alice", Role::Admin)
}

pub fn bob() -> Caller {
    person("bob", Role::Admin)
}

pub fn olga() -> Caller {
    person("olga", Role::Operator)
}

pub fn vic() -> Caller {
    person("vic", Role::Viewer)
}

pub fn states(record: &ActionRecord) -> Vec<&'static str> {
    record.history.iter().map(|s| s.state.as_str()).collect()
}

pub fn kinds(events: &[AuditEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// The wire form of `value`'s field `field` (an error's `code`, say).
pub fn wire(value: &impl serde::Serialize, field: &str) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(value)?.get(field).cloned().unwrap_or(Value::Null))
}

/// The codes of the reasons of an action's decision, in their wire form.
pub fn reason_codes(record: &ActionRecord) -> anyhow::Result<Vec<Value>> {
    let reasons = wire(&record.decision, "reasons")?;
    Ok(reasons.as_array().into_iter().flatten().map(|r| r["code"].clone()).collect())
}

pub fn last_step(record: &ActionRecord) -> anyhow::Result<&Step> {
    record.history.last().context("an empty history")
}

/// The one event of `kind` among `events`.
pub fn event<'a>(events: &'a [AuditEvent], kind: &str) -> anyhow::Result<&'a AuditEvent> {
    match events.iter().filter(|e| e.kind == kind).collect::<Vec<_>>().as_slice() {
        [one] => Ok(one),
        other => bail!("{} `{kind}` entries in {:?}", other.len(), kinds(events)),
    }
}

pub fn invocations(fake: &FakeTools) -> usize {
    fake.calls().iter().filter(|c| matches!(c, Call::Invoke { .. })).count()
}
