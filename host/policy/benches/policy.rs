//! One action decision with the default policies, in-process: the host's one evaluator (the
//! regorus interpreter on a clone of the prepared engine, strict built-in errors) and the
//! reference OPA engine, in the same run. Prints the median per decision.
//!
//! `cargo bench -p toolgate-policy --bench policy` (needs `cargo xtask setup` for OPA).

#[path = "../tests/policy_support/opa.rs"]
mod opa;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use toolgate_core::model::{AuthMethod, Category, Role};
use toolgate_policy::{ActionInput, ApprovalState, CallerInput, PolicyConfig, PolicyEngine, PolicySet, ToolInput};

/// Median time of one call of `f`, over `SAMPLES` batches sized to take ~2 ms each.
fn median(mut f: impl FnMut()) -> Duration {
    const SAMPLES: usize = 101;
    let start = Instant::now();
    let mut warm = 0u32;
    while start.elapsed() < Duration::from_millis(200) {
        f();
        warm += 1;
    }
    let per = start.elapsed() / warm.max(1);
    let batch = (Duration::from_millis(2).as_nanos() / per.as_nanos().max(1)).max(1) as u32;
    let mut samples: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            t.elapsed() / batch
        })
        .collect();
    samples.sort();
    samples[SAMPLES / 2]
}

fn main() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let config = PolicyConfig { dir: dir.clone(), ..PolicyConfig::default() };
    // An operator restarting a service: MODERATE, allowed with `verify`.
    let input = ActionInput {
        caller: CallerInput {
            user: "bob".into(),
            role: Role::Operator,
            auth_method: AuthMethod::Password,
            source_ip: Some("10.0.0.7".into()),
        },
        tool: ToolInput {
            name: "systemd_restart".into(),
            plugin: "systemd".into(),
            category: Category::Moderate,
            supports_verify: true,
            supports_rollback: false,
            capabilities: vec!["exec:systemd".into()],
        },
        params: serde_json::json!({"unit": "nginx.service"}),
        justification: None,
        approval: ApprovalState::None,
        dry_run: false,
        command: None,
        rollback: None,
    };
    let engine = PolicyEngine::load(&config)?;
    assert!(engine.decide_action(&input).allow, "the operator's restart must be allowed");

    println!("policy: one action decision, default policies, median of 101 batches");
    let t = median(|| {
        black_box(engine.decide_action(black_box(&input)));
    });
    println!("  regorus interpreter (host, cloned engine) {:>9.2} µs", t.as_nanos() as f64 / 1000.0);

    let set = PolicySet::load(&dir, Some(config.min_justification_len))?;
    match opa::load_set(&set) {
        Ok(opa) => {
            let doc = serde_json::to_value(&input)?;
            let t = median(|| {
                black_box(opa.eval("toolgate.action.decision", black_box(&doc)).ok());
            });
            println!("  reference OPA 1.x (Go, via C)             {:>9.2} µs", t.as_nanos() as f64 / 1000.0);
        }
        Err(e) => println!("  reference OPA: skipped: {e:#}"),
    }
    Ok(())
}
