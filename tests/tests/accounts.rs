//! Accounts over a real socket: the first admin, register/login/refresh/logout, the cookie,
//! password changes and the policy, admin user management, disabled users, API keys.

use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::{Server, client, code, run_cli, send};

#[tokio::test]
async fn first_start_prints_an_admin_password_once_and_it_logs_in() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let password = server.admin_password.clone().ok_or_else(|| anyhow::anyhow!("no password in {}", server.stdout))?;
    assert!(!server.stderr().contains(&password), "the initial password leaked into the log");
    let token = server.login("admin", &password).await?;
    let (status, me) = send(client().get(server.url("/api/v1/auth/me")).bearer_auth(&token)).await?;
    assert_eq!((status, me["name"].as_str(), me["role"].as_str()), (StatusCode::OK, Some("admin"), Some("admin")));
    // Its creation is the chain's first entry, made by the system.
    let (_, audit) = send(client().get(server.url("/api/v1/audit?last_n=50")).bearer_auth(&token)).await?;
    let first = audit["entries"].as_array().and_then(|e| e.iter().find(|e| e["seq"] == 1)).cloned();
    let first = first.ok_or_else(|| anyhow::anyhow!("no first entry: {audit}"))?;
    assert_eq!((first["kind"].as_str(), first["actor"].as_str()), (Some("user_created"), Some("system")), "{first}");

    let dir = server.stop()?;
    let again = Server::start_in(dir, &[])?;
    assert_eq!(again.admin_password, None, "second start printed a password: {}", again.stdout);
    again.login("admin", &password).await?;
    Ok(())
}

#[tokio::test]
async fn register_login_refresh_logout() -> anyhow::Result<()> {
    let closed = Server::start(&[])?;
    let (status, body) = send(
        client().post(closed.url("/api/v1/auth/register")).json(&json!({"username": "eve", "password": "Passw0rd!"})),
    )
    .await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "registration_disabled"));

    let server = Server::start(&[("TOOLGATE_AUTH_REGISTER_ENABLED", "true")])?;
    let (status, user) = send(
        client().post(server.url("/api/v1/auth/register")).json(&json!({"username": "bob", "password": "Passw0rd!"})),
    )
    .await?;
    assert_eq!((status, user["role"].as_str()), (StatusCode::CREATED, Some("viewer")));

    let res = client()
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"username": "bob", "password": "Passw0rd!"}))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    for attribute in ["toolgate_token=", "HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(cookie.contains(attribute), "cookie lacks {attribute}: {cookie}");
    }
    let login: Value = res.json().await?;
    assert_eq!(login["user"]["username"], "bob");
    assert!(login["expires_at"].is_string());
    let token = login["token"].as_str().unwrap_or_default().to_owned();

    // The cookie alone authenticates.
    let pair = cookie.split(';').next().unwrap_or_default().to_owned();
    let (status, me) = send(client().get(server.url("/api/v1/auth/me")).header("cookie", &pair)).await?;
    assert_eq!((status, me["name"].as_str()), (StatusCode::OK, Some("bob")));

    // Refresh hands out a new token and kills the old one.
    let (status, refreshed) = send(client().post(server.url("/api/v1/auth/refresh")).bearer_auth(&token)).await?;
    assert_eq!(status, StatusCode::OK);
    let fresh = refreshed["token"].as_str().unwrap_or_default().to_owned();
    assert_ne!(fresh, token);
    let (status, body) = send(client().get(server.url("/api/v1/auth/me")).bearer_auth(&token)).await?;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "token_revoked"));

    // Logout revokes the fresh one and clears the cookie.
    let res = client().post(server.url("/api/v1/auth/logout")).bearer_auth(&fresh).send().await?;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let cleared = res.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let (status, body) = send(client().get(server.url("/api/v1/auth/me")).bearer_auth(&fresh)).await?;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "token_revoked"));

    let (status, body) = send(
        client().post(server.url("/api/v1/auth/login")).json(&json!({"username": "bob", "password": "Passw0rd?"})),
    )
    .await?;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_credentials"));

    let events = server.security_events();
    for event in ["user_registered", "login_success", "login_failed", "logout"] {
        let found = events.iter().find(|e| e["event"] == event);
        let found = found.ok_or_else(|| anyhow::anyhow!("no `{event}` security event in {events:?}"))?;
        let keys: Vec<&str> = found.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        assert_eq!(keys.len(), 6, "{found}");
        for key in ["timestamp", "level", "event", "user", "ip", "details"] {
            assert!(keys.contains(&key), "{found}");
        }
    }
    assert!(!server.stderr().contains("Passw0rd"), "a password reached the log");
    assert!(!server.stderr().contains(&token), "a token reached the log");
    Ok(())
}

