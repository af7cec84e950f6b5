//! `/api/v1/users`: admin-only account management.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::account_events::{Who, record};
use super::auth_api::{UserView, create_user};
use super::error::{ApiError, ErrorBody, Json};
use super::extract::Authenticated;
use super::{AppState, RoleSchema};
use toolgate_core::model::{AuthMethod, Role};
use toolgate_store::{AccountChange, Actor, StoreError};
use toolgate_telemetry::security::Level;

/// `{username, password, role}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// User name: `[a-z][a-z0-9._-]{0,63}`.
    pub username: String,
    /// Initial password; must meet the policy.
    pub password: String,
    /// Role.
    #[schema(value_type = RoleSchema)]
    pub role: Role,
}

/// The changes to apply; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// New role.
    #[schema(value_type = Option<RoleSchema>)]
    pub role: Option<Role>,
    /// Disable (or re-enable) the account; a disabled user's tokens stop working at once.
    pub disabled: Option<bool>,
}

/// Who acts: the person accountable, and the API key used, if any.
fn actor(auth: &Authenticated) -> Actor {
    let via_key = (auth.caller.auth_method == AuthMethod::ApiKey).then(|| auth.caller.name.clone());
    Actor { person: Some(auth.person.clone()), via_key }
}

/// Every account.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", operation_id = "list_users", security(("bearer" = [])),
    responses((status = 200, body = Vec<UserView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, auth: Authenticated) -> Result<Json<Vec<UserView>>, ApiError> {
    auth.require(Role::Admin)?;
    let users = state.store.call(|s| s.users()).await?;
    Ok(Json(users.into_iter().map(UserView::from).collect()))
}

/// Create an account with a role.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", operation_id = "create_user", security(("bearer" = [])), request_body = NewUser,
    responses((status = 201, body = UserView), (status = 400, body = ErrorBody, description = "weak password or invalid name"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "user exists")))]
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    Json(body): Json<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    auth.require(Role::Admin)?;
    let actor = actor(&auth);
    if actor.via_key.is_some() && body.role == Role::Admin {
        // An administrator is made by a person logged in with a password, never by a key.
        let refusal = ApiError::from(StoreError::KeyGrantsAdmin(toolgate_auth::capped(&body.username)));
        let detail = serde_json::json!({ "target": toolgate_auth::capped(&body.username), "role": body.role, "reason": refusal.status().1 });
        record(&state, Level::Warning, "user_create_refused", Who::Caller(&auth.caller), detail).await;
        return Err(refusal);
    }
    let user = create_user(&state, body.username, body.password, body.role, &actor).await?;
    let detail = serde_json::json!({ "target": user.username, "role": user.role, "created_by": user.created_by });
    record(&state, Level::Info, "user_created", Who::Caller(&auth.caller), detail).await;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Change an account's role or disable it.
#[utoipa::path(patch, path = "/api/v1/users/{username}", tag = "users", operation_id = "update_user", security(("bearer" = [])), request_body = UserChange,
    params(("username" = String, Path, description = "the account")),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not an admin, or `api_key_cannot_grant_admin`: an api key cannot promote or enable an admin"),
        (status = 404, body = ErrorBody, description = "no such user"), (status = 409, body = ErrorBody, description = "last enabled admin")))]
pub async fn update(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(username): Path<String>,
    Json(change): Json<UserChange>,
) -> Result<Json<UserView>, ApiError> {
    auth.require(Role::Admin)?;
    // Checked inside the write transaction (the last enabled admin stays one; a key never makes
    // an admin), so concurrent changes cannot both pass.
    let (actor, target) = (actor(&auth), username.clone());
    let change = AccountChange { role: change.role, disabled: change.disabled };
    let changed = match state.store.call(move |s| s.change_account(&target, change, &actor)).await {
        Ok(changed) => changed,
        Err(e @ (StoreError::LastAdmin(_) | StoreError::KeyGrantsAdmin(_))) => {
            let refusal = ApiError::from(e);
            let detail = serde_json::json!({ "target": toolgate_auth::capped(&username), "role": change.role,
                "disabled": change.disabled, "reason": refusal.status().1 });
            record(&state, Level::Warning, "user_change_refused", Who::Caller(&auth.caller), detail).await;
            return Err(refusal);
        }
        Err(e) => return Err(e.into()),
    };
    let user = changed.user;
    let detail = serde_json::json!({ "target": user.username, "role": user.role, "disabled": user.disabled,
        "granted_by": user.granted_by, "api_keys_revoked": changed.revoked_keys });
    record(&state, Level::Info, "user_changed", Who::Caller(&auth.caller), detail).await;
    Ok(Json(user.into()))
}
