//! [`SecureExecutor`]: checks, audits and runs every command, in the sandbox or (development
//! only) directly.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use time::OffsetDateTime;
use tracing::Instrument as _;

use super::docker::{Attempt, DockerSandbox};
use toolgate_core::BoxFuture;

use super::{ExecOutput, ExecRequest, ExecuteMode, Executor, SandboxConfig, SandboxError, check_argv};
use toolgate_core::{AuditEvent, AuditSink};
use toolgate_telemetry::{metrics, span};

/// Where the sandbox image's busybox comes from (`cargo xtask setup` installs it).
const BUSYBOX: &str = "/bin/busybox";

/// What the executor can do right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Commands run in Docker containers of this default image.
    Sandbox {
        /// The default image (the project's, or `sandbox.image`).
        image: String,
    },
    /// Commands run on the host without isolation (`EXECUTE_MODE=direct`).
    Direct,
    /// Sandbox mode without a usable Docker: every command answers `unavailable` with this reason.
    Unavailable(String),
}

enum Backend {
    Docker(Arc<DockerSandbox>),
    Direct,
    Unavailable(String),
}

/// The one way commands run. Construct it once with [`SecureExecutor::connect`] and share it as
/// an `Arc<dyn Executor>`.
pub struct SecureExecutor {
    config: SandboxConfig,
    audit: Arc<dyn AuditSink>,
    backend: Backend,
}

impl SecureExecutor {
    /// Connect to the backend `config` asks for. In sandbox mode a Docker that cannot be reached,
    /// or an image that cannot be built, does not fail start-up: the executor then answers every
    /// command `unavailable` with the reason (never a fallback to direct execution).
    pub async fn connect(config: &SandboxConfig, audit: Arc<dyn AuditSink>) -> SecureExecutor {
        Self::connect_with(config, audit, Path::new(BUSYBOX)).await
    }

    /// [`SecureExecutor::connect`], building the default image from the given busybox binary.
    pub async fn connect_with(config: &SandboxConfig, audit: Arc<dyn AuditSink>, busybox: &Path) -> SecureExecutor {
        if let Err(e) = std::fs::create_dir_all(&config.workspace) {
            tracing::warn!(workspace = %config.workspace.display(), error = %e, "cannot create the workspace");
        }
        let backend = match config.execute_mode {
            ExecuteMode::Direct => {
                tracing::warn!("EXECUTE_MODE=direct: commands run on this host WITHOUT a sandbox; development only");
                Backend::Direct
            }
            ExecuteMode::Sandbox => match DockerSandbox::connect(config, busybox).await {
                Ok(docker) => Backend::Docker(docker),
                Err(e) => {
                    tracing::error!(error = %e, "sandbox unavailable: every command will be refused");
                    Backend::Unavailable(e.to_string())
                }
            },
        };
        SecureExecutor { config: config.clone(), audit, backend }
    }

    /// What the executor can do right now.
    pub fn availability(&self) -> Availability {
        match &self.backend {
            Backend::Docker(d) => Availability::Sandbox { image: d.default_image().to_owned() },
            Backend::Direct => Availability::Direct,
            Backend::Unavailable(reason) => Availability::Unavailable(reason.clone()),
        }
    }

    /// Why profile `name` could run nothing on this host now, if so: not configured, no sandbox,
    /// a mount, group or image this host lacks. `None` when its commands can run.
    pub async fn profile_problem(&self, name: &str) -> Option<String> {
        let Some(profile) = self.config.profiles.get(name) else {
            return Some(format!("sandbox profile `{name}` is not configured ([sandbox.profiles.{name}])"));
        };
        match &self.backend {
            Backend::Docker(d) => d.profile_problem(name, profile).await,
            Backend::Direct => None,
            Backend::Unavailable(reason) => Some(reason.clone()),
        }
    }

    /// Remove every container this executor holds and wait for removals in flight. Call it
    /// before the process exits; containers of a host that did not are reaped by the next one.
    pub async fn shutdown(&self) {
        if let Backend::Docker(d) = &self.backend {
            d.shutdown().await;
        }
    }

