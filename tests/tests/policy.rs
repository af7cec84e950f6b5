//! `POST /api/v1/policy/evaluate` against the real binary, the repository's default policies and
//! the built-in plugins (`cargo xtask plugins`): what a call would be decided, nothing executed;
//! and the shipped policy data, which names built-in tools only.

use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::{Server, client, code, policies_dir, run_cli};

async fn evaluate(server: &Server, token: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
    let res = client().post(server.url("/api/v1/policy/evaluate")).bearer_auth(token).json(&body).send().await?;
    Ok((res.status(), res.json().await?))
}

fn reason_codes(evaluation: &Value) -> Vec<&str> {
    evaluation["decision"]["reasons"].as_array().into_iter().flatten().filter_map(|r| r["code"].as_str()).collect()
}

#[tokio::test]
async fn evaluate_explains_what_a_call_would_be_decided() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let admin = server.admin_token().await?;
    let res = client()
        .post(server.url("/api/v1/users"))
        .bearer_auth(&admin)
        .json(&json!({"username": "vera", "password": "Vi3wer-pass!", "role": "viewer"}))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::CREATED);
    let viewer = server.login("vera", "Vi3wer-pass!").await?;

    // A viewer may read; the decision carries the policy revision and the exact input.
    let (status, read) =
        evaluate(&server, &viewer, json!({"tool": "read_file", "params": {"path": "notes.txt"}})).await?;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["decision"]["allow"], true, "{read}");
    assert!(read["decision"]["revision"].as_str().is_some_and(|r| r.starts_with("sha256:")), "{read}");
    assert_eq!(
        (read["input"]["dry_run"].as_bool(), read["input"]["caller"]["role"].as_str()),
        (Some(true), Some("viewer"))
    );

    // ...but not write.
    let write = json!({"tool": "write_file", "params": {"path": "notes.txt", "content": "x"}});
    let (status, denied) = evaluate(&server, &viewer, write.clone()).await?;
    assert_eq!((status, denied["decision"]["allow"].as_bool()), (StatusCode::OK, Some(false)), "{denied}");
    assert!(reason_codes(&denied).contains(&"role_insufficient"), "{denied}");

    // An admin needs a justification for a SENSITIVE tool; with one, verify and rollback are required.
    let (_, unjustified) = evaluate(&server, &admin, write.clone()).await?;
    assert!(reason_codes(&unjustified).contains(&"justification_required"), "{unjustified}");
    let mut justified = write;
    justified["justification"] = json!("rotate the notes file for OPS-42");
    let (_, allowed) = evaluate(&server, &admin, justified).await?;
    assert_eq!(allowed["decision"]["allow"], true, "{allowed}");
    let requirements = allowed["decision"]["requirements"].as_array().cloned().unwrap_or_default();
    assert!(requirements.contains(&json!("verify")) && requirements.contains(&json!("rollback")), "{allowed}");
    Ok(())
}

#[tokio::test]
async fn evaluate_refuses_unknown_tools_bad_params_and_anonymous_callers() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let admin = server.admin_token().await?;

    let (status, body) = evaluate(&server, &admin, json!({"tool": "format_disk"})).await?;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "unknown_tool"), "{body}");

    let (status, body) = evaluate(&server, &admin, json!({"tool": "read_file", "params": {"path": 7}})).await?;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_params"), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("/path")), "{body}");

    let (status, body) = evaluate(&server, &admin, json!({"tool": "read_file", "extra": 1})).await?;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "bad_request"), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("extra")), "{body}");

    let res = client().post(server.url("/api/v1/policy/evaluate")).json(&json!({"tool": "read_file"})).send().await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    Ok(())
}

#[test]
fn the_shipped_policy_data_names_only_built_in_tools() -> anyhow::Result<()> {
    // The built-in plugins' tools, as `toolgate plugins list` reports them.
    let dir = tempfile::tempdir()?;
    let out = run_cli(dir.path(), &[], &["plugins", "list", "--json"], "")?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing: Value = serde_json::from_slice(&out.stdout)?;
    let mut built_in = std::collections::BTreeMap::new();
    for plugin in listing["plugins"].as_array().into_iter().flatten() {
        for tool in plugin["tools"].as_array().into_iter().flatten() {
            built_in.insert(tool["name"].as_str().unwrap_or_default().to_owned(), plugin["name"].clone());
        }
    }
    assert!(built_in.contains_key("run_command") && built_in.contains_key("disk_usage"), "{listing}");

    let data: Value = serde_json::from_str(&std::fs::read_to_string(policies_dir().join("data.json"))?)?;
    let tools = data["tools"].as_object().cloned().unwrap_or_default();
    assert!(!tools.is_empty(), "no exec allowlist in the shipped data");
    for (name, entry) in &tools {
        let plugin = built_in.get(name);
        assert!(plugin.is_some(), "the shipped data allowlists `{name}`, which no built-in plugin provides");
        if let Some(pinned) = entry.get("plugin") {
            assert_eq!(plugin, Some(pinned), "`{name}` is pinned to another plugin than the built-in one");
        }
    }
    Ok(())
}
