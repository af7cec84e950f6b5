//! Router-level tests with `oneshot`: what needs control over the client address.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::*;
use toolgate_core::Secret;
use toolgate_core::model::Role;
use toolgate_governance::audit::ChainKey;

/// State over the repository's default policies and an empty plugin directory (no sandbox).
async fn state(dir: &std::path::Path, general: u32) -> anyhow::Result<AppState> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    state_with(dir, general, plugins).await
}

/// State over the repository's default policies and the plugins of `plugins`, auditing into the
/// store in `dir` (no sandbox).
async fn state_with(dir: &std::path::Path, general: u32, plugins: std::path::PathBuf) -> anyhow::Result<AppState> {
    let mut config = Config {
        jwt_secret: Secret::new("3c9a0f6e21b47d58e90c1a2b3f4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7"),
        ..Config::default()
    };
    config.http.trusted_proxies = vec!["10.9.9.9".into()];
    config.http.rate_limits.general = ratelimit::RateLimit { requests: general, period_secs: 3600 };
    config.policy.dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    config.plugins.dir = plugins;
    let store = Store::open(dir)?;
    let journal = Arc::new(toolgate_governance::Journal::start(store.clone(), ChainKey::random())?);
    let policy = Arc::new(toolgate_policy::PolicyEngine::load(&config.policy)?);
    let services = toolgate_runtime::HostServices::new(journal.clone(), dir.join("workspace"));
    let plugins = Arc::new(toolgate_runtime::PluginRuntime::load(&config.plugins, &dir.join("cache"), services).await?);
    let gateway = Arc::new(crate::gateway::Gateway::assemble(&config, policy, plugins, journal, None));
    store.insert_user(&toolgate_store::UserRecord::new(
        "alice",
        toolgate_auth::password::hash("Al1ce-pass!", 4)?,
        Role::Operator,
    ))?;
    Ok(AppState::new(config, store, gateway)?)
}

fn me(token: &str, from: [u8; 4]) -> anyhow::Result<Request<Body>> {
    let mut req =
        Request::get("/api/v1/auth/me").header("authorization", format!("Bearer {token}")).body(Body::empty())?;
    req.extensions_mut().insert(ConnectInfo(SocketAddr::from((from, 40000))));
    Ok(req)
}

#[tokio::test]
async fn a_user_is_limited_across_addresses() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let state = state(dir.path(), 3).await?;
    let (token, _) = state.tokens.issue("alice", Role::Operator)?;
    let app = router(state)?;
    // Three addresses, each well under its own limit; the user's own limit trips on the fourth.
    for (i, from) in [[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]].into_iter().enumerate() {
        let res = app.clone().oneshot(me(&token, from)?).await?;
        assert_eq!(res.status(), StatusCode::OK, "request {i}");
    }
    let res = app.clone().oneshot(me(&token, [10, 0, 0, 4])?).await?;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    Ok(())
}

#[tokio::test]
async fn readiness_lists_added_components() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let state = state(dir.path(), 100)
        .await?
        .with_component(Component { name: "extra", check: Arc::new(|| Err("not there yet".into())) });
    let res = router(state)?.oneshot(Request::get("/readyz").body(Body::empty())?).await?;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_slice(&axum::body::to_bytes(res.into_body(), 1 << 16).await?)?;
    // No plugin is loaded from an empty directory: not ready to serve tools.
    let components = serde_json::json!({"store": "ok", "audit": "ok", "policy": "ok", "plugins": "unavailable", "extra": "unavailable"});
    assert_eq!(body, serde_json::json!({"status": "not_ready", "components": components}));
    Ok(())
}

#[tokio::test]
async fn forwarded_addresses_count_only_behind_a_trusted_proxy() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = router(state(dir.path(), 2).await?)?;
    let health = |peer: [u8; 4], forwarded: &str| -> anyhow::Result<Request<Body>> {
        let mut req = Request::get("/healthz").header("x-forwarded-for", forwarded).body(Body::empty())?;
        req.extensions_mut().insert(ConnectInfo(SocketAddr::from((peer, 40000))));
        Ok(req)
    };
    // An untrusted peer cannot dodge its limit by inventing addresses.
    for (i, fake) in ["1.1.1.1", "2.2.2.2", "3.3.3.3"].into_iter().enumerate() {
        let status = app.clone().oneshot(health([10, 0, 0, 7], fake)?).await?.status();
        assert_eq!(status, if i < 2 { StatusCode::OK } else { StatusCode::TOO_MANY_REQUESTS }, "{fake}");
    }
    // Behind the trusted proxy each client has its own budget; spoofed hops before it are ignored.
    for client in ["5.5.5.5", "6.6.6.6", "7.7.7.7"] {
        let forwarded = format!("9.9.9.9, {client}");
        assert_eq!(app.clone().oneshot(health([10, 9, 9, 9], &forwarded)?).await?.status(), StatusCode::OK, "{client}");
    }
    Ok(())
}

#[tokio::test]
async fn an_evaluation_is_audited_as_a_dry_run() -> anyhow::Result<()> {
    // The built-in plugins, as `cargo xtask plugins` leaves them: target/<profile>/deps/<test> → target.
    let exe = std::env::current_exe()?;
    let plugins = exe.ancestors().nth(3).map(|t| t.join("plugins")).filter(|p| p.join("files.wasm").exists());
    let plugins = plugins.ok_or_else(|| anyhow::anyhow!("built-in plugins missing: run `cargo xtask plugins`"))?;
    let dir = tempfile::tempdir()?;
    let state = state_with(dir.path(), 100, plugins).await?;
    let journal = state.gateway.journal.clone();
    let (token, _) = state.tokens.issue("alice", Role::Operator)?;
    let mut req = Request::post("/api/v1/policy/evaluate")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"tool": "write_file", "params": {"path": "a.txt", "content": "secret text"}}"#))?;
    req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 40000))));
    let res = router(state)?.oneshot(req).await?;
    assert_eq!(res.status(), StatusCode::OK);
    journal.flush().await?;
    let events: Vec<_> =
        toolgate_governance::audit::recent::<toolgate_governance::StoredEntry>(journal.store(), 10, None)?
            .into_iter()
            .map(|e| e.event)
            .collect();
    let event = events
        .iter()
        .find(|e| e.kind == "policy_evaluate")
        .ok_or_else(|| anyhow::anyhow!("not audited: {events:?}"))?;
    assert_eq!((event.actor.as_deref(), event.role, event.allowed), (Some("alice"), Some(Role::Operator), false));
    assert_eq!(event.reason, "justification_required,role_insufficient");
    assert_eq!(event.detail["dry_run"], true);
    assert!(!format!("{event:?}").contains("secret text"), "params stay out of the audit entry");
    Ok(())
}
