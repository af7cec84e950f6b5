//! The running gateway: the policy engine, the sandbox executor, the container engine and the
//! plugin runtime, started once from the configuration and shared by `toolgate serve`,
//! `toolgate plugins call` and the HTTP handlers.
//!
//! Start-up is fail closed: an unsafe sandbox posture or an invalid policy set refuses to start.
//! A Docker engine that cannot be reached does not: the executor then answers every command
//! `unavailable` (never a fallback to direct execution) and `/readyz` says so.

use std::sync::Arc;

use crate::config::Config;
use crate::governance::{AuditSink, MemoryAuditSink};
use crate::http::Component;
use crate::plugins::{HostServices, PluginError, PluginRuntime};
use crate::policy::{PolicyEngine, PolicyError};
use crate::sandbox::{self, Availability, DockerEngine, SandboxError, SecureExecutor};

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
}

/// The parts every tool call goes through.
pub struct Gateway {
    /// The Rego decision points.
    pub policy: Arc<PolicyEngine>,
    /// The loaded tool plugins, wired to the executor, container engine and exec policy.
    pub plugins: Arc<PluginRuntime>,
    /// Where decisions and executions are recorded.
    pub audit: Arc<dyn AuditSink>,
    /// The sandbox executor, when one was started (not in router-level tests).
    pub executor: Option<Arc<SecureExecutor>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("revision", &self.policy.revision()).finish_non_exhaustive()
    }
}

impl Gateway {
    /// Start everything `config` describes: check the sandbox posture, load the policy set,
    /// connect the executor and the container engine, load the plugins.
    pub async fn start(config: &Config) -> Result<Gateway, GatewayError> {
        for warning in sandbox::validate(config)? {
            tracing::warn!("{warning}");
        }
        let policy = Arc::new(PolicyEngine::load(&config.policy)?);
        tracing::info!(revision = %policy.revision(), dir = %config.policy.dir.display(), "policy set loaded");
        // INVARIANT: until the durable audit log lands, events live in memory only.
        let audit: Arc<dyn AuditSink> = Arc::new(MemoryAuditSink::default());
        let executor = Arc::new(SecureExecutor::connect(&config.sandbox, audit.clone()).await);
        let services = HostServices {
            executor: Some(executor.clone()),
            containers: Some(Arc::new(DockerEngine::connect().await)),
            exec_policy: Some(policy.clone()),
            audit: audit.clone(),
            workspace: config.sandbox.workspace.clone(),
        };
        let plugins = Arc::new(PluginRuntime::from_config(config, services).await?);
        let report = plugins.report();
        tracing::info!(loaded = report.loaded.len(), refused = report.refused.len(), "plugins loaded");
        Ok(Gateway { policy, plugins, audit, executor: Some(executor) })
    }

    /// What `/readyz` checks besides the store: the policy set, the plugins, the sandbox.
    pub fn readiness(&self) -> Vec<Component> {
        let plugins = self.plugins.clone();
        let mut components = vec![
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

    /// Remove what the executor keeps running (its warm pool).
    pub async fn shutdown(&self) {
        if let Some(executor) = &self.executor {
            executor.shutdown().await;
        }
    }
}