    async fn run(&self, request: &ExecRequest) -> (Result<ExecOutput, SandboxError>, serde_json::Value) {
        let mut detail = json!({});
        if let Err(e) = check_argv(&request.argv) {
            return (Err(e), detail);
        }
        let Some(profile) = self.config.profiles.get(&request.profile) else {
            return (Err(SandboxError::UnknownProfile(request.profile.clone())), detail);
        };
        let default = match profile.timeout_secs {
            0 => self.config.timeout_secs,
            secs => secs,
        };
        let timeout = request
            .timeout
            .unwrap_or(Duration::from_secs(default))
            .min(Duration::from_secs(self.config.max_timeout_secs));
        detail["timeout_ms"] = json!(timeout.as_millis() as u64);
        let result = match &self.backend {
            Backend::Unavailable(reason) => Err(SandboxError::Unavailable(reason.clone())),
            Backend::Direct => {
                super::direct::run(&request.argv, &self.config.workspace, timeout, self.config.output_limit).await
            }
            Backend::Docker(docker) => match docker.plan(&request.profile, profile, request.origin.caller.role) {
                Err(e) => Err(e),
                Ok(plan) => {
                    detail["workspace"] = json!(format!("{:?}", plan.access).to_lowercase());
                    let Attempt { result, container_id } = docker.run(&plan, &request.argv, timeout).await;
                    detail["container_id"] = json!(container_id);
                    result
                }
            },
        };
        (result, detail)
    }
}

impl Executor for SecureExecutor {
    fn exec(&self, request: ExecRequest) -> BoxFuture<'_, Result<ExecOutput, SandboxError>> {
        // What the audit entry and the span show: the call's secret values scrubbed.
        let shown = request.origin.secrets.scrub_all(&request.argv);
        // Opened here, where the caller's span (`host.call`) is current; only `argv[0]` is kept.
        let span = span::sandbox_exec(&shown, &request.profile);
        Box::pin(async move {
            let timestamp = OffsetDateTime::now_utc();
            let started = Instant::now();
            let (result, mut detail) = self.run(&request).instrument(span.clone()).await;
            let elapsed = started.elapsed();
            let exit_code = result.as_ref().ok().map(|out| i64::from(out.exit_code));
            let container_id = detail.get("container_id").and_then(|v| v.as_str()).unwrap_or_default();
            span::record_exec(&span, exit_code, elapsed, container_id);
            // A profile the configuration does not define is the plugin's string: not a label.
            let profile = match &result {
                Err(SandboxError::UnknownProfile(_)) => "unknown",
                _ => request.profile.as_str(),
            };
            metrics::sandbox_exec(profile, exit_code, elapsed);
            let (allowed, outcome) = match &result {
                Ok(_) => (true, "ok"),
                Err(
                    SandboxError::Refused(_)
                    | SandboxError::UnknownProfile(_)
                    | SandboxError::Config(_)
                    | SandboxError::WorkspaceRefused(_)
                    | SandboxError::MountRefused(_),
                ) => (false, "refused"),
                Err(SandboxError::Timeout(_)) => (true, "timeout"),
                Err(SandboxError::Unavailable(_)) => (true, "unavailable"),
                Err(SandboxError::Failed(_)) => (true, "failed"),
            };
            let reason = match &result {
                // The error may quote an argument.
                Err(e) => request.origin.secrets.scrub(&e.to_string()).into_owned(),
                Ok(_) => "argv passed the checks".to_owned(),
            };
            detail["argv"] = json!(shown);
            detail["profile"] = json!(request.profile);
            detail["plugin"] = json!(request.origin.plugin);
            detail["tool"] = json!(request.origin.tool);
            detail["result"] = json!(outcome);
            detail["direct_mode"] = json!(matches!(self.backend, Backend::Direct));
            if let Ok(output) = &result {
                detail["exit_code"] = json!(output.exit_code);
                detail["duration_ms"] = json!(output.duration.as_millis() as u64);
                detail["truncated"] = json!(output.truncated);
            }
            // The audit write belongs to this command's span.
            let _in_exec = span.enter();
            let mut event = AuditEvent::new("exec", allowed, reason).by(&request.origin.caller);
            event.timestamp = timestamp;
            event.action_id = Some(request.origin.action_id.clone());
            event.tool = Some(request.origin.tool.clone());
            event.command = Some(super::command_line(&shown));
            event.detail = detail;
            self.audit.record(event);
            result
        })
    }
}
