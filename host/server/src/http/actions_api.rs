//! `/api/v1/actions` and `/api/v1/approvals`: action records, approvals of CRITICAL actions,
//! manual rollback.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::account_events::{Who, record};
use super::error::{ApiError, ErrorBody, Json, Query};
use super::extract::Authenticated;
use super::tools_api::{ActionResponse, respond};
use toolgate_core::model::{AuthMethod, Role};
use toolgate_governance::GovernanceError;
use toolgate_governance::action::{ActionRecord, ActionState, ActionView};
use toolgate_governance::pipeline::ActionFilter;
use toolgate_telemetry::security::Level;

/// Largest page of `GET /api/v1/actions`.
const MAX_PAGE: usize = 500;

/// Filters and page of `GET /api/v1/actions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ActionQuery {
    /// Only actions in this state (`completed`, `pending_approval`, ...).
    pub state: Option<String>,
    /// Only this tool.
    pub tool: Option<String>,
    /// Only this requester (admins; others always see only their own).
    pub actor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    pub before: Option<String>,
}

/// A page of actions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionPage {
    /// The actions (for a non-admin, possibly fewer than `limit` on a page that is not the last).
    pub actions: Vec<ActionView>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// List actions, newest first. Admins see every action; others their own.
#[utoipa::path(get, path = "/api/v1/actions", tag = "actions", operation_id = "list_actions",
    security(("bearer" = [])), params(ActionQuery),
    responses((status = 200, body = ActionPage), (status = 400, body = ErrorBody, description = "a bad filter"),
        (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Query(query): Query<ActionQuery>,
) -> Result<Json<ActionPage>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!("`limit` must be between 1 and {MAX_PAGE}")));
    }
    let actions_state = query
        .state
        .as_deref()
        .map(str::parse::<ActionState>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("`state`: {e}")))?;
    let admin = auth.caller.role == Role::Admin;
    let actor = if admin { query.actor } else { Some(auth.caller.name.clone()) };
    let filter = ActionFilter { state: actions_state, tool: query.tool, actor, before: query.before, limit };
    let mut actions = state.gateway.governor.actions(filter).await?;
    // From the page as read, before dropping the namesake's actions: the next page starts after it.
    let next = (actions.len() == limit).then(|| actions.last().map(|a| a.id.clone())).flatten();
    if !admin {
        actions.retain(|a| is_own(&auth, a));
    }
    Ok(Json(ActionPage { actions: actions.iter().map(ActionView::from).collect(), next }))
}

/// A user and an API key may share a name: an action is the caller's when both name and
/// method match.
fn is_own(auth: &Authenticated, record: &ActionRecord) -> bool {
    record.caller.name == auth.caller.name && record.caller.auth_method == auth.caller.auth_method
}

async fn visible(state: &AppState, auth: &Authenticated, id: &str) -> Result<ActionRecord, ApiError> {
    let not_found = || ApiError::Governance(toolgate_governance::GovernanceError::NoAction(id.to_owned()));
    let record = state.gateway.governor.action(id).await?.ok_or_else(not_found)?;
    // Others' actions do not exist for a non-admin.
    if auth.caller.role != Role::Admin && !is_own(auth, &record) {
        return Err(not_found());
    }
    Ok(record)
}

/// One action: its state, history, decision, output and audit sequence number.
#[utoipa::path(get, path = "/api/v1/actions/{id}", tag = "actions", operation_id = "get_action",
    security(("bearer" = [])), params(("id" = String, Path, description = "action id")),
    responses((status = 200, body = ActionView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`action_not_found` (also for another user's action)")))]
pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
    auth: Authenticated,
) -> Result<Json<ActionView>, ApiError> {
    Ok(Json(ActionView::from(&visible(&state, &auth, &id).await?)))
}

/// `{justification}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// Why it is undone (at least `policy.min_justification_len` characters).
    pub justification: Option<String>,
}

/// Undo a completed or failed action with the plugin's `rollback` (admin, with a justification).
/// The rollback is an action of its own; an undo record is applied at most once.
#[utoipa::path(post, path = "/api/v1/actions/{id}/rollback", tag = "actions", operation_id = "rollback_action",
    security(("bearer" = [])), params(("id" = String, Path, description = "the action to undo")),
    request_body = RollbackBody,
    responses((status = 200, body = ActionResponse, description = "the rollback action, `completed`"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not an admin, or `justification_required` (as on execute)"),
        (status = 404, body = ErrorBody, description = "`action_not_found`"),
        (status = 409, body = ErrorBody, description = "`no_undo_record`, `already_rolled_back`, `not_rollbackable`, or `rollback_failed`")))]
