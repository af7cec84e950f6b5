//! The execute pipeline end to end: the real binary, the built-in plugins plus the `governed`
//! fixture (SAFE, SENSITIVE with a failing verify, CRITICAL) and the `well_behaved` one (its
//! `run_echo` takes a secret) built from source, the durable audit log in redb.

use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::ReadableTable as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::{Server, USER_PASSWORD, client, code, plugins_dir, policies_with_fixtures, run_cli, send};

/// The fixtures every test server loads, with their grants.
const FIXTURES: [(&str, &str); 2] = [
    ("governed", r#"["workspace-read", "workspace-write"]"#),
    ("well_behaved", r#"["exec:default", "containers-read", "workspace-read", "workspace-write"]"#),
];

/// A plugin directory with the built-ins and the fixtures, and a config granting them.
fn setup(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    for entry in std::fs::read_dir(plugins_dir())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            std::os::unix::fs::symlink(&path, plugins.join(path.file_name().unwrap_or_default()))?;
        }
    }
    let mut config_text = String::new();
    for (name, grants) in FIXTURES {
        let fixture = plugins_dir().with_file_name("fixtures").join(format!("{name}.wasm"));
        anyhow::ensure!(fixture.exists(), "{} missing: run `cargo xtask plugins`", fixture.display());
        std::os::unix::fs::symlink(&fixture, plugins.join(format!("{name}.wasm")))?;
        config_text += &format!("[plugins.plugin.{name}]\ngrants = {grants}\n");
    }
    let config = dir.join("toolgate.toml");
    std::fs::write(&config, config_text)?;
    Ok((plugins, config))
}

struct Env {
    server: Server,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn start(extra: &[(&str, &str)]) -> anyhow::Result<Env> {
        let dir = tempfile::tempdir()?;
        let (plugins, config) = setup(dir.path())?;
        // The shipped policies allowlist no fixture: a copy adds `run_echo`'s commands.
        let policies = policies_with_fixtures(dir.path())?.display().to_string();
        let (plugins, config) = (plugins.display().to_string(), config.display().to_string());
        let mut env = vec![
            ("TOOLGATE_PLUGINS_DIR", plugins.as_str()),
            ("TOOLGATE_CONFIG", config.as_str()),
            ("TOOLGATE_POLICY_DIR", policies.as_str()),
            ("TOOLGATE_HTTP_RATE_LIMITS_EXEC_REQUESTS", "10000"),
        ];
        env.extend_from_slice(extra);
        // `bob`, made by the host like `admin`, is a second person for the two-person rule.
        let server = Server::start_with_admins(&env, &["admin", "bob"])?;
        let admin = server.admin_token().await?;
        Ok(Env { server, admin, _dir: dir })
    }

    async fn user(&self, name: &str, role: &str) -> anyhow::Result<String> {
        self.server.add_user(&self.admin, name, role).await
    }

    /// Log in `bob`, the second admin the host created.
    async fn bob(&self) -> anyhow::Result<String> {
        self.server.login("bob", USER_PASSWORD).await
    }

    async fn execute(&self, token: &str, tool: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        send(client().post(self.server.url(&format!("/api/v1/tools/{tool}/execute"))).bearer_auth(token).json(&body))
            .await
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        send(client().post(self.server.url(path)).bearer_auth(token).json(&body)).await
    }

    async fn get(&self, token: &str, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        send(client().get(self.server.url(path)).bearer_auth(token)).await
    }

    fn workspace(&self) -> PathBuf {
        self.server.data_path().join("workspace")
    }

    /// The audit entries of `action`, oldest first.
    async fn audit_of(&self, action: &str) -> anyhow::Result<Vec<Value>> {
        self.server.audit_of(&self.admin, action).await
    }
}

fn kinds(entries: &[Value]) -> Vec<&str> {
    entries.iter().filter_map(|e| e["kind"].as_str()).collect()
}

