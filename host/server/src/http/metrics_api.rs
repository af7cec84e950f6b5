//! `GET /metrics`: every metric in the Prometheus text exposition format.
//!
//! Authenticated by default (any role: a viewer's API key is the natural scraper credential);
//! `telemetry.metrics_public = true` opens it to scrapers without credentials. Fail closed: the
//! series name tools, routes and error rates, which an anonymous client should not read.

use axum::extract::State;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::Authenticated;
use toolgate_telemetry::metrics;

/// Every metric now, as Prometheus text (version 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "health", operation_id = "metrics",
    description = "Prometheus text exposition (version 0.0.4). Needs a token or API key of any role unless `telemetry.metrics_public` is set.",
    security((), ("bearer" = [])),
    responses((status = 200, description = "the metrics", content_type = "text/plain", body = String),
        (status = 401, body = ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, mut parts: Parts) -> Result<Response, ApiError> {
    if !state.config.telemetry.metrics_public {
        use axum::extract::FromRequestParts as _;
        Authenticated::from_request_parts(&mut parts, &state).await?;
    }
    Ok(metrics::handler().await.into_response())
}
