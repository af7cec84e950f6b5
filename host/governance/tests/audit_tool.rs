//! `get_audit_log`: the built-in `audit` plugin (`cargo xtask plugins`) through the real runtime,
//! reading the audit log a real journal wrote into a real store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use toolgate_core::model::{AuthMethod, Caller, Role, ToolName};
use toolgate_core::{AuditEvent, AuditReader, AuditSink};
use toolgate_governance::Journal;
use toolgate_governance::audit::ChainKey;
use toolgate_governance::journal::Write;
use toolgate_runtime::{
    CallContext, HostServices, PluginError, PluginRuntime, PluginSettings, PluginsConfig, ToolErrorKind,
};
use toolgate_store::Store;

/// The built-in plugin, as `cargo xtask plugins` builds it.
fn audit_wasm() -> anyhow::Result<PathBuf> {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().context("target dir")?;
    let path = target.join("plugins").join("audit.wasm");
    if !path.is_file() {
        bail!("`{}` is missing: run `cargo xtask plugins` first", path.display());
    }
    Ok(path)
}

fn caller(name: &str, role: Role, auth_method: AuthMethod) -> Caller {
    Caller { name: name.into(), role, auth_method, source_ip: None }
}

fn alice() -> Caller {
    caller("alice", Role::Admin, AuthMethod::Password)
}

fn bob() -> Caller {
    caller("bob", Role::Viewer, AuthMethod::Password)
}

/// A store whose audit log a journal wrote, and the `audit` plugin with its default grants.
struct Setup {
    dir: tempfile::TempDir,
    journal: Arc<Journal>,
    config: PluginsConfig,
}

impl Setup {
    fn new() -> anyhow::Result<Setup> {
        let dir = tempfile::tempdir()?;
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins)?;
        std::fs::copy(audit_wasm()?, plugins.join("audit.wasm"))?;
        let store = Store::open(&dir.path().join("data"))?;
        let journal = Arc::new(Journal::start(store, ChainKey::random())?);
        // The built-in grants: `audit` gets `audit-read` without any configuration.
        let config = PluginsConfig { dir: plugins, ..PluginsConfig::default() };
        Ok(Setup { dir, journal, config })
    }

    /// Write `events` to the log, in order, durably.
    async fn log(&self, events: Vec<AuditEvent>) -> anyhow::Result<()> {
        self.journal.submit(events.into_iter().map(|e| Write::Audit(Box::new(e))).collect()).await?;
        Ok(())
    }

    async fn runtime(&self, services: HostServices) -> anyhow::Result<PluginRuntime> {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
        Ok(PluginRuntime::load(&self.config, &cache, services).await?)
    }

    fn services(&self) -> HostServices {
        HostServices::new(Arc::clone(&self.journal) as Arc<dyn AuditSink>, self.dir.path().join("workspace"))
            .with_audit_log(Arc::clone(&self.journal) as Arc<dyn AuditReader>)
    }
}

fn tool() -> ToolName {
    "get_audit_log".parse().unwrap_or_else(|e| panic!("{e}"))
}

fn call(caller: Caller) -> CallContext {
    CallContext { action_id: "0193-audit-test".into(), caller, justification: None, category: None }
}

async fn entries(runtime: &PluginRuntime, who: Caller, params: Value) -> anyhow::Result<Vec<Value>> {
    let out = runtime.invoke(&call(who), &tool(), params).await?.output;
    out["entries"].as_array().cloned().with_context(|| format!("no entries in {out}"))
}

fn event(at: OffsetDateTime, kind: &str, who: &Caller, allowed: bool, reason: &str, command: &str) -> AuditEvent {
    let mut event = AuditEvent::new(kind, allowed, reason).by(who);
    event.timestamp = at;
    event.tool = Some(command.split(' ').next().unwrap_or_default().to_owned());
    event.action_id = Some(format!("action-of-{}", who.name));
    event.command = Some(command.to_owned());
    event
}

/// Two users' calls: alice (admin) and bob (viewer), interleaved; then an API key that happens to
/// be named `bob` too, and a system event without an actor.
fn history() -> Vec<AuditEvent> {
    let key = caller("bob", Role::Operator, AuthMethod::ApiKey);
    let mut system = AuditEvent::new("recovery", true, "nothing to recover");
    system.timestamp = datetime!(2026-11-24 05:00:05 UTC);
    vec![
        event(datetime!(2026-11-24 05:00:00 UTC), "decision", &alice(), true, "allowed", "disk_usage {}"),
        event(datetime!(2026-11-24 05:00:01 UTC), "decision", &bob(), false, "role_insufficient", "write_file {}"),
        event(datetime!(2026-11-24 05:00:02 UTC), "action_completed", &alice(), true, "completed", "disk_usage {}"),
        event(datetime!(2026-11-24 05:00:03 UTC), "decision", &bob(), true, "allowed", "list_dir {\"path\":\".\"}"),
        event(datetime!(2026-11-24 05:00:04 UTC), "decision", &key, true, "allowed", "run_command {}"),
        system,
    ]
}