#[tokio::test]
async fn a_viewer_is_denied_a_safe_tool_and_sees_only_read_tools() -> anyhow::Result<()> {
    let env = Env::start(&[]).await?;
    let viewer = env.user("vera", "viewer").await?;
    let (status, body) = env.execute(&viewer, "stamp", json!({"params": {"label": "x"}})).await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "role_insufficient"), "{body}");
    let action = body["error"]["details"]["action_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(body["error"]["details"]["status"], "denied");
    assert_eq!(body["error"]["details"]["decision"]["allow"], false);
    assert!(!env.workspace().join("stamps.log").exists(), "nothing ran");
    // The action and its audit entry are stored.
    let (status, stored) = env.get(&env.admin, &format!("/api/v1/actions/{action}")).await?;
    assert_eq!((status, stored["status"].as_str()), (StatusCode::OK, Some("denied")), "{stored}");
    let audit = env.audit_of(&action).await?;
    assert_eq!(kinds(&audit), ["decision"]);
    assert_eq!((audit[0]["allowed"].as_bool(), audit[0]["reason"].as_str()), (Some(false), Some("role_insufficient")));
    assert_eq!((audit[0]["actor"].as_str(), audit[0]["role"].as_str()), (Some("vera"), Some("viewer")));
    // A READ call is one entry: its decision and its result together.
    std::fs::create_dir_all(env.workspace())?;
    let (status, body) = env.execute(&viewer, "list_dir", json!({"params": {"path": "."}})).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let read_action = body["action_id"].as_str().unwrap_or_default().to_owned();
    let read = env.audit_of(&read_action).await?;
    assert_eq!(kinds(&read), ["action_completed"]);
    assert!(read[0]["detail"]["decision"]["revision"].as_str().is_some_and(|r| r.starts_with("sha256:")), "{read:?}");
    assert_eq!(read[0]["detail"]["params"], json!({"path": "."}));
    // The tool list shows what the viewer may run: READ tools only.
    let (_, tools) = env.get(&viewer, "/api/v1/tools").await?;
    let names: Vec<&str> = tools["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"read_file") && !names.contains(&"stamp") && !names.contains(&"write_file"), "{names:?}");
    // The viewer cannot read another user's actions, nor the audit log.
    let (status, _) = env.get(&viewer, "/api/v1/audit").await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Not even those of an API key that shares her name.
    let (status, created) =
        env.post(&env.admin, "/api/v1/keys", json!({"name": "vera", "role": "viewer", "expires_in_days": 1})).await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap_or_default().to_owned();
    let (_, body) = env.execute(&key, "stamp", json!({"params": {"label": "y"}})).await?;
    let keys_action = body["error"]["details"]["action_id"].as_str().unwrap_or_default().to_owned();
    assert!(!keys_action.is_empty(), "{body}");
    let ids = |page: &Value| -> Vec<String> {
        page["actions"].as_array().into_iter().flatten().filter_map(|a| a["id"].as_str().map(str::to_owned)).collect()
    };
    let (status, page) = env.get(&viewer, "/api/v1/actions").await?;
    assert_eq!(
        (status, ids(&page)),
        (StatusCode::OK, vec![read_action.clone(), action.clone()]),
        "newest first: {page}"
    );
    let (_, page) = env.get(&key, "/api/v1/actions").await?;
    assert_eq!(ids(&page), std::slice::from_ref(&keys_action), "{page}");
    let (status, body) = env.get(&viewer, &format!("/api/v1/actions/{keys_action}")).await?;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "action_not_found"), "{body}");
    let (status, _) = env.get(&key, &format!("/api/v1/actions/{action}")).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, page) = env.get(&env.admin, "/api/v1/actions?actor=vera").await?;
    assert_eq!(ids(&page), [keys_action, read_action, action], "an admin sees all three, newest first: {page}");
    Ok(())
}

