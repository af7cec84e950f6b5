//! Rego policy, evaluated in-process by regorus, at three decision points:
//!
//! - `action` (`data.toolgate.action.decision`): may this caller run this tool now?
//! - `exec` (`data.toolgate.exec.decision`): may this plugin, for this tool and caller, run this
//!   argv under this sandbox profile?
//! - `host` (`data.toolgate.host.decision`): may this plugin, for this tool and caller, make this
//!   call on the host's systemd or package manager, on these units or packages?
//!
//! The input documents are [`ActionInput`], [`ExecInput`] and [`HostCallInput`], serialised as they are; their
//! exact shape is documented in `policies/README.md`. A decision is a [`Decision`] document, and
//! the host denies whenever the policy is missing, fails, or answers anything malformed.
//!
//! - `set`: a directory's files parsed into a [`PolicySet`] with its revision (content hash).
//!   One evaluator decides everywhere: the regorus interpreter with strict built-in errors, for
//!   the server, `toolgate policy eval` and `toolgate policy test` alike.
//! - `engine`: [`PolicyEngine`], the active set behind a lock, swapped whole on reload;
//!   [`PolicyEngine::decide_action`] and [`ExecPolicy::decide_exec`].
//! - `decision`: strict reading of decision documents (fail closed), and what the host asks of
//!   a [`Decision`]: its requirements, its weightiest reason.
//! - `testing`: `test_*` rules with the semantics of `opa test`, and coverage.
//! - `watch`: hot reload with `notify`, debounced.
//! - `diagnostics`: errors as `file:line:col: message` with the line and a caret.
//!
//! Uses `toolgate-core` and `toolgate-telemetry` (the `policy.decision` span and its metrics).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use toolgate_core::Code;
use toolgate_core::model::{AuthMethod, Caller, Category, Role};

/// `[policy]`: where the policy set lives and how it is checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Directory of `.rego` files and `data.json`.
    pub dir: PathBuf,
    /// Minimum length of a justification where one is required.
    pub min_justification_len: u64,
    /// Run the policy set's own `test_*` rules before accepting a reload.
    pub test_on_reload: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self { dir: PathBuf::from("policies"), min_justification_len: 10, test_on_reload: true }
    }
}

/// The caller, as policy input sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallerInput {
    /// User or API key name.
    pub user: String,
    /// Role.
    pub role: Role,
    /// How the caller authenticated.
    pub auth_method: AuthMethod,
    /// Source address, when the call came over the network.
    pub source_ip: Option<String>,
}

impl From<&Caller> for CallerInput {
    fn from(caller: &Caller) -> Self {
        CallerInput {
            user: caller.name.clone(),
            role: caller.role,
            auth_method: caller.auth_method,
            source_ip: caller.source_ip.map(|ip| ip.to_string()),
        }
    }
}

/// The tool, as policy input sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInput {
    /// Tool name.
    pub name: String,
    /// Plugin that provides it.
    pub plugin: String,
    /// Risk category.
    pub category: Category,
    /// Whether the tool can verify its effect.
    pub supports_verify: bool,
    /// Whether the tool can roll back its effect.
    pub supports_rollback: bool,
    /// The host capabilities its manifest declares (`exec:<profile>`, `containers-manage`,
    /// `workspace-write`, ...), so that the policy can decide who may use them.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// Where a CRITICAL action stands with its approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// No approval asked for or given.
    None,
    /// Waiting for a second admin.
    Pending,
    /// Approved by a second admin, for these exact parameters, not expired.
    Approved,
    /// Refused by an admin.
    Rejected,
    /// Not decided in time.
    Expired,
}

/// Input of the `action` decision point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionInput {
    /// Who asks.
    pub caller: CallerInput,
    /// What they ask to run.
    pub tool: ToolInput,
    /// Parameters, already valid against the tool's schema, secrets redacted.
    pub params: serde_json::Value,
    /// The caller's justification, if any.
    pub justification: Option<String>,
    /// Approval state for this exact call.
    pub approval: ApprovalState,
    /// Whether this is a dry run (nothing will execute).
    pub dry_run: bool,
    /// For a tool with a `command` parameter (a command line): that line split into the argv it
    /// runs, so that the policy can classify the call by its command; `None` otherwise.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Set when the call undoes an earlier action (`tool` is then that action's tool, at the
    /// category it ran at, and `params` its parameters); `None` for a call of the tool itself.
    #[serde(default)]
    pub rollback: Option<RollbackInput>,
}

/// What a rollback undoes, as policy input sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackInput {
    /// Id of the action undone.
    pub of: String,
    /// Whether the host rolls back on its own (a failed verify, recovery after a crash) rather
    /// than at a caller's request.
    pub automatic: bool,
}

/// Input of the `exec` decision point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecInput {
    /// On whose behalf the plugin runs.
    pub caller: CallerInput,
    /// The tool being invoked.
    pub tool: ToolInput,
    /// The command the plugin asks to run.
    pub argv: Vec<String>,
    /// The sandbox profile it asks for.
    pub profile: String,
}

