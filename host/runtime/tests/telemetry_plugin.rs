//! The plugin half of a request's trace, through the real pieces: the built-in `network` plugin
//! (`cargo xtask plugins`), the repo's exec policy and the sandbox on the real Docker engine,
//! exported to an OTLP collector inside the test.
//!
//! Its own test binary: `telemetry::init` installs the process-wide subscriber once.

#[allow(dead_code)] // shared with `builtins.rs`, which uses all of it
#[path = "builtins_support/fixture.rs"]
mod fixture;

use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use tracing::Instrument as _;

use toolgate_core::model::Role;
use toolgate_telemetry::span::{self, attr};
use toolgate_telemetry::{self as telemetry, TelemetryConfig, metrics};
use toolgate_tests::otlp::{OtlpReceiver, ReceivedSpan, one};
use toolgate_tests::prometheus;

#[tokio::test(flavor = "multi_thread")]
async fn a_sandboxed_tool_call_nests_host_call_exec_policy_and_sandbox_exec_under_plugin_invoke() -> anyhow::Result<()>
{
    let collector = OtlpReceiver::start()?;
    let config = TelemetryConfig { otlp_endpoint: collector.endpoint(), batch_delay_ms: 50, ..Default::default() };
    let guard = telemetry::init(&config)?;
    let fx = fixture::Fixture::new(None).await?;
    let before = prometheus::parse(&metrics::render())?;

    // The request span the HTTP layer would open; everything below must be its descendant.
    let request = span::http("POST", "/api/v1/tools/{tool}/execute");
    let trace_id = telemetry::trace_id_of(&request).context("no trace id")?;
    let out = fx.invoke(Role::Viewer, "network_listeners", json!({})).instrument(request.clone()).await?;
    assert!(out.output["listeners"].is_array(), "{}", out.output);
    drop(request);
    guard.flush()?;

    let complete = |s: &[ReceivedSpan]| s.iter().any(|s| s.trace_id == trace_id && s.name == span::HTTP);
    let spans: Vec<ReceivedSpan> = collector
        .wait_for_spans(complete, Duration::from_secs(20))
        .into_iter()
        .filter(|s| s.trace_id == trace_id)
        .collect();
    let root = one(&spans, span::HTTP, |_| true)?;

    let invoke = one(&spans, span::PLUGIN, |_| true)?;
    assert_eq!(invoke.parent_span_id, root.span_id);
    assert_eq!(invoke.attr(attr::PLUGIN), Some("network"));
    assert_eq!(invoke.attr(attr::TOOL), Some("network_listeners"));
    assert_eq!(invoke.attr(attr::CATEGORY), Some("READ"));
    assert_eq!(invoke.attr(attr::TOOL_STATUS), Some("ok"));
    assert!(invoke.attr(attr::DURATION_MS).and_then(|d| d.parse::<f64>().ok()).is_some_and(|d| d > 0.0));

    let host = one(&spans, span::HOST_CALL, |s| s.attr(attr::HOST_INTERFACE) == Some("sandbox"))?;
    assert_eq!(host.parent_span_id, invoke.span_id);
    assert_eq!(host.attr(attr::HOST_FUNCTION), Some("exec"));

    let exec_policy = one(&spans, span::POLICY, |_| true)?;
    assert_eq!(exec_policy.parent_span_id, host.span_id);
    assert_eq!(exec_policy.attr(attr::POLICY_POINT), Some("exec"));
    assert_eq!(exec_policy.attr(attr::DECISION), Some("allow"));
    assert!(exec_policy.attr(attr::POLICY_REVISION).is_some_and(|r| r.starts_with("sha256:")), "{exec_policy:?}");

    let exec = one(&spans, span::SANDBOX_EXEC, |_| true)?;
    assert_eq!(exec.parent_span_id, host.span_id);
    assert_eq!(exec.attr(attr::ARGV0), Some("cat"));
    assert_eq!(exec.attr(attr::PROFILE), Some("host-net"));
    assert_eq!(exec.attr(attr::EXIT_CODE), Some("0"));
    let container = exec.attr(attr::CONTAINER_ID).context("no container id")?;
    assert!(container.len() >= 12 && container.chars().all(|c| c.is_ascii_hexdigit()), "{container}");
    // Only argv[0]: the arguments (`/host/proc/net/tcp ...`) may carry secrets in other tools.
    assert!(spans.iter().flat_map(|s| s.attributes.values()).all(|v| !v.contains("/host/proc")), "{spans:#?}");

    let after = prometheus::parse(&metrics::render())?;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        prometheus::value(&after, name, labels) - prometheus::value(&before, name, labels)
    };
    let invoke_ok = [("op", "invoke"), ("status", "ok"), ("tool", "network_listeners")];
    assert_eq!(delta("toolgate_plugin_call_duration_seconds_count", &invoke_ok), 1.0);
    let exec_ok = [("exit_code", "0"), ("profile", "host-net")];
    assert_eq!(delta("toolgate_sandbox_exec_duration_seconds_count", &exec_ok), 1.0);
    assert_eq!(delta("toolgate_policy_decisions_total", &[("outcome", "allow"), ("point", "exec")]), 1.0);
    fx.shutdown().await;
    Ok(())
}
