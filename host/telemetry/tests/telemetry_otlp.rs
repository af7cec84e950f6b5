//! Traces and metrics reach a real OTLP/HTTP collector started inside the test.
//!
//! Its own test binary: `telemetry::init` installs the process-wide subscriber once, so every
//! test here shares one collector and one guard.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::Request;
use axum::routing::{get, post};
use tower::ServiceExt as _;
use tracing::Instrument as _;

use toolgate_telemetry::span::attr;
use toolgate_telemetry::{self as telemetry, TelemetryConfig, TelemetryGuard, metrics, span};
use toolgate_tests::otlp::{OtlpReceiver, ReceivedSpan, one};

const SECRET: &str = "hunter2-do-not-export";
const WAIT: Duration = Duration::from_secs(15);

struct Fixture {
    collector: OtlpReceiver,
    guard: TelemetryGuard,
}

fn fixture() -> anyhow::Result<&'static Fixture> {
    static FIXTURE: OnceLock<Result<Fixture, String>> = OnceLock::new();
    let fixture = FIXTURE.get_or_init(|| {
        let collector = OtlpReceiver::start().map_err(|e| e.to_string())?;
        let config = TelemetryConfig {
            otlp_endpoint: collector.endpoint(),
            service_name: "toolgate-test".into(),
            batch_delay_ms: 100,
            export_timeout_ms: 5000,
            ..Default::default()
        };
        let guard = telemetry::init(&config).map_err(|e| e.to_string())?;
        Ok(Fixture { collector, guard })
    });
    fixture.as_ref().map_err(|e| anyhow!("fixture: {e}"))
}

fn app() -> Router {
    Router::new()
        .route("/api/v1/tools/{name}", post(call_tool))
        .route("/items/{id}", get(|| async { "item" }))
        .layer(axum::middleware::from_fn(telemetry::http::trace_request))
}

/// What the layers will do for one tool call, each with its documented span.
async fn call_tool(Path(name): Path<String>) -> String {
    {
        let auth = span::auth("jwt");
        let _entered = auth.enter();
        span::record_auth(&auth, "ok", Some("operator"));
    }
    {
        let policy = span::policy("action");
        let _entered = policy.enter();
        span::record_decision(&policy, true, &["role_ok", "category_safe"], "rev-1a2b");
    }
    let plugin = span::plugin("disk", &name, "SAFE");
    async {
        let host = span::host_call("sandbox", "exec");
        async {
            let argv = vec!["df".to_owned(), "-h".to_owned(), format!("--token={SECRET}")];
            {
                let exec_policy = span::policy("exec");
                let _entered = exec_policy.enter();
                span::record_decision(&exec_policy, true, &["argv_ok"], "rev-1a2b");
            }
            let exec = span::sandbox_exec(&argv, "readonly");
            span::record_exec(&exec, Some(0), Duration::from_millis(12), "c0ffee00");
        }
        .instrument(host)
        .await;
    }
    .instrument(plugin.clone())
    .await;
    span::record_plugin(&plugin, "ok", Some(4242), Duration::from_millis(15));
    drop(plugin);
    let trace_id = telemetry::current_trace_id().unwrap_or_default();
    let audit = span::audit("exec", true, "act-1");
    drop(audit.enter());
    trace_id
}

