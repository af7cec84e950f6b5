//! `systemd_status` and `systemd_restart` through the gateway against `systemctl status|restart`
//! run inside the same real Debian system, side by side, alternating rounds in one run (these
//! machines are noisy). The gateway's figure is a whole HTTP call (authentication, action policy,
//! the plugin, the `host` policy point, D-Bus, the audit entries, the action record); the
//! `systemctl` figure is the command alone, timed by the system's own clock in one `sh` loop (no
//! `docker exec` per call).
//!
//! Run: `cargo xtask plugins && cargo xtask images && cargo bench -p toolgate-tests --bench real_host`
//! (`ROUNDS` and `CALLS` override the defaults). Prints one table row per operation for
//! `BENCHMARKS.md`.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use toolgate_tests::debian::{DebianSystem, SERVICE_UID, TEST_UNIT};
use toolgate_tests::service_user::RunAs;
use toolgate_tests::{Server, client, copy_of_policies, run_cli, send};

/// Restarts per batch: under systemd's default start limit (5 in 10 s).
const RESTARTS: usize = 4;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Median of `samples`, per call.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// `CALLS` runs of `systemctl ARGS` in one shell loop inside the system, per call.
fn systemctl_loop(system: &DebianSystem, args: &str, calls: usize) -> anyhow::Result<Duration> {
    let script = format!(
        "s=$(date +%s%N); i=0; while [ $i -lt {calls} ]; do systemctl {args} >/dev/null || exit 1; i=$((i+1)); done; \
         e=$(date +%s%N); echo $((e-s))"
    );
    let out = system.run(&["sh", "-c", &script])?;
    let total: u64 = out.trim().parse().with_context(|| format!("the loop printed {out:?}"))?;
    Ok(Duration::from_nanos(total / calls as u64))
}

async fn gateway_loop(
    server: &Server,
    token: &str,
    tool: &str,
    body: &Value,
    calls: usize,
) -> anyhow::Result<Duration> {
    let url = server.url(&format!("/api/v1/tools/{tool}/execute"));
    let started = Instant::now();
    for _ in 0..calls {
        let (status, answer) = send(client().post(&url).bearer_auth(token).json(body)).await?;
        anyhow::ensure!(status.is_success() && answer["status"] == "completed", "{status}: {answer}");
    }
    Ok(started.elapsed() / calls as u32)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds = env_number("ROUNDS", 5);
    let calls = env_number("CALLS", 20);
    let system = DebianSystem::boot()?;
    let dir = tempfile::tempdir()?;
    let policies = copy_of_policies(dir.path())?;
    let data_path = policies.join("data.json");
    let mut data: Value = serde_json::from_str(&std::fs::read_to_string(&data_path)?)?;
    data["host"]["services"]["manage"]["admin"].as_array_mut().context("services.manage.admin")?.push(json!(TEST_UNIT));
    std::fs::write(&data_path, serde_json::to_string_pretty(&data)?)?;
    let out = run_cli(dir.path(), &[], &["deploy", "polkit", &policies.display().to_string()], "")?;
    let rules = dir.path().join("50-toolgate.rules");
    std::fs::write(&rules, &out.stdout)?;
    system.install_polkit_rules(&rules)?;
    let config = dir.path().join("toolgate.toml");
    std::fs::write(&config, format!("[system]\nbus_address = {:?}\n", system.bus_address()))?;
    let config = config.display().to_string();
    let server = Server::start_as(
        RunAs::with_engine_group(SERVICE_UID)?,
        &policies,
        &[
            ("TOOLGATE_CONFIG", config.as_str()),
            ("TOOLGATE_HTTP_RATE_LIMITS_EXEC_REQUESTS", "1000000"),
            ("TOOLGATE_HTTP_RATE_LIMITS_GENERAL_REQUESTS", "1000000"),
        ],
        &["admin"],
    )?;
    let token = server.admin_token().await?;
    let status_body = json!({"params": {"unit": TEST_UNIT}});
    let restart_body = json!({"params": {"unit": TEST_UNIT}, "justification": "benchmark of the restart path"});
    // Warm both paths once (plugin instance pages, D-Bus connection, systemctl's page cache).
    gateway_loop(&server, &token, "systemd_status", &status_body, 2).await?;
    systemctl_loop(&system, &format!("status --no-pager {TEST_UNIT}"), 2)?;

    let (mut gw_status, mut sc_status, mut gw_restart, mut sc_restart) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        gw_status.push(gateway_loop(&server, &token, "systemd_status", &status_body, calls).await?);
        sc_status.push(systemctl_loop(&system, &format!("status --no-pager {TEST_UNIT}"), calls)?);
        // systemd refuses a 6th start within 10 s (`StartLimitBurst`): batches of 4, its counter
        // reset before each, outside the timing.
        system.run(&["systemctl", "reset-failed", TEST_UNIT])?;
        gw_restart.push(gateway_loop(&server, &token, "systemd_restart", &restart_body, RESTARTS).await?);
        system.run(&["systemctl", "reset-failed", TEST_UNIT])?;
        sc_restart.push(systemctl_loop(&system, &format!("restart {TEST_UNIT}"), RESTARTS)?);
    }
    println!("| operation | gateway (median of {rounds} rounds) | systemctl inside | ratio |");
    println!("|---|---|---|---|");
    for (name, gw, sc) in [("status", gw_status, sc_status), ("restart", gw_restart, sc_restart)] {
        let (gw, sc) = (median(gw), median(sc));
        println!("| {name} | {gw:.2?} | {sc:.2?} | {:.2} |", gw.as_secs_f64() / sc.as_secs_f64());
    }
    Ok(())
}
