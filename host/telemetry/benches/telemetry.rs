//! Cost of recording telemetry on the request path: one metric event, one span.
//!
//! `cargo bench -p toolgate-telemetry --bench telemetry`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use toolgate_telemetry::{self as telemetry, TelemetryConfig, metrics, span};

fn record(c: &mut Criterion) {
    // Export off (no endpoint): measures what every request pays, not the collector.
    let guard = telemetry::init(&TelemetryConfig::default());
    if let Err(err) = &guard {
        eprintln!("telemetry init failed: {err}");
        return;
    }
    c.bench_function("metrics::tool_call", |b| {
        b.iter(|| metrics::tool_call(black_box("disk_usage"), black_box("ok"), Duration::from_micros(40)))
    });
    c.bench_function("metrics::http_request", |b| {
        b.iter(|| metrics::http_request(black_box("/api/v1/tools/{name}"), black_box(200), Duration::from_micros(40)))
    });
    c.bench_function("metrics::decision (2 reasons)", |b| {
        b.iter(|| metrics::decision(black_box("action"), true, black_box(&["role_ok", "category_safe"])))
    });
    c.bench_function("metrics::actions_active", |b| b.iter(|| metrics::actions_active(black_box("running"), 1)));
    let root = span::http("POST", "/api/v1/tools/{name}");
    let _entered = root.enter();
    c.bench_function("span::sandbox_exec + record_exec (child span)", |b| {
        b.iter(|| {
            let exec = span::sandbox_exec(black_box(&["df".to_owned()]), "readonly");
            span::record_exec(&exec, Some(0), Duration::from_millis(1), "c0ffee");
        })
    });
    c.bench_function("metrics::render", |b| b.iter(|| black_box(metrics::render()).len()));
}

criterion_group!(benches, record);
criterion_main!(benches);
