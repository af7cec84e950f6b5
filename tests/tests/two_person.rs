//! The two-person rule holds between people, not names: an approver who owes its account or its
//! authority to the requester (or the reverse, or both to one person), or who got it after the
//! request, is refused with `approval_conflict_of_interest`; an API key never makes an admin.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::{Server, USER_PASSWORD, client, code, plugins_dir, send};

/// A server loading the `governed` fixture (its `launch` tool is CRITICAL), with the admins
/// `admin`, `bob`, `carol` and `dave`, all made by the host: four independent people.
struct Env {
    server: Server,
    admin: String,
    _dir: tempfile::TempDir,
}

fn setup(dir: &Path) -> anyhow::Result<(String, String)> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    let fixture = plugins_dir().with_file_name("fixtures").join("governed.wasm");
    anyhow::ensure!(fixture.exists(), "{} missing: run `cargo xtask plugins`", fixture.display());
    std::os::unix::fs::symlink(&fixture, plugins.join("governed.wasm"))?;
    let config = dir.join("toolgate.toml");
    std::fs::write(&config, "[plugins.plugin.governed]\ngrants = [\"workspace-read\", \"workspace-write\"]\n")?;
    Ok((plugins.display().to_string(), config.display().to_string()))
}

impl Env {
    async fn start() -> anyhow::Result<Env> {
        let dir = tempfile::tempdir()?;
        let (plugins, config) = setup(dir.path())?;
        let env = [
            ("TOOLGATE_PLUGINS_DIR", plugins.as_str()),
            ("TOOLGATE_CONFIG", config.as_str()),
            ("TOOLGATE_HTTP_RATE_LIMITS_EXEC_REQUESTS", "10000"),
            ("TOOLGATE_HTTP_RATE_LIMITS_LOGIN_REQUESTS", "10000"),
        ];
        let server = Server::start_with_admins(&env, &["admin", "bob", "carol", "dave"])?;
        let admin = server.admin_token().await?;
        Ok(Env { server, admin, _dir: dir })
    }

    async fn login(&self, name: &str) -> anyhow::Result<String> {
        self.server.login(name, USER_PASSWORD).await
    }

    async fn request(&self, token: &str, label: &str) -> anyhow::Result<String> {
        let call = json!({"params": {"label": label}, "justification": "ship this release to production"});
        let (status, body) = self.send("POST", token, "/api/v1/tools/launch/execute", call).await?;
        anyhow::ensure!(status == StatusCode::ACCEPTED, "{status} {body}");
        Ok(body["action_id"].as_str().unwrap_or_default().to_owned())
    }

    async fn approve(&self, token: &str, action: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.send("POST", token, &format!("/api/v1/approvals/{action}/approve"), json!({})).await
    }

    async fn send(&self, method: &str, token: &str, path: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        send(client().request(method, self.server.url(path)).bearer_auth(token).json(&body)).await
    }

    /// `name` as an admin account made by the owner of `token`.
    async fn admin_made_by(&self, token: &str, name: &str) -> anyhow::Result<String> {
        self.server.add_user(token, name, "admin").await
    }
}

fn refused_because(status: StatusCode, body: &Value, why: &str) {
    assert_eq!((status, code(body)), (StatusCode::FORBIDDEN, "approval_conflict_of_interest"), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(why), "`{message}` does not say `{why}`");
}

#[tokio::test]
async fn admins_made_by_one_person_cannot_approve_that_persons_or_each_others_requests() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let puppet = env.admin_made_by(&env.admin, "puppet").await?;
    let twin = env.admin_made_by(&env.admin, "twin").await?;
    let deep = env.admin_made_by(&puppet, "deep").await?;

    let action = env.request(&env.admin, "from-admin").await?;
    let (status, body) = env.approve(&puppet, &action).await?;
    refused_because(status, &body, "approver `puppet` was created by the requester `admin`");
    let (status, body) = env.approve(&deep, &action).await?;
    refused_because(status, &body, "owes its account or role to the requester `admin` through `puppet`");

    let from_puppet = env.request(&puppet, "from-puppet").await?;
    let (status, body) = env.approve(&twin, &from_puppet).await?;
    refused_because(status, &body, "both owe their account or role to `admin`");
    let (status, body) = env.approve(&env.admin, &from_puppet).await?;
    refused_because(status, &body, "the requester `puppet` was created by the approver `admin`");

    // Nothing ran; an independent admin approves both.
    assert!(!env.server.data_path().join("workspace/launches.log").exists(), "a refused approval ran");
    let bob = env.login("bob").await?;
    for id in [&action, &from_puppet] {
        let (status, body) = env.approve(&bob, id).await?;
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("completed")), "{body}");
    }

    // Each refusal is an entry of the audit log naming the approver.
    let (_, audit) = env.send("GET", &env.admin, "/api/v1/audit?last_n=1000", Value::Null).await?;
    let refusals: Vec<&Value> =
        audit["entries"].as_array().into_iter().flatten().filter(|e| e["kind"] == "approval_refused").collect();
    assert_eq!(refusals.len(), 4, "{audit}");
    assert!(refusals.iter().all(|e| e["reason"] == "approval_conflict_of_interest" && e["allowed"] == false));
    assert!(refusals.iter().any(|e| e["actor"] == "puppet"));
    Ok(())
}

