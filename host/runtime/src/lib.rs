//! The plugin runtime: loads WebAssembly components that implement the `toolgate:plugin` WIT
//! world (`wit/`), and runs their tools with no authority but the host functions they were
//! granted.
//!
//! Uses `toolgate-core`, `toolgate-telemetry`, `toolgate-policy` (the exec decision of each
//! command) and `toolgate-sandbox` (the executor and the container engine behind the host
//! functions); it knows nothing of HTTP, accounts or the audit log's storage.
//!
//! # How a call runs
//!
//! Every `*.wasm` in [`PluginsConfig::dir`] is compiled once (cached on disk under
//! `<data_dir>/cache/`), asked for its manifest once, and validated (its name is its file name:
//! `docker.wasm` is `docker`, whatever its manifest claims); a plugin that fails any
//! check is refused and not loaded, with a log line naming it, and the others load (see
//! [`LoadReport`]). Each call then gets a fresh `Store` from a pooling allocator, a WASI context
//! with nothing in it (no files, environment, arguments or sockets; stdout and stderr captured),
//! a memory cap and a deadline. Pool slots are reused, never shared: the pages a call wrote are
//! reset to the module's initial contents before the slot serves another call.
//!
//! Plugin code never runs on the async I/O threads: each call runs on a blocking-pool thread, at
//! most `max_concurrent_calls` at once (see `call`). Two deadlines bound it. `timeout_ms` counts
//! **plugin execution only**: time spent inside host calls (a sandbox command may take 30 s) is
//! not charged to it. `deadline_ms` counts the wall-clock time of the whole call, host calls
//! included, so a plugin looping on host calls ends too. Both are enforced by epoch
//! interruption: a ticker thread advances the engine's epoch every [`TICK`], and on each check
//! the store's callback compares them; a call waiting in a host call is stopped at its deadline
//! by a timer. Outputs above `max_output_bytes` are refused before they are parsed.
//!
//! # Layout
//!
//! - [`bindings`]: the one `bindgen!` of the WIT world.
//! - `engine`: the wasmtime engine, its epoch ticker and the on-disk compilation cache
//!   (authenticated by a keyed MAC).
//! - `identity`: a plugin is its file name plus its content digest, not what its manifest says.
//! - `manifest`: capabilities and manifest validation.
//! - `call`: one call on the plugin pool, its deadlines and its output cap.
//! - `state`: what each `Store` holds, its memory limiter and deadline accounting.
//! - `host`: one file per host interface (`sandbox`, `containers`, `workspace`, `audit`, `log`,
//!   `context`), and `system` for `services`, `packages` and `filesystems`.
//! - `runtime`: [`PluginRuntime`], loading and calling.
//! - `types`: the values its API takes and returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use toolgate_core::model::Caller;
use toolgate_core::model::ToolName;
use toolgate_core::redact::Secrets;
use toolgate_core::{AuditReader, AuditSink, BoxFuture};
use toolgate_policy::ExecPolicy;
use toolgate_sandbox::{ContainerEngine, Executor};

pub mod bindings;
mod call;
mod engine;
mod host;
mod identity;
mod manifest;
mod runtime;
mod state;
mod types;

pub use engine::Source;
pub use manifest::Capability;
pub use runtime::PluginRuntime;
pub use types::{CallContext, Invocation, LoadReport, LoadedPlugin, RefusedPlugin, ToolErrorKind, ToolInfo, Verdict};

/// How often the epoch ticker advances the engine's epoch: the granularity of deadlines.
pub const TICK: Duration = Duration::from_millis(10);

/// `[plugins]`: where plugins are, their limits, and what each is granted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory of `*.wasm` components.
    pub dir: PathBuf,
    /// Where compiled components are cached (0700), keyed by content and engine, each entry
    /// authenticated by a MAC under `cache_key_file`; `<data_dir>/cache` when empty.
    pub cache_dir: PathBuf,
    /// The key that authenticates compiled components in the cache (32 random bytes, 0600,
    /// created on first use); `<data_dir>/plugin-cache.key` when empty. Must be outside
    /// `cache_dir`: servers that share a cache share this key too.
    pub cache_key_file: PathBuf,
    /// Default deadline of one call, in milliseconds of plugin execution: the CPU time of its
    /// code, host calls and waits excluded.
    pub timeout_ms: u64,
    /// Default wall-clock deadline of one call in milliseconds, host calls (commands) included:
    /// a plugin that keeps calling the host still ends.
    pub deadline_ms: u64,
    /// Largest output (undo record, verify detail, rollback output) a plugin may return, in
    /// bytes; a larger one is refused before it is parsed (`plugin_output_too_large`).
    pub max_output_bytes: u64,
    /// Default memory cap of one instance, in MiB.
    pub memory_mib: u64,
    /// How many calls may run at once across all plugins (sizes the pooling allocator).
    pub max_concurrent_calls: u32,
    /// Per plugin, by plugin name: its grants and limits, e.g.
    /// `[plugins.plugin.docker-tools] grants = ["exec:default", "containers-read"]`. A plugin is
    /// named by its file (`docker-tools.wasm`), never by what its manifest says.
    pub plugin: BTreeMap<String, PluginSettings>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("plugins"),
            cache_dir: PathBuf::new(),
            cache_key_file: PathBuf::new(),
            timeout_ms: 5_000,
            deadline_ms: 600_000,
            max_output_bytes: 4 * 1024 * 1024,
            memory_mib: 64,
            max_concurrent_calls: 64,
            plugin: default_grants(),
        }
    }
}

