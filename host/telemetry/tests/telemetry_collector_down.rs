//! A hung collector (it accepts connections and never answers) does not block or fail requests:
//! spans that do not fit the export queue are dropped and counted.
//!
//! Its own test binary: `telemetry::init` installs the process-wide subscriber once.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use tower::ServiceExt as _;

use toolgate_telemetry::{self as telemetry, TelemetryConfig, metrics, span};

#[tokio::test]
async fn requests_succeed_and_drops_are_counted_while_the_collector_hangs() -> anyhow::Result<()> {
    // Never accepted: connections complete in the kernel backlog and exports wait for a reply
    // that never comes, the worst case for a blocking exporter.
    let hung = std::net::TcpListener::bind("127.0.0.1:0")?;
    let config = TelemetryConfig {
        otlp_endpoint: format!("http://{}", hung.local_addr()?),
        queue_size: 64,
        batch_delay_ms: 10,
        export_timeout_ms: 1000,
        ..Default::default()
    };
    let guard = telemetry::init(&config)?;
    assert_eq!(telemetry::spans_dropped(), 0);

    // Far more spans than the queue holds, while the first export is stuck.
    for i in 0..2_000u32 {
        let exec = span::sandbox_exec(&["true".to_owned()], "default");
        span::record_exec(&exec, Some(0), Duration::from_micros(u64::from(i)), "c1");
    }
    let app = Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .layer(axum::middleware::from_fn(telemetry::http::trace_request));
    for i in 0..50 {
        let response = app.clone().oneshot(Request::get(format!("/items/{i}")).body(Body::empty())?).await?;
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key(telemetry::http::TRACE_ID_HEADER));
    }

    let dropped = telemetry::spans_dropped();
    assert!(dropped > 0, "no span was dropped");
    let text = metrics::render();
    let line = text
        .lines()
        .find(|l| l.starts_with("toolgate_telemetry_spans_dropped_total "))
        .ok_or_else(|| anyhow::anyhow!("no dropped-spans series in:\n{text}"))?;
    let counted: u64 = line.rsplit(' ').next().unwrap_or_default().parse()?;
    assert!(counted >= dropped, "{line} but spans_dropped() = {dropped}");
    // The requests themselves were counted even though nothing could be exported.
    assert!(text.contains(r#"toolgate_http_requests_total{route="/items/{id}",status="200"} 50"#), "{text}");

    drop(guard);
    Ok(())
}
