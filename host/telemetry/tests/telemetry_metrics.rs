//! `GET /metrics` is valid Prometheus text and its series move as the layers record events.
//! No `telemetry::init` here: the registry is created on first use, as in other layers' tests.

use std::time::Duration;

use anyhow::ensure;
use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use tower::ServiceExt as _;

use toolgate_telemetry::metrics;
use toolgate_tests::prometheus::{Series, parse, value};

async fn scrape() -> anyhow::Result<Series> {
    let app: Router = Router::new().route("/metrics", get(metrics::handler));
    let response = app.oneshot(Request::get("/metrics").body(Body::empty())?).await?;
    ensure!(response.status() == 200, "status {}", response.status());
    let content_type = response.headers().get("content-type").map(|v| v.to_str()).transpose()?.unwrap_or_default();
    ensure!(content_type.starts_with("text/plain; version=0.0.4"), "content type `{content_type}`");
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    parse(std::str::from_utf8(&body)?)
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_move_with_calls() -> anyhow::Result<()> {
    let before = scrape().await?;

    metrics::http_request("/api/v1/tools/{name}", 200, Duration::from_millis(8));
    metrics::http_request("/api/v1/tools/{name}", 200, Duration::from_millis(9));
    metrics::http_request("/api/v1/tools/{name}", 403, Duration::from_millis(1));
    metrics::decision("action", false, &["role_too_low", "needs_approval"]);
    metrics::decision("action", true, &["role_ok"]);
    metrics::tool_call("disk_usage", "ok", Duration::from_millis(40));
    metrics::tool_call("disk_usage", "error", Duration::from_millis(2));
    metrics::plugin_call("disk_usage", "invoke", "ok", Duration::from_millis(30));
    metrics::sandbox_exec("readonly", Some(0), Duration::from_millis(300));
    metrics::sandbox_exec("readonly", None, Duration::from_secs(60));
    metrics::rate_limited("login");
    metrics::actions_active("awaiting_approval", 2);
    metrics::actions_active("awaiting_approval", -1);
    metrics::tool_call("label\"with\\odd\nchars", "ok", Duration::ZERO);

    let after = scrape().await?;
    let delta = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
    let tools = [("route", "/api/v1/tools/{name}")];
    assert_eq!(delta("toolgate_http_requests_total", &[tools[0], ("status", "200")]), 2.0);
    assert_eq!(delta("toolgate_http_requests_total", &[tools[0], ("status", "403")]), 1.0);
    assert_eq!(delta("toolgate_http_request_duration_seconds_count", &tools), 3.0);
    assert_eq!(delta("toolgate_policy_decisions_total", &[("outcome", "deny"), ("point", "action")]), 1.0);
    assert_eq!(delta("toolgate_policy_decisions_total", &[("outcome", "allow"), ("point", "action")]), 1.0);
    assert_eq!(
        delta(
            "toolgate_policy_decision_reasons_total",
            &[("outcome", "deny"), ("point", "action"), ("reason", "needs_approval")]
        ),
        1.0
    );
    assert_eq!(delta("toolgate_tool_calls_total", &[("status", "ok"), ("tool", "disk_usage")]), 1.0);
    assert_eq!(delta("toolgate_tool_calls_total", &[("status", "error"), ("tool", "disk_usage")]), 1.0);
    assert_eq!(delta("toolgate_tool_call_duration_seconds_count", &[("tool", "disk_usage")]), 2.0);
    let invoke_ok = [("op", "invoke"), ("status", "ok"), ("tool", "disk_usage")];
    assert_eq!(delta("toolgate_plugin_call_duration_seconds_count", &invoke_ok), 1.0);
    let readonly_ok = [("exit_code", "0"), ("profile", "readonly")];
    assert_eq!(delta("toolgate_sandbox_exec_duration_seconds_count", &readonly_ok), 1.0);
    assert_eq!(
        delta("toolgate_sandbox_exec_duration_seconds_bucket", &[readonly_ok[0], ("le", "0.25"), readonly_ok[1]]),
        0.0
    );
    assert_eq!(
        delta("toolgate_sandbox_exec_duration_seconds_bucket", &[readonly_ok[0], ("le", "0.5"), readonly_ok[1]]),
        1.0
    );
    assert_eq!(
        delta("toolgate_sandbox_exec_duration_seconds_count", &[("exit_code", "none"), ("profile", "readonly")]),
        1.0
    );
    assert_eq!(delta("toolgate_rate_limited_total", &[("class", "login")]), 1.0);
    assert_eq!(delta("toolgate_actions_active", &[("state", "awaiting_approval")]), 1.0);
    // A hostile label value survives the round trip through escaping.
    assert_eq!(delta("toolgate_tool_calls_total", &[("status", "ok"), ("tool", "label\"with\\odd\nchars")]), 1.0);
    Ok(())
}

#[test]
fn the_parser_rejects_malformed_exposition() {
    for bad in [
        "toolgate_x_total 1\n",                    // no TYPE
        "# TYPE a counter\na 1\n",                 // counter without _total
        "# TYPE a gauge\na{b=\"unterminated} 1\n", // bad label
        "# TYPE a gauge\na{b=\"x\"} one\n",        // bad value
        "# TYPE a gauge\na 1\na 2\n",              // repeated series
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", // not cumulative
    ] {
        assert!(parse(bad).is_err(), "accepted:\n{bad}");
    }
}