impl PluginsConfig {
    /// Where compiled plugins are cached: `cache_dir`, `<data_dir>/cache` when empty.
    pub fn cache_dir_in(&self, data_dir: &Path) -> PathBuf {
        match self.cache_dir.as_os_str().is_empty() {
            true => data_dir.join("cache"),
            false => self.cache_dir.clone(),
        }
    }

    /// The key that authenticates the plugin cache: `cache_key_file`,
    /// `<data_dir>/plugin-cache.key` when empty.
    pub fn cache_key_file_in(&self, data_dir: &Path) -> PathBuf {
        match self.cache_key_file.as_os_str().is_empty() {
            true => data_dir.join("plugin-cache.key"),
            false => self.cache_key_file.clone(),
        }
    }
}

/// Every built-in plugin gets its grants by default, so that all eight load on any machine.
/// `systemd` and `apt` act through the host's systemd and PackageKit (`services-*`,
/// `packages-*`: the exec policy's `host` point decides which units and packages), `disk` reads
/// the host's mount table; `systemd_logs` and `network` read the host in the `journal` and
/// `host-net` sandbox profiles. Where the host lacks what they need (no systemd, no PackageKit),
/// their tools answer `unavailable` saying so. An operator revokes a plugin with `grants = []`
/// (see `toolgate.example.toml`).
fn default_grants() -> BTreeMap<String, PluginSettings> {
    let grant = |grants: &[&str]| PluginSettings {
        grants: grants.iter().map(|g| (*g).to_owned()).collect(),
        ..Default::default()
    };
    BTreeMap::from([
        ("apt".to_owned(), grant(&["packages-read", "packages-manage"])),
        ("command".to_owned(), grant(&["exec:default"])),
        ("disk".to_owned(), grant(&["filesystems-read"])),
        ("docker".to_owned(), grant(&["containers-read", "containers-manage"])),
        ("files".to_owned(), grant(&["workspace-read", "workspace-write"])),
        ("network".to_owned(), grant(&["exec:host-net"])),
        ("systemd".to_owned(), grant(&["services-read", "services-manage", "exec:journal"])),
        // Reads are scoped to the caller by the host: a viewer sees only their own entries.
        ("audit".to_owned(), grant(&["audit-read"])),
    ])
}

/// `[plugins.plugin.<name>]`: what one plugin is granted, and its limits when not the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginSettings {
    /// Capabilities granted: `exec:<profile>`, `containers-read`, `containers-manage`,
    /// `workspace-read`, `workspace-write`, `audit-read`.
    pub grants: Vec<String>,
    /// Deadline of one call in milliseconds of plugin execution; `[plugins] timeout_ms` if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Wall-clock deadline of one call in milliseconds; `[plugins] deadline_ms` if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Memory cap of one instance in MiB; `[plugins] memory_mib` if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// The content digest `<name>.wasm` must have (`sha256:<hex>`, as `toolgate plugins list`
    /// prints it); any other content is refused (`plugin_identity`). Unpinned if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The services host functions reach. `None` services answer `unavailable` (executor,
/// container engine, store) or `denied` (exec policy: no policy means no command runs).
#[derive(Clone)]
pub struct HostServices {
    /// Runs sandboxed commands for `sandbox.exec`.
    pub executor: Option<Arc<dyn Executor>>,
    /// Serves the `containers` interface.
    pub containers: Option<Arc<dyn ContainerEngine>>,
    /// Decides every command before it runs.
    pub exec_policy: Option<Arc<dyn ExecPolicy>>,
    /// Where exec decisions are recorded.
    pub audit: Arc<dyn AuditSink>,
    /// Root of the `workspace` interface (`[sandbox] workspace`).
    pub workspace: PathBuf,
    /// The audit log the `audit` interface reads.
    pub audit_log: Option<Arc<dyn AuditReader>>,
    /// systemd, for the `services` interface.
    pub systemd: Option<Arc<dyn toolgate_system::Services>>,
    /// PackageKit, for the `packages` interface.
    pub packagekit: Option<Arc<dyn toolgate_system::Packages>>,
    /// The host's mount table, for the `filesystems` interface.
    pub filesystems: Option<Arc<dyn toolgate_system::Filesystems>>,
}