#[tokio::test]
async fn sensitive_needs_a_justification_and_a_manual_rollback_restores_the_file() -> anyhow::Result<()> {
    let env = Env::start(&[]).await?;
    std::fs::create_dir_all(env.workspace())?;
    std::fs::write(env.workspace().join("motd"), "welcome\n")?;
    let call = |justification: Option<&str>| json!({"params": {"path": "motd", "content": "maintenance tonight\n"}, "justification": justification});
    let (status, body) = env.execute(&env.admin, "write_file", call(None)).await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "justification_required"), "{body}");
    // A dry run answers the decision and runs nothing.
    let mut dry = call(Some("announce the maintenance window"));
    dry["dry_run"] = json!(true);
    let (status, body) = env.execute(&env.admin, "write_file", dry).await?;
    assert_eq!(
        (status, body["status"].as_str(), body["decision"]["allow"].as_bool()),
        (StatusCode::OK, Some("dry_run"), Some(true))
    );
    assert!(body.get("output").is_none(), "{body}");
    assert_eq!(std::fs::read_to_string(env.workspace().join("motd"))?, "welcome\n");

    let (status, body) = env.execute(&env.admin, "write_file", call(Some("announce the maintenance window"))).await?;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("completed")), "{body}");
    assert_eq!(body["verify"]["ok"], true, "SENSITIVE is verified: {body}");
    assert_eq!(body["undo_available"], true);
    assert!(body["audit_seq"].as_u64().is_some());
    assert_eq!(std::fs::read_to_string(env.workspace().join("motd"))?, "maintenance tonight\n");
    let action = body["action_id"].as_str().unwrap_or_default().to_owned();

    let rollback = format!("/api/v1/actions/{action}/rollback");
    let (status, refused) = env.post(&env.admin, &rollback, json!({})).await?;
    assert_eq!((status, code(&refused)), (StatusCode::FORBIDDEN, "justification_required"), "{refused}");
    let (status, undone) =
        env.post(&env.admin, &rollback, json!({"justification": "the window was cancelled"})).await?;
    assert_eq!((status, undone["status"].as_str()), (StatusCode::OK, Some("completed")), "{undone}");
    assert_eq!(std::fs::read_to_string(env.workspace().join("motd"))?, "welcome\n", "restored");
    // Never twice.
    let (status, again) = env.post(&env.admin, &rollback, json!({"justification": "the window was cancelled"})).await?;
    assert_eq!((status, code(&again)), (StatusCode::CONFLICT, "already_rolled_back"), "{again}");
    let (_, stored) = env.get(&env.admin, &format!("/api/v1/actions/{action}")).await?;
    assert_eq!(stored["status"], "rolled_back");
    assert_eq!(stored["rolled_back_by"], undone["action_id"]);
    let states: Vec<&str> =
        stored["history"].as_array().into_iter().flatten().filter_map(|s| s["state"].as_str()).collect();
    assert_eq!(states, ["requested", "running", "verifying", "completed", "rolled_back"]);
    // The audit entry of the write carries the params, the justification and the decision.
    let audit = env.audit_of(&action).await?;
    assert_eq!(kinds(&audit), ["decision", "action_completed"]);
    assert_eq!(audit[0]["detail"]["justification"], "announce the maintenance window");
    assert_eq!(audit[0]["detail"]["params"]["path"], "motd");
    assert!(audit[0]["detail"]["decision"]["revision"].as_str().is_some_and(|r| r.starts_with("sha256:")));
    Ok(())
}

#[tokio::test]
async fn a_critical_call_waits_for_a_second_admin_and_runs_exactly_once() -> anyhow::Result<()> {
    let env = Env::start(&[]).await?;
    let second = env.bob().await?;
    let call = json!({"params": {"label": "release-42"}, "justification": "ship release 42 to production"});
    let (status, body) = env.execute(&env.admin, "launch", call).await?;
    assert_eq!((status, body["status"].as_str()), (StatusCode::ACCEPTED, Some("pending_approval")), "{body}");
    assert!(body["approval"]["expires_at"].as_str().is_some());
    let action = body["action_id"].as_str().unwrap_or_default().to_owned();
    assert!(!env.workspace().join("launches.log").exists(), "nothing runs before the approval");

    let (_, pending) = env.get(&second, "/api/v1/approvals").await?;
    assert_eq!(pending["approvals"][0]["id"], action.as_str(), "{pending}");
    let approve = format!("/api/v1/approvals/{action}/approve");
    let (status, body) = env.post(&env.admin, &approve, json!({"comment": "lgtm"})).await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "self_approval"), "{body}");

    let (status, body) = env.post(&second, &approve, json!({"comment": "checked the release notes"})).await?;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("completed")), "{body}");
    assert_eq!(body["output"]["lines"], 1);
    let (status, body) = env.post(&second, &approve, json!({})).await?;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "not_pending"), "{body}");
    assert_eq!(std::fs::read_to_string(env.workspace().join("launches.log"))?, "release-42\n", "ran once");

    let (_, stored) = env.get(&env.admin, &format!("/api/v1/actions/{action}")).await?;
    let states: Vec<&str> =
        stored["history"].as_array().into_iter().flatten().filter_map(|s| s["state"].as_str()).collect();
    assert_eq!(states, ["requested", "pending_approval", "approved", "running", "verifying", "completed"]);
    assert_eq!(stored["approval"]["decided_by"], "bob");
    let audit = env.audit_of(&action).await?;
    assert_eq!(kinds(&audit), ["approval_requested", "approval_granted", "action_completed"]);
    assert_eq!(audit[1]["actor"], "bob");
    let (_, pending) = env.get(&second, "/api/v1/approvals").await?;
    assert_eq!(pending["approvals"], json!([]));
    Ok(())
}

