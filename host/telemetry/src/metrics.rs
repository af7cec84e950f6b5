//! Metrics: one in-process OpenTelemetry registry, exported over OTLP when an endpoint is set and
//! rendered as Prometheus text by [`handler`] (`GET /metrics`).
//!
//! Call the functions of this module where the event happens; each is a few hundred
//! nanoseconds (see `benches/telemetry.rs`) and never blocks. Label values must come from small
//! fixed sets (route templates, tool names, reason codes), never from user input or secrets.
//!
//! | function | Prometheus series |
//! | --- | --- |
//! | [`http_request`] | `toolgate_http_requests_total{route,status}`, `toolgate_http_request_duration_seconds{route}` |
//! | [`decision`] | `toolgate_policy_decisions_total{point,outcome}`, `toolgate_policy_decision_reasons_total{point,outcome,reason}` |
//! | [`tool_call`] | `toolgate_tool_calls_total{tool,status}`, `toolgate_tool_call_duration_seconds{tool}` |
//! | [`plugin_call`] | `toolgate_plugin_call_duration_seconds{tool,op,status}` |
//! | [`sandbox_exec`] | `toolgate_sandbox_exec_duration_seconds{profile,exit_code}` |
//! | [`rate_limited`] | `toolgate_rate_limited_total{class}` |
//! | [`actions_active`] | `toolgate_actions_active{state}` (a gauge) |
//! | (export queue) | `toolgate_telemetry_spans_dropped_total`, `toolgate_telemetry_span_exports_failed_total` |
//!
//! Who calls what: the HTTP middleware [`http_request`]; the policy engine [`decision`] (both
//! points); the plugin runtime [`plugin_call`] (one per invoke, verify or rollback); the sandbox
//! executor [`sandbox_exec`]; the rate limiters [`rate_limited`]. The execute pipeline calls
//! [`tool_call`] once per `POST /api/v1/tools/{tool}/execute` with the outcome the caller sees
//! (`ok`, `error`, `denied`, `invalid_params`, `pending_approval`, ...), and [`actions_active`]
//! on every state change of an action (`+1` entering a state, `-1` leaving it).
//!
//! Before [`super::init`] (in tests of other layers) the registry is created on first use,
//! without OTLP export; `init` must then not be called in that process.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, UpDownCounter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality};

/// The `Content-Type` of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets in seconds: from a cached policy decision to a slow container.
const SECONDS_BUCKETS: [f64; 15] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

static REGISTRY: OnceLock<Registry> = OnceLock::new();

struct Registry {
    provider: SdkMeterProvider,
    scrape: Arc<ManualReader>,
    http_requests: Counter<u64>,
    http_duration: Histogram<f64>,
    decisions: Counter<u64>,
    decision_reasons: Counter<u64>,
    tool_calls: Counter<u64>,
    tool_duration: Histogram<f64>,
    plugin_duration: Histogram<f64>,
    sandbox_duration: Histogram<f64>,
    rate_limited: Counter<u64>,
    actions_active: UpDownCounter<i64>,
    spans_dropped: Counter<u64>,
    span_exports_failed: Counter<u64>,
}

impl Registry {
    fn new<R: MetricReader>(resource: Resource, export: Option<R>) -> Self {
        let scrape = Arc::new(ManualReader::builder().build());
        let mut builder = SdkMeterProvider::builder().with_resource(resource).with_reader(Shared(Arc::clone(&scrape)));
        if let Some(export) = export {
            builder = builder.with_reader(export);
        }
        let provider = builder.build();
        let meter = provider.meter("toolgate");
        Self {
            http_requests: counter(&meter, "toolgate.http.requests", "HTTP requests by route template and status"),
            http_duration: seconds(&meter, "toolgate.http.request.duration", "HTTP request latency"),
            decisions: counter(&meter, "toolgate.policy.decisions", "Policy decisions by point and outcome"),
            decision_reasons: counter(
                &meter,
                "toolgate.policy.decision.reasons",
                "Reason codes given by policy decisions",
            ),
            tool_calls: counter(&meter, "toolgate.tool.calls", "Tool calls by tool and status"),
            tool_duration: seconds(&meter, "toolgate.tool.call.duration", "Tool call latency, end to end"),
            plugin_duration: seconds(&meter, "toolgate.plugin.call.duration", "Plugin call latency"),
            sandbox_duration: seconds(&meter, "toolgate.sandbox.exec.duration", "Sandboxed command latency"),
            rate_limited: counter(&meter, "toolgate.rate_limited", "Requests refused by a rate limit, by class"),
            actions_active: meter
                .i64_up_down_counter("toolgate.actions.active")
                .with_description("Actions in progress, by state")
                .build(),
            spans_dropped: counter(
                &meter,
                "toolgate.telemetry.spans.dropped",
                "Spans dropped because the export queue was full",
            ),
            span_exports_failed: counter(
                &meter,
                "toolgate.telemetry.span_exports.failed",
                "Span export requests the collector did not accept",
            ),
            provider,
            scrape,
        }
    }
}

