//! End-to-end throughput and latency of `POST /api/v1/tools/{tool}/execute` with the durable
//! audit log: the real release binary, 32 concurrent keep-alive clients over loopback, a READ
//! tool that needs no sandbox (`get_audit_log` by default; `BENCH_TOOL` and `BENCH_PARAMS`
//! override it), every call authenticated (JWT), decided by policy, run as a WebAssembly plugin,
//! and acknowledged only after its audit entry is committed.
//!
//! `cargo bench -p toolgate-tests --bench execute` (`BENCH_SECS`, `BENCH_CLIENTS` to change the
//! run). Prints one Markdown table row for BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use toolgate_tests::{Server, client};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let clients: usize = std::env::var("BENCH_CLIENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(32);
    let tool = std::env::var("BENCH_TOOL").unwrap_or_else(|_| "get_audit_log".into());
    let params: Value = match std::env::var("BENCH_PARAMS") {
        Ok(p) => serde_json::from_str(&p)?,
        Err(_) => json!({"last_n": 20}),
    };
    let server = Server::start(&[
        ("TOOLGATE_HTTP_RATE_LIMITS_EXEC_REQUESTS", "100000000"),
        ("TOOLGATE_HTTP_RATE_LIMITS_GENERAL_REQUESTS", "100000000"),
        ("TOOLGATE_LOG", "error"),
    ])?;
    let token = server.admin_token().await?;
    let url = server.url(&format!("/api/v1/tools/{tool}/execute"));
    let body = Arc::new(serde_json::to_vec(&json!({ "params": params }))?);
    // One call first: the answer must be a completed action, or the numbers mean nothing.
    let first: Value = client()
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(body.as_ref().clone())
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(first["status"] == "completed", "the benchmarked call does not complete: {first}");

    let warmup = Duration::from_secs(2);
    let started = Instant::now();
    let end = started + warmup + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, token, body) = (url.clone(), token.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let http = client();
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                let res = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.as_ref().clone())
                    .send()
                    .await;
                let ok = match res {
                    Ok(res) => res.status().is_success() && res.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if t >= started + warmup {
                    if ok { latencies.push(t.elapsed()) } else { failures += 1 }
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (l, f) = task.await?;
        latencies.extend(l);
        failures += f;
    }
    latencies.sort();
    let pct =
        |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied();
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    let rate = latencies.len() as f64 / secs as f64;
    println!("| tool | clients | seconds | calls/s | p50 ms | p99 ms | max ms | failures |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| `{tool}` | {clients} | {secs} | {rate:.0} | {:.2} | {:.2} | {:.2} | {failures} |",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(latencies.last().copied())
    );
    drop(server);
    Ok(())
}