#[tokio::test]
async fn an_expired_approval_does_not_run() -> anyhow::Result<()> {
    let env = Env::start(&[("TOOLGATE_GOVERNANCE_APPROVAL_TTL_SECS", "1")]).await?;
    let second = env.bob().await?;
    let call = json!({"params": {"label": "late"}, "justification": "ship release 43 to production"});
    let (status, body) = env.execute(&env.admin, "launch", call).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let action = body["action_id"].as_str().unwrap_or_default().to_owned();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = env.post(&second, &format!("/api/v1/approvals/{action}/approve"), json!({})).await?;
    assert!(
        (status == StatusCode::CONFLICT) && ["approval_expired", "not_pending"].contains(&code(&body)),
        "{status} {body}"
    );
    assert!(!env.workspace().join("launches.log").exists(), "never ran");
    let (_, stored) = env.get(&env.admin, &format!("/api/v1/actions/{action}")).await?;
    assert_eq!(stored["status"], "expired", "{stored}");
    assert_eq!(kinds(&env.audit_of(&action).await?), ["approval_requested", "approval_expired"]);
    Ok(())
}

#[tokio::test]
async fn a_failed_verify_rolls_back_automatically_and_the_audit_shows_each_step() -> anyhow::Result<()> {
    let env = Env::start(&[]).await?;
    std::fs::create_dir_all(env.workspace())?;
    std::fs::write(env.workspace().join("config.ini"), "mode=safe\n")?;
    let call =
        json!({"params": {"path": "config.ini", "content": "mode=fast\n"}, "justification": "try the fast mode today"});
    let (status, body) = env.execute(&env.admin, "fragile_write", call).await?;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "verify_failed"), "{body}");
    let details = &body["error"]["details"];
    assert_eq!(details["status"], "rolled_back");
    assert_eq!(details["verify"]["ok"], false);
    assert_eq!(std::fs::read_to_string(env.workspace().join("config.ini"))?, "mode=safe\n", "rolled back");
    let action = details["action_id"].as_str().unwrap_or_default().to_owned();
    let (_, stored) = env.get(&env.admin, &format!("/api/v1/actions/{action}")).await?;
    let states: Vec<&str> =
        stored["history"].as_array().into_iter().flatten().filter_map(|s| s["state"].as_str()).collect();
    assert_eq!(states, ["requested", "running", "verifying", "failed", "rolled_back"]);
    let rollback = stored["rolled_back_by"].as_str().unwrap_or_default().to_owned();
    assert_eq!(kinds(&env.audit_of(&action).await?), ["decision", "action_failed"]);
    assert_eq!(kinds(&env.audit_of(&rollback).await?), ["rollback_started", "rollback_completed"]);
    Ok(())
}

#[tokio::test]
async fn the_exec_rate_limit_trips_at_its_limit_and_recovers() -> anyhow::Result<()> {
    let env = Env::start(&[
        ("TOOLGATE_HTTP_RATE_LIMITS_EXEC_REQUESTS", "3"),
        ("TOOLGATE_HTTP_RATE_LIMITS_EXEC_PERIOD_SECS", "3"),
    ])
    .await?;
    let call = || env.execute(&env.admin, "list_dir", json!({"params": {"path": "."}}));
    let mut accepted = 0;
    let (status, body) = loop {
        let (status, body) = call().await?;
        if status == StatusCode::TOO_MANY_REQUESTS || accepted > 10 {
            break (status, body);
        }
        accepted += 1;
    };
    assert_eq!((accepted, status, code(&body)), (3, StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{body}");
    assert_eq!(body["error"]["details"]["class"], "exec");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, body) = call().await?;
    assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "recovered: {body}");
    assert!(
        env.server
            .security_events()
            .iter()
            .any(|e| e["event"] == "rate_limit_triggered" && e["details"]["class"] == "exec"),
        "the trigger is a security event"
    );
    Ok(())
}

