//! Without any OTLP endpoint nothing is exported, yet every request still gets a trace id in
//! `x-trace-id`, the same one the handler (and so the audit entry) sees.
//!
//! Its own test binary: `telemetry::init` installs the process-wide subscriber once.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use tower::ServiceExt as _;
use tracing::Instrument as _;

use toolgate_telemetry::{self as telemetry, TelemetryConfig};

#[tokio::test]
async fn requests_get_trace_ids_when_export_is_off() -> anyhow::Result<()> {
    let config = TelemetryConfig::default();
    anyhow::ensure!(
        telemetry::resolve_exporting(&config, |name| std::env::var(name).ok())?.is_none(),
        "an OTEL_EXPORTER_OTLP_* variable is set in this environment"
    );
    let _guard = telemetry::init(&config)?;
    let app = Router::new()
        .route("/whoami", get(|| async { telemetry::current_trace_id().unwrap_or_default() }))
        // Spans under the request's, on another task too, are in its trace.
        .route(
            "/nested",
            get(|| async {
                let child = tracing::info_span!(target: "toolgate", "child");
                let task = tokio::spawn(async { telemetry::current_trace_id() }.instrument(child));
                task.await.ok().flatten().unwrap_or_default()
            }),
        )
        .layer(axum::middleware::from_fn(telemetry::http::trace_request));

    let mut seen = Vec::new();
    for _ in 0..2 {
        let response = app.clone().oneshot(Request::get("/whoami").body(Body::empty())?).await?;
        let header = response
            .headers()
            .get(telemetry::http::TRACE_ID_HEADER)
            .map(|v| v.to_str())
            .transpose()?
            .unwrap_or_default()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1024).await?;
        assert_eq!(header.len(), 32, "{header:?}");
        assert!(header.chars().all(|c| c.is_ascii_hexdigit()) && header.chars().any(|c| c != '0'), "{header}");
        assert_eq!(std::str::from_utf8(&body)?, header);
        seen.push(header);
    }
    assert_ne!(seen[0], seen[1], "two requests share a trace id");

    // A client's trace is continued, and the id reaches the spans under the request's.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    for (path, traceparent) in [("/nested", None), ("/nested", Some(client_trace)), ("/whoami", Some(client_trace))] {
        let mut request = Request::get(path);
        if let Some(trace) = traceparent {
            request = request.header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"));
        }
        let response = app.clone().oneshot(request.body(Body::empty())?).await?;
        let header = response.headers().get(telemetry::http::TRACE_ID_HEADER).cloned();
        let body = axum::body::to_bytes(response.into_body(), 1024).await?;
        let header = header.map(|h| h.to_str().map(str::to_owned)).transpose()?.unwrap_or_default();
        assert_eq!(std::str::from_utf8(&body)?, header, "{path}");
        assert_eq!(header.len(), 32, "{path}: {header:?}");
        if let Some(trace) = traceparent {
            assert_eq!(header, trace, "{path}: the client's trace is not continued");
        }
    }
    assert_eq!(telemetry::spans_dropped(), 0);
    Ok(())
}
