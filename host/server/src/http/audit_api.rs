//! `GET /api/v1/audit`: the newest audit entries (admin).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, ErrorBody, Json, Query};
use super::extract::Authenticated;
use toolgate_core::model::Role;
use toolgate_governance::audit::{self, EntryView};

/// Largest page.
pub const MAX_ENTRIES: usize = 1000;

/// `?last_n=20&before=SEQ`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// How many entries, 1 to 1000 (default 20).
    pub last_n: Option<usize>,
    /// Only entries older than this sequence number (the `next_before` of the previous page).
    pub before: Option<u64>,
}

/// `{entries: [...]}`, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Entries: `seq`, `timestamp`, `kind`, `actor`, `role`, `auth_method`, `source_ip`, `tool`,
    /// `category`, `action_id`, `command`, `allowed`, `reason`, `detail`, `trace_id`, `hash`.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<EntryView>,
    /// Pass as `before` for older entries; absent when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// The newest audit entries, paginated backwards (admin).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", operation_id = "get_audit",
    security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody, description = "bad `last_n`"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "not an admin")))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    auth.require(Role::Admin)?;
    let last_n = query.last_n.unwrap_or(20);
    if !(1..=MAX_ENTRIES).contains(&last_n) {
        return Err(ApiError::BadRequest(format!("`last_n` must be between 1 and {MAX_ENTRIES}")));
    }
    let before = query.before;
    let entries: Vec<audit::StoredEntry> = state.store.call(move |s| audit::recent(s, last_n, before)).await?;
    let next_before = entries.last().map(|e| e.seq).filter(|seq| *seq > 1 && entries.len() == last_n);
    Ok(Json(AuditPage { entries: entries.into_iter().map(EntryView::from).collect(), next_before }))
}