/// Open the stopped server's store with redb and change its audit table with `change`.
fn edit_audit(
    data_dir: &Path,
    change: impl FnOnce(&mut redb::Table<'_, u64, &[u8]>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    const AUDIT: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit_v1");
    let db = redb::Database::create(data_dir.join("toolgate.redb"))?;
    let tx = db.begin_write()?;
    change(&mut tx.open_table(AUDIT)?)?;
    tx.commit()?;
    Ok(())
}

/// Rewrite entry `seq`'s event with `edit`.
fn tamper(data_dir: &Path, seq: u64, edit: impl FnOnce(&mut Value)) -> anyhow::Result<()> {
    edit_audit(data_dir, |table| {
        let bytes = table.get(seq)?.map(|v| v.value().to_vec()).ok_or_else(|| anyhow::anyhow!("no entry {seq}"))?;
        let mut entry: Value = serde_json::from_slice(&bytes)?;
        edit(&mut entry["event"]);
        table.insert(seq, serde_json::to_vec(&entry)?.as_slice())?;
        Ok(())
    })
}

#[tokio::test]
async fn the_chain_verifies_and_an_edited_entry_is_named() -> anyhow::Result<()> {
    let env = Env::start(&[]).await?;
    let viewer = env.user("vera", "viewer").await?;
    for label in ["a", "b", "c"] {
        env.execute(&env.admin, "stamp", json!({"params": {"label": label}})).await?;
        env.execute(&viewer, "stamp", json!({"params": {"label": label}})).await?;
    }
    let (_, audit) = env.get(&env.admin, "/api/v1/audit?last_n=1000").await?;
    let denied = audit["entries"]
        .as_array()
        .into_iter()
        .flatten()
        // The oldest: the newest entry is removed below.
        .rfind(|e| e["allowed"] == false && e["actor"] == "vera")
        .and_then(|e| e["seq"].as_u64())
        .ok_or_else(|| anyhow::anyhow!("no denial in {audit}"))?;
    let data = env.server.stop()?;
    let dir = data.path().to_path_buf();
    let verify_with = |args: &[&str]| run_cli(&dir, &[], &[&["audit", "verify"], args].concat(), "");
    let verify = || verify_with(&[]);
    let out = verify()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.contains("audit log intact"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The head, printed as an anchor to keep elsewhere.
    let anchor = text.trim().rsplit(' ').next().unwrap_or_default().to_owned();
    let (head, head_hash) = anchor.split_once(':').ok_or_else(|| anyhow::anyhow!("no anchor in {text}"))?;
    let head: u64 = head.parse()?;
    assert_eq!(head_hash.len(), 64, "{text}");
    assert!(verify_with(&["--anchor", &anchor])?.status.success());
    let out = verify_with(&["--anchor", "7"])?;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("expected SEQ:HASH"));

    let export = run_cli(&dir, &[], &["audit", "export"], "")?;
    let lines: Vec<Value> =
        String::from_utf8_lossy(&export.stdout).lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert!(lines.len() >= 6 && lines.windows(2).all(|w| w[1]["prev_hash"] == w[0]["hash"]), "{} lines", lines.len());

    // Remove the newest entry: the rest still chains, only the anchor tells.
    edit_audit(&dir, |table| {
        table.pop_last()?;
        Ok(())
    })?;
    assert!(verify()?.status.success(), "a truncated log still chains");
    let out = verify_with(&["--anchor", &anchor])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&format!("BROKEN at entry {head}: the anchor's entry is missing")), "{text}");

    // Turn a denial into an approval after the fact.
    tamper(&dir, denied, |event| event["allowed"] = json!(true))?;
    let out = verify()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&format!("BROKEN at entry {denied}:")), "{text}");
    Ok(())
}

