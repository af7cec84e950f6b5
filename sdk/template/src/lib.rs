//! The Toolgate plugin to copy when you write your own. It has one tool, `greet`, which needs
//! no capability: copy this directory to `plugins/<your-name>/`, rename the package to
//! `toolgate-plugin-<your-name>`, and replace the tool with yours. `cargo xtask plugins` builds it.

// The prelude brings the `Tool` trait, `Category`, `Capability`, `Error`, and the derive macros
// for parameters and outputs.
use toolgate_sdk::prelude::*;

/// The parameters object. The host checks every call against the JSON Schema derived from this
/// type, and the doc comments become the schema's descriptions: write them for the people and AI
/// agents who will call the tool.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)] // a typo in a field name is an error, not a silently ignored field
pub struct GreetParams {
    /// Who to greet; the caller when absent.
    #[serde(default)]
    pub name: Option<String>,
}

/// The output document. It needs `Deserialize` too, so `verify` could read it back.
#[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Greeting {
    /// The greeting.
    pub message: String,
}

/// A tool is a unit struct with one `Tool` impl.
pub struct Greet;

impl Tool for Greet {
    // Tool names are unique across every plugin the host loads: pick a specific one.
    const NAME: &'static str = "greet";
    const DESCRIPTION: &'static str = "Says hello to someone, or to the caller.";
    // READ: it changes nothing. A tool that changes state is SAFE, MODERATE, SENSITIVE or CRITICAL,
    // and SENSITIVE and CRITICAL tools must support verify (and rollback when they can undo).
    const CATEGORY: Category = Category::Read;
    // No `CAPABILITIES`: the call context and logging are always available. A tool running
    // commands would declare `&[Capability::Exec("default")]`, and the operator must grant it.
    type Params = GreetParams;
    type Output = Greeting;

    fn invoke(params: GreetParams) -> Result<Greeting, Error> {
        // Host functions may only be called from `invoke`, `verify` and `rollback`.
        let name = match params.name {
            Some(name) if name.trim().is_empty() => return Err(Error::invalid_params("`name` is blank")),
            Some(name) => name,
            None => toolgate_sdk::context::current().caller,
        };
        toolgate_sdk::log::info(&format!("greeting {name}"));
        Ok(Greeting { message: format!("Hello, {name}!") })
    }
}

// Exports the component: its manifest (name, version from Cargo.toml, tools with their schemas)
// and the dispatch of `invoke`, `verify` and `rollback` to the tool named in each call.
toolgate_sdk::plugin!(name = "template", tools = [Greet]);

// Tests that call no host function run natively: `cargo test -p toolgate-plugin-template`.
#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn manifest_declares_one_read_tool_without_capability() {
        let manifest = PLUGIN.manifest();
        assert_eq!(manifest.name, "template");
        assert_eq!(manifest.tools.len(), 1);
        assert_eq!(manifest.tools[0].name, "greet");
        assert_eq!(manifest.tools[0].category, Category::Read);
        assert!(manifest.tools[0].capabilities.is_empty());
    }

    #[test]
    fn blank_name_is_refused() {
        let err = PLUGIN.invoke("greet", r#"{"name":" "}"#).unwrap_err();
        assert_eq!(err, Error::invalid_params("`name` is blank"));
    }

    #[test]
    fn greets_by_name() {
        let result = PLUGIN.invoke("greet", r#"{"name":"Ada"}"#).unwrap();
        assert_eq!(result.output, r#"{"message":"Hello, Ada!"}"#);
    }
}
