//! `/api/v1/auth/*`: register, login, logout, refresh, me, password.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, Json};
use super::extract::Authenticated;
use super::ratelimit::RateClass;
use super::{AppState, ClientIp, RoleSchema};
use crate::auth::events::{self, Level};
use crate::auth::token::Claims;
use crate::auth::{AuthError, check_name, password};
use crate::model::{AuthMethod, Role};
use crate::store::UserRecord;

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

/// Issue a token for `user` and answer as login does.
fn token_response(state: &AppState, user: UserRecord, status: StatusCode) -> Result<Response, ApiError> {
    let (token, claims) = state.tokens.issue(&user.username, user.role)?;
    let cookie = cookie(state, &token, state.tokens.ttl_secs())?;
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
    let user = create_user(&state, body.username, body.password, Role::Viewer).await?;
    events::emit(Level::Info, "user_registered", Some(&user.username), ip, serde_json::json!({ "role": user.role }));
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Check, hash and store a new user.
pub(super) async fn create_user(
    state: &AppState,
    username: String,
    pw: String,
    role: Role,
) -> Result<UserRecord, ApiError> {
    check_name(&username)?;
    password::check_policy(&pw)?;
    let log_n = state.config.auth.scrypt_log_n;
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw, log_n))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let user = UserRecord::new(username, hash, role);
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
    // Per account as well as per address, so a distributed guess at one password is slowed too.
    state.limits.check(RateClass::Login, &format!("user:{}", body.username), Some(&body.username), ip)?;
    let failed = |reason: &str| {
        events::emit(Level::Warning, "login_failed", Some(&body.username), ip, serde_json::json!({ "reason": reason }));
    };
    let Some(user) = check_password(&state, &body.username, body.password).await? else {
        failed("invalid_credentials");
        return Err(AuthError::InvalidCredentials.into());
    };
    if user.disabled {
        failed("user_disabled");
        return Err(AuthError::UserDisabled.into());
    }
    events::emit(Level::Info, "login_success", Some(&user.username), ip, serde_json::json!({ "role": user.role }));
    token_response(&state, user, StatusCode::OK)
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
    events::emit(Level::Info, "logout", Some(&auth.caller.name), auth.caller.source_ip, serde_json::json!({}));
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie(&state, "", 0)?);
    Ok(response)
}

/// Exchange a valid login token for a fresh one; the old one is revoked.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = LoginResponse), (status = 400, body = ErrorBody, description = "not a login token"),
        (status = 401, body = ErrorBody)))]
pub async fn refresh(State(state): State<AppState>, auth: Authenticated) -> Result<Response, ApiError> {
    let claims = login_claims(&auth)?.clone();
    let name = auth.caller.name.clone();
    let user = state.store.call(move |s| s.user(&name)).await?.ok_or(AuthError::TokenInvalid)?;
    state.store.call(move |s| s.revoke_token(&claims.jti, claims.exp)).await?;
    token_response(&state, user, StatusCode::OK)
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
    let ip = auth.caller.source_ip;
    if check_password(&state, &name, body.old_password).await?.is_none() {
        events::emit(
            Level::Warning,
            "password_change_failed",
            Some(&name),
            ip,
            serde_json::json!({ "reason": "wrong_password" }),
        );
        return Err(AuthError::WrongPassword.into());
    }
    password::check_policy(&body.new_password)?;
    let log_n = state.config.auth.scrypt_log_n;
    let new_password = body.new_password;
    let hash = tokio::task::spawn_blocking(move || password::hash(&new_password, log_n))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let (target, claims) = (name.clone(), login_claims(&auth)?.clone());
    // Every token issued before now dies, this one explicitly; the caller gets a fresh one.
    let now = crate::auth::token::now_secs();
    let user = state
        .store
        .call(move |s| {
            let user = s.update_user(&target, |u| {
                u.password_hash = hash;
                u.tokens_valid_after = now;
            })?;
            s.revoke_token(&claims.jti, claims.exp)?;
            Ok(user)
        })
        .await?;
    events::emit(Level::Info, "password_changed", Some(&name), ip, serde_json::json!({}));
    token_response(&state, user, StatusCode::OK)
}