#[tokio::test]
async fn one_tool_call_exports_the_documented_tree_without_secrets() -> anyhow::Result<()> {
    let f = fixture()?;
    let request = Request::post("/api/v1/tools/disk_usage")
        .header("authorization", format!("Bearer {SECRET}"))
        .body(Body::from(format!(r#"{{"path": "/", "password": "{SECRET}"}}"#)))?;
    let response = app().oneshot(request).await?;
    assert_eq!(response.status(), 200);
    let header =
        response.headers().get(telemetry::http::TRACE_ID_HEADER).context("no x-trace-id")?.to_str()?.to_owned();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16).await?;
    // What the audit layer stores is the id the client sees.
    assert_eq!(std::str::from_utf8(&body)?, header);
    assert_eq!(header.len(), 32);

    f.guard.flush()?;
    let all = f.collector.wait_for_spans(|s| s.iter().filter(|s| s.trace_id == header).count() >= 8, WAIT);
    let trace: Vec<ReceivedSpan> = all.into_iter().filter(|s| s.trace_id == header).collect();
    assert_eq!(trace.len(), 8, "{trace:#?}");

    let http = one(&trace, span::HTTP, |_| true)?;
    let auth = one(&trace, span::AUTH, |_| true)?;
    let action = one(&trace, span::POLICY, |s| s.attr(attr::POLICY_POINT) == Some("action"))?;
    let plugin = one(&trace, span::PLUGIN, |_| true)?;
    let host = one(&trace, span::HOST_CALL, |_| true)?;
    let exec_policy = one(&trace, span::POLICY, |s| s.attr(attr::POLICY_POINT) == Some("exec"))?;
    let exec = one(&trace, span::SANDBOX_EXEC, |_| true)?;
    let audit = one(&trace, span::AUDIT, |_| true)?;

    assert_eq!(http.parent_span_id, "", "the HTTP span is the root");
    for (child, parent) in
        [(auth, http), (action, http), (plugin, http), (host, plugin), (exec_policy, host), (exec, host), (audit, http)]
    {
        assert_eq!(child.parent_span_id, parent.span_id, "{} should be a child of {}", child.name, parent.name);
    }

    assert_eq!(http.service_name, "toolgate-test");
    assert_eq!(http.attr(attr::HTTP_METHOD), Some("POST"));
    assert_eq!(http.attr(attr::HTTP_ROUTE), Some("/api/v1/tools/{name}"));
    assert_eq!(http.attr(attr::HTTP_STATUS), Some("200"));
    assert_eq!(auth.attr(attr::AUTH_METHOD), Some("jwt"));
    assert_eq!(auth.attr(attr::ROLE), Some("operator"));
    assert_eq!(action.attr(attr::DECISION), Some("allow"));
    assert_eq!(action.attr(attr::REASONS), Some("role_ok,category_safe"));
    assert_eq!(action.attr(attr::POLICY_REVISION), Some("rev-1a2b"));
    assert_eq!(plugin.attr(attr::PLUGIN), Some("disk"));
    assert_eq!(plugin.attr(attr::TOOL), Some("disk_usage"));
    assert_eq!(plugin.attr(attr::CATEGORY), Some("SAFE"));
    assert_eq!(plugin.attr(attr::FUEL_USED), Some("4242"));
    assert_eq!(plugin.attr(attr::TOOL_STATUS), Some("ok"));
    assert_eq!(host.attr(attr::HOST_INTERFACE), Some("sandbox"));
    assert_eq!(host.attr(attr::HOST_FUNCTION), Some("exec"));
    assert_eq!(exec.attr(attr::ARGV0), Some("df"));
    assert_eq!(exec.attr(attr::PROFILE), Some("readonly"));
    assert_eq!(exec.attr(attr::EXIT_CODE), Some("0"));
    assert_eq!(exec.attr(attr::CONTAINER_ID), Some("c0ffee00"));
    assert_eq!(exec.attr(attr::DURATION_MS), Some("12"));
    assert_eq!(audit.attr(attr::AUDIT_KIND), Some("exec"));

    for span in &trace {
        for (key, value) in &span.attributes {
            assert!(
                !value.contains(SECRET) && !value.contains("Bearer"),
                "{}: {key}={value} leaks a secret",
                span.name
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn client_traceparent_is_honoured_and_echoed() -> anyhow::Result<()> {
    let f = fixture()?;
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let request = Request::get("/items/42")
        .header("traceparent", format!("00-{client_trace}-{client_span}-01"))
        .body(Body::empty())?;
    let response = app().oneshot(request).await?;
    assert_eq!(
        response.headers().get(telemetry::http::TRACE_ID_HEADER).map(|v| v.to_str()).transpose()?,
        Some(client_trace)
    );

    let fresh = app().oneshot(Request::get("/items/7").body(Body::empty())?).await?;
    let fresh_id = fresh.headers().get(telemetry::http::TRACE_ID_HEADER).context("no x-trace-id")?.to_str()?.to_owned();
    assert_eq!(fresh_id.len(), 32);
    assert!(fresh_id != client_trace && fresh_id.chars().any(|c| c != '0'), "{fresh_id}");

    f.guard.flush()?;
    let spans = f.collector.wait_for_spans(|s| s.iter().any(|s| s.trace_id == client_trace), WAIT);
    let http = one(&spans, span::HTTP, |s| s.trace_id == client_trace)?;
    assert_eq!(http.parent_span_id, client_span);
    assert_eq!(http.attr(attr::HTTP_ROUTE), Some("/items/{id}"));
    assert_eq!(http.attr(attr::HTTP_STATUS), Some("200"));
    Ok(())
}

#[tokio::test]
async fn metrics_are_exported_over_otlp() -> anyhow::Result<()> {
    let f = fixture()?;
    metrics::tool_call("otlp_probe", "ok", Duration::from_millis(3));
    metrics::tool_call("otlp_probe", "ok", Duration::from_millis(4));
    f.guard.flush()?;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let calls = f
            .collector
            .points()
            .into_iter()
            .filter(|p| {
                p.metric == "toolgate.tool.calls" && p.attributes.get("tool").map(String::as_str) == Some("otlp_probe")
            })
            .map(|p| p.value)
            .fold(0.0, f64::max);
        if calls >= 2.0 {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no toolgate.tool.calls point for otlp_probe: {:#?}",
            f.collector.points()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