fn counter(meter: &Meter, name: &'static str, description: &'static str) -> Counter<u64> {
    meter.u64_counter(name).with_description(description).build()
}

fn seconds(meter: &Meter, name: &'static str, description: &'static str) -> Histogram<f64> {
    meter
        .f64_histogram(name)
        .with_description(description)
        .with_unit("s")
        .with_boundaries(SECONDS_BUCKETS.to_vec())
        .build()
}

fn registry() -> &'static Registry {
    REGISTRY.get_or_init(|| Registry::new::<ManualReader>(Resource::builder().build(), None))
}

/// Install the registry with an OTLP export reader; `None` if a registry already exists.
pub(super) fn install<R: MetricReader>(resource: Resource, export: Option<R>) -> Option<SdkMeterProvider> {
    let mut installed = false;
    let registry = REGISTRY.get_or_init(|| {
        installed = true;
        Registry::new(resource, export)
    });
    installed.then(|| registry.provider.clone())
}

/// One HTTP request answered: `route` is the route template (`unmatched` for none).
pub fn http_request(route: &str, status: u16, duration: Duration) {
    let r = registry();
    let route = KeyValue::new("route", route.to_owned());
    r.http_duration.record(duration.as_secs_f64(), std::slice::from_ref(&route));
    r.http_requests.add(1, &[route, KeyValue::new("status", i64::from(status))]);
}

/// One policy decision at `point` (`action`, `exec`), with its reason codes.
pub fn decision<R: AsRef<str>>(point: &str, allow: bool, reasons: &[R]) {
    let r = registry();
    let point = KeyValue::new("point", point.to_owned());
    let outcome = KeyValue::new("outcome", if allow { "allow" } else { "deny" });
    for reason in reasons {
        r.decision_reasons
            .add(1, &[point.clone(), outcome.clone(), KeyValue::new("reason", reason.as_ref().to_owned())]);
    }
    r.decisions.add(1, &[point, outcome]);
}

/// One tool call (an execute request) finished with `status`, the outcome its caller sees
/// (`ok`, `error`, `denied`, `timeout`, ...), after `duration` end to end. Called by the execute
/// pipeline once per request; the plugin runtime records [`plugin_call`] instead.
pub fn tool_call(tool: &str, status: &str, duration: Duration) {
    let r = registry();
    let tool = KeyValue::new("tool", tool.to_owned());
    r.tool_duration.record(duration.as_secs_f64(), std::slice::from_ref(&tool));
    r.tool_calls.add(1, &[tool, KeyValue::new("status", status.to_owned())]);
}

/// One call into a plugin finished: `op` is `invoke`, `verify` or `rollback`, `status` is `ok`,
/// `error`, `denied`, `trap` or `timeout`.
pub fn plugin_call(tool: &str, op: &'static str, status: &'static str, duration: Duration) {
    registry().plugin_duration.record(
        duration.as_secs_f64(),
        &[KeyValue::new("tool", tool.to_owned()), KeyValue::new("op", op), KeyValue::new("status", status)],
    );
}

/// One sandboxed command finished; `exit_code` is `None` when it did not exit.
pub fn sandbox_exec(profile: &str, exit_code: Option<i64>, duration: Duration) {
    let exit = exit_code.map_or_else(|| "none".to_owned(), |c| c.to_string());
    registry().sandbox_duration.record(
        duration.as_secs_f64(),
        &[KeyValue::new("profile", profile.to_owned()), KeyValue::new("exit_code", exit)],
    );
}

/// One request refused by the rate limit of `class` (`login`, `api`, `tool`, ...).
pub fn rate_limited(class: &str) {
    registry().rate_limited.add(1, &[KeyValue::new("class", class.to_owned())]);
}

/// Actions in `state` changed by `delta` (+1 on entering the state, -1 on leaving it).
pub fn actions_active(state: &str, delta: i64) {
    registry().actions_active.add(delta, &[KeyValue::new("state", state.to_owned())]);
}

pub(super) fn span_dropped() {
    registry().spans_dropped.add(1, &[]);
}

pub(super) fn span_export_failed() {
    registry().span_exports_failed.add(1, &[]);
}

/// Every metric now, in the Prometheus text exposition format (version 0.0.4).
pub fn render() -> String {
    let r = registry();
    let mut metrics = ResourceMetrics::default();
    match r.scrape.collect(&mut metrics) {
        Ok(()) => super::prometheus::render(&metrics),
        // Only after shutdown; an empty scrape says "no data" without failing the scraper.
        Err(_) => String::new(),
    }
}

/// `GET /metrics`: [`render`] with the Prometheus `Content-Type`.
pub async fn handler() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render())
}

/// The scrape reader, shared between the provider (which feeds it) and [`render`].
#[derive(Debug)]
struct Shared(Arc<ManualReader>);

impl MetricReader for Shared {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}