impl HostServices {
    /// Services with only an audit sink and a workspace: no sandbox, no containers, no policy, no
    /// audit log to read.
    pub fn new(audit: Arc<dyn AuditSink>, workspace: impl Into<PathBuf>) -> Self {
        Self {
            executor: None,
            containers: None,
            exec_policy: None,
            audit,
            workspace: workspace.into(),
            audit_log: None,
            systemd: None,
            packagekit: None,
            filesystems: None,
        }
    }

    /// The same services, reading the audit log through `log`.
    pub fn with_audit_log(self, log: Arc<dyn AuditReader>) -> Self {
        Self { audit_log: Some(log), ..self }
    }
}

/// The tool port: what the governance pipeline needs from a plugin runtime. [`PluginRuntime`] is
/// the implementation; the pipeline's in-process tests use a fake.
pub trait Tools: Send + Sync {
    /// One tool.
    fn tool(&self, name: &ToolName) -> Option<&ToolInfo>;
    /// Check `params` against the tool's schema without running it.
    fn check_params(&self, tool: &ToolName, params: &serde_json::Value) -> Result<(), PluginError>;
    /// Validate `params`, then run the tool.
    fn invoke<'a>(
        &'a self,
        call: &'a CallContext,
        tool: &'a ToolName,
        params: serde_json::Value,
    ) -> BoxFuture<'a, Result<Invocation, PluginError>>;
    /// Ask the tool whether the invocation that returned `output` had its effect.
    fn verify<'a>(
        &'a self,
        call: &'a CallContext,
        tool: &'a ToolName,
        params: &'a serde_json::Value,
        output: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<Verdict, PluginError>>;
    /// Undo an invocation from its undo record; what the tool says it restored.
    fn rollback<'a>(
        &'a self,
        call: &'a CallContext,
        tool: &'a ToolName,
        undo: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value, PluginError>>;
}

impl Tools for PluginRuntime {
    fn tool(&self, name: &ToolName) -> Option<&ToolInfo> {
        PluginRuntime::tool(self, name)
    }

    fn check_params(&self, tool: &ToolName, params: &serde_json::Value) -> Result<(), PluginError> {
        PluginRuntime::check_params(self, tool, params)
    }

    fn invoke<'a>(
        &'a self,
        call: &'a CallContext,
        tool: &'a ToolName,
        params: serde_json::Value,
    ) -> BoxFuture<'a, Result<Invocation, PluginError>> {
        Box::pin(PluginRuntime::invoke(self, call, tool, params))
    }

    fn verify<'a>(
        &'a self,
        call: &'a CallContext,
        tool: &'a ToolName,
        params: &'a serde_json::Value,
        output: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<Verdict, PluginError>> {
        Box::pin(PluginRuntime::verify(self, call, tool, params, output))
    }

    fn rollback<'a>(
        &'a self,
        call: &'a CallContext,
        tool: &'a ToolName,
        undo: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value, PluginError>> {
        Box::pin(PluginRuntime::rollback(self, call, tool, undo))
    }
}

