//! Telemetry: logs, traces and metrics, set up once by [`init`].
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

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

mod export;
pub mod http;
pub mod metrics;
mod prometheus;
pub mod security;
pub mod span;
mod trace_id;

pub use export::{span_exports_failed, spans_dropped};

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

/// Keeps exporting while alive; flushes queued spans and metrics when dropped.
pub struct TelemetryGuard {
    tracer: SdkTracerProvider,
    meter: Option<SdkMeterProvider>,
    runtime: Option<Background>,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard").field("exporting", &self.runtime.is_some()).finish()
    }
}

impl TelemetryGuard {
    /// Send everything queued now (spans, then metrics); waits for the collector to answer, up to
    /// the export timeout, and fails if it did not accept everything. Not for the request path.
    pub fn flush(&self) -> Result<(), TelemetryError> {
        let spans = self.tracer.force_flush();
        let metrics = self.meter.as_ref().map_or(Ok(()), SdkMeterProvider::force_flush);
        spans.and(metrics).map_err(|e| TelemetryError::Exporter(e.to_string()))
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        // Errors here mean the collector did not take the last batch; nothing is left to try.
        let stopped = self.tracer.shutdown_with_timeout(self.shutdown_timeout).is_ok();
        if let Some(meter) = &self.meter {
            let _ = meter.shutdown_with_timeout(self.shutdown_timeout);
        }
        if let Some(runtime) = self.runtime.take()
            && !stopped
        {
            runtime.leak();
        }
    }
}

/// The export runtime. It may be dropped inside async code (a test, an error path of [`init`]),
/// so dropping it never blocks.
struct Background(Option<tokio::runtime::Runtime>);

