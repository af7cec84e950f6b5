//! The running gateway: the policy engine, the sandbox executor, the container engine and the
//! plugin runtime, started once from the configuration and shared by `toolgate serve`,
//! `toolgate plugins call` and the HTTP handlers.
//!
//! Start-up is fail closed: an unsafe sandbox posture or an invalid policy set refuses to start.
//! A Docker engine that cannot be reached does not: the executor then answers every command
//! `unavailable` (never a fallback to direct execution) and `/readyz` says so.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Config;
use crate::http::Component;
use toolgate_core::AuditSink;
use toolgate_governance::audit::{ChainError, ChainKey};
use toolgate_governance::{Governor, Journal};
use toolgate_policy::{PolicyEngine, PolicyError};
use toolgate_runtime::{Capability, HostServices, PluginError, PluginRuntime};
use toolgate_sandbox::{self as sandbox, Availability, DockerEngine, SandboxError, SecureExecutor};
use toolgate_store::{Store, StoreError};
use toolgate_system::{HostFilesystems, SystemBus};

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The sandbox settings are refused (e.g. `ALLOW_DIRECT_FALLBACK` outside development).
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// No valid policy set.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The plugin configuration or engine is unusable.
    #[error(transparent)]
    Plugins(#[from] PluginError),
    /// The governance journal could not start.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log is not continued under this key (`toolgate audit adopt`).
    #[error(transparent)]
    AuditChain(#[from] ChainError),
}

/// What the workspace must not expose: the server's state, the code it runs (a policy or a
/// plugin written through `write_file` would run at the next reload or start), and the files
/// that hold its keys (the configuration file may hold the JWT secret; the audit key would let
/// a reader re-sign the chain).
pub fn protected_dirs(config: &Config) -> Vec<sandbox::Protected> {
    let dir = |what, path: &std::path::Path, inside_ok| sandbox::Protected { what, path: path.to_owned(), inside_ok };
    let mut protected = vec![
        dir("the data directory", &config.data_dir, true),
        dir("the compiled plugin cache", &config.plugins.cache_dir_in(&config.data_dir), false),
        dir("the policy directory", &config.policy.dir, false),
        dir("the plugin directory", &config.plugins.dir, false),
    ];
    let key_files = [
        ("the configuration file", config.file.clone()),
        ("the audit key file", Some(config.audit.key_file.clone())),
        ("the plugin cache key file", Some(config.plugins.cache_key_file_in(&config.data_dir))),
        ("the TLS key", Some(config.http.tls_key.clone().into())),
        ("the TLS certificate", Some(config.http.tls_cert.clone().into())),
    ];
    for (what, path) in key_files {
        if let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) {
            protected.push(dir(what, &path, false));
        }
    }
    protected
}

/// The parts every tool call goes through.
pub struct Gateway {
    /// The Rego decision points.
    pub policy: Arc<PolicyEngine>,
    /// The loaded tool plugins, wired to the executor, container engine and exec policy.
    pub plugins: Arc<PluginRuntime>,
    /// The durable writer of the audit log, action records and rollback log; the audit sink
    /// of every layer.
    pub journal: Arc<Journal>,
    /// The execute pipeline, approvals and rollback.
    pub governor: Arc<Governor>,
    /// The sandbox executor, when one was started (not in router-level tests).
    pub executor: Option<Arc<SecureExecutor>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("revision", &self.policy.revision()).finish_non_exhaustive()
    }
}

