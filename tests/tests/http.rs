//! The HTTP surface over a real socket: rate limits, CORS, security headers, body errors,
//! start-up refusals.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::{Server, client, code, run_cli};

const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("strict-transport-security", "max-age="),
    ("content-security-policy", "default-src 'self'"),
    ("referrer-policy", "no-referrer"),
];

fn assert_security_headers(res: &reqwest::Response, what: &str) {
    for (name, value) in SECURITY_HEADERS {
        let got = res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(got.starts_with(value), "{what}: header {name} is `{got}`");
    }
}

/// Send `req` until it answers 429; return how many were accepted before and the wait asked.
async fn until_limited(make: impl Fn() -> reqwest::RequestBuilder, max: usize) -> anyhow::Result<(usize, u64)> {
    for accepted in 0..max {
        let res = make().send().await?;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
            let body: Value = res.json().await?;
            assert_eq!(code(&body), "rate_limited");
            return retry.map(|r| (accepted, r)).ok_or_else(|| anyhow::anyhow!("429 without Retry-After"));
        }
    }
    anyhow::bail!("no 429 after {max} requests")
}

#[tokio::test]
async fn login_limit_uses_the_default_five_per_minute_and_recovers() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let login = || {
        client().post(server.url("/api/v1/auth/login")).json(&json!({"username": "admin", "password": "Wr0ng-pass"}))
    };
    let (accepted, retry) = until_limited(login, 10).await?;
    assert_eq!(accepted, 5);
    assert!((1..=12).contains(&retry), "retry after {retry}");
    tokio::time::sleep(Duration::from_secs(retry)).await;
    // Recovered: the right password now logs in.
    server.admin_token().await?;
    let events = server.security_events();
    let trip = events.iter().find(|e| e["event"] == "rate_limit_triggered");
    assert_eq!(trip.map(|e| e["details"]["class"].clone()), Some(json!("login")), "{events:?}");
    Ok(())
}