impl Background {
    fn start() -> Result<(Self, tokio::runtime::Handle), TelemetryError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("toolgate-telemetry")
            .enable_all()
            .build()
            .map_err(TelemetryError::Thread)?;
        let handle = runtime.handle().clone();
        Ok((Self(Some(runtime)), handle))
    }

    /// The export thread is still waiting on a hung collector inside this runtime; shutting it
    /// down would panic that thread. Only at exit: leave it running.
    fn leak(mut self) {
        if let Some(runtime) = self.0.take() {
            std::mem::forget(runtime);
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Where telemetry is exported, resolved from the config and the `OTEL_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exporting {
    /// The traces URL, or `None` to let the `OTEL_EXPORTER_OTLP_*` variables decide.
    pub traces: Option<String>,
    /// The metrics URL, likewise.
    pub metrics: Option<String>,
}

/// Decide whether and where to export: `Ok(None)` means export is off.
pub fn resolve_exporting(
    config: &TelemetryConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Exporting>, TelemetryError> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    for name in
        ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"]
    {
        if let Some(protocol) = var(name)
            && protocol != "http/protobuf"
        {
            return Err(TelemetryError::Protocol(protocol));
        }
    }
    // The exporter's hyper client has no TLS (one TLS stack is enough for this binary), so an
    // https endpoint would fail every export: refuse it at start-up instead.
    let endpoints =
        ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"];
    let base = config.otlp_endpoint.trim();
    for endpoint in endpoints.iter().filter_map(|name| var(name)).chain((!base.is_empty()).then(|| base.to_owned())) {
        if endpoint.trim().to_ascii_lowercase().starts_with("https://") {
            return Err(TelemetryError::Tls(endpoint));
        }
    }
    if !base.is_empty() {
        let base = base.trim_end_matches('/');
        if !base.starts_with("http://") || base.parse::<hyper::Uri>().is_err() {
            return Err(TelemetryError::Endpoint(config.otlp_endpoint.clone()));
        }
        return Ok(Some(Exporting {
            traces: Some(format!("{base}/v1/traces")),
            metrics: Some(format!("{base}/v1/metrics")),
        }));
    }
    let any_env = endpoints.iter().any(|name| var(name).is_some());
    Ok(any_env.then_some(Exporting { traces: None, metrics: None }))
}

/// Set up logs, traces and metrics for this process. Call once, before serving, and keep the
/// guard until exit. Fails if called twice or if the telemetry settings are invalid; an
/// unreachable collector is not an error (spans are dropped and counted instead).
pub fn init(settings: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let exporting = resolve_exporting(settings, |name| std::env::var(name).ok())?;
    let export_on = exporting.is_some();
    let resource = resource(settings);

    let mut guard = TelemetryGuard {
        tracer: SdkTracerProvider::builder().with_resource(resource.clone()).build(),
        meter: None,
        runtime: None,
        // Room for the batch in flight and one last batch, each bounded by the export timeout.
        shutdown_timeout: Duration::from_millis(settings.export_timeout_ms).saturating_mul(2) + Duration::from_secs(1),
    };
    let mut export_reader = None;
    if let Some(exporting) = exporting {
        let timeout =
            Duration::from_millis(positive(settings.export_timeout_ms, "telemetry.export_timeout_ms")? as u64);
        let queue = export::QueueSettings {
            capacity: positive(settings.queue_size, "telemetry.queue_size")?,
            delay: Duration::from_millis(settings.batch_delay_ms),
            timeout,
        };
        let interval =
            Duration::from_millis(positive(settings.metrics_interval_ms, "telemetry.metrics_interval_ms")? as u64);
        let spans = span_exporter(exporting.traces.as_deref(), timeout)?;
        let metrics = metric_exporter(exporting.metrics.as_deref(), timeout)?;
        let (runtime, handle) = Background::start()?;
        guard.runtime = Some(runtime);
        let processor = export::QueueProcessor::start(spans, &resource, handle.clone(), queue)?;
        guard.tracer =
            SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource.clone()).build();
        export_reader =
            Some(PeriodicReader::builder(export::InRuntime::new(metrics, handle)).with_interval(interval).build());
    }
    guard.meter = Some(metrics::install(resource, export_reader).ok_or(TelemetryError::AlreadyInitialised)?);

    let log_filter = log_filter();
    let log_layer = match settings.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
    };
    // Traces are filtered apart from logs: `TOOLGATE_LOG=warn` must not break the trace tree.
    let trace_filter = Targets::new().with_target("toolgate", tracing::Level::INFO);
    let trace_layer = tracing_opentelemetry::layer()
        .with_tracer(guard.tracer.tracer("toolgate"))
        .with_location(false)
        .with_threads(false)
        .with_level(false)
        .with_target(false);
    // OpenTelemetry spans are built only to be exported (see `trace_id`); the trace ids are kept
    // either way.
    tracing_subscriber::registry()
        .with(log_layer.with_filter(log_filter))
        .with(trace_id::TraceIds { start_roots: !export_on }.with_filter(trace_filter.clone()))
        .with(export_on.then(|| trace_layer.with_filter(trace_filter)))
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialised)?;
    Ok(guard)
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

fn resource(settings: &TelemetryConfig) -> Resource {
    // `Resource::builder` reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the config's
    // service name only fills in when the standard variable is absent.
    let mut builder = Resource::builder().with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if std::env::var("OTEL_SERVICE_NAME").map(|v| v.trim().is_empty()).unwrap_or(true) {
        builder = builder.with_service_name(settings.service_name.clone());
    }
    builder.build()
}

fn span_exporter(
    endpoint: Option<&str>,
    timeout: Duration,
) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_timeout(timeout);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    builder.build().map_err(|e| TelemetryError::Exporter(e.to_string()))
}

fn metric_exporter(
    endpoint: Option<&str>,
    timeout: Duration,
) -> Result<opentelemetry_otlp::MetricExporter, TelemetryError> {
    let mut builder = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_timeout(timeout);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    builder.build().map_err(|e| TelemetryError::Exporter(e.to_string()))
}

fn positive(value: u64, key: &'static str) -> Result<usize, TelemetryError> {
    usize::try_from(value)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| TelemetryError::Setting { key, message: format!("must be a positive integer, got `{value}`") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn no_endpoint_means_export_off() -> anyhow::Result<()> {
        assert_eq!(resolve_exporting(&TelemetryConfig::default(), env(&[]))?, None);
        Ok(())
    }

    #[test]
    fn config_endpoint_gets_signal_paths() -> anyhow::Result<()> {
        let config = TelemetryConfig { otlp_endpoint: "http://127.0.0.1:4318/".into(), ..Default::default() };
        let exporting = resolve_exporting(&config, env(&[]))?;
        assert_eq!(
            exporting,
            Some(Exporting {
                traces: Some("http://127.0.0.1:4318/v1/traces".into()),
                metrics: Some("http://127.0.0.1:4318/v1/metrics".into()),
            })
        );
        Ok(())
    }

    #[test]
    fn standard_variables_turn_export_on_and_can_disable_it() -> anyhow::Result<()> {
        let on =
            resolve_exporting(&TelemetryConfig::default(), env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]))?;
        assert_eq!(on, Some(Exporting { traces: None, metrics: None }));
        let off = resolve_exporting(
            &TelemetryConfig::default(),
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_SDK_DISABLED", "true")]),
        )?;
        assert_eq!(off, None);
        Ok(())
    }

    #[test]
    fn grpc_and_bad_endpoints_are_refused_with_the_value() {
        let err = resolve_exporting(&TelemetryConfig::default(), env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]));
        assert!(matches!(&err, Err(TelemetryError::Protocol(p)) if p == "grpc"), "{err:?}");
        let config = TelemetryConfig { otlp_endpoint: "collector:4318".into(), ..Default::default() };
        let err = resolve_exporting(&config, env(&[])).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("`collector:4318`"), "{err}");
        let err =
            resolve_exporting(&TelemetryConfig::default(), env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")]));
        assert!(matches!(&err, Err(TelemetryError::Tls(e)) if e == "https://c:4318"), "{err:?}");
    }
}
