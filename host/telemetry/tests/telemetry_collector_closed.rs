//! A collector that is down (nothing listens on its port) does not fail requests; the failed
//! exports are counted and an explicit flush reports them.
//!
//! Its own test binary: `telemetry::init` installs the process-wide subscriber once.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use tower::ServiceExt as _;

use toolgate_telemetry::{self as telemetry, TelemetryConfig, metrics};

#[tokio::test]
async fn requests_succeed_and_failed_exports_are_reported_while_the_collector_is_down() -> anyhow::Result<()> {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let config = TelemetryConfig {
        otlp_endpoint: format!("http://{closed}"),
        batch_delay_ms: 10,
        export_timeout_ms: 1000,
        ..Default::default()
    };
    let guard = telemetry::init(&config)?;

    let app = Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .layer(axum::middleware::from_fn(telemetry::http::trace_request));
    for i in 0..20 {
        let response = app.clone().oneshot(Request::get(format!("/items/{i}")).body(Body::empty())?).await?;
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key(telemetry::http::TRACE_ID_HEADER));
    }

    let flushed = guard.flush();
    assert!(flushed.is_err(), "flush claimed the spans reached a collector that is down");
    assert!(telemetry::span_exports_failed() > 0);
    let text = metrics::render();
    let failed = text
        .lines()
        .find_map(|l| l.strip_prefix("toolgate_telemetry_span_exports_failed_total "))
        .ok_or_else(|| anyhow::anyhow!("no failed-exports series in:\n{text}"))?;
    assert!(failed.parse::<u64>()? > 0, "{failed}");
    assert!(text.contains(r#"toolgate_http_requests_total{route="/items/{id}",status="200"} 20"#), "{text}");
    Ok(())
}
