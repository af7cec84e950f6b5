//! `/api/v1/tools`: the tools a caller may use, and the execute pipeline.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody, Json};
use super::extract::Authenticated;
use toolgate_core::Code;
use toolgate_governance::ExecuteRequest;
use toolgate_governance::action::{ActionError, ActionState, Approval};
use toolgate_governance::pipeline::Outcome;
use toolgate_policy::{ActionInput, ApprovalState, CallerInput, Decision, Requirement, ToolInput};
use toolgate_runtime::Verdict;

/// Reason codes a caller can do something about: the tool is still listed for them.
const ACTIONABLE: [Code; 2] = [Code::JustificationRequired, Code::ApprovalRequired];

/// What a tool requires of a call, from the policy's decision for this caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct Requires {
    /// A justification must be given.
    pub justification: bool,
    /// A second admin must approve each call.
    pub approval: bool,
    /// The effect is verified after the call.
    pub verify: bool,
    /// The call is rolled back if verify fails, and can be rolled back by an admin. False for a
    /// tool that cannot undo its effect (a restart), whatever its category.
    pub rollback: bool,
}

/// A tool as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolView {
    /// Name, as in `/api/v1/tools/{tool}/execute`.
    pub name: String,
    /// The plugin that provides it.
    pub plugin: String,
    /// What it does.
    pub description: String,
    /// `READ`, `SAFE`, `MODERATE`, `SENSITIVE` or `CRITICAL`.
    pub category: String,
    /// JSON Schema of `params`.
    #[schema(value_type = Object)]
    pub params_schema: serde_json::Value,
    /// JSON Schema of `output`.
    #[schema(value_type = Object)]
    pub output_schema: serde_json::Value,
    /// What a call needs.
    pub requires: Requires,
    /// Why the tool cannot work on this host now (its sandbox profile's image, mount or group
    /// is missing); absent when it can. A call answers `unavailable` with the same reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// `{tools: [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolList {
    /// The tools the caller may run (possibly with a justification or an approval), by name.
    pub tools: Vec<ToolView>,
}

/// List the tools the caller may run: those the action policy does not refuse for their role
/// (a missing justification or approval does not hide a tool).
#[utoipa::path(get, path = "/api/v1/tools", tag = "tools", operation_id = "list_tools", security(("bearer" = [])),
    responses((status = 200, body = ToolList), (status = 401, body = ErrorBody)))]
pub async fn list(State(state): State<AppState>, auth: Authenticated) -> Result<Json<ToolList>, ApiError> {
    let gateway = &state.gateway;
    let mut unavailable = gateway.unavailable_tools().await;
    let mut tools = Vec::new();
    for tool in gateway.plugins.tools() {
        let decision = gateway.policy.decide_action(&ActionInput {
            caller: CallerInput::from(&auth.caller),
            tool: ToolInput::from(&tool),
            params: serde_json::json!({}),
            justification: None,
            approval: ApprovalState::None,
            dry_run: true,
            // No command line yet: a command tool is judged at its lowest class.
            command: None,
            rollback: None,
        });
        if !decision.only_missing(&ACTIONABLE) {
            continue;
        }
        let verify = gateway.governor.verifies(&tool, &decision);
        tools.push(ToolView {
            name: tool.name.to_string(),
            plugin: tool.plugin.to_string(),
            description: tool.description,
            category: tool.category.to_string(),
            params_schema: tool.params_schema,
            output_schema: tool.output_schema,
            requires: Requires {
                justification: decision.requires(Requirement::Justification),
                approval: decision.requires(Requirement::Approval),
                verify,
                rollback: decision.requires(Requirement::Rollback) && tool.supports_rollback,
            },
            unavailable: unavailable.remove(tool.name.as_str()),
        });
    }
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(ToolList { tools }))
}

