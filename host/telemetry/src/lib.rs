//! Telemetry: logs, traces, metrics and security events, set up once by [`init`]. Uses only
//! `toolgate-core`; every other layer records through it.
//!
//! - **Logs** go to stderr, human-readable or JSON (`[telemetry] log_format`,
//!   `TOOLGATE_TELEMETRY_LOG_FORMAT`), filtered by `TOOLGATE_LOG` (an `EnvFilter`, default `info`),
//!   and capped by [`log_cap`]: other crates never log below `warn`, whatever the filter says.
//! - **Traces**: while exporting, every `tracing` span from a `toolgate*` crate at `INFO` or
//!   above becomes an OpenTelemetry span, exported over OTLP HTTP/protobuf (plain `http://`; no
//!   gRPC, no TLS: run a collector next to the host) when an endpoint is set: the config key
//!   `telemetry.otlp_endpoint` (a base URL, `/v1/traces` and `/v1/metrics` are appended) or the
//!   standard `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT`.
//!   `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS` apply.
//!   Without an endpoint no OpenTelemetry span is built, but every such span still carries the
//!   trace id of its request (for the audit log and the `x-trace-id` header; see `trace_id.rs`).
//!   Finished spans wait in a bounded queue drained by a background thread: an unreachable or
//!   hung collector never blocks a request, spans that do not fit are dropped and counted
//!   ([`spans_dropped`], metric `toolgate_telemetry_spans_dropped_total`); batches the collector
//!   refuses are counted too ([`span_exports_failed`]).
//! - **Metrics**: one in-process OpenTelemetry registry, exported over OTLP (when an endpoint is
//!   set) and rendered as Prometheus text on `GET /metrics` ([`metrics`]).
//! - **Security events** ([`security`]): logins, refusals, lockouts and the like, one JSON line
//!   each on stderr, in the security guide's format.
//!
//! # The trace of one request
//!
//! Each layer opens its span with the constructor in [`span`] (names and attribute keys are
//! constants there), so every request produces the same tree:
//!
//! ```text
//! http.request            method, route template, status          http::trace_request (middleware)
//! ├── auth                method, outcome, role                   auth layer
//! ├── policy.decision     point, decision, reasons, revision      policy layer (action, exec points)
//! ├── plugin.invoke       plugin, tool, category, fuel, duration  plugin runtime
//! │   └── host.call       interface, function                     one per host function call
//! │       ├── policy.decision (point exec)                        exec policy, inside the host call
//! │       └── sandbox.exec  argv0, profile, exit code, duration, container id
//! └── audit.write         kind, allowed                           audit sink
//! ```
//!
//! Secret hygiene (INVARIANT): span constructors take names, categories and codes only, never a
//! parameter value, a token, a password, an environment value or a full argv (only `argv[0]`).
//! Do not add fields that could carry user data; parameters are never attributes. Log events
//! (`tracing::info!` ..) inside a span are exported as span events with their fields, so the
//! rule "no secret in any log" covers traces too.
//!
//! # Wiring
//!
//! Where each span and metric comes from (all spans are children of the current span, so the
//! tree above forms by itself when the layers run inside the request):
//!
//! | span / metric | opened / recorded in |
//! | --- | --- |
//! | `http.request`, [`metrics::http_request`] | [`http::trace_request`], layered in `http::router` after every route |
//! | `auth` | the `Authenticated` extractor (`toolgate-server`, `http/extract.rs`) |
//! | `policy.decision`, [`metrics::decision`] | `PolicyEngine::decide_action`, `decide_exec`, `decide` |
//! | `plugin.invoke`, [`metrics::plugin_call`] | `PluginRuntime::{invoke, verify, rollback}` |
//! | `host.call` | every host function (`plugins/host/*.rs`) |
//! | `sandbox.exec`, [`metrics::sandbox_exec`] | `SecureExecutor::exec` |
//! | [`metrics::rate_limited`] | `RateLimiters::check`, when a limit trips |
//! | `GET /metrics` | `http::metrics_api` (a row of `http::routes`; needs credentials unless `telemetry.metrics_public`) |
//!
//! For the execute pipeline (`governance`, `http/tools_api.rs`):
//!
//! - [`metrics::tool_call`]`(tool, status, duration)` once per execute request, with the status
//!   the caller sees; [`metrics::actions_active`]`(state, ±1)` on every action state change.
//! - Audit: write each entry inside `let s = span::audit(kind, allowed, action_id); let _g =
//!   s.enter();` and store [`current_trace_id`] in it (read it while the request's spans are
//!   current: inside the handler, or captured before spawning). The trace id the client sees is
//!   the `x-trace-id` response header ([`http::TRACE_ID_HEADER`]).
//! - Work moved to another task (`tokio::spawn`) or thread loses the current span: pass
//!   `.instrument(tracing::Span::current())` along, or its spans become separate traces.
//!
//! Other layers:
//!
//! - `cli::main` calls [`init`] once and keeps the [`TelemetryGuard`] until exit (it flushes).
//! - Each layer: `let span = telemetry::span::policy("action"); let _g = span.enter();` (sync) or
//!   `.instrument(span)` (async), then `span.record(attr::DECISION, "allow")` etc. once known, and
//!   the matching `telemetry::metrics::*` call.
//! - CORS exposes `x-trace-id` (and accepts `traceparent`) so browser clients can read and send it.