#[tokio::test]
async fn an_admin_sees_every_entry_newest_first_and_last_n_is_honoured() -> anyhow::Result<()> {
    let setup = Setup::new()?;
    setup.log(history()).await?;
    let runtime = setup.runtime(setup.services()).await?;
    assert!(runtime.report().refused.is_empty(), "{:?}", runtime.report().refused);

    let all = entries(&runtime, alice(), json!({})).await?;
    let seqs: Vec<u64> = all.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, [6, 5, 4, 3, 2, 1], "every entry, newest first");
    assert_eq!(
        all[2],
        json!({
            "seq": 4, "timestamp": "2026-11-24T05:00:03Z", "kind": "decision", "actor": "bob", "role": "viewer",
            "tool": "list_dir", "action_id": "action-of-bob", "command": "list_dir {\"path\":\".\"}",
            "allowed": true, "reason": "allowed",
        })
    );
    assert_eq!((&all[0]["kind"], &all[0]["actor"], &all[0]["role"]), (&json!("recovery"), &Value::Null, &Value::Null));
    assert_eq!((&all[4]["allowed"], &all[4]["reason"]), (&json!(false), &json!("role_insufficient")));

    let two = entries(&runtime, alice(), json!({"last_n": 2})).await?;
    assert_eq!(two.iter().filter_map(|e| e["seq"].as_u64()).collect::<Vec<_>>(), [6, 5]);
    Ok(())
}

#[tokio::test]
async fn a_viewer_sees_only_their_own_entries() -> anyhow::Result<()> {
    let setup = Setup::new()?;
    setup.log(history()).await?;
    let runtime = setup.runtime(setup.services()).await?;

    let mine = entries(&runtime, bob(), json!({"last_n": 1000})).await?;
    let seen: Vec<(u64, &str, &str)> = mine
        .iter()
        .map(|e| {
            (e["seq"].as_u64().unwrap_or(0), e["actor"].as_str().unwrap_or(""), e["command"].as_str().unwrap_or(""))
        })
        .collect();
    // Not alice's, not the API key's that shares his name, not the system's.
    assert_eq!(seen, [(4, "bob", "list_dir {\"path\":\".\"}"), (2, "bob", "write_file {}")]);
    let newest = entries(&runtime, bob(), json!({"last_n": 1})).await?;
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["seq"], 4);

    let stranger = caller("carol", Role::Operator, AuthMethod::Password);
    assert_eq!(entries(&runtime, stranger, json!({})).await?, Vec::<Value>::new());
    Ok(())
}

#[tokio::test]
async fn last_n_outside_1_to_1000_is_refused_before_the_plugin_runs() -> anyhow::Result<()> {
    let setup = Setup::new()?;
    let runtime = setup.runtime(setup.services()).await?;
    for last_n in [0, 1001] {
        let result = runtime.invoke(&call(alice()), &tool(), json!({"last_n": last_n})).await;
        assert!(
            matches!(&result, Err(PluginError::InvalidParams { message, .. }) if message.contains("last_n")),
            "{result:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn without_a_store_the_log_is_unavailable_and_without_the_grant_the_plugin_is_refused() -> anyhow::Result<()> {
    let setup = Setup::new()?;
    setup.log(history()).await?;
    let no_store = HostServices::new(Arc::clone(&setup.journal) as Arc<dyn AuditSink>, setup.dir.path());
    let runtime = setup.runtime(no_store).await?;
    let result = runtime.invoke(&call(alice()), &tool(), json!({})).await;
    assert!(matches!(&result, Err(PluginError::Tool { kind: ToolErrorKind::Unavailable, .. })), "{result:?}");

    let mut ungranted = Setup::new()?;
    ungranted.config.plugin.insert("audit".into(), PluginSettings::default());
    let runtime = ungranted.runtime(ungranted.services()).await?;
    let refused: Vec<String> = runtime.report().refused.iter().map(|r| r.error.to_string()).collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("`get_audit_log` needs capability `audit-read`"), "{refused:?}");
    assert!(runtime.tool(&tool()).is_none());
    Ok(())
}
