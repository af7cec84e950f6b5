//! What the action policy decides besides running a tool, end to end through the real binary: a
//! rollback (a change freeze stops it, and nothing is undone), and the host capabilities a tool
//! uses (a viewer never gets a tool that writes the workspace).

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::{Server, client, code, policies_dir, send};

/// A policy directory made of the default rules and data (not their tests, which the changes
/// below would fail), `data` edited, and `extra` rule files added.
fn policy_dir(dir: &Path, edit: impl FnOnce(&mut Value), extra: &[(&str, &str)]) -> anyhow::Result<PathBuf> {
    let target = dir.join("policies");
    std::fs::create_dir_all(target.join("toolgate"))?;
    for entry in std::fs::read_dir(policies_dir().join("toolgate"))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.ends_with(".rego") && !name.ends_with("_test.rego") {
            std::fs::copy(&path, target.join("toolgate").join(&name))?;
        }
    }
    let mut data: Value = serde_json::from_str(&std::fs::read_to_string(policies_dir().join("data.json"))?)?;
    edit(&mut data);
    std::fs::write(target.join("data.json"), data.to_string())?;
    for (name, text) in extra {
        std::fs::write(target.join("toolgate").join(name), text)?;
    }
    Ok(target)
}

async fn post(server: &Server, token: &str, path: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
    send(client().post(server.url(path)).bearer_auth(token).json(&body)).await
}

async fn get(server: &Server, token: &str, path: &str) -> anyhow::Result<Value> {
    let (status, body) = send(client().get(server.url(path)).bearer_auth(token)).await?;
    anyhow::ensure!(status.is_success(), "{path}: {status} {body}");
    Ok(body)
}

const FREEZE: &str = r#"package toolgate.action

# A change freeze: nothing that changes state runs until the release is out, rollbacks included.
deny contains {"code": "change_freeze", "message": "changes are frozen until the release is out"} if {
	input.tool.category != "READ"
}
"#;

#[tokio::test]
async fn a_change_freeze_refuses_a_rollback_and_nothing_is_undone() -> anyhow::Result<()> {
    let policies = tempfile::tempdir()?;
    let frozen = policy_dir(policies.path(), |_| {}, &[("freeze.rego", FREEZE)])?.display().to_string();
    let server = Server::start(&[])?;
    let admin = server.admin_token().await?;
    let motd = server.data_path().join("workspace").join("motd");
    std::fs::create_dir_all(motd.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(&motd, "welcome\n")?;
    let call = json!({"params": {"path": "motd", "content": "maintenance tonight\n"}, "justification": "announce the maintenance window"});
    let (status, written) = post(&server, &admin, "/api/v1/tools/write_file/execute", call).await?;
    assert_eq!((status, written["undo_available"].as_bool()), (StatusCode::OK, Some(true)), "{written}");
    let action = written["action_id"].as_str().unwrap_or_default().to_owned();

    // The freeze starts: the same store, a policy that refuses every change.
    let server = Server::start_in(server.stop()?, &[("TOOLGATE_POLICY_DIR", &frozen)])?;
    let rollback = format!("/api/v1/actions/{action}/rollback");
    let (status, refused) =
        post(&server, &admin, &rollback, json!({"justification": "the window was cancelled"})).await?;
    assert_eq!((status, code(&refused)), (StatusCode::FORBIDDEN, "change_freeze"), "{refused}");
    let denied = refused["error"]["details"]["action_id"].as_str().unwrap_or_default().to_owned();
    let record = get(&server, &admin, &format!("/api/v1/actions/{denied}")).await?;
    assert_eq!(
        (record["operation"].as_str(), record["status"].as_str(), record["rollback_of"].as_str()),
        (Some("rollback"), Some("denied"), Some(action.as_str())),
        "{record}"
    );
    assert_eq!(std::fs::read_to_string(&motd)?, "maintenance tonight\n", "nothing was undone");
    let stored = get(&server, &admin, &format!("/api/v1/actions/{action}")).await?;
    assert_eq!((stored["status"].as_str(), stored["undo_available"].as_bool()), (Some("completed"), Some(true)));
    // The refusal is an audit entry of its own, with the decision.
    let entries = server.audit_of(&admin, &denied).await?;
    let kinds: Vec<&str> = entries.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, ["decision"], "{entries:?}");
    assert_eq!((entries[0]["allowed"].as_bool(), entries[0]["reason"].as_str()), (Some(false), Some("change_freeze")));

    // The freeze over, the undo record is still there and applies once.
    let server = Server::start_in(server.stop()?, &[])?;
    let (status, undone) =
        post(&server, &admin, &rollback, json!({"justification": "the window was cancelled"})).await?;
    assert_eq!((status, undone["status"].as_str()), (StatusCode::OK, Some("completed")), "{undone}");
    assert_eq!(std::fs::read_to_string(&motd)?, "welcome\n");
    Ok(())
}

#[tokio::test]
async fn a_viewer_never_gets_a_tool_that_writes_the_workspace_whatever_its_category() -> anyhow::Result<()> {
    // A policy that lets viewers run every category: only the capability rule stands in the way.
    let policies = tempfile::tempdir()?;
    let lax = policy_dir(
        policies.path(),
        |data| data["roles"]["viewer"]["categories"] = json!(["READ", "SAFE", "MODERATE", "SENSITIVE", "CRITICAL"]),
        &[],
    )?;
    let lax = lax.display().to_string();
    let server = Server::start(&[("TOOLGATE_POLICY_DIR", &lax)])?;
    let admin = server.admin_token().await?;
    let viewer = server.add_user(&admin, "vera", "viewer").await?;
    let workspace = server.data_path().join("workspace");
    std::fs::create_dir_all(&workspace)?;

    let call = json!({"params": {"path": "notes.txt", "content": "hi\n"}, "justification": "leave a note for the night shift"});
    let (status, body) = post(&server, &viewer, "/api/v1/tools/write_file/execute", call).await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "capability_not_allowed"), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("`workspace-write`")), "{body}");
    assert!(!workspace.join("notes.txt").exists(), "nothing was written");

    // The policy input carries the capabilities of the tool's manifest.
    let evaluate = json!({"tool": "write_file", "params": {"path": "notes.txt", "content": "hi\n"}});
    let (status, answer) = post(&server, &viewer, "/api/v1/policy/evaluate", evaluate).await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["input"]["tool"]["capabilities"], json!(["workspace-read", "workspace-write"]), "{answer}");
    // Reading stays open to the viewer; an admin may write.
    let (status, listed) =
        post(&server, &viewer, "/api/v1/tools/list_dir/execute", json!({"params": {"path": "."}})).await?;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let call = json!({"params": {"path": "notes.txt", "content": "hi\n"}, "justification": "leave a note for the night shift"});
    let (status, written) = post(&server, &admin, "/api/v1/tools/write_file/execute", call).await?;
    assert_eq!(status, StatusCode::OK, "{written}");
    Ok(())
}