#[tokio::test]
async fn an_admin_promoted_or_enabled_by_the_requester_or_after_the_request_cannot_approve() -> anyhow::Result<()> {
    let env = Env::start().await?;
    // `bob` owes the admin role to `admin` from now on: demoted, then promoted by `admin`.
    for role in ["viewer", "admin"] {
        let (status, body) = env.send("PATCH", &env.admin, "/api/v1/users/bob", json!({"role": role})).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let action = env.request(&env.admin, "promoted").await?;
    let (status, body) = env.approve(&env.login("bob").await?, &action).await?;
    refused_because(status, &body, "approver `bob` was promoted or enabled by the requester `admin`");

    // `carol` is disabled and enabled again by `dave` after the request: too late, whoever did it.
    let dave = env.login("dave").await?;
    for disabled in [true, false] {
        let (status, body) = env.send("PATCH", &dave, "/api/v1/users/carol", json!({"disabled": disabled})).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = env.approve(&env.login("carol").await?, &action).await?;
    refused_because(status, &body, "approver `carol` was promoted or enabled after the request");
    // A request made after carol's re-enabling is another matter: she owes it to `dave`, who
    // owes nothing to `admin`.
    let later = env.request(&env.admin, "later").await?;
    let (status, body) = env.approve(&env.login("carol").await?, &later).await?;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("completed")), "{body}");

    // Whoever owes anything to `bob` now owes it to `admin`, through him.
    for role in ["viewer", "admin"] {
        let bob = env.login("bob").await?;
        let (status, body) = env.send("PATCH", &bob, "/api/v1/users/dave", json!({"role": role})).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let latest = env.request(&env.admin, "latest").await?;
    let (status, body) = env.approve(&env.login("dave").await?, &latest).await?;
    refused_because(status, &body, "approver `dave` owes its account or role to the requester `admin` through `bob`");
    Ok(())
}

#[tokio::test]
async fn an_api_key_cannot_create_promote_or_enable_an_admin() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let (status, created) = env
        .send("POST", &env.admin, "/api/v1/keys", json!({"name": "ops-bot", "role": "admin", "expires_in_days": 30}))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap_or_default().to_owned();

    let new_admin = json!({"username": "sock", "password": USER_PASSWORD, "role": "admin"});
    let (status, body) = env.send("POST", &key, "/api/v1/users", new_admin).await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "api_key_cannot_grant_admin"), "{body}");
    // It may still make a viewer, whom it then cannot promote.
    let viewer = json!({"username": "sock", "password": USER_PASSWORD, "role": "viewer"});
    assert_eq!(env.send("POST", &key, "/api/v1/users", viewer).await?.0, StatusCode::CREATED);
    let (status, body) = env.send("PATCH", &key, "/api/v1/users/sock", json!({"role": "admin"})).await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "api_key_cannot_grant_admin"), "{body}");
    // Nor enable a disabled admin.
    assert_eq!(
        env.send("PATCH", &env.admin, "/api/v1/users/carol", json!({"disabled": true})).await?.0,
        StatusCode::OK
    );
    let (status, body) = env.send("PATCH", &key, "/api/v1/users/carol", json!({"disabled": false})).await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "api_key_cannot_grant_admin"), "{body}");

    // Nothing stored changed.
    let (_, users) = env.send("GET", &env.admin, "/api/v1/users", Value::Null).await?;
    let of = |name: &str| users.as_array().into_iter().flatten().find(|u| u["username"] == name).cloned();
    assert_eq!(of("sock").map(|u| u["role"].clone()), Some(json!("viewer")));
    assert_eq!(of("carol").map(|u| u["disabled"].clone()), Some(json!(true)));
    Ok(())
}
