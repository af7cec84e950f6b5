//! The secure executor: every command a plugin runs is an argv (never a shell line), checked for
//! shell metacharacters, audited, and run in a locked-down Docker container selected by a named
//! profile. Direct execution exists only when an operator chose `EXECUTE_MODE=direct`, in
//! development mode.
//!
//! Uses `toolgate-core` (the audit sink, callers) and `toolgate-telemetry` (the `sandbox.exec`
//! span and metrics); the exec policy is checked by its caller, the plugin runtime.
//!
//! # Layout
//!
//! - `argv`: [`check_argv`] and [`split_command`], the checks before anything runs.
//! - `executor`: [`SecureExecutor`], the [`Executor`] that checks, audits and dispatches.
//! - `docker`: the Docker backend (bollard): container definition from a profile, the warm pool of
//!   one-shot containers, deadlines, reaping of containers left by a dead host.
//! - `direct`: the development-only backend (`std`/tokio process, no shell).
//! - `image`: the project's image, built offline from `/bin/busybox` ([`ensure_image`]).
//! - `engine`: [`DockerEngine`], the [`ContainerEngine`] over the host's other containers.
//! - `validate`: [`validate`], the start-up refusals (`ALLOW_DIRECT_FALLBACK` outside development...).
//! - `paths`: [`check_workspace`] and the mount checks, at start-up and at each container creation.
//! - `profiles`: the profiles of the default configuration (`journal`, `host-net`, `host-admin`).
//!
//! # Wiring (serve)
//!
//! ```text
//! for warning in sandbox::validate(&config)? { tracing::warn!("{warning}") }   // refuses bad posture
//! let executor = Arc::new(SecureExecutor::connect(&config.sandbox, audit.clone()).await);
//! let engine = Arc::new(DockerEngine::connect().await);       // both never fail: `unavailable`
//! ... on shutdown: executor.shutdown().await;                    // removes the warm pool
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use toolgate_core::BoxFuture;
use toolgate_core::model::Caller;
use toolgate_core::redact::Secrets;

mod argv;
mod direct;
mod docker;
mod engine;
mod executor;
mod image;
mod output;
mod paths;
mod profiles;
mod validate;

pub use argv::{check_argv, split_command};
pub use engine::DockerEngine;
pub use executor::{Availability, SecureExecutor};
pub use image::{DEFAULT_IMAGE_REPOSITORY, ensure_image, image_context};
pub use paths::{Protected, check_workspace};
pub use profiles::{DEBIAN_IMAGE, HOST_NET_TARGET, ROOT_PROFILE};
pub use validate::validate;

/// Label on every container and image the executor creates, so that they can be found and
/// removed. Containers inherit their image's labels, so this alone does not mark a sandbox.
pub const MANAGED_LABEL: &str = "toolgate.managed";

/// Label on the executor's sandbox containers only (its value names the host process that owns
/// them): these are reaped when their owner is gone and never shown by [`ContainerEngine`].
pub const SANDBOX_LABEL: &str = "toolgate.owner";

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
    /// Named sandbox profiles. By default `default` and those of the built-in plugins that reach
    /// into the host: `journal`, `host-net` and `host-admin` (see `toolgate.example.toml`).
    pub profiles: BTreeMap<String, ProfileConfig>,
    /// Image of profiles that name none; empty means the project's own image, built on first use
    /// from `/bin/busybox` ([`ensure_image`]).
    pub image: String,
    /// Deadline of a command that asks for none, in seconds.
    pub timeout_secs: u64,
    /// Longest deadline a command may ask for, in seconds.
    pub max_timeout_secs: u64,
    /// Cap of stdout and of stderr, each, in bytes.
    pub output_limit: u64,
    /// Containers kept created and started per profile, waiting for one command each.
    pub pool_size: u32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            execute_mode: ExecuteMode::Sandbox,
            allow_direct_fallback: false,
            network: "none".into(),
            readonly: true,
            workspace: std::path::PathBuf::from("workspace"),
            profiles: profiles::builtin(),
            image: String::new(),
            timeout_secs: 30,
            max_timeout_secs: 300,
            output_limit: 1024 * 1024,
            pool_size: 2,
        }
    }
}

