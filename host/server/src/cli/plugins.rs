//! `toolgate plugins`: list the plugins of `[plugins] dir`, and call their tools locally as the
//! local administrator (for plugin development). A call starts the real gateway: its commands go
//! through the exec policy and the sandbox, exactly as under `toolgate serve`; only the action
//! policy is skipped, since the local administrator already holds the machine.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::gateway::Gateway;
use toolgate_core::MemoryAuditSink;
use toolgate_governance::{ActionState, ExecuteRequest};
use toolgate_runtime::{HostServices, PluginRuntime, local_admin};

/// Arguments of `toolgate plugins`.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// List loaded plugins with their tools, categories, capabilities and grants, and refused ones.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Call a tool as the local administrator through the whole pipeline (policy, sandbox,
    /// verify, rollback, audit) and print its output document. The server must be stopped.
    Call {
        /// Tool name.
        tool: String,
        /// Parameters, a JSON object.
        #[arg(long, default_value = "{}")]
        params: String,
        /// Why (required for SENSITIVE tools; CRITICAL ones wait for an approval in the API).
        #[arg(long)]
        justification: Option<String>,
    },
}

/// Run `toolgate plugins`.
pub async fn run(args: Args, config: Config) -> anyhow::Result<ExitCode> {
    match args {
        Args::List { json } => {
            let runtime = load(&config).await?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &listing(&runtime))?;
                writeln!(out)?;
            } else {
                write_listing(&mut out, &runtime)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Args::Call { tool, params, justification } => {
            let params: serde_json::Value =
                serde_json::from_str(&params).context("`--params` is not a JSON document")?;
            // The real pipeline, as the local administrator: action decision, approval for
            // CRITICAL tools, exec policy and sandbox for every command, verify, rollback, and the
            // durable audit log in the store (which a running server holds: stop it, or use the API).
            let store = toolgate_store::Store::open(&config.data_dir)
                .with_context(|| format!("cannot open the store in `{}`", config.data_dir.display()))?;
            let key = super::audit::chain_key(&config)?;
            let gateway = Gateway::start(&config, &store, key).await?;
            gateway.governor.recover().await?;
            let request = ExecuteRequest { params, justification, dry_run: false };
            let outcome = gateway.governor.execute(&local_admin(), &tool, request).await;
            gateway.shutdown().await;
            let outcome = outcome?;
            let action = &outcome.action;
            if action.state != ActionState::Completed {
                let why = match (&action.error, &action.decision) {
                    (Some(e), _) => format!("{}: {}", e.code, e.message),
                    (None, Some(d)) => {
                        d.reasons.iter().map(|r| format!("{}: {}", r.code, r.message)).collect::<Vec<_>>().join("; ")
                    }
                    (None, None) => String::new(),
                };
                anyhow::bail!("action `{}` is {}: {why}", action.id, action.state.as_str());
            }
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &outcome.output)?;
            writeln!(out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn load(config: &Config) -> anyhow::Result<PluginRuntime> {
    let services = HostServices::new(Arc::new(MemoryAuditSink::default()), config.sandbox.workspace.clone());
    Ok(PluginRuntime::from_config(&config.plugins, &config.data_dir, services).await?)
}

fn listing(runtime: &PluginRuntime) -> serde_json::Value {
    let tools = runtime.tools();
    let report = runtime.report();
    let plugins: Vec<serde_json::Value> = report
        .loaded
        .iter()
        .map(|p| {
            let mut plugin = serde_json::to_value(p).unwrap_or_default();
            plugin["tools"] = serde_json::to_value(tools.iter().filter(|t| t.plugin == p.name).collect::<Vec<_>>())
                .unwrap_or_default();
            plugin
        })
        .collect();
    let refused: Vec<serde_json::Value> = report
        .refused
        .iter()
        .map(|r| serde_json::json!({ "file": r.file, "code": r.code(), "error": r.error.to_string() }))
        .collect();
    serde_json::json!({ "plugins": plugins, "refused": refused })
}

fn write_listing(out: &mut impl Write, runtime: &PluginRuntime) -> std::io::Result<()> {
    let tools = runtime.tools();
    let report = runtime.report();
    let joined = |items: Vec<String>| if items.is_empty() { "none".to_owned() } else { items.join(", ") };
    for plugin in &report.loaded {
        writeln!(
            out,
            "{} {}  ({} {}; grants: {}; {} ms, {} MiB)",
            plugin.name,
            plugin.version,
            plugin.file.display(),
            plugin.digest,
            joined(plugin.grants.iter().map(ToString::to_string).collect()),
            plugin.timeout_ms,
            plugin.memory_mib
        )?;
        for tool in tools.iter().filter(|t| t.plugin == plugin.name) {
            writeln!(
                out,
                "  {:<24} {:<9} capabilities: {}",
                tool.name.as_str(),
                tool.category.as_str(),
                joined(tool.capabilities.iter().map(ToString::to_string).collect())
            )?;
        }
    }
    for refused in &report.refused {
        writeln!(out, "refused {} ({}): {}", refused.file.display(), refused.code(), refused.error)?;
    }
    if report.loaded.is_empty() && report.refused.is_empty() {
        writeln!(out, "no plugins")?;
    }
    Ok(())
}
