//! Every bad credential gets 401 with its own code, over a real socket.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::{SECRET, Server, client, code};

async fn me(server: &Server, auth: Option<&str>) -> anyhow::Result<(StatusCode, String)> {
    let mut req = client().get(server.url("/api/v1/auth/me"));
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let res = req.send().await?;
    let status = res.status();
    let body: Value = res.json().await?;
    Ok((status, code(&body).to_owned()))
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

fn forge(alg: Algorithm, secret: &str, claims: &Value) -> anyhow::Result<String> {
    Ok(jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret.as_bytes()))?)
}

#[tokio::test]
async fn bad_tokens_get_401_with_a_code() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let token = server.admin_token().await?;
    let claims = json!({"sub": "admin", "role": "admin", "jti": "forged-1", "iat": now(), "exp": now() + 600});
    let [header, payload, signature]: [&str; 3] =
        token.split('.').collect::<Vec<_>>().try_into().map_err(|_| anyhow::anyhow!("not a JWT: {token}"))?;

    let none_header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let rs256_header = B64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let mut raised: Value = serde_json::from_slice(&B64.decode(payload)?)?;
    raised["sub"] = json!("someone-else");
    let tampered = format!("{header}.{}.{signature}", B64.encode(raised.to_string()));
    let expired = json!({"sub": "admin", "role": "admin", "jti": "forged-2", "iat": now() - 100, "exp": now() - 10});

    let cases: Vec<(String, Option<String>, &str)> = vec![
        ("no credentials".into(), None, "unauthenticated"),
        ("garbage".into(), Some("Bearer not-a-token".into()), "token_invalid"),
        ("wrong scheme".into(), Some(format!("Basic {token}")), "token_invalid"),
        ("alg none".into(), Some(format!("Bearer {none_header}.{payload}.")), "token_algorithm"),
        ("alg RS256 header".into(), Some(format!("Bearer {rs256_header}.{payload}.{signature}")), "token_algorithm"),
        (
            "HS512 with the real secret".into(),
            Some(format!("Bearer {}", forge(Algorithm::HS512, SECRET, &claims)?)),
            "token_algorithm",
        ),
        ("tampered payload".into(), Some(format!("Bearer {tampered}")), "token_invalid"),
        (
            "another secret".into(),
            Some(format!("Bearer {}", forge(Algorithm::HS256, &"x".repeat(64), &claims)?)),
            "token_invalid",
        ),
        ("expired".into(), Some(format!("Bearer {}", forge(Algorithm::HS256, SECRET, &expired)?)), "token_expired"),
        ("unknown api key".into(), Some(format!("Bearer tgk_0123456789abcdef_{}", "0".repeat(64))), "api_key_invalid"),
    ];
    for (what, auth, want) in &cases {
        let (status, got) = me(&server, auth.as_deref()).await?;
        assert_eq!((status, got.as_str()), (StatusCode::UNAUTHORIZED, *want), "{what}");
    }
    // The genuine token still works, so the refusals above are about the forgeries.
    assert_eq!(me(&server, Some(&format!("Bearer {token}"))).await?.0, StatusCode::OK);

    let logged = server.security_events().iter().filter(|e| e["event"] == "auth_error").count();
    assert_eq!(logged, cases.len(), "every refusal is a security event");
    Ok(())
}

#[tokio::test]
async fn tokens_expire_after_the_configured_lifetime() -> anyhow::Result<()> {
    let server = Server::start(&[("TOOLGATE_AUTH_TOKEN_TTL_SECS", "1")])?;
    let token = server.admin_token().await?;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        me(&server, Some(&format!("Bearer {token}"))).await?,
        (StatusCode::UNAUTHORIZED, "token_expired".into())
    );
    Ok(())
}