/// Input of the `host` decision point: one call of the `services` or `packages` interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCallInput {
    /// On whose behalf the plugin calls.
    pub caller: CallerInput,
    /// The tool being invoked.
    pub tool: ToolInput,
    /// `services` or `packages`.
    pub interface: String,
    /// The function: `status`, `start`, `stop`, `restart`, `refresh`, `resolve`, `install`, `remove`.
    pub method: String,
    /// `read` (status, refresh, resolve) or `manage` (start, stop, restart, install, remove).
    pub access: String,
    /// The units or packages it touches, as the plugin named them (none for `refresh`).
    pub objects: Vec<String>,
}

/// One reason of a decision: a stable machine code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable code, e.g. `role_insufficient`, `justification_required`, `command_not_allowed`:
    /// any code the policy gives (an operator's rule has codes of its own), so the host compares
    /// it through [`Reason::is`] and [`Code`].
    pub code: String,
    /// For people.
    pub message: String,
}

impl Reason {
    /// A reason with one of the host's own codes.
    pub fn new(code: Code, message: String) -> Reason {
        Reason { code: code.as_str().to_owned(), message }
    }

    /// Whether its code is `code`.
    pub fn is(&self, code: Code) -> bool {
        self.code == code.as_str()
    }
}

/// What must also happen when an action runs, as the policy's `requirements` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Requirement {
    /// The effect is verified after the call.
    Verify,
    /// The call is rolled back if verify fails, and can be rolled back by an admin.
    Rollback,
    /// A second admin approves each call.
    Approval,
    /// The caller gives a justification.
    Justification,
}

impl Requirement {
    /// Every requirement.
    pub const ALL: [Requirement; 4] =
        [Requirement::Verify, Requirement::Rollback, Requirement::Approval, Requirement::Justification];

    /// The wire name (`verify`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Requirement::Verify => "verify",
            Requirement::Rollback => "rollback",
            Requirement::Approval => "approval",
            Requirement::Justification => "justification",
        }
    }

    /// The requirement named `s`.
    pub fn parse(s: &str) -> Option<Requirement> {
        Requirement::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A policy decision: a document, not a boolean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allow: bool,
    /// Why (for a denial, at least one reason).
    pub reasons: Vec<Reason>,
    /// What must also happen: `verify`, `rollback`, `approval`, `justification`.
    pub requirements: Vec<Requirement>,
    /// The category the action was decided at (the `action` point; `None` elsewhere, or when
    /// the policy could not classify the call): the tool's own, or, for a tool whose category
    /// follows the command it runs, that command's class. The call runs at this category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// Content hash of the policy set that decided.
    pub revision: String,
}

impl Decision {
    /// Every reason code, comma-separated, or `allowed`: the `reason` of its audit entry.
    pub fn reason_codes(&self) -> String {
        match self.reasons.as_slice() {
            [] => "allowed".to_owned(),
            reasons => reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(","),
        }
    }
}

/// The exec and host decision points, as the plugin runtime calls them before every command and
/// every call of the host's systemd or package manager.
pub trait ExecPolicy: Send + Sync {
    /// Decide; never panics, and denies on any failure to evaluate.
    fn decide_exec(&self, input: &ExecInput) -> Decision;
    /// Decide a host call the same way.
    fn decide_host_call(&self, input: &HostCallInput) -> Decision;
}

mod decision;
mod diagnostics;
mod engine;
pub mod set;
pub mod testing;
mod watch;

pub use diagnostics::Diagnostic;
pub use engine::PolicyEngine;
pub use set::{Point, PolicySet};
pub use testing::{FileCoverage, TestOutcome, TestReport};
pub use watch::PolicyWatcher;

/// Why a policy set could not be loaded, validated or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A file or directory could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The directory holds no `.rego` file.
    #[error("no `.rego` file in policy directory `{0}`")]
    Empty(PathBuf),
    /// `data.json` is not a JSON object.
    #[error("invalid data document `{path}`: {message}")]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Parse or compile errors, each with its location.
    #[error("{}", diagnostics::render_all(.0))]
    Invalid(Vec<Diagnostic>),
    /// A decision rule the host needs is not defined by the set.
    #[error("the policy set does not define `{0}`")]
    MissingRule(String),
    /// The set's own `test_*` rules do not all pass.
    #[error("{failed} of {total} policy tests failed: {}", names.join(", "))]
    TestsFailed {
        /// How many failed.
        failed: usize,
        /// How many ran.
        total: usize,
        /// `file: rule` of each failure.
        names: Vec<String>,
    },
    /// Evaluation failed at run time.
    #[error("evaluation of `{rule}` failed: {message}")]
    Eval {
        /// The rule evaluated.
        rule: String,
        /// The engine's message.
        message: String,
    },
    /// The input document could not be built.
    #[error("invalid policy input: {0}")]
    Input(String),
    /// The file watcher could not start.
    #[error("cannot watch `{path}`: {message}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// The watcher's message.
        message: String,
    },
}
