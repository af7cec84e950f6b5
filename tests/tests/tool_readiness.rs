//! A tool that cannot work on this host is named as such: `/readyz` lists it (the server stays
//! ready for every other tool), `GET /api/v1/tools` says why, and its call answers
//! `unavailable` with the same reason, nothing run.

use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::{Server, client, code, require_docker, send};

#[tokio::test]
async fn a_profile_whose_image_is_missing_makes_its_tools_unavailable_by_name() -> anyhow::Result<()> {
    require_docker()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("toolgate.toml");
    std::fs::write(&config, "[sandbox.profiles.journal]\nimage = \"toolgate-missing:0\"\n")?;
    let config = config.display().to_string();
    let server = Server::start(&[("TOOLGATE_CONFIG", config.as_str())])?;

    let res = client().get(server.url("/readyz")).send().await?;
    assert_eq!(res.status(), StatusCode::OK, "every other tool serves");
    let ready: Value = res.json().await?;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["unavailable_tools"], json!(["systemd_logs"]), "{ready}");
    assert!(!ready.to_string().contains("toolgate-missing"), "no reason published unauthenticated: {ready}");

    let admin = server.admin_token().await?;
    let (status, list) = send(client().get(server.url("/api/v1/tools")).bearer_auth(&admin)).await?;
    assert_eq!(status, StatusCode::OK, "{list}");
    let tools = list["tools"].as_array().cloned().unwrap_or_default();
    let logs = tools.iter().find(|t| t["name"] == "systemd_logs").cloned().unwrap_or_default();
    let reason = logs["unavailable"].as_str().unwrap_or_default();
    assert!(reason.contains("image `toolgate-missing:0` of sandbox profile `journal`"), "{logs}");
    let status_tool = tools.iter().find(|t| t["name"] == "systemd_status").cloned().unwrap_or_default();
    assert!(status_tool.get("unavailable").is_none(), "a tool without that profile is fine: {status_tool}");

    let call = json!({"params": {"unit": "nginx"}});
    let url = server.url("/api/v1/tools/systemd_logs/execute");
    let (status, body) = send(client().post(url).bearer_auth(&admin).json(&call)).await?;
    assert_eq!((status, code(&body)), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"), "{body}");
    Ok(())
}
