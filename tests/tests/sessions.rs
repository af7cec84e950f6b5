//! Sessions end when they should and only then: a password change, a disable, an enable or a
//! role change end every token (whatever second it was issued in); refresh is single-use and
//! bounded by the login; a key dies with its creator's authority; others' failed logins never
//! lock the owner out; account changes race safely; and every account event is an audit entry.

use std::net::{IpAddr, Ipv4Addr};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::{Server, USER_PASSWORD, client, code, send};

async fn me(server: &Server, token: &str) -> anyhow::Result<(StatusCode, Value)> {
    send(client().get(server.url("/api/v1/auth/me")).bearer_auth(token)).await
}

async fn patch(server: &Server, token: &str, user: &str, change: Value) -> anyhow::Result<(StatusCode, Value)> {
    send(client().patch(server.url(&format!("/api/v1/users/{user}"))).bearer_auth(token).json(&change)).await
}

/// Send every request at once; their answers, in order.
async fn all(requests: impl Iterator<Item = reqwest::RequestBuilder>) -> anyhow::Result<Vec<(StatusCode, Value)>> {
    let tasks: Vec<_> = requests.map(|r| tokio::spawn(send(r))).collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await??);
    }
    Ok(answers)
}

fn claims(token: &str) -> anyhow::Result<Value> {
    let payload = token.split('.').nth(1).unwrap_or_default();
    Ok(serde_json::from_slice(&B64.decode(payload)?)?)
}

#[tokio::test]
async fn a_password_change_ends_a_session_issued_in_the_same_second() -> anyhow::Result<()> {
    let server = Server::start(&[("TOOLGATE_HTTP_RATE_LIMITS_LOGIN_REQUESTS", "1000")])?;
    let password = server.admin_password.clone().unwrap_or_default();
    // Two sessions of one second (retried until the clock obliges: the point is the same `iat`).
    let (mine, stolen) = loop {
        let (a, b) = (server.admin_token().await?, server.admin_token().await?);
        if claims(&a)?["iat"] == claims(&b)?["iat"] {
            break (a, b);
        }
    };
    let change = json!({"old_password": password, "new_password": "N3w-secret!"});
    let (status, changed) =
        send(client().post(server.url("/api/v1/auth/password")).bearer_auth(&mine).json(&change)).await?;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let (status, body) = me(&server, &stolen).await?;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "token_revoked"), "{body}");
    let fresh = changed["token"].as_str().unwrap_or_default();
    assert_eq!(me(&server, fresh).await?.0, StatusCode::OK, "the caller's fresh token works");
    Ok(())
}