#[tokio::test]
async fn a_sigkill_during_a_stream_of_calls_loses_no_acknowledged_entry() -> anyhow::Result<()> {
    let env = Env::start(&[]).await?;
    let Env { server, admin, _dir } = env;
    let base = server.base.clone();
    let mut clients = Vec::new();
    for worker in 0..8 {
        let (base, admin) = (base.clone(), admin.clone());
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                let body = json!({"params": {"label": format!("w{worker}-{i}")}});
                let sent = client()
                    .post(format!("{base}/api/v1/tools/stamp/execute"))
                    .bearer_auth(&admin)
                    .json(&body)
                    .send()
                    .await;
                let Ok(res) = sent else { break };
                if res.status() != StatusCode::OK {
                    break;
                }
                let Ok(body) = res.json::<Value>().await else { break };
                acked.push((body["action_id"].as_str().unwrap_or_default().to_owned(), body["audit_seq"].as_u64()));
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let data = server.stop()?; // SIGKILL
    let mut acked = Vec::new();
    for c in clients {
        acked.extend(c.await?);
    }
    assert!(acked.len() > 10, "the stream ran: {} calls acknowledged", acked.len());

    // Restart on the same store and plugins: recovery runs, then stop and check the log.
    let plugins = _dir.path().join("plugins").display().to_string();
    let config = _dir.path().join("toolgate.toml").display().to_string();
    let restarted = Server::start_in(data, &[("TOOLGATE_PLUGINS_DIR", &plugins), ("TOOLGATE_CONFIG", &config)])?;
    let data = restarted.stop()?;
    let dir = data.path().to_path_buf();
    let out = run_cli(&dir, &[], &["audit", "verify"], "")?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let export = run_cli(&dir, &[], &["audit", "export"], "")?;
    let entries: Vec<Value> =
        String::from_utf8_lossy(&export.stdout).lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let by_seq: std::collections::HashMap<u64, &Value> =
        entries.iter().filter_map(|e| Some((e["seq"].as_u64()?, e))).collect();
    for (action, seq) in &acked {
        let seq = seq.ok_or_else(|| anyhow::anyhow!("acknowledged without an audit seq"))?;
        let entry = by_seq.get(&seq).ok_or_else(|| anyhow::anyhow!("acknowledged entry {seq} is missing"))?;
        assert_eq!(entry["event"]["action_id"], action.as_str());
        assert_eq!(entry["event"]["kind"], "action_completed");
    }
    Ok(())
}

#[tokio::test]
async fn an_approval_does_not_run_an_action_whose_requester_was_disabled_meanwhile() -> anyhow::Result<()> {
    let env = Env::start(&[]).await?;
    let carol = env.user("carol", "admin").await?;
    let bob = env.bob().await?;
    let call = json!({"params": {"label": "from-carol"}, "justification": "ship release 44 to production"});
    let (status, body) = env.execute(&carol, "launch", call).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let action = body["action_id"].as_str().unwrap_or_default().to_owned();
    let (status, _) = send(
        client().patch(env.server.url("/api/v1/users/carol")).bearer_auth(&env.admin).json(&json!({"disabled": true})),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = env.post(&bob, &format!("/api/v1/approvals/{action}/approve"), json!({})).await?;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "requester_gone"), "{body}");
    assert!(!env.workspace().join("launches.log").exists(), "never ran");
    Ok(())
}

#[tokio::test]
async fn a_secret_param_is_scrubbed_from_the_argv_the_logs_and_the_errors_it_reaches() -> anyhow::Result<()> {
    // The `well_behaved` fixture's `run_echo` passes its `writeOnly` token into the argv it runs
    // in the real sandbox, logs it, and quotes it when it refuses.
    let env = Env::start(&[("TOOLGATE_LOG", "info")]).await?;
    let token = "tok-3f9a1c77";
    let execute = |text: &str| env.execute(&env.admin, "run_echo", json!({"params": {"text": text, "token": token}}));

    let (status, ran) = execute("hi").await?;
    assert_eq!(status, StatusCode::OK, "{ran}");
    // The caller gets what the command printed: the secret is his own.
    assert_eq!(ran["output"]["stdout"], format!("hi {token}\n"));
    let (status, refused) = execute("reject").await?;
    assert_eq!((status, code(&refused)), (StatusCode::FORBIDDEN, "exec_denied"), "{refused}");
    assert_eq!(
        refused["error"]["message"].as_str().map(|m| m.contains("token [redacted] is not accepted")),
        Some(true)
    );

    let id = ran["action_id"].as_str().unwrap_or_default();
    let entries = env.audit_of(id).await?;
    assert_eq!(kinds(&entries), ["exec_decision", "exec", "action_completed"], "{entries:?}");
    for entry in &entries[..2] {
        assert_eq!(entry["command"], "echo hi '[redacted]'", "{entry}");
        assert_eq!(entry["detail"]["argv"], json!(["echo", "hi", "[redacted]"]), "{entry}");
    }
    assert_eq!(entries[2]["detail"]["params"], json!({"text": "hi", "token": "[redacted]"}));
    let (_, everything) = env.get(&env.admin, "/api/v1/audit?last_n=1000").await?;
    assert!(!everything.to_string().contains(token), "the audit log holds the token: {everything}");
    for action in [id, refused["error"]["details"]["action_id"].as_str().unwrap_or_default()] {
        let (_, stored) = env.get(&env.admin, &format!("/api/v1/actions/{action}")).await?;
        assert!(stored["id"].is_string() && !stored.to_string().contains(token), "{stored}");
    }
    let log = env.server.stderr();
    assert!(log.contains("echoing with token [redacted]") && log.contains("token=[redacted]"), "{log}");
    assert!(!log.contains(token), "the log holds the token: {log}");
    Ok(())
}
