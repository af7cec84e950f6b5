//! `/api/v1/auth/*`: register, login, logout, refresh, me, password.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::account_events::{Who, record};
use super::error::{ApiError, ErrorBody, Json};
use super::extract::Authenticated;
use super::ratelimit::RateClass;
use super::{AppState, ClientIp, RoleSchema};
use toolgate_auth::token::Claims;
use toolgate_auth::{AuthError, check_name, password};
use toolgate_core::model::{AuthMethod, Role};
use toolgate_store::{Actor, UserRecord};
use toolgate_telemetry::security::Level;

/// `{username, password}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A user as the API shows it (never the hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// User name.
    pub username: String,
    /// Role.
    #[schema(value_type = RoleSchema)]
    pub role: Role,
    /// Creation time, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Whether the account is disabled.
    pub disabled: bool,
}

impl From<UserRecord> for UserView {
    fn from(u: UserRecord) -> Self {
        UserView { username: u.username, role: u.role, created_at: u.created_at, disabled: u.disabled }
    }
}

/// A login token, also set as an `HttpOnly; Secure; SameSite=Strict` cookie.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// The JWT, for `Authorization: Bearer`.
    pub token: String,
    /// When it expires, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// The user.
    pub user: UserView,
}

/// Who is calling.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    /// User or API key name.
    pub name: String,
    /// Current role.
    #[schema(value_type = RoleSchema)]
    pub role: Role,
    /// `password` (login token) or `api_key`.
    #[schema(value_type = String)]
    pub auth_method: AuthMethod,
    /// The login token's expiry, RFC 3339 (absent for API keys).
    #[serde(skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

/// `{old_password, new_password}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The current password.
    pub old_password: String,
    /// The new password; must meet the policy.
    pub new_password: String,
}

fn unix_to_time(secs: u64) -> OffsetDateTime {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn cookie(state: &AppState, value: &str, max_age: u64) -> Result<HeaderValue, ApiError> {
    let secure = if state.config.http.cookie_secure { "; Secure" } else { "" };
    let name = &state.config.auth.cookie_name;
    HeaderValue::from_str(&format!("{name}={value}; HttpOnly{secure}; SameSite=Strict; Path=/; Max-Age={max_age}"))
        .map_err(|e| ApiError::Internal(format!("cookie header: {e}")))
}

/// Issue a token for `user` (continuing the session that logged in at `auth_time`, or a new one)
/// and answer as login does.
fn token_response(
    state: &AppState,
    user: UserRecord,
    auth_time: Option<u64>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let (token, claims) = state.tokens.issue_session(&user.username, user.role, user.generation, auth_time)?;
    let cookie = cookie(state, &token, claims.exp.saturating_sub(claims.iat))?;
    let body = LoginResponse { token, expires_at: unix_to_time(claims.exp), user: user.into() };
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Create an account (when `auth.register_enabled`); new users are viewers.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = Credentials,
    responses((status = 201, body = UserView), (status = 400, body = ErrorBody, description = "weak password or invalid name"),
        (status = 403, body = ErrorBody, description = "registration disabled"), (status = 409, body = ErrorBody, description = "user exists")))]
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<Credentials>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    if !state.config.auth.register_enabled {
        return Err(ApiError::RegistrationDisabled);
    }
    let user = create_user(&state, body.username, body.password, Role::Viewer, &Actor::default()).await?;
    let detail = serde_json::json!({ "target": user.username, "role": user.role });
    record(&state, Level::Info, "user_registered", Who::Named(Some(&user.username), ip), detail).await;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Check, hash and store a new user, created by `actor`.
pub(super) async fn create_user(
    state: &AppState,
    username: String,
    pw: String,
    role: Role,
    actor: &Actor,
) -> Result<UserRecord, ApiError> {
    check_name(&username)?;
    password::check_policy(&pw)?;
    let log_n = state.config.auth.scrypt_log_n;
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw, log_n))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let mut user = UserRecord::new(username, hash, role);
    user.created_by.clone_from(&actor.person);
    if actor.person.is_some() {
        // Whoever creates an account gives it its first authority.
        user.granted_by.clone_from(&actor.person);
        user.granted_at = Some(user.created_at);
    }
    let record = user.clone();
    state.store.call(move |s| s.insert_user(&record)).await?;
    Ok(user)
}

/// Verify `password` for `username` off the async runtime; unknown users cost the same time.
async fn check_password(state: &AppState, username: &str, pw: String) -> Result<Option<UserRecord>, ApiError> {
    let name = username.to_owned();
    let user = state.store.call(move |s| s.user(&name)).await?;
    let log_n = state.config.auth.scrypt_log_n;
    tokio::task::spawn_blocking(move || match user {
        Some(user) => Ok(password::verify(&pw, &user.password_hash)?.then_some(user)),
        None => {
            password::verify_dummy(log_n);
            Ok(None)
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Exchange a user name and password for a token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Credentials,
    responses((status = 200, body = LoginResponse, description = "token, also set as cookie"),
        (status = 401, body = ErrorBody, description = "invalid credentials or disabled account")))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<Credentials>,
) -> Result<Response, ApiError> {
    // Per account *and* address (besides the per-address limit of the route): guesses from one
    // address slow that address down, and never lock the owner out from another one. A name no
    // account can have is cut to one bucket per address.
    let name = toolgate_auth::capped(&body.username);
    let bucket = format!(
        "login:{name}@{}",
        ip.map_or_else(|| "unknown".to_owned(), |ip| super::ratelimit::address_bucket(ip).to_string())
    );
    state.limits.check(RateClass::Login, &bucket, Some(&name), ip)?;
    let who = Who::Named(Some(&body.username), ip);
    let Some(user) = check_password(&state, &body.username, body.password).await? else {
        let detail = serde_json::json!({ "reason": "invalid_credentials" });
        record(&state, Level::Warning, "login_failed", who, detail).await;
        return Err(AuthError::InvalidCredentials.into());
    };
    if user.disabled {
        record(&state, Level::Warning, "login_failed", who, serde_json::json!({ "reason": "user_disabled" })).await;
        return Err(AuthError::UserDisabled.into());
    }
    record(&state, Level::Info, "login_success", who, serde_json::json!({ "role": user.role })).await;
    token_response(&state, user, None, StatusCode::OK)
}

fn login_claims(auth: &Authenticated) -> Result<&Claims, ApiError> {
    auth.claims.as_ref().ok_or(ApiError::NeedsLoginToken)
}

/// Revoke the presented token and clear the cookie.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "token revoked"), (status = 400, body = ErrorBody, description = "not a login token"),
        (status = 401, body = ErrorBody)))]