#[tokio::test]
async fn refresh_works_once_per_token_and_never_past_the_sessions_absolute_lifetime() -> anyhow::Result<()> {
    let server = Server::start(&[("TOOLGATE_AUTH_SESSION_MAX_SECS", "3")])?;
    let refresh = |token: &str| client().post(server.url("/api/v1/auth/refresh")).bearer_auth(token.to_owned());

    let login = server.admin_token().await?;
    let (status, body) = send(refresh(&login)).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(refresh(&login)).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a used token refreshes nothing: {body}");
    assert!(["token_revoked", "token_reused"].contains(&code(&body)), "{body}");

    // Of many concurrent refreshes with one token, exactly one gets a token (and a refresh that
    // finds its token already used ends the session: one of its holders stole it).
    // Of many concurrent refreshes with one token, exactly one gets a token.
    let login = server.admin_token().await?;
    let answers = all((0..8).map(|_| refresh(&login))).await?;
    let winners = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(winners, 1, "{answers:?}");

    // Past the absolute lifetime the chain ends, whatever the token's own ttl.
    let login = server.admin_token().await?;
    let started = claims(&login)?["auth_time"].as_u64().unwrap_or_default();
    let (status, body) = send(refresh(&login)).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let last = body["token"].as_str().unwrap_or_default().to_owned();
    let last_claims = claims(&last)?;
    assert_eq!(last_claims["auth_time"].as_u64(), Some(started), "refresh keeps the login time");
    assert!(last_claims["exp"].as_u64().unwrap_or(u64::MAX) <= started + 3, "{last_claims}");
    while claims(&last)?["exp"].as_u64().unwrap_or_default() >= now() {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let (status, body) = send(refresh(&last)).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(["token_expired", "session_expired"].contains(&code(&body)), "{body}");
    Ok(())
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

#[tokio::test]
async fn re_enabling_an_account_does_not_revive_its_tokens() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let admin = server.admin_token().await?;
    let ops = server.add_user(&admin, "ops", "operator").await?;
    for disabled in [true, false] {
        assert_eq!(patch(&server, &admin, "ops", json!({"disabled": disabled})).await?.0, StatusCode::OK);
    }
    let (status, body) = me(&server, &ops).await?;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "token_revoked"), "{body}");
    let again = server.login("ops", USER_PASSWORD).await?;
    assert_eq!(me(&server, &again).await?.0, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn an_api_key_dies_with_its_creators_demotion_or_disable() -> anyhow::Result<()> {
    let server = Server::start_with_admins(&[], &["admin", "bob"])?;
    let admin = server.admin_token().await?;
    let bob = server.login("bob", USER_PASSWORD).await?;
    let mut keys = Vec::new();
    for (name, role) in [("bob-admin", "admin"), ("bob-ops", "operator")] {
        let body = json!({"name": name, "role": role, "expires_in_days": 30});
        let (status, created) = send(client().post(server.url("/api/v1/keys")).bearer_auth(&bob).json(&body)).await?;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        keys.push(created["key"].as_str().unwrap_or_default().to_owned());
        assert_eq!(me(&server, &keys[keys.len() - 1]).await?.0, StatusCode::OK);
    }
    let [admin_key, ops_key] = [&keys[0], &keys[1]];

    // Demoted to operator: the admin key dies, the operator key lives.
    assert_eq!(patch(&server, &admin, "bob", json!({"role": "operator"})).await?.0, StatusCode::OK);
    let (status, body) = me(&server, admin_key).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(me(&server, ops_key).await?.0, StatusCode::OK);
    // Disabled: every key dies, and enabling bob again does not revive them.
    for disabled in [true, false] {
        assert_eq!(patch(&server, &admin, "bob", json!({"disabled": disabled})).await?.0, StatusCode::OK);
    }
    assert_eq!(patch(&server, &admin, "bob", json!({"role": "admin"})).await?.0, StatusCode::OK);
    for key in [admin_key, ops_key] {
        let (status, body) = me(&server, key).await?;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "api_key_revoked"), "{body}");
    }
    let (_, list) = send(client().get(server.url("/api/v1/keys")).bearer_auth(&admin)).await?;
    assert!(list.as_array().into_iter().flatten().all(|k| k["revoked"] == true), "{list}");
    Ok(())
}

#[tokio::test]
async fn failed_logins_from_one_address_do_not_lock_the_owner_out_from_another() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let password = server.admin_password.clone().unwrap_or_default();
    let attacker = reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))).build()?;
    let guess = json!({"username": "admin", "password": "Wr0ng-guess!"});
    let mut limited = false;
    for _ in 0..8 {
        let (status, _) = send(attacker.post(server.url("/api/v1/auth/login")).json(&guess)).await?;
        limited |= status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "the guessing address is slowed down");
    // The owner, from their own address, is not.
    let (status, body) =
        send(client().post(server.url("/api/v1/auth/login")).json(&json!({"username": "admin", "password": password})))
            .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(())
}

