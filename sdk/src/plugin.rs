//! A plugin: its tools, the manifest built from them, and the dispatch of the host's calls by
//! tool name. [`plugin!`](crate::plugin) builds one and exports it; you rarely use this directly,
//! except to test a plugin natively.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::exports::toolgate::plugin::tool::{InvokeResult, Manifest, ToolSpec};
use crate::tool::{Category, DocumentOf, Tool, ToolOutput, UndoOf, Verdict};

/// A plugin: a name, a version and its tools, as [`plugin!`](crate::plugin) declares them.
#[derive(Debug, Clone, Copy)]
pub struct Plugin {
    /// Plugin name: `[a-z][a-z0-9_-]{0,63}`.
    pub name: &'static str,
    /// Semantic version (by default the crate's).
    pub version: &'static str,
    /// Its tools, in manifest order.
    pub tools: &'static [ToolEntry],
}

/// One tool with its type erased, so a plugin can keep a table of them.
#[derive(Debug, Clone, Copy)]
pub struct ToolEntry {
    name: &'static str,
    spec: fn() -> ToolSpec,
    invoke: fn(&str) -> Result<InvokeResult, Error>,
    verify: fn(&str, &str) -> Result<Verdict, Error>,
    rollback: fn(&str) -> Result<String, Error>,
}

impl ToolEntry {
    /// The entry of tool `T`.
    ///
    /// A `SENSITIVE` or `CRITICAL` tool without verify does not compile: the host would refuse to
    /// run it anyway, better to learn it at build time. Rollback is declared only by a tool that
    /// can undo its effect (`Output = WithUndo<..>`); one that cannot (a restart) says so by its
    /// plain output, and its actions answer `undo_available: false`.
    ///
    /// ```compile_fail
    /// use toolgate_sdk::prelude::*;
    ///
    /// struct Wipe;
    ///
    /// impl Tool for Wipe {
    ///     const NAME: &'static str = "wipe";
    ///     const DESCRIPTION: &'static str = "Wipes, and cannot check it did.";
    ///     const CATEGORY: Category = Category::Sensitive;
    ///     type Params = NoParams;
    ///     type Output = NoParams;
    ///     fn invoke(_: NoParams) -> Result<NoParams, Error> { Ok(NoParams {}) }
    /// }
    ///
    /// const WIPE: toolgate_sdk::ToolEntry = toolgate_sdk::ToolEntry::of::<Wipe>();
    /// ```
    pub const fn of<T: Tool>() -> Self {
        const {
            let risky = matches!(T::CATEGORY, Category::Sensitive | Category::Critical);
            assert!(!risky || T::SUPPORTS_VERIFY, "a SENSITIVE or CRITICAL tool must support verify (SUPPORTS_VERIFY)");
        }
        Self {
            name: T::NAME,
            spec: spec_of::<T>,
            invoke: invoke_of::<T>,
            verify: verify_of::<T>,
            rollback: rollback_of::<T>,
        }
    }

    /// The tool's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl Plugin {
    /// The manifest the host reads at load: every tool with its JSON Schemas.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            name: self.name.to_owned(),
            version: self.version.to_owned(),
            tools: self.tools.iter().map(|t| (t.spec)()).collect(),
        }
    }

    /// Run `tool` with `params` (JSON text).
    pub fn invoke(&self, tool: &str, params: &str) -> Result<InvokeResult, Error> {
        (self.find(tool)?.invoke)(params)
    }

    /// Verify the invocation of `tool` with `params` that returned `output`.
    pub fn verify(&self, tool: &str, params: &str, output: &str) -> Result<Verdict, Error> {
        (self.find(tool)?.verify)(params, output)
    }

    /// Undo an invocation of `tool` from its `undo` record.
    pub fn rollback(&self, tool: &str, undo: &str) -> Result<String, Error> {
        (self.find(tool)?.rollback)(undo)
    }

    fn find(&self, tool: &str) -> Result<&ToolEntry, Error> {
        self.tools
            .iter()
            .find(|t| t.name == tool)
            .ok_or_else(|| Error::invalid_params(format!("plugin `{}` has no tool `{tool}`", self.name)))
    }
}

/// The JSON Schema (draft 2020-12) of `T`, as JSON text.
pub fn schema_of<T: JsonSchema>() -> String {
    let schema = SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<T>();
    schema.as_value().to_string()
}

fn spec_of<T: Tool>() -> ToolSpec {
    ToolSpec {
        name: T::NAME.to_owned(),
        description: T::DESCRIPTION.to_owned(),
        category: T::CATEGORY,
        params_schema: schema_of::<T::Params>(),
        output_schema: schema_of::<DocumentOf<T>>(),
        supports_verify: T::SUPPORTS_VERIFY,
        supports_rollback: <T::Output as ToolOutput>::UNDOABLE,
        capabilities: T::CAPABILITIES.iter().map(|&c| c.into()).collect(),
    }
}

fn invoke_of<T: Tool>(params: &str) -> Result<InvokeResult, Error> {
    let params = parse::<T::Params>(params, "params")?;
    let (output, undo) = T::invoke(params)?.split();
    Ok(InvokeResult {
        output: to_json(&output, T::NAME, "output")?,
        undo: undo.map(|u| to_json(&u, T::NAME, "undo record")).transpose()?,
    })
}

fn verify_of<T: Tool>(params: &str, output: &str) -> Result<Verdict, Error> {
    if !T::SUPPORTS_VERIFY {
        return Err(Error::invalid_params(format!("tool `{}` has no verify", T::NAME)));
    }
    T::verify(parse::<T::Params>(params, "params")?, parse::<DocumentOf<T>>(output, "output")?)
}

fn rollback_of<T: Tool>(undo: &str) -> Result<String, Error> {
    if !<T::Output as ToolOutput>::UNDOABLE {
        return Err(Error::invalid_params(format!("tool `{}` has no rollback", T::NAME)));
    }
    let restored = T::rollback(parse::<UndoOf<T>>(undo, "undo")?)?;
    Ok(restored.to_string())
}

/// Read `what` (JSON text) as a `T`; the error names the field that does not fit, as a path
/// below `what` (`params.items[2].name`).
fn parse<T: DeserializeOwned>(json: &str, what: &str) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { what.to_owned() } else { format!("{what}.{path}") };
        Error::invalid_params(format!("`{field}`: {}", e.into_inner()))
    })
}

fn to_json<T: Serialize>(value: &T, tool: &str, what: &str) -> Result<String, Error> {
    serde_json::to_string(value)
        .map_err(|e| Error::failed(format!("tool `{tool}` produced an {what} that is not JSON: {e}")))
}