use opentelemetry::trace::TraceContextExt as _;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{EnvFilter, Targets};

mod export;
pub mod http;
mod init;
pub mod metrics;
mod prometheus;
pub mod security;
pub mod span;
mod trace_id;

pub use export::{span_exports_failed, spans_dropped};
pub use init::{Exporting, TelemetryGuard, init, resolve_exporting};

/// `[telemetry]`: logs, traces and metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `pretty` (human-readable lines) or `json` (one object per line).
    pub log_format: LogFormat,
    /// OTLP HTTP base URL (`http://collector:4318`); empty means the `OTEL_EXPORTER_OTLP_*`
    /// variables decide, and no endpoint at all means nothing is exported.
    pub otlp_endpoint: String,
    /// `service.name` of the exported resource when `OTEL_SERVICE_NAME` is not set.
    pub service_name: String,
    /// Finished spans waiting for export; past this, spans are dropped and counted.
    pub queue_size: u64,
    /// Longest wait before queued spans are sent, in milliseconds.
    pub batch_delay_ms: u64,
    /// Deadline of one export request, in milliseconds.
    pub export_timeout_ms: u64,
    /// Interval between two OTLP metric exports, in milliseconds.
    pub metrics_interval_ms: u64,
    /// Serve `GET /metrics` without credentials. Off by default: a scrape then needs a token or
    /// API key of any role (Prometheus: `authorization: { credentials_file: ... }` with a
    /// viewer's `tgk_` key). Turn it on only where the listener is not reachable by untrusted
    /// clients: tool names, routes and error rates are reconnaissance.
    pub metrics_public: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            otlp_endpoint: String::new(),
            service_name: "toolgate".into(),
            queue_size: 2048,
            batch_delay_ms: 1000,
            export_timeout_ms: 5000,
            metrics_interval_ms: 15_000,
            metrics_public: false,
        }
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A global `tracing` subscriber or the metrics registry was already installed.
    #[error("telemetry is already initialised in this process")]
    AlreadyInitialised,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` asks for a protocol this build does not speak.
    #[error("OTLP protocol `{0}` is not supported; use `http/protobuf`")]
    Protocol(String),
    /// An endpoint is not an `http://` URL.
    #[error("invalid OTLP endpoint `{0}`: expected `http://host:port`")]
    Endpoint(String),
    /// An endpoint asks for TLS, which this build's exporter does not speak.
    #[error("OTLP endpoint `{0}` uses https, which is not supported; send to a local collector over http")]
    Tls(String),
    /// A configured number is out of range.
    #[error("invalid telemetry setting `{key}`: {message}")]
    Setting {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The OTLP exporter could not be built.
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    /// The background export thread or runtime could not start.
    #[error("cannot start the telemetry export thread: {0}")]
    Thread(std::io::Error),
}

/// The log filter of every command: `TOOLGATE_LOG` (an `EnvFilter`, default `info`) and, on top
/// of it, [`log_cap`].
pub fn log_filter<S: tracing::Subscriber>() -> impl tracing_subscriber::layer::Filter<S> {
    use tracing_subscriber::filter::FilterExt as _;
    let chosen = EnvFilter::try_from_env("TOOLGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    chosen.and(log_cap())
}

/// What logs may hold whatever `TOOLGATE_LOG` (or `RUST_LOG`) asks: our own crates at any level,
/// every other crate at `warn` at most.
///
/// INVARIANT: third-party crates log what they handle at `debug` and `trace`: the Docker client
/// logs each exec's `Cmd` (an argv, possibly holding a secret), hyper and h2 log headers (bearer
/// tokens, cookies), reqwest and rustls what they send. None of that may reach a log, so this cap
/// is applied after the operator's filter and cannot be lifted by it.
pub fn log_cap() -> Targets {
    Targets::new().with_default(tracing::Level::WARN).with_target("toolgate", tracing::Level::TRACE)
}

/// The trace id of the current span, as 32 lowercase hex digits; `None` outside any span or
/// before [`init`]. Store it in audit entries.
pub fn current_trace_id() -> Option<String> {
    trace_id_of(&tracing::Span::current())
}

/// The trace id of `span`, as for [`current_trace_id`].
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    trace_id::kept(span).or_else(|| otel_trace_id(span)).map(|id| id.to_string())
}

/// The trace id of `span`'s OpenTelemetry span, when one is built (while exporting).
fn otel_trace_id(span: &tracing::Span) -> Option<opentelemetry::trace::TraceId> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id())
}

/// Start the request's trace on `span`, a root not yet entered: the client's (`parent`, its W3C
/// `traceparent`, when valid) or a new one. Returns its id.
fn start_trace(span: &tracing::Span, parent: opentelemetry::Context) -> Option<String> {
    let remote = parent.span().span_context().clone();
    if remote.is_valid() {
        // Fails only if the span was already started, which it cannot be here.
        let _ = span.set_parent(parent);
    }
    // While exporting, the OpenTelemetry span holds the id (the client's trace or a new one);
    // without, it is the client's, or the one `TraceIds` started.
    if let Some(id) = otel_trace_id(span).or_else(|| remote.is_valid().then(|| remote.trace_id())) {
        trace_id::keep(span, id);
    }
    trace_id_of(span)
}