#[tokio::test]
async fn password_policy_refusals_name_each_rule() -> anyhow::Result<()> {
    let server = Server::start(&[
        ("TOOLGATE_AUTH_REGISTER_ENABLED", "true"),
        ("TOOLGATE_HTTP_RATE_LIMITS_REGISTER_REQUESTS", "100"),
    ])?;
    let cases: [(&str, &[&str]); 4] = [
        ("short", &["at least 8 characters", "an upper-case letter", "a digit", "a special character"]),
        ("alllowercase1!", &["an upper-case letter"]),
        ("NoDigitsHere!", &["a digit"]),
        ("N0special", &["a special character"]),
    ];
    for (password, failed) in cases {
        let (status, body) = send(
            client()
                .post(server.url("/api/v1/auth/register"))
                .json(&json!({"username": "carol", "password": password})),
        )
        .await?;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "weak_password"), "{password}: {body}");
        assert_eq!(body["error"]["details"]["failed_rules"], json!(failed), "{password}");
        for rule in failed {
            assert!(body["error"]["message"].as_str().unwrap_or_default().contains(rule), "{body}");
        }
    }

    // Changing a password: the old one is required and the new one must meet the policy.
    let other_session = server.admin_token().await?;
    let token = server.admin_token().await?;
    let old = server.admin_password.clone().unwrap_or_default();
    let change = |old: &str, new: &str| {
        client()
            .post(server.url("/api/v1/auth/password"))
            .bearer_auth(&token)
            .json(&json!({"old_password": old, "new_password": new}))
    };
    let (status, body) = send(change("wrong", "N3w-secret!")).await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "wrong_password"));
    let (status, body) = send(change(&old, "weak")).await?;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "weak_password"));
    let (status, changed) = send(change(&old, "N3w-secret!")).await?;
    assert_eq!(status, StatusCode::OK, "{changed}");
    // The change ends every earlier session and hands the caller a fresh token.
    let me = |t: &str| client().get(server.url("/api/v1/auth/me")).bearer_auth(t.to_owned());
    let fresh = changed["token"].as_str().unwrap_or_default().to_owned();
    assert_eq!(send(me(&fresh)).await?.0, StatusCode::OK);
    for stale in [&token, &other_session] {
        let (status, body) = send(me(stale)).await?;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "token_revoked"));
    }
    assert!(server.login("admin", &old).await.is_err());
    server.login("admin", "N3w-secret!").await?;
    assert!(server.security_events().iter().any(|e| e["event"] == "password_changed"));
    Ok(())
}

#[tokio::test]
async fn admins_manage_users_and_a_disabled_user_is_locked_out_at_once() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let admin = server.admin_token().await?;
    let users = server.url("/api/v1/users");
    let (status, body) = send(
        client()
            .post(&users)
            .bearer_auth(&admin)
            .json(&json!({"username": "ops", "password": "0ps-Passw0rd", "role": "operator"})),
    )
    .await?;
    assert_eq!((status, body["role"].as_str()), (StatusCode::CREATED, Some("operator")));
    let (status, body) = send(
        client()
            .post(&users)
            .bearer_auth(&admin)
            .json(&json!({"username": "ops", "password": "0ps-Passw0rd", "role": "viewer"})),
    )
    .await?;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "user_exists"));

    let ops = server.login("ops", "0ps-Passw0rd").await?;
    let (status, body) = send(client().get(&users).bearer_auth(&ops)).await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));

    let (status, list) = send(client().get(&users).bearer_auth(&admin)).await?;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> =
        list.as_array().map(|a| a.iter().filter_map(|u| u["username"].as_str()).collect()).unwrap_or_default();
    assert_eq!(names, ["admin", "ops"]);
    assert!(!list.to_string().contains("scrypt"), "hashes must not be listed: {list}");

    // A role change applies at once: it ends the sessions of the old role.
    let (status, _) =
        send(client().patch(server.url("/api/v1/users/ops")).bearer_auth(&admin).json(&json!({"role": "viewer"})))
            .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(client().get(server.url("/api/v1/auth/me")).bearer_auth(&ops)).await?;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "token_revoked"));
    let ops = server.login("ops", "0ps-Passw0rd").await?;
    let (_, me) = send(client().get(server.url("/api/v1/auth/me")).bearer_auth(&ops)).await?;
    assert_eq!(me["role"], "viewer");

    let (status, body) =
        send(client().patch(server.url("/api/v1/users/ops")).bearer_auth(&admin).json(&json!({"disabled": true})))
            .await?;
    assert_eq!((status, body["disabled"].as_bool()), (StatusCode::OK, Some(true)));
    let (status, body) = send(client().get(server.url("/api/v1/auth/me")).bearer_auth(&ops)).await?;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "user_disabled"));
    let (status, body) = send(
        client().post(server.url("/api/v1/auth/login")).json(&json!({"username": "ops", "password": "0ps-Passw0rd"})),
    )
    .await?;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "user_disabled"));

    // The last enabled admin cannot lock everyone out.
    let (status, body) =
        send(client().patch(server.url("/api/v1/users/admin")).bearer_auth(&admin).json(&json!({"disabled": true})))
            .await?;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "last_admin"));
    let (status, body) =
        send(client().patch(server.url("/api/v1/users/ghost")).bearer_auth(&admin).json(&json!({"role": "admin"})))
            .await?;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "user_not_found"));
    assert!(server.security_events().iter().any(|e| e["event"] == "user_changed" && e["details"]["target"] == "ops"));
    Ok(())
}

