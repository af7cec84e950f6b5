//! `/api/v1/users`: admin-only account management.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth_api::{UserView, create_user};
use super::error::{ApiError, ErrorBody, Json};
use super::extract::Authenticated;
use super::{AppState, RoleSchema};
use crate::auth::events::{self, Level};
use crate::model::Role;

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
    let user = create_user(&state, body.username, body.password, body.role).await?;
    events::emit(
        Level::Info,
        "user_created",
        Some(&auth.caller.name),
        auth.caller.source_ip,
        serde_json::json!({ "target": user.username, "role": user.role }),
    );
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Change an account's role or disable it.
#[utoipa::path(patch, path = "/api/v1/users/{username}", tag = "users", operation_id = "update_user", security(("bearer" = [])), request_body = UserChange,
    params(("username" = String, Path, description = "the account")),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such user"), (status = 409, body = ErrorBody, description = "last enabled admin")))]
pub async fn update(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(username): Path<String>,
    Json(change): Json<UserChange>,
) -> Result<Json<UserView>, ApiError> {
    auth.require(Role::Admin)?;
    // Fail closed on lock-out: the last enabled admin can be neither demoted nor disabled.
    let users = state.store.call(|s| s.users()).await?;
    let enabled_admins: Vec<&str> =
        users.iter().filter(|u| u.role == Role::Admin && !u.disabled).map(|u| u.username.as_str()).collect();
    let loses_admin = change.role.is_some_and(|r| r != Role::Admin) || change.disabled == Some(true);
    if loses_admin && enabled_admins == [username.as_str()] {
        return Err(ApiError::LastAdmin(username));
    }
    let target = username.clone();
    let user = state
        .store
        .call(move |s| {
            s.update_user(&target, |u| {
                if let Some(role) = change.role {
                    u.role = role;
                }
                if let Some(disabled) = change.disabled {
                    u.disabled = disabled;
                }
            })
        })
        .await?;
    events::emit(
        Level::Info,
        "user_changed",
        Some(&auth.caller.name),
        auth.caller.source_ip,
        serde_json::json!({ "target": user.username, "role": user.role, "disabled": user.disabled }),
    );
    Ok(Json(user.into()))
}
