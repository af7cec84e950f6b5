//! The secure executor: every command a plugin runs is an argv (never a shell line), checked for
//! shell metacharacters, audited, and run in a locked-down Docker container selected by a named
//! profile. Direct execution exists only when an operator chose `EXECUTE_MODE=direct`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::Caller;

/// A boxed future, for the object-safe traits of this module.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How commands run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecuteMode {
    /// In a Docker container (the default, and the only production mode).
    #[default]
    Sandbox,
    /// Directly on the host, without a shell: local development only.
    Direct,
}

/// `[sandbox]`: execution mode and sandbox profiles.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// `EXECUTE_MODE`.
    pub execute_mode: ExecuteMode,
    /// `ALLOW_DIRECT_FALLBACK`; refused at start-up outside development mode.
    pub allow_direct_fallback: bool,
    /// `SANDBOX_NETWORK`: the default network of profiles (`none`).
    pub network: String,
    /// `SANDBOX_READONLY`: mount the workspace read-only unless a profile says otherwise.
    pub readonly: bool,
    /// The workspace directory that profiles mount and the workspace host interface serves.
    pub workspace: std::path::PathBuf,
    /// Named sandbox profiles.
    pub profiles: BTreeMap<String, ProfileConfig>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            execute_mode: ExecuteMode::Sandbox,
            allow_direct_fallback: false,
            network: "none".into(),
            readonly: true,
            workspace: std::path::PathBuf::from("workspace"),
            profiles: BTreeMap::new(),
        }
    }
}

/// One sandbox profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileConfig {
    /// Image to run; the project's default image when empty.
    pub image: String,
}

/// Who asked for a command, for policy and audit.
#[derive(Debug, Clone)]
pub struct ExecOrigin {
    /// The caller on whose behalf the plugin runs.
    pub caller: Caller,
    /// The plugin asking.
    pub plugin: String,
    /// The tool being invoked.
    pub tool: String,
    /// The action this belongs to.
    pub action_id: String,
}

/// A command to run.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Sandbox profile name.
    pub profile: String,
    /// Deadline; the profile's default when absent.
    pub timeout: Option<Duration>,
    /// Who asked.
    pub origin: ExecOrigin,
}

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit status.
    pub exit_code: i32,
    /// Standard output (capped).
    pub stdout: String,
    /// Standard error (capped).
    pub stderr: String,
    /// Wall-clock duration.
    pub duration: Duration,
    /// Whether stdout or stderr was cut at the cap.
    pub truncated: bool,
    /// The container that ran it (none in direct mode).
    pub container_id: Option<String>,
}

/// Why a command did not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The argv was refused before anything ran.
    #[error("command refused: {0}")]
    Refused(String),
    /// The profile does not exist.
    #[error("unknown sandbox profile `{0}`")]
    UnknownProfile(String),
    /// No sandbox can be had (Docker unreachable, image missing, ...).
    #[error("sandbox unavailable: {0}")]
    Unavailable(String),
    /// Killed at its deadline.
    #[error("command timed out after {0:?}")]
    Timeout(Duration),
    /// Anything else that went wrong running it.
    #[error("command failed: {0}")]
    Failed(String),
}

/// Runs commands. The plugin runtime holds one as a trait object.
pub trait Executor: Send + Sync {
    /// Check, audit and run one command.
    fn exec(&self, request: ExecRequest) -> BoxFuture<'_, Result<ExecOutput, SandboxError>>;
}

/// One line of a container listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSummary {
    /// Full id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Engine state.
    pub state: String,
    /// Human status.
    pub status: String,
}

/// What inspect tells about one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerDetails {
    /// Full id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Engine state.
    pub state: String,
    /// Whether its main process runs.
    pub running: bool,
    /// Last start time (RFC 3339).
    pub started_at: Option<String>,
    /// Health status, when it has a health check.
    pub health: Option<String>,
    /// Restarts by the engine.
    pub restart_count: u32,
}

/// The tail of a container's logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLogs {
    /// Output text (capped).
    pub text: String,
    /// Whether it was cut at the cap.
    pub truncated: bool,
}

/// Manages the host's containers (the WIT `containers` interface).
pub trait ContainerEngine: Send + Sync {
    /// List containers; stopped ones too when `all`.
    fn list(&self, all: bool) -> BoxFuture<'_, Result<Vec<ContainerSummary>, SandboxError>>;
    /// Inspect one container.
    fn inspect<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<ContainerDetails, SandboxError>>;
    /// The last `tail` lines of its logs.
    fn logs<'a>(&'a self, container: &'a str, tail: u32) -> BoxFuture<'a, Result<ContainerLogs, SandboxError>>;
    /// Start it.
    fn start<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), SandboxError>>;
    /// Stop it.
    fn stop<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), SandboxError>>;
    /// Restart it.
    fn restart<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), SandboxError>>;
}
