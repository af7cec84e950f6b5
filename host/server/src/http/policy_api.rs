//! What the policy would decide; nothing runs, and every evaluation is audited.
//!
//! - `POST /api/v1/policy/evaluate`: the action decision for a tool call by the caller (a dry
//!   run), on its parameters with secrets redacted exactly as the execute path redacts them.
//! - `POST /api/v1/policy/decide` (admin): the decision of the live policy set on a raw input
//!   document at either point, as `toolgate policy eval --input` gives it offline: the same
//!   evaluator, so the two answer alike on the same revision.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody, Json};
use super::extract::Authenticated;
use toolgate_core::AuditEvent;
use toolgate_core::model::{Role, ToolName};
use toolgate_core::redact::redact;
use toolgate_governance::GovernanceError;
use toolgate_governance::journal::Write;
use toolgate_policy::{ActionInput, ApprovalState, CallerInput, Decision, Point, ToolInput};

/// A tool call to evaluate.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// Tool name.
    pub tool: String,
    /// Parameters, checked against the tool's schema.
    #[serde(default = "empty_object")]
    pub params: serde_json::Value,
    /// The justification the call would carry.
    #[serde(default)]
    pub justification: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// The decision the call would get, and the input it was decided on.
#[derive(Debug, Serialize, ToSchema)]
pub struct Evaluation {
    /// The decision document: `allow`, `reasons`, `requirements`, `revision`.
    #[schema(value_type = Object)]
    pub decision: Decision,
    /// The exact `input` document the `action` policy saw (secret parameters redacted).
    #[schema(value_type = Object)]
    pub input: ActionInput,
}

/// Evaluate the action policy for a tool call by the caller, as a dry run.
#[utoipa::path(post, path = "/api/v1/policy/evaluate", tag = "policy", operation_id = "evaluate_policy",
    security(("bearer" = [])), request_body = EvaluateRequest,
    responses((status = 200, body = Evaluation, description = "the decision (allowed or not)"),
        (status = 400, body = ErrorBody, description = "params do not match the tool's schema (`invalid_params`)"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "no such tool (`unknown_tool`)")))]
pub async fn evaluate(
    State(state): State<AppState>,
    auth: Authenticated,
    Json(body): Json<EvaluateRequest>,
) -> Result<Json<Evaluation>, ApiError> {
    let gateway = &state.gateway;
    let name: ToolName =
        body.tool.parse().map_err(|_| toolgate_runtime::PluginError::UnknownTool(body.tool.clone()))?;
    let tool =
        gateway.plugins.tool(&name).ok_or_else(|| toolgate_runtime::PluginError::UnknownTool(body.tool.clone()))?;
    gateway.plugins.check_params(&name, &body.params)?;
    let caller = &auth.caller;
    // INVARIANT: the policy, the response and the logs see what execute's policy sees: the
    // redacted params, and the command split from them.
    let params = redact(&tool.params_schema, &body.params);
    let command = toolgate_governance::command::command_line(tool, &params)?;
    let input = ActionInput {
        caller: CallerInput::from(caller),
        tool: ToolInput::from(tool),
        params,
        justification: body.justification,
        approval: ApprovalState::None,
        dry_run: true,
        command,
        rollback: None,
    };
    let decision = gateway.policy.decide_action(&input);
    let mut event = AuditEvent::new("policy_evaluate", decision.allow, decision.reason_codes()).by(caller);
    event.tool = Some(tool.name.to_string());
    event.category = Some(tool.category);
    event.detail = serde_json::json!({ "dry_run": true, "revision": decision.revision });
    // Answered once its audit entry is committed, like every call; waited out asleep, never
    // blocking an async worker on a full journal queue.
    gateway.journal.submit(vec![Write::Audit(Box::new(event))]).await.map_err(GovernanceError::from)?;
    Ok(Json(Evaluation { decision, input }))
}

/// A raw decision to take: a decision point and the exact input document.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    /// `action` or `exec`.
    #[schema(value_type = String)]
    pub point: Point,
    /// The input document (`ActionInput` or `ExecInput`, see `policies/README.md`), as is.
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
}

/// The decision the live policy set takes on a raw input document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Decided {
    /// The decision document: `allow`, `reasons`, `requirements`, `revision`.
    #[schema(value_type = Object)]
    pub decision: Decision,
}

/// Decide a raw input document with the live policy set (admin): what `toolgate policy eval`
/// answers on the same files. Nothing runs; the evaluation is audited.
#[utoipa::path(post, path = "/api/v1/policy/decide", tag = "policy", operation_id = "decide_policy",
    security(("bearer" = [])), request_body = DecideRequest,
    responses((status = 200, body = Decided, description = "the decision (allowed or not)"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "not an admin (`forbidden`)")))]
pub async fn decide(
    State(state): State<AppState>,
    auth: Authenticated,
    Json(body): Json<DecideRequest>,
) -> Result<Json<Decided>, ApiError> {
    auth.require(Role::Admin)?;
    let gateway = &state.gateway;
    let decision = gateway.policy.decide(body.point, &body.input);
    let mut event = AuditEvent::new("policy_decide", decision.allow, decision.reason_codes()).by(&auth.caller);
    event.detail = serde_json::json!({ "point": body.point, "dry_run": true, "revision": decision.revision });
    // Answered once its audit entry is committed, like every call; waited out asleep, never
    // blocking an async worker on a full journal queue.
    gateway.journal.submit(vec![Write::Audit(Box::new(event))]).await.map_err(GovernanceError::from)?;
    Ok(Json(Decided { decision }))
}
