//! The `toolgate` command line. One file per subcommand under `cli/`; each exposes `Args` and
//! `run`, and returns the process exit code. Errors reach the user as one line on stderr and a
//! non-zero exit.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

pub mod audit;
pub mod deploy;
pub mod doctor;
pub mod plugins;
pub mod policy;
pub mod serve;
pub mod users;

/// Toolgate: run operations tools on servers through policy, WebAssembly plugins and a sandbox.
#[derive(Debug, Parser)]
#[command(name = "toolgate", version, about)]
pub struct Cli {
    /// Configuration file (TOML). Without it, the embedded defaults and the environment apply.
    #[arg(long, global = true, env = "TOOLGATE_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(serve::Args),
    /// Inspect and call plugins locally.
    #[command(subcommand)]
    Plugins(plugins::Args),
    /// Test, evaluate and check Rego policies.
    #[command(subcommand)]
    Policy(policy::Args),
    /// Manage user accounts.
    #[command(subcommand)]
    Users(users::Args),
    /// Check the security posture of this installation.
    Doctor(doctor::Args),
    /// Verify or export the audit log.
    #[command(subcommand)]
    Audit(audit::Args),
    /// Write what a server needs beside the binary (polkit rules).
    #[command(subcommand)]
    Deploy(deploy::Args),
}

/// Parse the command line, run the subcommand, and turn its outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // `policy` works on files and the `[policy]` section alone: no telemetry, no runtime. It reads
    // the configuration the server reads, so that it decides as the server does.
    if let Command::Policy(args) = cli.command {
        init_logging();
        let config = Config::load(cli.config.as_deref())?;
        return policy::run(args, &config.policy);
    }
    if let Command::Deploy(args) = cli.command {
        init_logging();
        let config = Config::load(cli.config.as_deref())?;
        return deploy::run(args, &config.policy);
    }
    let config = Config::load(cli.config.as_deref())?;
    // Kept until the command returns: dropping it flushes queued spans and metrics.
    let _telemetry = toolgate_telemetry::init(&config.telemetry)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args, config).await,
            Command::Plugins(args) => plugins::run(args, config).await,
            Command::Users(args) => users::run(args, config).await,
            Command::Doctor(args) => doctor::run(args, config).await,
            Command::Audit(args) => audit::run(args, config).await,
            Command::Policy(_) | Command::Deploy(_) => unreachable_policy(),
        }
    })
}

fn unreachable_policy() -> anyhow::Result<ExitCode> {
    anyhow::bail!("internal error: policy command dispatched twice")
}

/// Logs only, for commands that run without a configuration: stderr, filtered by `TOOLGATE_LOG`
/// (an `EnvFilter`, default `info`) under the same cap of other crates' logs as every command
/// ([`toolgate_telemetry::log_cap`]). Everything else gets [`toolgate_telemetry::init`].
fn init_logging() {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let _ = tracing_subscriber::registry().with(logs.with_filter(toolgate_telemetry::log_filter())).try_init();
}