/// `{params, justification?, dry_run?}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteBody {
    /// Parameters, valid against the tool's `params_schema`.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// Why: required for SENSITIVE and CRITICAL tools.
    #[serde(default)]
    pub justification: Option<String>,
    /// Decide only: nothing runs and no action is stored (the decision is audited).
    #[serde(default)]
    pub dry_run: bool,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// The state of an action after a call, or the failure of one (then inside `error.details`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionResponse {
    /// The action's id (`GET /api/v1/actions/{id}`).
    pub action_id: String,
    /// `completed`, `pending_approval`, `denied`, `failed`, `rolled_back`, `rejected`, or
    /// `dry_run`.
    #[schema(value_type = String)]
    pub status: ActionStatus,
    /// The action decision: `allow`, `reasons` (codes and messages), `requirements`, `category`
    /// (the category the call runs at), `revision`.
    #[schema(value_type = Option<Object>)]
    pub decision: Option<Decision>,
    /// The tool's output, valid against its `output_schema`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<serde_json::Value>,
    /// What verify found.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub verify: Option<Verdict>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ActionError>,
    /// For a pending action: until when it can be approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// Whether an admin can roll it back.
    pub undo_available: bool,
    /// Sequence number of the action's latest audit entry.
    pub audit_seq: Option<u64>,
    /// The trace of the request (also in the `x-trace-id` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// Where an action stands after a call, as the response names it: its state, or `dry_run`
/// (a dry run is no action, so it has no state of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionStatus {
    /// Decided only; nothing ran.
    DryRun,
    /// The action's state.
    State(ActionState),
}

impl ActionStatus {
    /// The wire name: `dry_run`, or the state's.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::DryRun => "dry_run",
            ActionStatus::State(state) => state.as_str(),
        }
    }
}

impl std::fmt::Display for ActionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ActionStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl From<Outcome> for ActionResponse {
    fn from(outcome: Outcome) -> Self {
        let action = outcome.action;
        ActionResponse {
            action_id: action.id,
            status: if outcome.dry_run { ActionStatus::DryRun } else { ActionStatus::State(action.state) },
            decision: action.decision,
            output: outcome.output,
            verify: action.verify,
            error: action.error,
            approval: action.approval,
            undo_available: action.undo_available,
            audit_seq: action.audit_seq,
            trace_id: action.trace_id,
        }
    }
}

/// Answer with an action: 200 when it completed (or was rejected as asked, or was a dry run),
/// 202 when it waits for an approval; everything else is an error whose status and code depend
/// on why (see [`ApiError::Action`]).
pub fn respond(outcome: Outcome) -> Result<(StatusCode, Json<ActionResponse>), ApiError> {
    let response = ActionResponse::from(outcome);
    match response.status {
        ActionStatus::DryRun | ActionStatus::State(ActionState::Completed | ActionState::Rejected) => {
            Ok((StatusCode::OK, Json(response)))
        }
        ActionStatus::State(ActionState::PendingApproval) => Ok((StatusCode::ACCEPTED, Json(response))),
        ActionStatus::State(_) => Err(ApiError::Action(Box::new(response))),
    }
}

/// Run a tool: authenticate → check params → action decision → (CRITICAL) approval → plugin →
/// verify → complete or roll back. Every step is audited; the answer waits for the audit entry.
#[utoipa::path(post, path = "/api/v1/tools/{tool}/execute", tag = "tools", operation_id = "execute_tool",
    security(("bearer" = [])), request_body = ExecuteBody,
    params(("tool" = String, Path, description = "tool name")),
    responses(
        (status = 200, body = ActionResponse, description = "`completed` (or `dry_run`)"),
        (status = 202, body = ActionResponse, description = "`pending_approval`: a second admin must approve (CRITICAL)"),
        (status = 400, body = ErrorBody, description = "`invalid_params` (names the field), or the tool refused its params"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "denied: `error.code` is the decision's weightiest reason (`role_insufficient`, then `policy_error`, an operator's own code, `justification_required`, `approval_*`), `error.details` the action with the whole decision; or `exec_denied` when the exec policy refused a command"),
        (status = 404, body = ErrorBody, description = "`unknown_tool`"),
        (status = 409, body = ErrorBody, description = "`failed` or `rolled_back`: `tool_failed`, `verify_failed` (rolled back automatically when possible), `verify_unavailable`"),
        (status = 503, body = ErrorBody, description = "`unavailable` (sandbox or engine down), or `audit_unavailable`"),
        (status = 504, body = ErrorBody, description = "`timeout`"),
    ))]
pub async fn execute(
    State(state): State<AppState>,
    Path(tool): Path<String>,
    auth: Authenticated,
    Json(body): Json<ExecuteBody>,
) -> Result<(StatusCode, Json<ActionResponse>), ApiError> {
    let request = ExecuteRequest { params: body.params, justification: body.justification, dry_run: body.dry_run };
    respond(state.gateway.governor.execute(&auth.caller, &tool, request).await?)
}
