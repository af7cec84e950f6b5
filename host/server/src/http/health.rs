//! `/healthz` (liveness) and `/readyz` (readiness of each component).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the process answers.
    pub status: String,
}

/// Readiness of every component.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` when every component is `ok`, else `not_ready`.
    pub status: String,
    /// Each component's state: `ok` or `unavailable`.
    pub components: BTreeMap<String, String>,
    /// The tools that cannot work on this host now (a sandbox profile's image, mount or group
    /// missing). They do not make the server unready: every other tool serves. Why is logged,
    /// and shown to signed-in callers in `GET /api/v1/tools`, not published here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unavailable_tools: Vec<String>,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Whether each component (store, and later policy, plugins, sandbox) can serve.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness, description = "a component is unavailable")))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let checks = state.readiness.clone();
    let results = tokio::task::spawn_blocking(move || {
        checks.iter().map(|c| (c.name.to_owned(), (c.check)())).collect::<Vec<_>>()
    })
    .await
    .unwrap_or_else(|e| vec![("readiness".into(), Err(e.to_string()))]);
    let mut components = BTreeMap::new();
    let mut ready = true;
    for (name, result) in results {
        let status = match result {
            Ok(()) => "ok",
            Err(reason) => {
                // The reason may name paths: log it, do not publish it.
                tracing::warn!(component = %name, %reason, "component not ready");
                ready = false;
                "unavailable"
            }
        };
        components.insert(name, status.to_owned());
    }
    let mut unavailable_tools = Vec::new();
    for (tool, reason) in state.gateway.unavailable_tools().await {
        tracing::warn!(%tool, %reason, "tool unavailable");
        unavailable_tools.push(tool);
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let readiness =
        Readiness { status: if ready { "ready" } else { "not_ready" }.into(), components, unavailable_tools };
    (status, Json(readiness))
}
