//! The values [`PluginRuntime`](super::PluginRuntime)'s API takes and returns.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::PluginError;
use super::engine::Source;
use super::manifest::Capability;
use toolgate_core::model::{Caller, Category, PluginName, ToolName};

/// Who calls and why; handed to the plugin through the `context` interface.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// Id of the action this call belongs to.
    pub action_id: String,
    /// The authenticated caller.
    pub caller: Caller,
    /// The caller's justification, if any.
    pub justification: Option<String>,
    /// The category the action policy decided the call at, when it differs from the tool's own
    /// (a `run_command` call is the class of its command): the exec policy checks each command
    /// against it. `None`: the tool's category.
    pub category: Option<Category>,
}

/// A successful `invoke`.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The output document, valid against the tool's output schema.
    pub output: serde_json::Value,
    /// What `rollback` needs to undo the call, when the tool changed something undoable.
    pub undo: Option<serde_json::Value>,
    /// Wall-clock time of the call, instantiation and host calls included.
    pub duration: Duration,
}

/// The outcome of `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Verdict {
    /// Whether the effect is as intended.
    pub ok: bool,
    /// What was checked and found.
    pub detail: String,
    /// Set when no verify ran although the call's category asks for one: the tool cannot check
    /// its effect. Then `ok` is false and `detail` says so; the action may still be `completed`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

impl Verdict {
    /// The verdict of a verify that could not run.
    pub fn skipped(detail: String) -> Verdict {
        Verdict { ok: false, detail, skipped: true }
    }
}

/// The error cases a plugin can answer with (the WIT `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToolErrorKind {
    /// The parameters are not acceptable.
    InvalidParams,
    /// Refused by a grant or by policy.
    Denied,
    /// Ran and failed.
    Failed,
    /// A resource it needs is not available now.
    Unavailable,
    /// Ran out of time.
    Timeout,
    /// The exec policy keeps this caller off the object (a unit or package outside its allowlist).
    NotAllowed,
    /// The object does not exist.
    NotFound,
    /// The system refused (polkit).
    PermissionDenied,
}

impl std::fmt::Display for ToolErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ToolErrorKind::InvalidParams => "invalid-params",
            ToolErrorKind::Denied => "denied",
            ToolErrorKind::Failed => "failed",
            ToolErrorKind::Unavailable => "unavailable",
            ToolErrorKind::Timeout => "timeout",
            ToolErrorKind::NotAllowed => "not-allowed",
            ToolErrorKind::NotFound => "not-found",
            ToolErrorKind::PermissionDenied => "permission-denied",
        })
    }
}

/// A tool, as the API and the CLI list it.
#[derive(Debug, Clone, Serialize)]
pub struct ToolInfo {
    /// Tool name.
    pub name: ToolName,
    /// Plugin that provides it.
    pub plugin: PluginName,
    /// For people and agents.
    pub description: String,
    /// Risk category.
    pub category: Category,
    /// JSON Schema of the parameters.
    pub params_schema: serde_json::Value,
    /// JSON Schema of the output.
    pub output_schema: serde_json::Value,
    /// Whether `verify` is supported.
    pub supports_verify: bool,
    /// Whether `rollback` is supported.
    pub supports_rollback: bool,
    /// Host capabilities it uses.
    pub capabilities: Vec<Capability>,
}

impl From<&ToolInfo> for toolgate_policy::ToolInput {
    fn from(tool: &ToolInfo) -> Self {
        toolgate_policy::ToolInput {
            name: tool.name.to_string(),
            plugin: tool.plugin.to_string(),
            category: tool.category,
            supports_verify: tool.supports_verify,
            supports_rollback: tool.supports_rollback,
            capabilities: tool.capabilities.iter().map(ToString::to_string).collect(),
        }
    }
}

/// A plugin that loaded.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedPlugin {
    /// Its name.
    pub name: PluginName,
    /// Its version.
    pub version: String,
    /// The component file.
    pub file: PathBuf,
    /// `sha256:<hex>` of its content, as `[plugins.plugin.<name>] sha256` pins it.
    pub digest: String,
    /// Whether the compiled code came from the cache.
    pub source: Source,
    /// The cached `.cwasm`.
    pub cache_file: PathBuf,
    /// Its tools, in manifest order.
    pub tools: Vec<ToolName>,
    /// What the operator granted it.
    pub grants: Vec<Capability>,
    /// Its per-call deadline (plugin execution).
    pub timeout_ms: u64,
    /// Its per-call wall-clock deadline (host calls included).
    pub deadline_ms: u64,
    /// Its per-instance memory cap.
    pub memory_mib: u64,
}

/// A plugin that was refused at load.
#[derive(Debug)]
pub struct RefusedPlugin {
    /// The component file.
    pub file: PathBuf,
    /// Why.
    pub error: PluginError,
}

impl RefusedPlugin {
    /// The refusal's stable code: `plugin_identity` when the component is not who it claims to
    /// be or claims a name another one claims, `plugin_refused` otherwise.
    pub fn code(&self) -> &'static str {
        self.error.refusal_code()
    }
}

/// What loading the plugin directory did.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Loaded plugins, in file name order.
    pub loaded: Vec<LoadedPlugin>,
    /// Refused plugins, in file name order.
    pub refused: Vec<RefusedPlugin>,
}
