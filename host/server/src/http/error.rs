//! The one place errors become HTTP responses: every error is
//! `{"error": {"code", "message", "details"?}}` with the status [`ApiError::status`] picks.
//! Internal errors get a generic message and a log line; their text never reaches the client.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use toolgate_auth::AuthError;
use toolgate_core::Code;
use toolgate_governance::{ActionState, GovernanceError, JournalError};
use toolgate_policy::Decision;
use toolgate_runtime::PluginError;
use toolgate_store::StoreError;

use super::ratelimit::RateClass;
use super::tools_api::{ActionResponse, ActionStatus};

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A credential or account rule refused the request.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A plugin or its runtime refused or failed.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// A governance operation was refused (approval, rollback, journal).
    #[error(transparent)]
    Governance(#[from] GovernanceError),
    /// An action ended other than completed: denied, failed, rolled back. The body's `details`
    /// is the action.
    #[error("action `{}` {}: {}", .0.action_id, .0.status, action_message(.0))]
    Action(Box<ActionResponse>),
    /// The body is not JSON, or not the expected shape (names the field).
    #[error("{0}")]
    BadRequest(String),
    /// The body exceeds `http.body_limit_bytes`.
    #[error("request body is larger than the server accepts (`http.body_limit_bytes`)")]
    PayloadTooLarge,
    /// The body did not arrive within `http.connections.body_read_timeout_secs`.
    #[error("the request body did not arrive within {0} s (`http.connections.body_read_timeout_secs`)")]
    RequestTimeout(u64),
    /// The body is not declared as JSON.
    #[error("expected `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// No route matches the path.
    #[error("no route for `{0}`")]
    RouteNotFound(String),
    /// The path exists, the method does not.
    #[error("method `{method}` is not allowed on `{path}`")]
    MethodNotAllowed {
        /// The refused method.
        method: String,
        /// The path.
        path: String,
    },
    /// `auth/register` is switched off (`auth.register_enabled`).
    #[error("self-registration is disabled; ask an administrator for an account")]
    RegistrationDisabled,
    /// The operation needs a login token, not an API key.
    #[error("this operation needs a login token, not an api key")]
    NeedsLoginToken,
    /// Too many requests from this client or user in this route class.
    #[error("too many {} requests; retry in {retry_after_secs} s", class.as_str())]
    RateLimited {
        /// The route class whose limit tripped.
        class: RateClass,
        /// Seconds until a request will be accepted again.
        retry_after_secs: u64,
    },
    /// A bug or an infrastructure failure; details go to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The error body, as documented in OpenAPI.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (`token_expired`, `weak_password`, ...).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Structured extra information, when there is any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl ApiError {
    /// Status and stable code of this error.
    pub fn status(&self) -> (StatusCode, &str) {
        use AuthError as A;
        use StatusCode as S;
        match self {
            ApiError::Auth(e) => match e {
                A::WeakPassword(_) => (S::BAD_REQUEST, "weak_password"),
                A::InvalidName(_) => (S::BAD_REQUEST, "invalid_name"),
                A::InvalidCredentials => (S::UNAUTHORIZED, "invalid_credentials"),
                A::WrongPassword => (S::FORBIDDEN, "wrong_password"),
                A::MissingCredentials => (S::UNAUTHORIZED, "unauthenticated"),
                A::TokenInvalid => (S::UNAUTHORIZED, "token_invalid"),
                A::TokenAlgorithm(_) => (S::UNAUTHORIZED, "token_algorithm"),
                A::TokenExpired => (S::UNAUTHORIZED, "token_expired"),
                A::TokenRevoked => (S::UNAUTHORIZED, "token_revoked"),
                A::SessionOver => (S::UNAUTHORIZED, "session_expired"),
                A::RefreshReused => (S::UNAUTHORIZED, "token_reused"),
                A::KeyCreatorInactive { .. } => (S::UNAUTHORIZED, "api_key_creator_inactive"),
                A::CrossOrigin(_) => (S::FORBIDDEN, "cross_origin"),
                A::UserDisabled => (S::UNAUTHORIZED, "user_disabled"),
                A::KeyInvalid => (S::UNAUTHORIZED, "api_key_invalid"),
                A::KeyExpired => (S::UNAUTHORIZED, "api_key_expired"),
                A::KeyRevoked => (S::UNAUTHORIZED, "api_key_revoked"),
                A::Forbidden(_) => (S::FORBIDDEN, "forbidden"),
                A::BadExpiry(_) => (S::BAD_REQUEST, "invalid_expiry"),
                A::WeakSecret(_) | A::PredictableSecret { .. } | A::Config(_) | A::Hash(_) => {
                    (S::INTERNAL_SERVER_ERROR, "internal")
                }
            },
            ApiError::Store(e) => match e {
                StoreError::UserExists(_) => (S::CONFLICT, "user_exists"),
                StoreError::NoUser(_) => (S::NOT_FOUND, "user_not_found"),
                StoreError::KeyExists(_) => (S::CONFLICT, "api_key_exists"),
                StoreError::NoKey(_) => (S::NOT_FOUND, "api_key_not_found"),
                StoreError::LastAdmin(_) => (S::CONFLICT, "last_admin"),
                StoreError::KeyGrantsAdmin(_) => (S::FORBIDDEN, "api_key_cannot_grant_admin"),
                _ => (S::INTERNAL_SERVER_ERROR, "internal"),
            },
            ApiError::Plugin(e) => plugin_status(e),
            ApiError::Governance(e) => {
                use GovernanceError as G;
                match e {
                    G::Plugin(e) => plugin_status(e),
                    G::NoAction(_) => (S::NOT_FOUND, "action_not_found"),
                    G::NotPending { .. } => (S::CONFLICT, "not_pending"),
                    G::ApprovalExpired(_) => (S::CONFLICT, Code::ApprovalExpired.as_str()),
                    G::SelfApproval => (S::FORBIDDEN, "self_approval"),
                    G::ConflictOfInterest(_) => (S::FORBIDDEN, "approval_conflict_of_interest"),
                    G::ApprovalRefused { .. } => (S::FORBIDDEN, "approval_refused"),
                    G::ApprovalMismatch(_) => (S::CONFLICT, "approval_mismatch"),
                    G::JustificationRequired(_) => (S::FORBIDDEN, Code::JustificationRequired.as_str()),
                    G::NotRollbackable { .. } => (S::CONFLICT, "not_rollbackable"),
                    G::NoUndo(_) => (S::CONFLICT, "no_undo_record"),
                    G::AlreadyRolledBack { .. } => (S::CONFLICT, "already_rolled_back"),
                    G::RequesterGone { .. } => (S::CONFLICT, "requester_gone"),
                    G::Journal(JournalError::Conflict { .. }) => (S::CONFLICT, "conflict"),
                    G::Journal(JournalError::IllegalStep { .. }) => (S::INTERNAL_SERVER_ERROR, "internal"),
                    G::Journal(_) => (S::SERVICE_UNAVAILABLE, "audit_unavailable"),
                    G::Store(_) | G::Task(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
                }
            }
            ApiError::Action(action) => action_status(action),
            ApiError::BadRequest(_) => (S::BAD_REQUEST, "bad_request"),
            ApiError::PayloadTooLarge => (S::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::RequestTimeout(_) => (S::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::UnsupportedMediaType => (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::RouteNotFound(_) => (S::NOT_FOUND, "route_not_found"),
            ApiError::MethodNotAllowed { .. } => (S::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::RegistrationDisabled => (S::FORBIDDEN, "registration_disabled"),
            ApiError::NeedsLoginToken => (S::BAD_REQUEST, "needs_login_token"),
            ApiError::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            ApiError::Action(action) => serde_json::to_value(action).ok(),
            ApiError::Governance(GovernanceError::ApprovalRefused { decision, .. }) => {
                Some(json!({ "decision": decision }))
            }
            ApiError::Auth(AuthError::WeakPassword(rules)) => Some(json!({ "failed_rules": rules })),
            ApiError::Auth(AuthError::Forbidden(role)) => Some(json!({ "required_role": role })),
            ApiError::RateLimited { class, retry_after_secs } => {
                Some(json!({ "class": class.as_str(), "retry_after_secs": retry_after_secs }))
            }
            _ => None,
        }
    }
}

fn plugin_status(e: &PluginError) -> (StatusCode, &'static str) {
    match e {
        PluginError::UnknownTool(_) => (StatusCode::NOT_FOUND, "unknown_tool"),
        PluginError::InvalidParams { .. } => (StatusCode::BAD_REQUEST, Code::InvalidParams.as_str()),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// An action that did not complete: a denial is 403 with the decision's weightiest reason as the
/// code (see [`Decision::weightiest_reason`]); a failure's status follows its cause (the action's
/// `error.code`).
fn action_status(action: &ActionResponse) -> (StatusCode, &str) {
    use StatusCode as S;
    if action.status == ActionStatus::State(ActionState::Denied) {
        let reason = action.decision.as_ref().and_then(Decision::weightiest_reason);
        return (S::FORBIDDEN, reason.map_or("denied", |r| r.code.as_str()));
    }
    let Some(code) = action.error.as_ref().map(|e| e.code) else {
        return (S::CONFLICT, "failed");
    };
    let status = match code {
        Code::InvalidParams => S::BAD_REQUEST,
        Code::ExecDenied | Code::NotAllowed | Code::PermissionDenied => S::FORBIDDEN,
        Code::NotFound => S::NOT_FOUND,
        Code::Unavailable | Code::RollbackUnavailable => S::SERVICE_UNAVAILABLE,
        Code::Timeout => S::GATEWAY_TIMEOUT,
        Code::PluginFailed | Code::PluginOutputTooLarge => S::INTERNAL_SERVER_ERROR,
        _ => S::CONFLICT,
    };
    (status, code.as_str())
}

fn action_message(action: &ActionResponse) -> String {
    match (&action.error, &action.decision) {
        (Some(error), _) => error.message.clone(),
        (None, Some(decision)) => decision.reasons.iter().map(|r| r.message.as_str()).collect::<Vec<_>>().join("; "),
        (None, None) => String::new(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        let code = code.to_owned();
        let message = if status.is_server_error() && !matches!(self, ApiError::Action(_)) {
            // The text may name files or internals: log it, answer generically.
            tracing::error!(error = %self, "request failed");
            "internal error; the server log has details".to_owned()
        } else {
            self.to_string()
        };
        let body = ErrorBody { error: ErrorDetail { code, message, details: self.details() } };
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::RateLimited { retry_after_secs, .. } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
            // Serde's message names the field (`unknown field `x``, `missing field `y``).
            _ => ApiError::BadRequest(rejection.body_text().replacen("Failed to", "failed to", 1)),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// A query string whose rejections go through [`ApiError`] (unknown parameters are refused).
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// A JSON body whose rejections go through [`ApiError`].
#[derive(Debug, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolgate_governance::action::ActionError;
    use toolgate_policy::Reason;

    async fn body(err: ApiError) -> anyhow::Result<(StatusCode, Value, Option<HeaderValue>)> {
        let response = err.into_response();
        let status = response.status();
        let retry = response.headers().get(header::RETRY_AFTER).cloned();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await?;
        Ok((status, serde_json::from_slice(&bytes)?, retry))
    }

    #[tokio::test]
    async fn internal_errors_hide_their_text() -> anyhow::Result<()> {
        let err = ApiError::Store(StoreError::FileMissing("/srv/secret-place/toolgate.redb".into()));
        let (status, body, _) = body(err).await?;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("secret-place"), "{body}");
        Ok(())
    }

    #[tokio::test]
    async fn rate_limits_carry_retry_after_and_weak_passwords_their_rules() -> anyhow::Result<()> {
        let (status, body, retry) =
            body(ApiError::RateLimited { class: RateClass::Login, retry_after_secs: 12 }).await?;
        assert_eq!((status, retry), (StatusCode::TOO_MANY_REQUESTS, Some(HeaderValue::from(12u64))));
        assert_eq!(body["error"]["details"]["class"], "login");
        let (status, body, _) = body_of_weak().await?;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["details"]["failed_rules"], json!(["a digit"]));
        Ok(())
    }

    fn denied(codes: &[&str]) -> ApiError {
        let reasons = codes.iter().map(|c| Reason { code: (*c).to_owned(), message: format!("{c}!") }).collect();
        ApiError::Action(Box::new(ActionResponse {
            action_id: "a1".to_owned(),
            status: ActionStatus::State(ActionState::Denied),
            decision: Some(Decision {
                allow: false,
                reasons,
                requirements: vec![],
                category: None,
                revision: "sha256:0".to_owned(),
            }),
            output: None,
            verify: None,
            error: None,
            approval: None,
            undo_available: false,
            audit_seq: None,
            trace_id: None,
        }))
    }

    /// Which reason weighs most is the decision's to say (its tests hold the table); the
    /// answer is 403 with that reason's code, `denied` without one.
    #[test]
    fn a_denial_answers_with_its_weightiest_reason() {
        let cases: [(&[&str], &str); 3] = [
            (&["approval_required", "justification_required", "role_insufficient"], "role_insufficient"),
            (&["approval_expired", "maintenance_window"], "maintenance_window"),
            (&[], "denied"),
        ];
        for (codes, want) in cases {
            assert_eq!(denied(codes).status(), (StatusCode::FORBIDDEN, want), "{codes:?}");
        }
    }

    #[test]
    fn a_failure_answers_with_its_code_and_the_status_of_its_cause() {
        let failed = |code: Code| {
            let ApiError::Action(mut action) = denied(&[]) else { unreachable!() };
            action.status = ActionStatus::State(ActionState::Failed);
            action.error = Some(ActionError { code, message: "m".to_owned() });
            ApiError::Action(action).status().0
        };
        assert_eq!(failed(Code::Timeout), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(failed(Code::RollbackUnavailable), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(failed(Code::VerifyFailed), StatusCode::CONFLICT);
        let ApiError::Action(action) = denied(&[]) else { unreachable!() };
        let json = serde_json::to_value(&action).unwrap_or_default();
        assert_eq!(json["status"], "denied", "the status is the state's wire name");
    }

    #[test]
    fn a_missing_justification_is_forbidden_on_rollback_as_on_execute() {
        let err = ApiError::Governance(GovernanceError::JustificationRequired(10));
        assert_eq!(err.status(), denied(&["justification_required"]).status());
    }

    async fn body_of_weak() -> anyhow::Result<(StatusCode, Value, Option<HeaderValue>)> {
        body(ApiError::Auth(AuthError::WeakPassword(vec!["a digit"]))).await
    }
}
