//! Trace ids without building spans: every span carries its trace's id in its extensions, set on
//! the root and inherited by each span under it, so that [`super::current_trace_id`] answers
//! whether OpenTelemetry spans are built or not.
//!
//! They are built only while exporting: with no collector, building the data of every span of a
//! call (attributes, events, ids) for nobody cost about 15 % of the server's CPU per execute call
//! (BENCHMARKS.md). Without export, [`TraceIds`] starts a trace for each root span itself (the
//! request's, unless the client sent a `traceparent`: then its trace); while exporting, the
//! request's root takes the id of its OpenTelemetry span, and other roots go without (their
//! OpenTelemetry context answers).

use opentelemetry::trace::TraceId;
use tracing::span::{Attributes, Id};
use tracing::{Span, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// A span's trace id, in its extensions.
#[derive(Debug, Clone, Copy)]
struct Kept(TraceId);

/// The layer that hands each new span its parent's trace id, and (without export) starts a
/// trace for each root span.
#[derive(Debug)]
pub(super) struct TraceIds {
    /// Whether a root span starts a trace here (no OpenTelemetry layer does it).
    pub(super) start_roots: bool,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for TraceIds {
    fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let kept = match span.parent() {
            Some(parent) => parent.extensions().get::<Kept>().copied(),
            None => self.start_roots.then(|| Kept(new_trace_id())),
        };
        if let Some(kept) = kept {
            span.extensions_mut().replace(kept);
        }
    }
}

fn new_trace_id() -> TraceId {
    // W3C: all zeros is invalid.
    TraceId::from_bytes(rand::random::<u128>().max(1).to_be_bytes())
}

/// Make `id` the trace id of `span` (a root not yet entered) and of every span opened under it.
pub(super) fn keep(span: &Span, id: TraceId) {
    span.with_subscriber(|(span_id, dispatch)| {
        if let Some(span) = dispatch.downcast_ref::<Registry>().and_then(|r| r.span(span_id)) {
            span.extensions_mut().replace(Kept(id));
        }
    });
}

/// The trace id `span` carries, if any.
pub(super) fn kept(span: &Span) -> Option<TraceId> {
    span.with_subscriber(|(span_id, dispatch)| {
        let span = dispatch.downcast_ref::<Registry>()?.span(span_id)?;
        span.extensions().get::<Kept>().map(|k| k.0)
    })
    .flatten()
}