/// One sandbox profile: what a command run under it sees and may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileConfig {
    /// Image to run; `sandbox.image` (or the project's image) when empty.
    pub image: String,
    /// Extra bind mounts, e.g. the host's journal read-only for `systemd_logs`.
    pub mounts: Vec<MountConfig>,
    /// Docker network; `sandbox.network` (`SANDBOX_NETWORK`) when empty. `host` is refused.
    pub network: String,
    /// How the workspace is mounted at `/workspace`. A viewer always gets it read-only.
    pub workspace: WorkspaceAccess,
    /// CPUs (fractions allowed).
    pub cpus: f64,
    /// Memory limit in MiB, swap included (no swap beyond it).
    pub memory_mib: u64,
    /// Most processes and threads alive at once.
    pub pids_limit: i64,
    /// `uid:gid` the command runs as; never root, unless `allow_root`.
    pub user: String,
    /// Supplementary groups of the command, by the host's group name (resolved in the host's
    /// `/etc/group` when a container is made) or number, e.g. `["systemd-journal"]` to read the
    /// journal. Group 0 (root) is refused.
    pub groups: Vec<String>,
    /// Opt-in to `user = "0:0"`, accepted only on profile `host-admin` (apt needs root to install),
    /// without the workspace, and said loudly at start-up. Capabilities stay dropped.
    pub allow_root: bool,
    /// Size of the writable `/tmp` (a tmpfs) in MiB.
    pub tmp_mib: u64,
    /// Deadline of a command under this profile that asks for none, in seconds; 0 means
    /// `sandbox.timeout_secs`.
    pub timeout_secs: u64,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self {
            image: String::new(),
            mounts: Vec::new(),
            network: String::new(),
            workspace: WorkspaceAccess::Default,
            cpus: 0.5,
            memory_mib: 512,
            pids_limit: 128,
            user: "65534:65534".into(),
            groups: Vec::new(),
            allow_root: false,
            tmp_mib: 64,
            timeout_secs: 0,
        }
    }
}

/// A bind mount of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountConfig {
    /// Absolute path on the host.
    pub source: std::path::PathBuf,
    /// Absolute path in the container.
    pub target: String,
    /// Mounted read-only unless this says `false`.
    #[serde(default = "yes")]
    pub read_only: bool,
    /// Left out when `source` does not exist on this machine. Otherwise (the default) a missing
    /// source makes the profile answer `unavailable`, naming it.
    #[serde(default)]
    pub optional: bool,
}

fn yes() -> bool {
    true
}

/// How a profile mounts the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceAccess {
    /// Read-only when `SANDBOX_READONLY` is true (the default), read-write otherwise.
    #[default]
    Default,
    /// Read-only.
    Ro,
    /// Read-write (except for viewers).
    Rw,
    /// Not mounted.
    None,
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
    /// The call's secret values, scrubbed from the argv the audit entry shows.
    pub secrets: Secrets,
}

/// `argv` as one shell-quoted line, as audit entries show it (never run: the sandbox takes argv).
pub fn command_line(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| {
        // A NUL cannot be quoted; show it escaped rather than not at all.
        argv.join(" ").escape_debug().to_string()
    })
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
    /// The `[sandbox]` configuration is refused at start-up (names the key).
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    /// The workspace is, contains or lies inside a system tree or the server's own files, or
    /// leads elsewhere than at start-up (names the path and why).
    #[error("workspace_refused: {0}")]
    WorkspaceRefused(String),
    /// A profile's mount source is refused, at start-up or at a container's creation (names the
    /// key, the path and why).
    #[error("mount_refused: {0}")]
    MountRefused(String),
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
