//! `toolgate doctor`: the security guide's posture check as a command. Each check prints one
//! line, `ok` or `FAIL` with the reason; the last line says whether the installation conforms,
//! and so does the exit code (0 only when it does).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Mode};
use crate::governance::MemoryAuditSink;
use crate::model::{AuthMethod, Caller, Role};
use crate::sandbox::{
    self, Availability, ExecOrigin, ExecRequest, ExecuteMode, Executor, ProfileConfig, SecureExecutor, WorkspaceAccess,
};

/// Shortest accepted JWT secret.
const MIN_SECRET_LEN: usize = 64;

/// Arguments of `toolgate doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Outcome of one check.
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

fn check(name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
    Check { name, ok, detail: detail.into() }
}

/// Run `toolgate doctor`.
pub async fn run(_args: Args, config: Config) -> anyhow::Result<ExitCode> {
    let mut checks = runtime_variables(&config);
    checks.push(match sandbox::validate(&config) {
        Ok(_) => check("sandbox configuration", true, "accepted at start-up"),
        Err(e) => check("sandbox configuration", false, e.to_string()),
    });
    checks.extend(docker_checks(&config).await);
    let secret_len = config.jwt_secret.expose().chars().count();
    checks.push(check(
        "jwt secret",
        secret_len >= MIN_SECRET_LEN,
        // The length only: the secret itself never reaches the output.
        format!("{secret_len} characters (at least {MIN_SECRET_LEN} required)"),
    ));
    let wildcard = config.cors_origins.iter().any(|o| o.contains('*'));
    checks.push(check(
        "cors origins",
        !wildcard,
        if wildcard {
            format!("a wildcard is allowed: {:?}", config.cors_origins)
        } else if config.cors_origins.is_empty() {
            "no cross-origin access".to_owned()
        } else {
            format!("{:?}", config.cors_origins)
        },
    ));

    for c in &checks {
        println!("{:<5} {}: {}", if c.ok { "ok" } else { "FAIL" }, c.name, c.detail);
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        println!("conforming: all {} checks passed", checks.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("NOT CONFORMING: {failed} of {} checks failed", checks.len());
        Ok(ExitCode::FAILURE)
    }
}

/// The security guide's runtime variables, each against its required value.
fn runtime_variables(config: &Config) -> Vec<Check> {
    let s = &config.sandbox;
    let mode = match config.mode {
        Mode::Production => check("mode", true, "production"),
        Mode::Development => check("mode", false, "development: weak settings are accepted"),
    };
    vec![
        mode,
        check(
            "EXECUTE_MODE",
            s.execute_mode == ExecuteMode::Sandbox,
            format!("{:?} (sandbox required)", s.execute_mode).to_lowercase(),
        ),
        check(
            "ALLOW_DIRECT_FALLBACK",
            !s.allow_direct_fallback,
            format!("{} (false required)", s.allow_direct_fallback),
        ),
        check("SANDBOX_NETWORK", s.network == "none", format!("{} (none required)", s.network)),
        check("SANDBOX_READONLY", s.readonly, format!("{} (true required)", s.readonly)),
    ]
}

/// Docker reachable, then a real `echo OK` in a sandbox with no network.
async fn docker_checks(config: &Config) -> Vec<Check> {
    let mut sandbox_config = config.sandbox.clone();
    sandbox_config.execute_mode = ExecuteMode::Sandbox;
    sandbox_config.pool_size = 0;
    let profile = ProfileConfig {
        network: "none".into(),
        workspace: WorkspaceAccess::None,
        ..sandbox_config.profiles.get("default").cloned().unwrap_or_default()
    };
    sandbox_config.profiles = [("doctor".to_owned(), profile)].into();
    let executor = SecureExecutor::connect(&sandbox_config, Arc::new(MemoryAuditSink::default())).await;
    let image = match executor.availability() {
        Availability::Sandbox { image } => image,
        Availability::Unavailable(reason) => return vec![check("docker", false, reason)],
        Availability::Direct => return vec![check("docker", false, "sandbox mode could not be selected")],
    };
    let mut checks = vec![check("docker", true, format!("reachable, sandbox image {image}"))];
    let request = ExecRequest {
        argv: vec!["echo".into(), "OK".into()],
        profile: "doctor".into(),
        timeout: Some(Duration::from_secs(30)),
        origin: ExecOrigin {
            caller: Caller {
                name: "doctor".into(),
                role: Role::Viewer,
                auth_method: AuthMethod::Local,
                source_ip: None,
            },
            plugin: "doctor".into(),
            tool: "doctor".into(),
            action_id: "doctor".into(),
            secrets: Default::default(),
        },
    };
    checks.push(match executor.exec(request).await {
        Ok(out) if out.exit_code == 0 && out.stdout == "OK\n" => {
            check("sandboxed echo", true, format!("`echo OK` answered in {:?} with network none", out.duration))
        }
        Ok(out) => check(
            "sandboxed echo",
            false,
            format!("exit {}, stdout {:?}, stderr {:?}", out.exit_code, out.stdout, out.stderr),
        ),
        Err(e) => check("sandboxed echo", false, e.to_string()),
    });
    executor.shutdown().await;
    checks
}
