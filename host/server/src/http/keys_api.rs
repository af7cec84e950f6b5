//! `/api/v1/keys`: admin-only API keys for service accounts.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;

use super::account_events::{Who, record};
use super::error::{ApiError, ErrorBody, Json};
use super::extract::Authenticated;
use super::{AppState, RoleSchema};
use toolgate_auth::{AuthError, apikey, check_name};
use toolgate_core::model::{AuthMethod, Role};
use toolgate_store::ApiKeyRecord;
use toolgate_telemetry::security::Level;

/// `{name, role, expires_in_days}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Service account name: `[a-z][a-z0-9._-]{0,63}`, unique.
    pub name: String,
    /// Role of requests made with the key.
    #[schema(value_type = RoleSchema)]
    pub role: Role,
    /// Days until the key expires (1 to `auth.api_key_max_days`).
    pub expires_in_days: u32,
}

/// An API key as listed (never the secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// Public id (the part after `tgk_`).
    pub id: String,
    /// Name.
    pub name: String,
    /// Role.
    #[schema(value_type = RoleSchema)]
    pub role: Role,
    /// The admin who created it (always a person: keys cannot create keys).
    pub created_by: String,
    /// Creation time, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Expiry, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// Whether it was revoked.
    pub revoked: bool,
}

impl From<ApiKeyRecord> for KeyView {
    fn from(k: ApiKeyRecord) -> Self {
        KeyView {
            id: k.id,
            name: k.name,
            role: k.role,
            created_by: k.created_by,
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked: k.revoked,
        }
    }
}

/// A new key: the only response that ever contains the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key, for `Authorization: Bearer`. Shown once; only its hash is stored.
    pub key: String,
    /// The key's record.
    #[serde(flatten)]
    pub info: KeyView,
}

/// Every API key.
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", operation_id = "list_keys", security(("bearer" = [])),
    responses((status = 200, body = Vec<KeyView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, auth: Authenticated) -> Result<Json<Vec<KeyView>>, ApiError> {
    auth.require(Role::Admin)?;
    let keys = state.store.call(|s| s.api_keys()).await?;
    Ok(Json(keys.into_iter().map(KeyView::from).collect()))
}

/// Keys are managed by an admin logged in with a password, never with another key: a key's
/// `created_by` is then always a person, whom the approval of its actions is checked against.
fn manager(auth: &Authenticated) -> Result<(), ApiError> {
    auth.require(Role::Admin)?;
    if auth.caller.auth_method != AuthMethod::Password {
        return Err(ApiError::NeedsLoginToken);
    }
    Ok(())
}

/// Create a named key with a role and an expiry (an admin with a login token, not an API key).
#[utoipa::path(post, path = "/api/v1/keys", tag = "keys", operation_id = "create_key", security(("bearer" = [])), request_body = NewKey,
    responses((status = 201, body = CreatedKey),
        (status = 400, body = ErrorBody, description = "invalid name or expiry, or `needs_login_token`"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "name in use")))]
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    Json(body): Json<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    manager(&auth)?;
    check_name(&body.name)?;
    let max = state.config.auth.api_key_max_days;
    if body.expires_in_days == 0 || body.expires_in_days > max {
        return Err(AuthError::BadExpiry(format!("`expires_in_days` must be between 1 and {max}")).into());
    }
    let (id, key, secret_sha256) = apikey::generate();
    let now = OffsetDateTime::now_utc();
    let record = ApiKeyRecord {
        id,
        name: body.name,
        role: body.role,
        secret_sha256,
        created_by: auth.caller.name.clone(),
        created_at: now,
        expires_at: now + Duration::days(i64::from(body.expires_in_days)),
        revoked: false,
    };
    let stored = record.clone();
    state.store.call(move |s| s.insert_api_key(&stored)).await?;
    let detail = serde_json::json!({ "key": record.name, "id": record.id, "role": record.role, "expires_at": record.expires_at.unix_timestamp() });
    record_event(&state, "api_key_created", &auth, detail).await;
    Ok((StatusCode::CREATED, Json(CreatedKey { key, info: record.into() })))
}

/// Revoke a key: it stops working at once and stays listed (an admin with a login token).
#[utoipa::path(delete, path = "/api/v1/keys/{name}", tag = "keys", operation_id = "revoke_key", security(("bearer" = [])),
    params(("name" = String, Path, description = "the key's name")),
    responses((status = 200, body = KeyView), (status = 400, body = ErrorBody, description = "`needs_login_token`"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such key")))]
pub async fn revoke(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(name): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    manager(&auth)?;
    let key = state.store.call(move |s| s.revoke_api_key(&name)).await?;
    record_event(&state, "api_key_revoked", &auth, serde_json::json!({ "key": key.name, "id": key.id })).await;
    Ok(Json(key.into()))
}

async fn record_event(state: &AppState, kind: &str, auth: &Authenticated, detail: serde_json::Value) {
    record(state, Level::Info, kind, Who::Caller(&auth.caller), detail).await;
}