#[tokio::test]
async fn two_admins_disabling_each_other_at_once_always_leave_one_enabled() -> anyhow::Result<()> {
    let env = [
        ("TOOLGATE_HTTP_RATE_LIMITS_LOGIN_REQUESTS", "10000"),
        ("TOOLGATE_HTTP_RATE_LIMITS_GENERAL_REQUESTS", "100000"),
    ];
    let server = Server::start_with_admins(&env, &["admin", "bob"])?;
    let patch_req = |token: &str, user: &str| {
        client().patch(server.url(&format!("/api/v1/users/{user}"))).bearer_auth(token).json(&json!({"disabled": true}))
    };
    for round in 0..20 {
        let admin = server.login("admin", USER_PASSWORD).await?;
        let bob = server.login("bob", USER_PASSWORD).await?;
        let tries = (0..4).flat_map(|_| [patch_req(&admin, "bob"), patch_req(&bob, "admin")]);
        let answers = all(tries).await?;
        let reader = match server.login("admin", USER_PASSWORD).await {
            Ok(token) => token,
            Err(_) => server.login("bob", USER_PASSWORD).await?,
        };
        let (_, users) = send(client().get(server.url("/api/v1/users")).bearer_auth(&reader)).await?;
        let enabled: Vec<&str> = users
            .as_array()
            .into_iter()
            .flatten()
            .filter(|u| u["role"] == "admin" && u["disabled"] == false)
            .filter_map(|u| u["username"].as_str())
            .collect();
        assert_eq!(enabled.len(), 1, "round {round}: {enabled:?} {answers:?}");
        // The survivor enables the other for the next round.
        let survivor = server.login(enabled[0], USER_PASSWORD).await?;
        let other = if enabled[0] == "admin" { "bob" } else { "admin" };
        assert_eq!(patch(&server, &survivor, other, json!({"disabled": false})).await?.0, StatusCode::OK);
    }
    Ok(())
}

#[tokio::test]
async fn account_and_login_events_are_entries_of_the_audit_chain() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let huge = "a".repeat(900_000);
    let (status, _) =
        send(client().post(server.url("/api/v1/auth/login")).json(&json!({"username": huge, "password": "x"}))).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let admin = server.admin_token().await?;
    server.add_user(&admin, "ops", "operator").await?;
    assert_eq!(patch(&server, &admin, "ops", json!({"role": "viewer"})).await?.0, StatusCode::OK);
    let key = json!({"name": "ci", "role": "viewer", "expires_in_days": 1});
    assert_eq!(
        send(client().post(server.url("/api/v1/keys")).bearer_auth(&admin).json(&key)).await?.0,
        StatusCode::CREATED
    );
    assert_eq!(send(client().delete(server.url("/api/v1/keys/ci")).bearer_auth(&admin)).await?.0, StatusCode::OK);

    let (status, audit) = send(client().get(server.url("/api/v1/audit?last_n=1000")).bearer_auth(&admin)).await?;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let mut entries: Vec<Value> = audit["entries"].as_array().cloned().unwrap_or_default();
    entries.reverse();
    let kinds: Vec<&str> = entries.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["login_failed", "login_success", "user_created", "user_changed", "api_key_created", "api_key_revoked"]
    {
        assert!(kinds.contains(&kind), "no `{kind}` in {kinds:?}");
    }
    // Chained: consecutive sequence numbers, each with its hash.
    let seqs: Vec<u64> = entries.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(entries.iter().all(|e| e["hash"].as_str().is_some_and(|h| !h.is_empty())));
    let changed = entries.iter().find(|e| e["kind"] == "user_changed").cloned().unwrap_or_default();
    assert_eq!((changed["actor"].as_str(), changed["detail"]["target"].as_str()), (Some("admin"), Some("ops")));
    // The 900 kB name is neither stored nor logged whole.
    assert!(!audit.to_string().contains(&"a".repeat(200)), "the audit log holds the whole name");
    assert!(!server.stderr().contains(&"a".repeat(200)), "the log holds the whole name");
    Ok(())
}

#[tokio::test]
async fn a_cookie_authenticated_refresh_or_logout_from_another_origin_is_refused() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let token = server.admin_token().await?;
    let cookie = format!("toolgate_token={token}");
    for path in ["/api/v1/auth/refresh", "/api/v1/auth/logout"] {
        for origin in [Some("https://evil.example"), Some("null"), None] {
            let mut req = client().post(server.url(path)).header("cookie", &cookie);
            if let Some(origin) = origin {
                req = req.header("origin", origin);
            }
            let (status, body) = send(req).await?;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::FORBIDDEN, "cross_origin"),
                "{path} from {origin:?}: {body}"
            );
        }
    }
    // Nothing changed: the token still works; from our own origin the cookie refreshes.
    assert_eq!(me(&server, &token).await?.0, StatusCode::OK);
    let (status, body) = send(
        client().post(server.url("/api/v1/auth/refresh")).header("cookie", &cookie).header("origin", &server.base),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(())
}
