//! Latency of a sandboxed `echo` through the executor, side by side in one run with the Docker
//! CLI's `docker run --rm --network=none IMAGE echo`. Run with `cargo bench -p toolgate-sandbox
//! --bench sandbox` (optionally `-- <iterations>`, default 30).
//!
//! Series, interleaved so that machine load hits them alike:
//! - `executor (pool)`: the production path, a warm container from the pool;
//! - `docker run (CLI)`: the reference;
//! - `executor (pool, back-to-back)`: commands with no pause, so the pool refills while they run;
//! - `executor (no pool)`: create + start + exec + remove on each command.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use toolgate_core::MemoryAuditSink;
use toolgate_core::model::{AuthMethod, Caller, Role};
use toolgate_sandbox::{Availability, ExecOrigin, ExecRequest, Executor, SandboxConfig, SecureExecutor};

fn request() -> ExecRequest {
    ExecRequest {
        argv: vec!["echo".into(), "bench".into()],
        profile: "default".into(),
        timeout: None,
        origin: ExecOrigin {
            caller: Caller {
                name: "bench".into(),
                role: Role::Operator,
                auth_method: AuthMethod::Local,
                source_ip: None,
            },
            plugin: "bench".into(),
            tool: "bench".into(),
            action_id: "bench".into(),
            secrets: Default::default(),
        },
    }
}

async fn timed(executor: &SecureExecutor) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = executor.exec(request()).await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(out.stdout == "bench\n", "unexpected output {out:?}");
    Ok(elapsed)
}

fn cli(image: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = Command::new("docker")
        .args(["run", "--rm", "--network=none", "--label", "toolgate.test=1", image, "echo", "bench"])
        .output()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(out.status.success() && out.stdout == b"bench\n", "docker run failed: {out:?}");
    Ok(elapsed)
}

fn report(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<32} median {:>7.1} ms   p10 {:>7.1} ms   p90 {:>7.1} ms   n={}",
        ms(at(0.5)),
        ms(at(0.1)),
        ms(at(0.9)),
        samples.len()
    );
    at(0.5)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let iterations: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(30);
    let workspace = tempfile::tempdir()?;
    let audit = Arc::new(MemoryAuditSink::default());
    let pooled = SandboxConfig { workspace: workspace.path().to_owned(), ..Default::default() };
    let unpooled = SandboxConfig { pool_size: 0, ..pooled.clone() };
    let executor = SecureExecutor::connect(&pooled, audit.clone()).await;
    let cold = SecureExecutor::connect(&unpooled, audit).await;
    let Availability::Sandbox { image } = executor.availability() else {
        anyhow::bail!("sandbox unavailable: {:?}", executor.availability());
    };
    // Warm-up: the pool fills, the engine caches the image.
    for _ in 0..3 {
        timed(&executor).await?;
        cli(&image)?;
    }
    let (mut ours, mut theirs, mut burst, mut unpooled_runs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..iterations {
        ours.push(timed(&executor).await?);
        theirs.push(cli(&image)?);
        unpooled_runs.push(timed(&cold).await?);
    }
    for _ in 0..iterations {
        burst.push(timed(&executor).await?);
    }
    executor.shutdown().await;
    cold.shutdown().await;
    println!(
        "sandboxed `echo`, image {image}, {} CPUs",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let ours = report("executor (pool)", ours);
    let theirs = report("docker run (CLI)", theirs);
    report("executor (pool, back-to-back)", burst);
    report("executor (no pool)", unpooled_runs);
    println!("executor / CLI median ratio: {:.2} (target at most 0.33)", ours.as_secs_f64() / theirs.as_secs_f64());
    Ok(())
}