#[tokio::test]
async fn api_keys_are_shown_once_usable_as_bearer_and_revocable() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let admin = server.admin_token().await?;
    let keys = server.url("/api/v1/keys");
    let (status, created) = send(
        client()
            .post(&keys)
            .bearer_auth(&admin)
            .json(&json!({"name": "ci-bot", "role": "operator", "expires_in_days": 30})),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap_or_default().to_owned();
    assert!(key.starts_with("tgk_"), "{created}");

    let (status, me) = send(client().get(server.url("/api/v1/auth/me")).bearer_auth(&key)).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str(), me["auth_method"].as_str()),
        (Some("ci-bot"), Some("operator"), Some("api_key"))
    );

    let (_, list) = send(client().get(&keys).bearer_auth(&admin)).await?;
    assert!(!list.to_string().contains(&key[20..]), "the secret must never be listed again");
    assert_eq!(list[0]["name"], "ci-bot");

    let (status, body) = send(
        client()
            .post(&keys)
            .bearer_auth(&admin)
            .json(&json!({"name": "long", "role": "viewer", "expires_in_days": 10000})),
    )
    .await?;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_expiry"));

    // Even an admin key cannot create or revoke keys: a key's creator, whom approvals are checked
    // against, is always a person.
    let (status, created) = send(
        client()
            .post(&keys)
            .bearer_auth(&admin)
            .json(&json!({"name": "ops-bot", "role": "admin", "expires_in_days": 30})),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let admin_key = created["key"].as_str().unwrap_or_default().to_owned();
    let (status, body) = send(
        client()
            .post(&keys)
            .bearer_auth(&admin_key)
            .json(&json!({"name": "chained", "role": "admin", "expires_in_days": 30})),
    )
    .await?;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "needs_login_token"), "{body}");
    let (status, body) = send(client().delete(server.url("/api/v1/keys/ci-bot")).bearer_auth(&admin_key)).await?;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "needs_login_token"), "{body}");
    let (_, list) = send(client().get(&keys).bearer_auth(&admin_key)).await?;
    let names: Vec<&str> = list.as_array().into_iter().flatten().filter_map(|k| k["name"].as_str()).collect();
    assert_eq!(names.len(), 2, "no key was created: {list}");
    assert!(!names.contains(&"chained"), "{list}");
    assert!(list.as_array().into_iter().flatten().all(|k| k["revoked"] == false), "{list}");

    let (status, _) = send(client().delete(server.url("/api/v1/keys/ci-bot")).bearer_auth(&admin)).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(client().get(server.url("/api/v1/auth/me")).bearer_auth(&key)).await?;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "api_key_revoked"));
    let forged = format!("{}{}", &key[..key.len() - 4], "0000");
    let (status, body) = send(client().get(server.url("/api/v1/auth/me")).bearer_auth(&forged)).await?;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "api_key_invalid"));
    let events = server.security_events();
    assert!(events.iter().any(|e| e["event"] == "api_key_created"));
    assert!(events.iter().any(|e| e["event"] == "api_key_revoked"));
    assert!(!server.stderr().contains(&key), "the key reached the log");
    Ok(())
}

#[tokio::test]
async fn cli_adds_users_with_the_password_from_stdin() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = run_cli(dir.path(), &[], &["users", "add", "root2", "--role", "admin"], "Adm1n-pass!\nAdm1n-pass!\n")?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run_cli(dir.path(), &[], &["users", "add", "weak", "--role", "viewer"], "weak\nweak\n")?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("an upper-case letter"));
    let out = run_cli(dir.path(), &[], &["users", "add", "typo", "--role", "viewer"], "Adm1n-pass!\nAdm1n-pass?\n")?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("differ"));

    // A store with users gets no generated admin; the CLI's admin logs in.
    let server = Server::start_in(dir, &[])?;
    assert_eq!(server.admin_password, None);
    let token = server.login("root2", "Adm1n-pass!").await?;
    let (status, me) = send(client().get(server.url("/api/v1/auth/me")).bearer_auth(&token)).await?;
    assert_eq!((status, me["role"].as_str()), (StatusCode::OK, Some("admin")));
    // The account the CLI made is an entry of the audit chain, made by the local operator.
    let (_, audit) = send(client().get(server.url("/api/v1/audit?last_n=50")).bearer_auth(&token)).await?;
    let created = audit["entries"].as_array().into_iter().flatten().find(|e| e["kind"] == "user_created");
    let created = created.ok_or_else(|| anyhow::anyhow!("no user_created entry: {audit}"))?;
    assert_eq!(
        (created["actor"].as_str(), created["detail"]["user"].as_str()),
        (Some("local"), Some("root2")),
        "{created}"
    );
    assert_eq!(created["seq"], 1, "the first entry of the log: {audit}");
    Ok(())
}
