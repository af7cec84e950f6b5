//! Setting telemetry up once per process: where to export (the config and the `OTEL_*`
//! variables, [`resolve_exporting`]), the exporters on their own runtime, and the `tracing`
//! subscriber with its log, trace-id and OpenTelemetry layers ([`init`]); the guard that flushes
//! at exit.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::{LogFormat, TelemetryConfig, TelemetryError, export, log_filter, metrics, trace_id};

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