/// What went wrong loading plugins or running a call.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The `[plugins]` configuration is unusable.
    #[error("invalid plugin configuration: {0}")]
    Config(String),
    /// A file or directory could not be read or written.
    #[error("cannot access `{path}`: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The wasmtime engine could not be set up.
    #[error("cannot set up the wasm engine: {0}")]
    Engine(String),
    /// A component could not be compiled or linked.
    #[error("plugin file `{file}` cannot be loaded: {message}")]
    Compile {
        /// The component file.
        file: String,
        /// Why.
        message: String,
    },
    /// A plugin's manifest is invalid.
    #[error("plugin `{plugin}` refused: {reason}")]
    Manifest {
        /// The plugin name, or its file name when the name itself is invalid.
        plugin: String,
        /// Exactly what is wrong.
        reason: String,
    },
    /// A plugin's tool needs a capability the operator did not grant.
    #[error("plugin `{plugin}` refused: tool `{tool}` needs capability `{capability}`, which is not granted to it")]
    Ungranted {
        /// The plugin.
        plugin: String,
        /// The tool.
        tool: String,
        /// The capability, as it would be granted (`exec:host-admin`).
        capability: String,
    },
    /// A component is not who it claims to be (its manifest name is not its file name, its
    /// content is not the pinned digest), or it claims a plugin or tool name another component
    /// claims too (all of them are refused). Code `plugin_identity`.
    #[error("plugin file `{file}` refused: {reason}")]
    Identity {
        /// The component file name.
        file: String,
        /// Exactly what is wrong, naming every file involved.
        reason: String,
    },
    /// No loaded plugin provides this tool.
    #[error("unknown tool `{0}`")]
    UnknownTool(String),
    /// The parameters do not match the tool's schema (checked by the host before `invoke`).
    #[error("invalid params for `{tool}`: {message}")]
    InvalidParams {
        /// The tool.
        tool: String,
        /// The offending field (JSON pointer) and what is wrong with it.
        message: String,
    },
    /// The tool ran and answered with an error.
    #[error("tool `{tool}` failed ({kind}): {message}")]
    Tool {
        /// The tool.
        tool: String,
        /// The error case the plugin chose.
        kind: ToolErrorKind,
        /// The plugin's message.
        message: String,
    },
    /// The plugin ran past its deadline and was stopped.
    #[error("tool `{tool}` timed out after {limit_ms} ms of plugin execution")]
    Timeout {
        /// The tool.
        tool: String,
        /// The deadline.
        limit_ms: u64,
    },
    /// The call ran past its wall-clock deadline (host calls included) and was stopped.
    #[error("tool `{tool}` ran past its deadline of {limit_ms} ms of wall-clock time, host calls included")]
    DeadlineExceeded {
        /// The tool.
        tool: String,
        /// The deadline.
        limit_ms: u64,
    },
    /// The plugin answered with more than `[plugins] max_output_bytes`; nothing parsed it.
    #[error("tool `{tool}` returned a {what} of {size} bytes, above the cap of {cap} bytes")]
    OutputTooLarge {
        /// The tool.
        tool: String,
        /// Which answer: `output`, `undo record`, `verify detail`, `rollback output`.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The cap.
        cap: usize,
    },
    /// The plugin needed more memory than its cap and was stopped.
    #[error("tool `{tool}` exhausted its memory cap of {cap_mib} MiB")]
    MemoryExhausted {
        /// The tool.
        tool: String,
        /// The cap.
        cap_mib: u64,
    },
    /// The plugin panicked.
    #[error("tool `{tool}` panicked: {message}")]
    Panicked {
        /// The tool.
        tool: String,
        /// The panic message the plugin printed.
        message: String,
    },
    /// The plugin trapped (or a host function aborted it).
    #[error("tool `{tool}` trapped: {message}")]
    Trap {
        /// The tool.
        tool: String,
        /// The trap.
        message: String,
    },
    /// The plugin answered with an output or undo record that is not valid.
    #[error("tool `{tool}` returned an invalid result: {message}")]
    InvalidOutput {
        /// The tool.
        tool: String,
        /// What is wrong.
        message: String,
    },
}

impl PluginError {
    /// The same error with `secrets` scrubbed from its free text (a plugin's message may quote
    /// its params; so may a schema error).
    pub(crate) fn scrubbed(self, secrets: &Secrets) -> PluginError {
        if secrets.is_empty() {
            return self;
        }
        let scrub = |message: String| secrets.scrub(&message).into_owned();
        match self {
            PluginError::InvalidParams { tool, message } => {
                PluginError::InvalidParams { tool, message: scrub(message) }
            }
            PluginError::Tool { tool, kind, message } => PluginError::Tool { tool, kind, message: scrub(message) },
            PluginError::Panicked { tool, message } => PluginError::Panicked { tool, message: scrub(message) },
            PluginError::Trap { tool, message } => PluginError::Trap { tool, message: scrub(message) },
            PluginError::InvalidOutput { tool, message } => {
                PluginError::InvalidOutput { tool, message: scrub(message) }
            }
            other => other,
        }
    }

    /// The code of a load refusal: `plugin_identity` or `plugin_refused`.
    pub fn refusal_code(&self) -> &'static str {
        match self {
            PluginError::Identity { .. } => "plugin_identity",
            _ => "plugin_refused",
        }
    }

    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> PluginError {
        let path = path.into();
        move |source| PluginError::Io { path, source }
    }
}

/// The local administrator, as whom `toolgate plugins call` runs.
pub fn local_admin() -> Caller {
    Caller {
        name: "local".into(),
        role: toolgate_core::model::Role::Admin,
        auth_method: toolgate_core::model::AuthMethod::Local,
        source_ip: None,
    }
}