pub async fn logout(State(state): State<AppState>, auth: Authenticated) -> Result<Response, ApiError> {
    let claims = login_claims(&auth)?.clone();
    state.store.call(move |s| s.revoke_token(&claims.jti, claims.exp)).await?;
    record(&state, Level::Info, "logout", Who::Caller(&auth.caller), serde_json::json!({})).await;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie(&state, "", 0)?);
    Ok(response)
}

/// Exchange a valid login token for a fresh one of the same session, once: the old one is
/// revoked as it is used (of two concurrent refreshes with one token, one wins), and no token
/// of the session outlives `auth.session_max_secs` after its login.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = LoginResponse), (status = 400, body = ErrorBody, description = "not a login token"),
        (status = 401, body = ErrorBody, description = "`session_expired` past the absolute lifetime, `token_reused`"),
        (status = 403, body = ErrorBody, description = "`cross_origin`: cookie-authenticated from another origin")))]
pub async fn refresh(State(state): State<AppState>, auth: Authenticated) -> Result<Response, ApiError> {
    let claims = login_claims(&auth)?.clone();
    // Tokens from before `auth_time` existed started their session at their own `iat`.
    let auth_time = if claims.auth_time == 0 { claims.iat } else { claims.auth_time };
    let name = auth.caller.name.clone();
    let (jti, exp, generation) = (claims.jti.clone(), claims.exp, claims.r#gen);
    let (user, fresh) = state
        .store
        .call(move |s| {
            // The session must still be the token's: a password change, a disable or a role
            // change committed since the request was authenticated ends it here too.
            let user = s.user(&name)?.filter(|u| u.generation == generation && !u.disabled);
            let fresh = if user.is_some() { s.consume_token(&jti, exp)? } else { false };
            Ok((user, fresh))
        })
        .await?;
    let Some(mut user) = user else { return Err(AuthError::TokenRevoked.into()) };
    if !fresh {
        // One of the two holders of this token stole it: end the session for both.
        let name = user.username.clone();
        state.store.call(move |s| s.end_sessions(&name)).await?;
        record(
            &state,
            Level::Warning,
            "refresh_reused",
            Who::Caller(&auth.caller),
            serde_json::json!({ "reason": "token_reused", "sessions": "ended" }),
        )
        .await;
        return Err(AuthError::RefreshReused.into());
    }
    // Issued in the token's own generation, never a newer one it did not authenticate for.
    user.generation = generation;
    let response = token_response(&state, user, Some(auth_time), StatusCode::OK);
    if let Err(ApiError::Auth(AuthError::SessionOver)) = &response {
        record(
            &state,
            Level::Warning,
            "refresh_refused",
            Who::Caller(&auth.caller),
            serde_json::json!({ "reason": "session_expired" }),
        )
        .await;
    }
    response
}

/// The caller as the server sees it.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)))]
pub async fn me(auth: Authenticated) -> Json<MeResponse> {
    Json(MeResponse {
        name: auth.caller.name,
        role: auth.caller.role,
        auth_method: auth.caller.auth_method,
        expires_at: auth.claims.map(|c| unix_to_time(c.exp)),
    })
}

/// Change one's own password, proving the current one.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", security(("bearer" = [])), request_body = PasswordChange,
    responses((status = 200, body = LoginResponse, description = "password changed; other sessions ended; a fresh token"),
        (status = 400, body = ErrorBody, description = "weak password"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "current password wrong")))]
pub async fn change_password(
    State(state): State<AppState>,
    auth: Authenticated,
    Json(body): Json<PasswordChange>,
) -> Result<Response, ApiError> {
    login_claims(&auth)?;
    let name = auth.caller.name.clone();
    if check_password(&state, &name, body.old_password).await?.is_none() {
        let detail = serde_json::json!({ "reason": "wrong_password" });
        record(&state, Level::Warning, "password_change_failed", Who::Caller(&auth.caller), detail).await;
        return Err(AuthError::WrongPassword.into());
    }
    password::check_policy(&body.new_password)?;
    let log_n = state.config.auth.scrypt_log_n;
    let new_password = body.new_password;
    let hash = tokio::task::spawn_blocking(move || password::hash(&new_password, log_n))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let (target, claims) = (name.clone(), login_claims(&auth)?.clone());
    // A new generation: every token of the user dies (this one explicitly too); the caller gets a
    // fresh one, starting a new session.
    let user = state.store.call(move |s| s.set_password(&target, hash, &claims.jti, claims.exp)).await?;
    record(&state, Level::Info, "password_changed", Who::Caller(&auth.caller), serde_json::json!({})).await;
    token_response(&state, user, None, StatusCode::OK)
}
