//! An OTLP collector for tests: a real HTTP server speaking OTLP/HTTP protobuf
//! (`POST /v1/traces`, `POST /v1/metrics`), decoding with `opentelemetry-proto`, keeping what it
//! receives for assertions.
//!
//! It runs on its own thread and Tokio runtime, so it outlives any one `#[tokio::test]` runtime
//! and can be shared by the tests of a binary. Dropping it stops the server.
//!
//! ```text
//! let collector = OtlpReceiver::start()?;
//! // point the exporter at collector.endpoint() ...
//! let spans = collector.wait_for_spans(|s| s.iter().any(|s| s.name == "audit.write"), Duration::from_secs(10));
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use prost::Message;

/// One received span, flattened for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// Span name.
    pub name: String,
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// 16 lowercase hex digits; empty for a root span.
    pub parent_span_id: String,
    /// Attributes, values rendered as text.
    pub attributes: BTreeMap<String, String>,
    /// `service.name` of the resource that sent it.
    pub service_name: String,
    /// OTLP status code: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
}

impl ReceivedSpan {
    /// The attribute `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// The one span of `spans` named `name` that `filter` accepts; an error listing every span when
/// there is none or more than one.
pub fn one<'a>(
    spans: &'a [ReceivedSpan],
    name: &str,
    filter: impl Fn(&ReceivedSpan) -> bool,
) -> anyhow::Result<&'a ReceivedSpan> {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name && filter(s)).collect();
    match found.as_slice() {
        [one] => Ok(one),
        _ => Err(anyhow::anyhow!("expected one `{name}` span, found {}: {spans:#?}", found.len())),
    }
}

/// One received metric data point (sums and gauges), flattened for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedPoint {
    /// Metric name as exported (`toolgate.tool.calls`).
    pub metric: String,
    /// Data point attributes.
    pub attributes: BTreeMap<String, String>,
    /// The value (integers converted); for histograms, the count.
    pub value: f64,
}

#[derive(Debug, Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    points: Vec<ReceivedPoint>,
    trace_requests: usize,
}

/// A running OTLP/HTTP collector.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Start listening on `127.0.0.1`, on a free port.
    pub fn start() -> anyhow::Result<Self> {
        // Bound here so the port is known (and errors surface) before the thread starts; the
        // server runtime lives on the thread, as callers may already be inside a runtime.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let received = Arc::new(Mutex::new(Received::default()));
        let app = axum::Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/metrics", post(metrics))
            .with_state(Arc::clone(&received));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("otlp-receiver".into()).spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        })?;
        Ok(Self { addr, received, stop: Some(stop), thread: Some(thread) })
    }

    /// The base URL to give an exporter (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.lock().spans.clone()
    }

    /// Every sum, gauge and histogram point received so far (all exports, oldest first).
    pub fn points(&self) -> Vec<ReceivedPoint> {
        self.lock().points.clone()
    }

    /// How many trace export requests arrived.
    pub fn trace_requests(&self) -> usize {
        self.lock().trace_requests
    }

    /// Wait until `done(spans)` holds or `timeout` passes; returns the spans either way.
    pub fn wait_for_spans(&self, done: impl Fn(&[ReceivedSpan]) -> bool, timeout: Duration) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() >= deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Received> {
        self.received.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Shared = State<Arc<Mutex<Received>>>;

fn protobuf(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/x-protobuf")], body).into_response()
}

async fn traces(State(received): Shared, body: Bytes) -> Response {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, "not an ExportTraceServiceRequest").into_response();
    };
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let service_name = resource_spans
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .map(|kv| text(kv.value.as_ref()))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(ReceivedSpan {
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: attributes(&span.attributes),
                    service_name: service_name.clone(),
                    status_code: span.status.map(|s| s.code).unwrap_or_default(),
                });
            }
        }
    }
    {
        let mut received = received.lock().unwrap_or_else(PoisonError::into_inner);
        received.trace_requests += 1;
        received.spans.extend(spans);
    }
    protobuf(ExportTraceServiceResponse { partial_success: None }.encode_to_vec())
}

async fn metrics(State(received): Shared, body: Bytes) -> Response {
    let Ok(request) = ExportMetricsServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, "not an ExportMetricsServiceRequest").into_response();
    };
    let mut points = Vec::new();
    for resource_metrics in request.resource_metrics {
        for scope in resource_metrics.scope_metrics {
            for metric in scope.metrics {
                let name = metric.name.clone();
                let mut push = |attrs: &[KeyValue], value: f64| {
                    points.push(ReceivedPoint { metric: name.clone(), attributes: attributes(attrs), value });
                };
                match metric.data {
                    Some(metric::Data::Sum(sum)) => {
                        sum.data_points.iter().for_each(|p| push(&p.attributes, number(p.value)))
                    }
                    Some(metric::Data::Gauge(g)) => {
                        g.data_points.iter().for_each(|p| push(&p.attributes, number(p.value)))
                    }
                    Some(metric::Data::Histogram(h)) => {
                        h.data_points.iter().for_each(|p| push(&p.attributes, p.count as f64))
                    }
                    _ => {}
                }
            }
        }
    }
    received.lock().unwrap_or_else(PoisonError::into_inner).points.extend(points);
    protobuf(ExportMetricsServiceResponse { partial_success: None }.encode_to_vec())
}

fn number(value: Option<opentelemetry_proto::tonic::metrics::v1::number_data_point::Value>) -> f64 {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    match value {
        Some(Value::AsDouble(v)) => v,
        Some(Value::AsInt(v)) => v as f64,
        None => f64::NAN,
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), text(kv.value.as_ref()))).collect()
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
