//! What a tool is: one impl of [`Tool`].

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::bindings::toolgate::plugin::types::Capability as WitCapability;

pub use crate::bindings::toolgate::plugin::types::Category;

/// An authority a tool needs from the host. Declare every one a tool uses in
/// [`Tool::CAPABILITIES`]: the host refuses a plugin whose tools need more than its operator
/// granted, and answers `denied` to a host call the calling tool did not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Run commands in the named sandbox profile ([`crate::sandbox`]).
    Exec(&'static str),
    /// List and inspect containers and read their logs ([`crate::containers`] `list`, `inspect`, `logs`).
    ContainersRead,
    /// Start, stop and restart containers ([`crate::containers`] `start`, `stop`, `restart`).
    ContainersManage,
    /// Read files and list directories in the workspace ([`crate::workspace`] `read`, `list`).
    WorkspaceRead,
    /// Write and remove files in the workspace ([`crate::workspace`] `write`, `remove`).
    WorkspaceWrite,
    /// Read the audit log, scoped to the caller ([`crate::audit`] `recent`).
    AuditRead,
    /// Read systemd units' state ([`crate::services`] `status`).
    ServicesRead,
    /// Start, stop and restart systemd units ([`crate::services`] `start`, `stop`, `restart`).
    ServicesManage,
    /// Resolve packages and refresh the lists ([`crate::packages`] `resolve`, `refresh`).
    PackagesRead,
    /// Install and remove packages ([`crate::packages`] `install`, `remove`).
    PackagesManage,
    /// List the host's file systems ([`crate::filesystems`] `list`).
    FilesystemsRead,
}

impl From<Capability> for WitCapability {
    fn from(capability: Capability) -> Self {
        match capability {
            Capability::Exec(profile) => Self::Exec(profile.to_owned()),
            Capability::ContainersRead => Self::ContainersRead,
            Capability::ContainersManage => Self::ContainersManage,
            Capability::WorkspaceRead => Self::WorkspaceRead,
            Capability::WorkspaceWrite => Self::WorkspaceWrite,
            Capability::AuditRead => Self::AuditRead,
            Capability::ServicesRead => Self::ServicesRead,
            Capability::ServicesManage => Self::ServicesManage,
            Capability::PackagesRead => Self::PackagesRead,
            Capability::PackagesManage => Self::PackagesManage,
            Capability::FilesystemsRead => Self::FilesystemsRead,
        }
    }
}

/// The outcome of [`Tool::verify`]: whether the invocation had its intended effect, and why.
pub use crate::bindings::exports::toolgate::plugin::tool::Verdict;

impl Verdict {
    /// The effect is as intended; `detail` says what was checked.
    pub fn pass(detail: impl Into<String>) -> Self {
        Self { ok: true, detail: detail.into() }
    }

    /// The effect is not as intended; `detail` says what was found.
    pub fn fail(detail: impl Into<String>) -> Self {
        Self { ok: false, detail: detail.into() }
    }
}

/// Parameters of a tool that takes none: the empty object `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// The undo record of a tool that changes nothing. It has no value, so a `rollback` of such a
/// tool fails when the record is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoUndo {}

/// The output of a tool that changed something it can undo: the output document and the record
/// [`Tool::rollback`] will get back. Use it as [`Tool::Output`] (`type Output = WithUndo<Doc, Undo>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithUndo<T, U> {
    /// The output document the caller sees.
    pub output: T,
    /// The undo record the host stores durably; `None` when there is nothing to undo.
    pub undo: Option<U>,
}

impl<T, U> WithUndo<T, U> {
    /// An output with its undo record.
    pub fn new(output: T, undo: U) -> Self {
        Self { output, undo: Some(undo) }
    }

    /// An output with nothing to undo (e.g. the tool found the state already as wanted).
    pub fn nothing_to_undo(output: T) -> Self {
        Self { output, undo: None }
    }
}

/// What [`Tool::invoke`] may return: any serialisable document (nothing to undo), or a
/// [`WithUndo`] (a document and an undo record). Implemented for you; you never implement it.
pub trait ToolOutput {
    /// The output document; its JSON Schema is the tool's `output-schema`.
    type Document: Serialize + DeserializeOwned + JsonSchema;
    /// The undo record [`Tool::rollback`] receives.
    type Undo: Serialize + DeserializeOwned;
    /// Whether this output can carry an undo record (the manifest's `supports-rollback`).
    const UNDOABLE: bool;
    /// Split into the document and the undo record.
    fn split(self) -> (Self::Document, Option<Self::Undo>);
}

impl<T: Serialize + DeserializeOwned + JsonSchema> ToolOutput for T {
    type Document = T;
    type Undo = NoUndo;
    const UNDOABLE: bool = false;
    fn split(self) -> (T, Option<NoUndo>) {
        (self, None)
    }
}

// INVARIANT: `WithUndo` must never implement `Serialize`, `Deserialize` or `JsonSchema`, or this
// impl would overlap the blanket one above.
impl<T, U> ToolOutput for WithUndo<T, U>
where
    T: Serialize + DeserializeOwned + JsonSchema,
    U: Serialize + DeserializeOwned,
{
    type Document = T;
    type Undo = U;
    const UNDOABLE: bool = true;
    fn split(self) -> (T, Option<U>) {
        (self.output, self.undo)
    }
}

/// The document part of a tool's output.
pub type DocumentOf<T> = <<T as Tool>::Output as ToolOutput>::Document;
/// The undo record of a tool.
pub type UndoOf<T> = <<T as Tool>::Output as ToolOutput>::Undo;

/// One tool of a plugin. Implement it on a unit struct and list the struct in
/// [`plugin!`](crate::plugin).
///
/// The host validates parameters against the JSON Schema derived from [`Tool::Params`] before
/// calling [`Tool::invoke`], and the SDK turns the JSON into `Params` for you: a field that does not
/// fit answers `invalid-params` naming the field.
pub trait Tool {
    /// Unique across all loaded plugins: `snake_case`, `[a-z][a-z0-9_]{0,63}`.
    const NAME: &'static str;
    /// One or two sentences for people and AI agents choosing a tool.
    const DESCRIPTION: &'static str;
    /// Risk category; the host's policy decides who may run it and what it requires.
    const CATEGORY: Category;
    /// Host capabilities this tool uses; none by default.
    const CAPABILITIES: &'static [Capability] = &[];
    /// Whether [`Tool::verify`] is implemented.
    const SUPPORTS_VERIFY: bool = false;

    /// The parameters object (derive `Deserialize` and `JsonSchema`).
    type Params: DeserializeOwned + JsonSchema;
    /// The output: a document (derive `Serialize`, `Deserialize` and `JsonSchema`), or a
    /// [`WithUndo`] when the tool changes something it can undo.
    type Output: ToolOutput;

    /// Do the work.
    fn invoke(params: Self::Params) -> Result<Self::Output, Error>;

    /// Check that an invocation with `params`, which returned `output`, had its effect. Set
    /// [`Tool::SUPPORTS_VERIFY`] when you implement it.
    fn verify(params: Self::Params, output: DocumentOf<Self>) -> Result<Verdict, Error> {
        let _ = (params, output);
        Err(Error::invalid_params(format!("tool `{}` has no verify", Self::NAME)))
    }

    /// Undo an invocation from the record it returned in its [`WithUndo`]; return a document saying
    /// what was restored. Implement it whenever `Output` is a `WithUndo`.
    fn rollback(undo: UndoOf<Self>) -> Result<serde_json::Value, Error> {
        let _ = undo;
        Err(Error::invalid_params(format!("tool `{}` has no rollback", Self::NAME)))
    }
}