impl Gateway {
    /// Start everything `config` describes over `store`: check the sandbox posture, load the
    /// policy set, start the journal (chaining the audit log with `key`), connect the executor and
    /// the container engine, load the plugins.
    pub async fn start(config: &Config, store: &Store, key: ChainKey) -> Result<Gateway, GatewayError> {
        for warning in sandbox::validate(&config.sandbox, config.mode)? {
            tracing::warn!("{warning}");
        }
        // From here on the workspace is its canonical path, checked once more at each container.
        let mut sandbox_config = config.sandbox.clone();
        sandbox_config.workspace = sandbox::check_workspace(&config.sandbox.workspace, &protected_dirs(config))?;
        let policy = Arc::new(PolicyEngine::load(&config.policy)?);
        tracing::info!(revision = %policy.revision(), dir = %config.policy.dir.display(), "policy set loaded");
        let journal = Arc::new(Journal::start(store.clone(), key)?);
        let audit: Arc<dyn AuditSink> = journal.clone();
        let executor = Arc::new(SecureExecutor::connect(&sandbox_config, audit.clone()).await);
        let bus = Arc::new(SystemBus::new(&config.system));
        let services = HostServices {
            executor: Some(executor.clone()),
            containers: Some(Arc::new(DockerEngine::connect().await)),
            exec_policy: Some(policy.clone()),
            audit,
            workspace: sandbox_config.workspace.clone(),
            audit_log: Some(journal.clone()),
            // The bus is opened on first use (and again after it breaks): a host without one
            // starts, and its tools answer `unavailable`.
            systemd: Some(bus.clone()),
            packagekit: Some(bus),
            filesystems: Some(Arc::new(HostFilesystems::new(&config.system.mount_table))),
        };
        let plugins = Arc::new(PluginRuntime::from_config(&config.plugins, &config.data_dir, services).await?);
        let report = plugins.report();
        tracing::info!(loaded = report.loaded.len(), refused = report.refused.len(), "plugins loaded");
        Ok(Gateway::assemble(config, policy, plugins, journal, Some(executor)))
    }

    /// The gateway over parts already started (tests assemble it without a sandbox).
    pub fn assemble(
        config: &Config,
        policy: Arc<PolicyEngine>,
        plugins: Arc<PluginRuntime>,
        journal: Arc<Journal>,
        executor: Option<Arc<SecureExecutor>>,
    ) -> Gateway {
        let governor = Arc::new(Governor::new(
            journal.clone(),
            policy.clone(),
            plugins.clone(),
            config.governance.clone(),
            config.policy.min_justification_len,
        ));
        Gateway { policy, plugins, journal, governor, executor }
    }

    /// What `/readyz` checks besides the store: the policy set, the plugins, the sandbox.
    pub fn readiness(&self) -> Vec<Component> {
        let plugins = self.plugins.clone();
        let journal = self.journal.clone();
        let mut components = vec![
            Component { name: "audit", check: Arc::new(move || journal.health()) },
            // A refused reload keeps the last good set serving: still ready.
            Component { name: "policy", check: Arc::new(|| Ok(())) },
            Component {
                name: "plugins",
                check: Arc::new(move || {
                    if plugins.report().loaded.is_empty() { Err("no plugin is loaded".into()) } else { Ok(()) }
                }),
            },
        ];
        if let Some(executor) = self.executor.clone() {
            components.push(Component {
                name: "sandbox",
                check: Arc::new(move || match executor.availability() {
                    Availability::Sandbox { .. } | Availability::Direct => Ok(()),
                    Availability::Unavailable(reason) => Err(reason),
                }),
            });
        }
        components
    }

    /// The tools that cannot work on this host now, each with the first reason found: a sandbox
    /// profile it runs commands in that is not configured, has no sandbox, or lacks a mount, a
    /// group or its image. (A bus or engine that is down is found at the call: `unavailable`.)
    pub async fn unavailable_tools(&self) -> BTreeMap<String, String> {
        let mut profiles: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut unavailable = BTreeMap::new();
        for tool in self.plugins.tools() {
            for capability in &tool.capabilities {
                let Capability::Exec(profile) = capability else { continue };
                if !profiles.contains_key(profile) {
                    let problem = match &self.executor {
                        Some(executor) => executor.profile_problem(profile).await,
                        None => Some("no sandbox executor runs on this host".to_owned()),
                    };
                    profiles.insert(profile.clone(), problem);
                }
                if let Some(Some(problem)) = profiles.get(profile) {
                    unavailable.insert(tool.name.to_string(), problem.clone());
                    break;
                }
            }
        }
        unavailable
    }

    /// Write out what the journal holds and remove what the executor keeps running (its warm pool).
    pub async fn shutdown(&self) {
        if let Err(e) = self.journal.flush().await {
            tracing::error!(error = %e, "the journal could not write everything out");
        }
        if let Some(executor) = &self.executor {
            executor.shutdown().await;
        }
    }
}
