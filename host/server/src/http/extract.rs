//! Authentication as an extractor: a handler that takes a [`Caller`] (or [`Authenticated`]) only
//! runs for a valid token or API key, and the caller's per-user rate limit is counted.

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use time::OffsetDateTime;
use tracing::Instrument as _;

use super::AppState;
use super::error::ApiError;
use super::ratelimit::{RateClass, client_ip};
use toolgate_auth::token::Claims;
use toolgate_auth::{AuthError, apikey};
use toolgate_core::model::{AuthMethod, Caller, Role};
use toolgate_telemetry::security::{self, Level};
use toolgate_telemetry::span;

/// An authenticated request: the caller, and the token's claims when it was a login token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Who is calling.
    pub caller: Caller,
    /// The login token's claims (`None` for an API key).
    pub claims: Option<Claims>,
    /// The person accountable: the user, or the admin who created the API key.
    pub person: String,
}

impl Authenticated {
    /// Refuse unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.caller.role >= role { Ok(()) } else { Err(AuthError::Forbidden(role).into()) }
    }
}

/// Where a credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Bearer,
    Cookie,
}

/// The credential a request presents: the bearer header wins over the cookie.
fn credential(parts: &Parts, cookie_name: &str) -> Result<(String, Source), AuthError> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthError::TokenInvalid)?;
        return match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
                Ok((token.trim().to_owned(), Source::Bearer))
            }
            _ => Err(AuthError::TokenInvalid),
        };
    }
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == cookie_name && !value.is_empty()).then(|| (value.to_owned(), Source::Cookie))
        })
        .ok_or(AuthError::MissingCredentials)
}

/// A browser sends the cookie with any request to us, whoever made the page; a request that
/// changes state on the cookie's strength must come from our own origin (or one of
/// `cors_origins`). A bodiless `POST` (refresh, logout) needs no CORS preflight, so this check is
/// all that stands between it and a cross-site form.
fn check_origin(parts: &Parts, cors_origins: &[String]) -> Result<(), AuthError> {
    if matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS) {
        return Ok(());
    }
    let method = parts.method.as_str();
    let origin = parts.headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()).ok_or_else(|| {
        AuthError::CrossOrigin(format!("a `{method}` authenticated by the cookie must send `Origin`"))
    })?;
    if cors_origins.iter().any(|allowed| allowed == origin) {
        return Ok(());
    }
    // HTTP/1.1 names the server in `Host`; HTTP/2 in the `:authority` pseudo-header, which is
    // the request URI's authority here.
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let authority = origin.split_once("://").map(|(_, rest)| rest);
    if !host.is_empty() && authority.is_some_and(|a| a.eq_ignore_ascii_case(host)) {
        return Ok(());
    }
    Err(AuthError::CrossOrigin(format!("origin `{}` is not this server's", toolgate_auth::capped(origin))))
}

async fn authenticate(state: &AppState, credential: String, ip: Option<IpAddr>) -> Result<Authenticated, ApiError> {
    if let Some((id, secret)) = apikey::parse(&credential) {
        let (id, secret) = (id.to_owned(), secret.to_owned());
        let (key, creator) =
            state.store.call(move |s| s.api_key_with_creator(&id)).await?.ok_or(AuthError::KeyInvalid)?;
        if !apikey::matches(&secret, &key.secret_sha256) {
            return Err(AuthError::KeyInvalid.into());
        }
        if key.revoked {
            return Err(AuthError::KeyRevoked.into());
        }
        if key.expires_at <= OffsetDateTime::now_utc() {
            return Err(AuthError::KeyExpired.into());
        }
        // A key acts for its creator: it holds no more than the creator holds now.
        let void = |why: String| AuthError::KeyCreatorInactive { key: key.name.clone(), why };
        match creator {
            None => return Err(void(format!("its creator `{}` no longer exists", key.created_by)).into()),
            Some(c) if c.disabled => return Err(void(format!("its creator `{}` is disabled", c.username)).into()),
            Some(c) if c.role < key.role => {
                return Err(
                    void(format!("its creator `{}` no longer holds the `{}` role", c.username, key.role)).into()
                );
            }
            Some(_) => {}
        }
        let caller = Caller { name: key.name, role: key.role, auth_method: AuthMethod::ApiKey, source_ip: ip };
        return Ok(Authenticated { caller, claims: None, person: key.created_by });
    }
    let claims = state.tokens.verify(&credential)?;
    let (sub, jti) = (claims.sub.clone(), claims.jti.clone());
    // One read transaction over cached pages, on every request: cheaper on this thread than a
    // hop to the blocking pool and back.
    let session = state.store.session(&sub, &jti)?;
    if session.revoked {
        return Err(AuthError::TokenRevoked.into());
    }
    // A deleted user's token is as good as forged.
    let user = session.user.ok_or(AuthError::TokenInvalid)?;
    if user.disabled {
        return Err(AuthError::UserDisabled.into());
    }
    // A new generation (password change, disable, enable, role change) ends every older token,
    // whatever second it was issued in; `tokens_valid_after` covers tokens from before `gen`.
    if claims.r#gen != user.generation || claims.iat < user.tokens_valid_after {
        return Err(AuthError::TokenRevoked.into());
    }
    // The store's role wins: a demotion takes effect at once, not at token expiry.
    let person = user.username.clone();
    let caller = Caller { name: user.username, role: user.role, auth_method: AuthMethod::Password, source_ip: ip };
    Ok(Authenticated { caller, claims: Some(claims), person })
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ip = client_ip(parts, &state.trusted_proxies);
        let credential = credential(parts, &state.config.auth.cookie_name);
        // The method only (never the credential): `api_key`, `jwt`, or `none` when absent or malformed.
        let method = match &credential {
            Ok((c, _)) if apikey::parse(c).is_some() => "api_key",
            Ok(_) => "jwt",
            Err(_) => "none",
        };
        let span = span::auth(method);
        let result = match credential {
            Ok((credential, source)) => match source {
                Source::Cookie => check_origin(parts, &state.config.cors_origins).map_err(ApiError::from),
                Source::Bearer => Ok(()),
            }
            .map(|()| credential),
            Err(e) => Err(e.into()),
        };
        let result = match result {
            Ok(credential) => authenticate(state, credential, ip).instrument(span.clone()).await,
            Err(e) => Err(e),
        };
        match &result {
            Ok(auth) => span::record_auth(&span, "ok", Some(auth.caller.role.as_str())),
            Err(err) => span::record_auth(&span, err.status().1, None),
        }
        drop(span);
        match result {
            Ok(auth) => {
                let class = parts.extensions.get::<RateClass>().copied().unwrap_or(RateClass::General);
                let key = format!("user:{}", auth.caller.name);
                state.limits.check(class, &key, Some(&auth.caller.name), ip)?;
                Ok(auth)
            }
            Err(err) => {
                let (status, code) = err.status();
                if status == axum::http::StatusCode::UNAUTHORIZED
                    || matches!(err, ApiError::Auth(AuthError::CrossOrigin(_)))
                {
                    security::emit(
                        Level::Warning,
                        "auth_error",
                        None,
                        ip,
                        serde_json::json!({ "code": code, "path": parts.uri.path() }),
                    );
                }
                Err(err)
            }
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Authenticated::from_request_parts(parts, state).await.map(|a| a.caller)
    }
}

/// The client's address (see [`client_ip`]; `None` when served without connection info).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts, &state.trusted_proxies)))
    }
}