pub async fn rollback(
    State(state): State<AppState>,
    Path(id): Path<String>,
    auth: Authenticated,
    Json(body): Json<RollbackBody>,
) -> Result<(StatusCode, Json<ActionResponse>), ApiError> {
    auth.require(Role::Admin)?;
    respond(state.gateway.governor.rollback(&auth.caller, &id, body.justification).await?)
}

/// `{approvals: [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalList {
    /// Actions waiting for a second admin, oldest first.
    pub approvals: Vec<ActionView>,
}

/// Pending approvals (admin).
#[utoipa::path(get, path = "/api/v1/approvals", tag = "approvals", operation_id = "list_approvals",
    security(("bearer" = [])),
    responses((status = 200, body = ApprovalList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not an admin")))]
pub async fn approvals(State(state): State<AppState>, auth: Authenticated) -> Result<Json<ApprovalList>, ApiError> {
    auth.require(Role::Admin)?;
    let pending = state.gateway.governor.pending_approvals().await?;
    Ok(Json(ApprovalList { approvals: pending.iter().map(ActionView::from).collect() }))
}

/// `{comment?}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Recorded with the approval or rejection and in the audit log.
    #[serde(default)]
    pub comment: Option<String>,
}

/// Only people approve: an admin logged in with a password, not an API key.
fn approver(auth: &Authenticated) -> Result<(), ApiError> {
    auth.require(Role::Admin)?;
    if auth.caller.auth_method != AuthMethod::Password {
        return Err(ApiError::NeedsLoginToken);
    }
    Ok(())
}

/// Approve a pending action; it then runs at once, exactly once, and the answer is its outcome
/// (statuses as for `execute`). The approver must be an admin other than the requester (and
/// other than the creator of the requesting API key), logged in with a password.
#[utoipa::path(post, path = "/api/v1/approvals/{id}/approve", tag = "approvals", operation_id = "approve_action",
    security(("bearer" = [])), params(("id" = String, Path, description = "action id")), request_body = DecisionBody,
    responses((status = 200, body = ActionResponse, description = "approved and completed"),
        (status = 400, body = ErrorBody, description = "`needs_login_token`"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not an admin, `self_approval`, `approval_conflict_of_interest` (the approver owes its account or role to the requester, or the reverse, or both to one person, or it was created, promoted or enabled after the request), `approval_refused` by the policy, or the action was then refused by the exec policy"),
        (status = 404, body = ErrorBody, description = "`action_not_found`"),
        (status = 409, body = ErrorBody, description = "`not_pending` (already decided: it never runs twice), `approval_expired`, `requester_gone` (the requester was disabled or its key revoked meanwhile), or the run failed / was rolled back"),
        (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
pub async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    auth: Authenticated,
    Json(body): Json<DecisionBody>,
) -> Result<(StatusCode, Json<ActionResponse>), ApiError> {
    approver(&auth)?;
    match state.gateway.governor.approve(&auth.caller, &id, body.comment).await {
        Ok(outcome) => respond(outcome),
        Err(e @ (GovernanceError::SelfApproval | GovernanceError::ConflictOfInterest(_))) => {
            // Someone tried to be both people of the two-person rule: a security event and an entry.
            let refusal = ApiError::from(e);
            let detail =
                serde_json::json!({ "action_id": id, "reason": refusal.status().1, "message": refusal.to_string() });
            record(&state, Level::Warning, "approval_refused", Who::Caller(&auth.caller), detail).await;
            Err(refusal)
        }
        Err(e) => Err(e.into()),
    }
}

/// Reject a pending action (any admin; the requester withdraws it this way).
#[utoipa::path(post, path = "/api/v1/approvals/{id}/reject", tag = "approvals", operation_id = "reject_action",
    security(("bearer" = [])), params(("id" = String, Path, description = "action id")), request_body = DecisionBody,
    responses((status = 200, body = ActionResponse, description = "`rejected`"),
        (status = 400, body = ErrorBody, description = "`needs_login_token`"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "not an admin"),
        (status = 404, body = ErrorBody, description = "`action_not_found`"),
        (status = 409, body = ErrorBody, description = "`not_pending` or `approval_expired`")))]
pub async fn reject(
    State(state): State<AppState>,
    Path(id): Path<String>,
    auth: Authenticated,
    Json(body): Json<DecisionBody>,
) -> Result<(StatusCode, Json<ActionResponse>), ApiError> {
    approver(&auth)?;
    respond(state.gateway.governor.reject(&auth.caller, &id, body.comment).await?)
}