#[tokio::test]
async fn register_and_general_limits_trip_and_recover() -> anyhow::Result<()> {
    let server = Server::start(&[
        ("TOOLGATE_AUTH_REGISTER_ENABLED", "true"),
        ("TOOLGATE_HTTP_RATE_LIMITS_REGISTER_REQUESTS", "2"),
        ("TOOLGATE_HTTP_RATE_LIMITS_REGISTER_PERIOD_SECS", "2"),
        ("TOOLGATE_HTTP_RATE_LIMITS_GENERAL_REQUESTS", "3"),
        ("TOOLGATE_HTTP_RATE_LIMITS_GENERAL_PERIOD_SECS", "3"),
    ])?;
    let register =
        || client().post(server.url("/api/v1/auth/register")).json(&json!({"username": "x", "password": "weak"}));
    let (accepted, retry) = until_limited(register, 10).await?;
    assert_eq!((accepted, retry), (2, 1));
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(register().send().await?.status(), StatusCode::BAD_REQUEST, "recovered: the policy answers again");

    let health = || client().get(server.url("/healthz"));
    let (accepted, retry) = until_limited(health, 10).await?;
    assert_eq!((accepted, retry), (3, 1));
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(health().send().await?.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn cors_allows_listed_origins_only() -> anyhow::Result<()> {
    let server = Server::start(&[("TOOLGATE_CORS_ORIGINS", "https://ops.example.com")])?;
    let preflight = |origin: &str| {
        client()
            .request(reqwest::Method::OPTIONS, server.url("/api/v1/auth/login"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
    };
    let allowed = preflight("https://ops.example.com").send().await?;
    let header =
        |res: &reqwest::Response, name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header(&allowed, "access-control-allow-origin").as_deref(), Some("https://ops.example.com"));
    assert_eq!(header(&allowed, "access-control-allow-credentials").as_deref(), Some("true"));
    assert_security_headers(&allowed, "preflight");
    let refused = preflight("https://evil.example.com").send().await?;
    assert_eq!(header(&refused, "access-control-allow-origin"), None);
    // A browser client may read the trace id of its request.
    let traced = client().get(server.url("/healthz")).header("origin", "https://ops.example.com").send().await?;
    assert_eq!(header(&traced, "access-control-expose-headers").as_deref(), Some("x-trace-id"));
    assert!(header(&traced, "x-trace-id").is_some_and(|id| id.len() == 32), "no trace id on a CORS response");
    Ok(())
}

#[tokio::test]
async fn security_headers_on_200_4xx_and_5xx() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let ok = client().get(server.url("/healthz")).send().await?;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_security_headers(&ok, "200");
    let missing = client().get(server.url("/api/v1/nope")).send().await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_security_headers(&missing, "404");
    let body: Value = missing.json().await?;
    assert_eq!(code(&body), "route_not_found");
    let unauthenticated = client().get(server.url("/api/v1/users")).send().await?;
    assert_security_headers(&unauthenticated, "401");

    // Losing the database file makes the store unready: 503, still with the headers.
    std::fs::remove_file(server.data_path().join("toolgate.redb"))?;
    let unready = client().get(server.url("/readyz")).send().await?;
    assert_eq!(unready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_security_headers(&unready, "503");
    let body: Value = unready.json().await?;
    assert_eq!(body["components"]["store"], "unavailable");
    assert!(!body.to_string().contains("/tmp"), "paths stay in the log: {body}");
    Ok(())
}

#[tokio::test]
async fn ready_store_reports_ok() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let body: Value = client().get(server.url("/readyz")).send().await?.json().await?;
    let components = json!({"store": "ok", "audit": "ok", "policy": "ok", "plugins": "ok", "sandbox": "ok"});
    assert_eq!(body, json!({"status": "ready", "components": components}));
    Ok(())
}

#[tokio::test]
async fn oversized_and_malformed_bodies_get_json_errors() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let login = server.url("/api/v1/auth/login");
    let post = |body: String| client().post(&login).header("content-type", "application/json").body(body);

    let big = format!(r#"{{"username":"admin","password":"{}"}}"#, "a".repeat(1024 * 1024));
    let res = post(big).send().await?;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_security_headers(&res, "413");
    assert_eq!(code(&res.json().await?), "payload_too_large");

    let res = post("{\"username\": ".into()).send().await?;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code(&res.json().await?), "bad_request");

    let res = post(r#"{"username":"admin","password":"x","remember_me":true}"#.into()).send().await?;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await?;
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("remember_me"), "{body}");

    let res = post(r#"{"username":"admin"}"#.into()).send().await?;
    let body: Value = res.json().await?;
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("password"), "{body}");

    let res = client().post(&login).body("username=admin").send().await?;
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(code(&res.json().await?), "unsupported_media_type");

    let res = client().delete(&login).send().await?;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(code(&res.json().await?), "method_not_allowed");
    Ok(())
}

#[test]
fn unsafe_configurations_refuse_to_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("TOOLGATE_JWT_SECRET", "too-short")], "at least 64"),
        (&[("TOOLGATE_CORS_ORIGINS", "*")], "cors origin `*`"),
        (&[("TOOLGATE_HTTP_RATE_LIMITS_LOGIN_REQUESTS", "0")], "rate_limits.login.requests"),
        (&[("TOOLGATE_LISTN", "127.0.0.1:0")], "TOOLGATE_LISTN"),
        (&[("TOOLGATE_AUTH_SCRYPT_LOG_N", "40")], "auth.scrypt_log_n"),
    ];
    for (env, want) in cases {
        let out = run_cli(dir.path(), env, &["serve"], "")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?} started");
        assert!(stderr.contains(want), "{env:?}: {stderr}");
        assert!(!stderr.contains("too-short"), "the secret was printed: {stderr}");
    }
    Ok(())
}

#[tokio::test]
async fn development_mode_generates_a_secret_that_survives_restarts() -> anyhow::Result<()> {
    let env = [("TOOLGATE_MODE", "development"), ("TOOLGATE_JWT_SECRET", "")];
    let server = Server::start(&env)?;
    assert!(server.stderr().contains("generated a jwt secret"), "{}", server.stderr());
    let token = server.admin_token().await?;
    let again = Server::start_in(server.stop()?, &env)?;
    let res = client().get(again.url("/api/v1/auth/me")).bearer_auth(&token).send().await?;
    assert_eq!(res.status(), StatusCode::OK);
    Ok(())
}
