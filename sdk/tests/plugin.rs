//! The SDK as a plugin crate sees it: tools declared, exported with `plugin!`, and the host's
//! calls (manifest, invoke, verify, rollback) answered natively — no host function is called here.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;

use serde_json::{Value, json};
use toolgate_sdk::bindings::toolgate::plugin::types::Capability as WitCapability;
use toolgate_sdk::prelude::*;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Text {
    /// The text to count.
    text: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Count {
    words: usize,
}

struct CountWords;

impl Tool for CountWords {
    const NAME: &'static str = "count_words";
    const DESCRIPTION: &'static str = "Counts the words of a text.";
    const CATEGORY: Category = Category::Read;
    type Params = Text;
    type Output = Count;

    fn invoke(params: Text) -> Result<Count, Error> {
        Ok(Count { words: params.text.split_whitespace().count() })
    }
}

/// A toy stateful tool: "sets" a key and can undo it. State lives in the undo record only, so
/// the test can check what `rollback` receives.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Set {
    key: String,
    value: u32,
    #[serde(default)]
    previous: Option<u32>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Stored {
    key: String,
    value: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Previous {
    key: String,
    value: Option<u32>,
}

struct SetValue;

impl Tool for SetValue {
    const NAME: &'static str = "set_value";
    const DESCRIPTION: &'static str = "Sets a value; can be verified and undone.";
    const CATEGORY: Category = Category::Sensitive;
    const CAPABILITIES: &'static [Capability] = &[Capability::WorkspaceWrite, Capability::Exec("default")];
    const SUPPORTS_VERIFY: bool = true;
    type Params = Set;
    type Output = WithUndo<Stored, Previous>;

    fn invoke(params: Set) -> Result<Self::Output, Error> {
        if params.previous == Some(params.value) {
            return Ok(WithUndo::nothing_to_undo(Stored { key: params.key, value: params.value }));
        }
        let undo = Previous { key: params.key.clone(), value: params.previous };
        Ok(WithUndo::new(Stored { key: params.key, value: params.value }, undo))
    }

    fn verify(params: Set, output: Stored) -> Result<Verdict, Error> {
        Ok(if output.value == params.value { Verdict::pass("value stored") } else { Verdict::fail("value differs") })
    }

    fn rollback(undo: Previous) -> Result<Value, Error> {
        match undo.value {
            Some(v) => Ok(json!({ "restored": undo.key, "value": v })),
            None => Ok(json!({ "removed": undo.key })),
        }
    }
}

toolgate_sdk::plugin!(name = "sample", tools = [CountWords, SetValue]);

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn manifest_lists_every_tool_with_its_declarations() {
    let manifest = PLUGIN.manifest();
    assert_eq!(manifest.name, "sample");
    assert_eq!(manifest.version, env!("CARGO_PKG_VERSION"));
    let tools: BTreeMap<_, _> = manifest.tools.iter().map(|t| (t.name.as_str(), t)).collect();
    assert_eq!(tools.keys().copied().collect::<Vec<_>>(), ["count_words", "set_value"]);

    let count = tools["count_words"];
    assert_eq!(count.category, Category::Read);
    assert!(count.capabilities.is_empty());
    assert!(!count.supports_verify && !count.supports_rollback);

    let set = tools["set_value"];
    assert_eq!(set.category, Category::Sensitive);
    assert_eq!(set.capabilities, [WitCapability::WorkspaceWrite, WitCapability::Exec("default".into())]);
    assert!(set.supports_verify && set.supports_rollback);
}

#[test]
fn schemas_are_draft_2020_12_and_describe_the_types() {
    let spec = &PLUGIN.manifest().tools[0];
    let params = json(&spec.params_schema);
    assert_eq!(params["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(params["type"], "object");
    assert_eq!(params["required"], json!(["text"]));
    assert_eq!(params["properties"]["text"]["type"], "string");
    assert_eq!(params["properties"]["text"]["description"], "The text to count.");
    assert_eq!(params["additionalProperties"], false);

    let output = json(&spec.output_schema);
    assert_eq!(output["properties"]["words"]["type"], "integer");
    // The output schema of a `WithUndo` tool is its document's, not the wrapper's.
    let set_output = json(&PLUGIN.manifest().tools[1].output_schema);
    assert_eq!(set_output["required"], json!(["key", "value"]));
}

#[test]
fn invoke_parses_params_and_serialises_output() {
    let result = PLUGIN.invoke("count_words", r#"{"text":"one two  three"}"#).unwrap();
    assert_eq!(json(&result.output), json!({ "words": 3 }));
    assert_eq!(result.undo, None);
}

#[test]
fn invoke_returns_the_undo_record_that_rollback_receives() {
    let result = PLUGIN.invoke("set_value", r#"{"key":"a","value":2,"previous":1}"#).unwrap();
    assert_eq!(json(&result.output), json!({ "key": "a", "value": 2 }));
    let undo = result.undo.unwrap();
    let restored = PLUGIN.rollback("set_value", &undo).unwrap();
    assert_eq!(json(&restored), json!({ "restored": "a", "value": 1 }));

    let unchanged = PLUGIN.invoke("set_value", r#"{"key":"a","value":2,"previous":2}"#).unwrap();
    assert_eq!(unchanged.undo, None);
}

#[test]
fn verify_gets_typed_params_and_output() {
    let params = r#"{"key":"a","value":2}"#;
    let good = PLUGIN.verify("set_value", params, r#"{"key":"a","value":2}"#).unwrap();
    assert!(good.ok, "{}", good.detail);
    let bad = PLUGIN.verify("set_value", params, r#"{"key":"a","value":9}"#).unwrap();
    assert!(!bad.ok);
    assert_eq!(bad.detail, "value differs");
}

#[test]
fn a_field_that_does_not_fit_is_invalid_params_naming_it() {
    let err = PLUGIN.invoke("set_value", r#"{"key":"a","value":"two"}"#).unwrap_err();
    let Error::InvalidParams(message) = &err else { panic!("want invalid-params, got {err:?}") };
    assert!(message.starts_with("`params.value`: invalid type: string \"two\""), "{message}");

    let err = PLUGIN.invoke("count_words", "{}").unwrap_err();
    assert!(matches!(&err, Error::InvalidParams(m) if m.contains("missing field `text`")), "{err:?}");

    let err = PLUGIN.invoke("count_words", r#"{"text":"a","extra":1}"#).unwrap_err();
    assert!(matches!(&err, Error::InvalidParams(m) if m.contains("unknown field `extra`")), "{err:?}");

    let err = PLUGIN.invoke("count_words", "not json").unwrap_err();
    assert!(matches!(err, Error::InvalidParams(_)), "{err:?}");

    let err = PLUGIN.verify("set_value", r#"{"key":"a","value":2}"#, r#"{"key":"a"}"#).unwrap_err();
    assert!(matches!(&err, Error::InvalidParams(m) if m.starts_with("`output`: missing field `value`")), "{err:?}");
}

#[test]
fn unknown_tool_is_invalid_params() {
    for err in [
        PLUGIN.invoke("nope", "{}").unwrap_err(),
        PLUGIN.verify("nope", "{}", "{}").unwrap_err(),
        PLUGIN.rollback("nope", "{}").unwrap_err(),
    ] {
        assert_eq!(err, Error::invalid_params("plugin `sample` has no tool `nope`"));
    }
}

#[test]
fn verify_and_rollback_of_a_tool_without_them_are_refused() {
    let err = PLUGIN.verify("count_words", r#"{"text":"a"}"#, r#"{"words":1}"#).unwrap_err();
    assert_eq!(err, Error::invalid_params("tool `count_words` has no verify"));
    let err = PLUGIN.rollback("count_words", "null").unwrap_err();
    assert_eq!(err, Error::invalid_params("tool `count_words` has no rollback"));
}

#[test]
fn the_wit_error_keeps_the_case_and_message() {
    use toolgate_sdk::bindings::toolgate::plugin::types::Error as WitError;
    let err = PLUGIN.invoke("nope", "{}").unwrap_err();
    assert_eq!(WitError::from(err), WitError::InvalidParams("plugin `sample` has no tool `nope`".into()));
}

#[test]
fn host_calls_in_a_native_build_are_unavailable_not_an_abort() {
    let err = toolgate_sdk::sandbox::exec(&["true"], "default").unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    let err = toolgate_sdk::workspace::read_to_string("notes/a.txt").unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    // Logging works natively: it goes to standard error.
    toolgate_sdk::log::info("logged from a native test");
}
