//! `get_audit_log` end to end: the real binary with the built-in plugins, its durable audit log
//! read back through the tool by an admin and by a viewer.

use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::{Server, client, send};

async fn execute(server: &Server, token: &str, tool: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
    send(client().post(server.url(&format!("/api/v1/tools/{tool}/execute"))).bearer_auth(token).json(&body)).await
}

/// `get_audit_log` as `token`: its entries, newest first.
async fn audit_log(server: &Server, token: &str, last_n: u32) -> anyhow::Result<Vec<Value>> {
    let (status, body) = execute(server, token, "get_audit_log", json!({"params": {"last_n": last_n}})).await?;
    anyhow::ensure!(status == StatusCode::OK && body["status"] == "completed", "{status} {body}");
    Ok(body["output"]["entries"].as_array().cloned().unwrap_or_default())
}

fn is_denial_of_write_file_by_vera(entry: &Value) -> bool {
    entry["actor"] == "vera"
        && entry["role"] == "viewer"
        && entry["kind"] == "decision"
        && entry["allowed"] == false
        && entry["reason"] == "role_insufficient"
        && entry["command"].as_str().is_some_and(|c| c.starts_with("write_file "))
}

#[tokio::test]
async fn an_admin_reads_the_previous_calls_and_a_viewer_only_their_own() -> anyhow::Result<()> {
    let server = Server::start(&[("TOOLGATE_HTTP_RATE_LIMITS_EXEC_REQUESTS", "10000")])?;
    std::fs::create_dir_all(server.data_path().join("workspace"))?;
    let admin = server.admin_token().await?;
    let vera = server.add_user(&admin, "vera", "viewer").await?;

    // Vera lists the workspace, then tries a write her role does not allow; then the admin lists.
    let (status, body) = execute(&server, &vera, "list_dir", json!({"params": {"path": "."}})).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let write = json!({"params": {"path": "motd", "content": "hi\n"}, "justification": "a viewer trying to write"});
    let (status, body) = execute(&server, &vera, "write_file", write).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = execute(&server, &admin, "list_dir", json!({"params": {"path": "."}})).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let admin_action = body["action_id"].as_str().unwrap_or_default().to_owned();

    // One entry per READ call (its decision and result together), one for the denial; the
    // reading call's own entry is written when it ends. `last_n` caps what comes back (the
    // logins and the account creation before the calls are entries too).
    let entries = audit_log(&server, &admin, 5).await?;
    assert_eq!(entries.len(), 5, "{entries:#?}");
    let entries: Vec<Value> = entries.into_iter().filter(|e| e["tool"].is_string()).collect();
    assert_eq!(entries.len(), 3, "{entries:#?}");
    assert_eq!(audit_log(&server, &admin, 2).await?.len(), 2);
    let seqs: Vec<u64> = entries.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.len() == 3 && seqs.windows(2).all(|w| w[0] > w[1]), "newest first: {seqs:?}");
    for entry in &entries {
        let timestamp = entry["timestamp"].as_str().unwrap_or_default();
        assert!(timestamp.len() >= 20 && timestamp.contains('T') && timestamp.ends_with('Z'), "{entry}");
        assert!(entry["role"].is_string() && entry["command"].is_string(), "{entry}");
        assert!(entry["allowed"].is_boolean() && entry["reason"].is_string(), "{entry}");
    }
    // The admin's call, completed, and vera's refused write are there.
    assert!(
        entries.iter().any(|e| e["action_id"] == admin_action.as_str()
            && e["kind"] == "action_completed"
            && (e["actor"].as_str(), e["role"].as_str(), e["allowed"].as_bool())
                == (Some("admin"), Some("admin"), Some(true))
            && e["command"] == r#"list_dir {"path":"."}"#),
        "{entries:#?}"
    );
    assert!(entries.iter().any(is_denial_of_write_file_by_vera), "{entries:#?}");

    // Vera may run the tool (READ) but sees only what she did.
    let hers = audit_log(&server, &vera, 1000).await?;
    assert!(hers.iter().all(|e| e["actor"] == "vera"), "{hers:#?}");
    assert!(hers.iter().any(is_denial_of_write_file_by_vera), "{hers:#?}");
    assert!(hers.iter().any(|e| e["kind"] == "action_completed" && e["tool"] == "list_dir"), "{hers:#?}");
    assert!(!hers.iter().any(|e| e["action_id"] == admin_action.as_str()), "{hers:#?}");
    Ok(())
}
