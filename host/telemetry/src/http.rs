//! The HTTP middleware: one `http.request` span per request (child of the client's W3C
//! `traceparent` when it sends one), request metrics, and the trace id in `x-trace-id`.
//!
//! Add it to the router after every route (axum applies `layer` to the routes that exist), so
//! the route template is known:
//!
//! ```text
//! let app = Router::new()
//!     .route("/api/v1/tools/{name}", post(call_tool))
//!     .route("/metrics", get(telemetry::metrics::handler))
//!     .layer(axum::middleware::from_fn(telemetry::http::trace_request));
//! ```

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Instrument as _;

use super::span::{self, attr};

/// The response header carrying the request's trace id (32 hex digits).
pub const TRACE_ID_HEADER: &str = "x-trace-id";

/// Route label and span route for requests no route matched (404s), so probes of random paths
/// cannot blow up metric cardinality.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The middleware; see the module doc for where to add it.
pub async fn trace_request(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED_ROUTE, MatchedPath::as_str).to_owned();
    let span = span::http(request.method().as_str(), &route);
    let parent = TraceContextPropagator::new().extract(&Headers(request.headers()));
    let trace_id = super::start_trace(&span, parent);
    let start = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record(attr::HTTP_STATUS, status.as_u16());
    if status.is_server_error() {
        span::record_error(&span);
    }
    super::metrics::http_request(&route, status.as_u16(), start.elapsed());
    if let Some(value) = trace_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert(TRACE_ID_HEADER, value);
    }
    response
}

/// Read-only view of request headers for the propagator.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
