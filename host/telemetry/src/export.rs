//! Getting spans and metrics out without ever blocking a request.
//!
//! The SDK's batch span processor keeps its count of dropped spans private, so spans go through
//! our own bounded queue: `on_end` (on the request path) only pushes under a short lock or drops
//! and counts; one background thread sends batches. The OTLP HTTP client is hyper, which needs a
//! Tokio runtime: the telemetry runtime (one worker thread, owned by the guard) drives it, apart
//! from the application's runtime so a busy or stopped application runtime cannot stall export.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::runtime::Handle;

use super::TelemetryError;

/// Largest batch sent in one export request.
const MAX_BATCH: usize = 512;

static DROPPED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);

/// Spans dropped so far in this process because the export queue was full (the collector is
/// down, slow or hung).
pub fn spans_dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Span export requests that failed or timed out so far in this process (each loses its batch).
pub fn span_exports_failed() -> u64 {
    FAILED.load(Ordering::Relaxed)
}

/// Bounds and timings of the span queue.
#[derive(Debug, Clone, Copy)]
pub(super) struct QueueSettings {
    pub capacity: usize,
    pub delay: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<SpanData>,
    /// Flush requests made and served; a flusher waits until `served` reaches its number.
    requested: u64,
    served: u64,
    /// The latest flush ticket whose round lost a batch.
    failed_upto: u64,
    shutdown: bool,
    stopped: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the worker: a full batch, a flush, a shutdown.
    work: Condvar,
    /// Wakes flushers and the shutdown: a flush served, the worker stopped.
    progress: Condvar,
    settings: QueueSettings,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a queue that is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A span processor with a bounded queue and a counted overflow.
#[derive(Debug)]
pub(super) struct QueueProcessor {
    shared: Arc<Shared>,
}

impl QueueProcessor {
    /// Start the export thread; exports run on `runtime` and describe `resource`.
    pub fn start<E: SpanExporter + 'static>(
        mut exporter: E,
        resource: &Resource,
        runtime: Handle,
        settings: QueueSettings,
    ) -> Result<Self, TelemetryError> {
        // The SDK hands the resource to processors, not exporters; the exporter needs it.
        exporter.set_resource(resource);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
            settings,
        });
        let worker = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("toolgate-span-export".into())
            .spawn(move || run_worker(&worker, &exporter, &runtime))
            .map_err(TelemetryError::Thread)?;
        Ok(Self { shared })
    }

    fn wait_for<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        done: impl Fn(&State) -> bool,
        timeout: Duration,
    ) -> Result<MutexGuard<'a, State>, OTelSdkError> {
        let deadline = Instant::now() + timeout;
        while !done(&state) {
            let now = Instant::now();
            if now >= deadline {
                return Err(OTelSdkError::Timeout(timeout));
            }
            state = self.shared.progress.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
        Ok(state)
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let mut state = self.shared.lock();
        if state.shutdown || state.queue.len() >= self.shared.settings.capacity {
            drop(state);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            super::metrics::span_dropped();
            return;
        }
        state.queue.push_back(span);
        if state.queue.len() >= MAX_BATCH.min(self.shared.settings.capacity) {
            self.shared.work.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let mut state = self.shared.lock();
        if state.stopped {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        state.requested += 1;
        let ticket = state.requested;
        self.shared.work.notify_one();
        // Every queued batch may take up to one export timeout.
        let batches = state.queue.len().div_ceil(MAX_BATCH).max(1) as u32;
        let state =
            self.wait_for(state, |s| s.served >= ticket || s.stopped, self.shared.settings.timeout * (batches + 1))?;
        if state.failed_upto >= ticket {
            return Err(OTelSdkError::InternalFailure("the collector did not accept every span batch".into()));
        }
        Ok(())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let mut state = self.shared.lock();
        if state.shutdown {
            return Ok(());
        }
        state.shutdown = true;
        self.shared.work.notify_one();
        self.wait_for(state, |s| s.stopped, timeout).map(drop)
    }

    fn set_resource(&mut self, _resource: &Resource) {}
}

fn run_worker<E: SpanExporter>(shared: &Shared, exporter: &E, runtime: &Handle) {
    let settings = shared.settings;
    let mut state = shared.lock();
    loop {
        let deadline = Instant::now() + settings.delay;
        let batch = MAX_BATCH.min(settings.capacity);
        while state.queue.len() < batch && state.requested == state.served && !state.shutdown {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = shared.work.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
        let ticket = state.requested;
        let shutdown = state.shutdown;
        // Send what is queued now; spans that arrive meanwhile wait for the next round.
        let mut pending = state.queue.len();
        let mut failed = false;
        while pending > 0 {
            let spans: Vec<SpanData> = state.queue.drain(..batch.min(pending)).collect();
            pending -= spans.len();
            drop(state);
            // A failed or timed-out export loses this batch; the collector being down must not
            // grow memory or stop later batches.
            let sent = runtime.block_on(async { tokio::time::timeout(settings.timeout, exporter.export(spans)).await });
            if !matches!(sent, Ok(Ok(()))) {
                failed = true;
                FAILED.fetch_add(1, Ordering::Relaxed);
                super::metrics::span_export_failed();
            }
            state = shared.lock();
        }
        if failed {
            state.failed_upto = state.failed_upto.max(ticket);
        }
        state.served = state.served.max(ticket);
        shared.progress.notify_all();
        if shutdown {
            break;
        }
    }
    state.stopped = true;
    drop(state);
    let _ = exporter.shutdown();
    shared.progress.notify_all();
}

/// A metric exporter whose futures run with the telemetry runtime entered, because the periodic
/// reader polls them on its own plain thread and the hyper client needs a Tokio reactor.
#[derive(Debug)]
pub(super) struct InRuntime<E> {
    inner: E,
    runtime: Handle,
}

impl<E> InRuntime<E> {
    pub fn new(inner: E, runtime: Handle) -> Self {
        Self { inner, runtime }
    }
}

impl<E: PushMetricExporter> PushMetricExporter for InRuntime<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        Entered { runtime: &self.runtime, future: Box::pin(self.inner.export(metrics)) }.await
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// Polls `future` with `runtime` entered; the enter guard lives only inside `poll`, so the
/// future stays `Send`.
struct Entered<'a, F> {
    runtime: &'a Handle,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for Entered<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _entered = this.runtime.enter();
        this.future.as_mut().poll(cx)
    }
}
