//! `toolgate serve` as a whole: what it refuses at start-up and how it degrades.

use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::{Server, client, run_cli};

#[tokio::test]
async fn without_docker_the_server_serves_and_says_the_sandbox_is_unavailable() -> anyhow::Result<()> {
    let server = Server::start(&[("DOCKER_HOST", "unix:///nonexistent/docker.sock")])?;
    let res = client().get(server.url("/healthz")).send().await?;
    assert_eq!(res.status(), StatusCode::OK);

    let res = client().get(server.url("/readyz")).send().await?;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Value = res.json().await?;
    assert_eq!(ready["components"]["sandbox"], "unavailable", "{ready}");
    assert_eq!(
        (ready["components"]["policy"].as_str(), ready["components"]["plugins"].as_str()),
        (Some("ok"), Some("ok"))
    );

    // What needs no sandbox still works.
    let token = server.admin_token().await?;
    let res = client()
        .post(server.url("/api/v1/policy/evaluate"))
        .bearer_auth(&token)
        .json(&json!({"tool": "disk_usage"}))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(server.stderr().contains("sandbox unavailable"), "the reason is logged");
    Ok(())
}

#[test]
fn no_valid_policy_set_means_no_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(policies.join("toolgate"))?;
    std::fs::write(policies.join("toolgate/action.rego"), "package toolgate.action\n\ndecision := {\"allow\": true\n")?;
    let policy_dir = policies.display().to_string();
    let out = run_cli(dir.path(), &[("TOOLGATE_POLICY_DIR", policy_dir.as_str())], &["serve"], "")?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("action.rego"), "the error names the broken file: {stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"), "it must not serve");
    Ok(())
}

/// The embedded defaults grant every built-in plugin and declare the sandbox profiles they run
/// in, so all eight load on any machine: where a profile's host paths are missing (no systemd
/// here, say), its tools answer `unavailable` when called, and nothing is refused at start-up.
#[tokio::test]
async fn with_the_embedded_defaults_every_built_in_plugin_loads() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = run_cli(dir.path(), &[], &["plugins", "list", "--json"], "")?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing: Value = serde_json::from_slice(&out.stdout)?;
    let mut names: Vec<&str> =
        listing["plugins"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["apt", "audit", "command", "disk", "docker", "files", "network", "systemd"], "{listing}");
    assert_eq!(listing["refused"], json!([]), "{listing}");

    let server = Server::start(&[("TOOLGATE_LOG", "info")])?;
    let res = client().get(server.url("/readyz")).send().await?;
    let ready: Value = res.json().await?;
    assert_eq!(ready["components"]["plugins"], "ok", "{ready}");
    let stderr = server.stderr();
    assert_eq!(stderr.matches("plugin loaded").count(), 8, "{stderr}");
    // A refused plugin is an ERROR line naming it; a grant without its plugin a warning.
    assert!(!stderr.contains("ERROR") && !stderr.contains("not loaded"), "{stderr}");
    Ok(())
}

fn mode(path: &std::path::Path) -> anyhow::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

/// The data directory holds password hashes and pending actions' raw parameters; stdout and
/// stderr end up in journals other users read.
#[tokio::test]
async fn a_first_start_keeps_the_data_private_and_writes_the_admin_password_only_to_a_private_file()
-> anyhow::Result<()> {
    let parent = tempfile::tempdir()?;
    let data = parent.path().join("new/data");
    let data_dir = data.display().to_string();
    let server = Server::start(&[("TOOLGATE_DATA_DIR", &data_dir), ("TOOLGATE_LOG", "debug")])?;
    let file = data.join("initial-admin-password");
    assert!(server.stdout.contains(&format!("password file: {}", file.display())), "{}", server.stdout);
    let password = std::fs::read_to_string(&file)?.trim().to_owned();
    assert!(password.len() >= 16, "a generated password");
    assert!(server.login("admin", &password).await.is_ok());
    let (stdout, stderr) = (server.stdout.clone(), server.stderr());
    assert!(!stdout.contains(&password) && !stderr.contains(&password), "the password was printed");
    assert_eq!(mode(&data)?, 0o700);
    assert_eq!(mode(&data.join("toolgate.redb"))?, 0o600);
    assert_eq!(mode(&file)?, 0o600);
    Ok(())
}

#[tokio::test]
async fn a_data_dir_and_database_open_to_others_are_restricted_at_start() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start(&[])?;
    let password = server.admin_password.clone().unwrap_or_default();
    let data = server.stop()?;
    let db = data.path().join("toolgate.redb");
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644))?;

    let server = Server::start_in(data, &[])?;
    assert_eq!((mode(server.data_path())?, mode(&db)?), (0o700, 0o600));
    let stderr = server.stderr();
    assert_eq!(stderr.matches("restricted to its owner").count(), 2, "{stderr}");
    assert_eq!(server.admin_password, None, "a restart writes no new password");
    server.login("admin", &password).await?;
    Ok(())
}
