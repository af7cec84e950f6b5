//! Secret parameters never reach the audit log, the policy input or the API: a value whose
//! schema says `"writeOnly": true` or `"secret": true` is replaced by [`REDACTED`], wherever it is.
//!
//! Schemas are what the SDK emits with `schemars` 1 (draft 2020-12): a nested struct is a local
//! `$ref` into `$defs`, an `Option<T>` or an enum is an `anyOf`/`oneOf`, a tuple `prefixItems`.
//! Redaction follows all of these and fails closed: a value is redacted when any branch of a
//! combinator marks it secret, and when its schema cannot be followed (a `$ref` outside the
//! document, a cycle of references).

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Map, Value};

/// What a secret value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Most `$ref`s and combinator branches followed without descending into the value; past it the
/// references go round in a cycle, and the value is redacted.
const MAX_HOPS: usize = 32;

/// Keywords whose schemas all apply to the value itself (each one a list of schemas).
const BRANCH_LISTS: [&str; 3] = ["allOf", "anyOf", "oneOf"];

/// Keywords whose schema may apply to the value itself.
const BRANCHES: [&str; 2] = ["then", "else"];

/// `params` with every value `schema` marks secret replaced by [`REDACTED`].
pub fn redact(schema: &Value, params: &Value) -> Value {
    Walk { root: schema }.redact(schema, params.clone(), 0)
}

fn is_secret(schema: &Value) -> bool {
    let flag = |name| schema.get(name).and_then(Value::as_bool).unwrap_or(false);
    flag("writeOnly") || flag("secret")
}

fn redacted() -> Value {
    Value::String(REDACTED.to_owned())
}

/// The target of a local `$ref` (`#`, `#/$defs/X`, `#/definitions/X`, any JSON pointer).
fn resolve<'a>(root: &'a Value, reference: &Value) -> Option<&'a Value> {
    root.pointer(reference.as_str()?.strip_prefix('#')?)
}

/// The schemas that apply to the value itself, besides its `$ref`.
fn branches(keywords: &Map<String, Value>) -> impl Iterator<Item = &Value> {
    let lists = BRANCH_LISTS.iter().filter_map(|k| keywords.get(*k)?.as_array()).flatten();
    lists.chain(BRANCHES.iter().filter_map(|k| keywords.get(*k)))
}

/// One redaction: the root schema, where `$ref`s point.
struct Walk<'a> {
    root: &'a Value,
}

impl Walk<'_> {
    /// `value` with what `schema` marks secret redacted. Each applicable schema (the keywords,
    /// the `$ref`, every branch) redacts in turn, so the result has the union of their marks.
    fn redact(&self, schema: &Value, value: Value, hops: usize) -> Value {
        if hops > MAX_HOPS || is_secret(schema) {
            return redacted();
        }
        // `true`, `false`, or no schema: nothing is marked.
        let Some(keywords) = schema.as_object() else { return value };
        let mut value = match value {
            Value::Object(map) => Value::Object(self.object(keywords, map)),
            Value::Array(items) => Value::Array(self.array(keywords, items)),
            other => other,
        };
        if let Some(reference) = keywords.get("$ref") {
            value = match resolve(self.root, reference) {
                Some(target) => self.redact(target, value, hops + 1),
                None => redacted(),
            };
        }
        for branch in branches(keywords) {
            value = self.redact(branch, value, hops + 1);
        }
        value
    }

    fn object(&self, keywords: &Map<String, Value>, map: Map<String, Value>) -> Map<String, Value> {
        let properties = keywords.get("properties").and_then(Value::as_object);
        let additional = keywords.get("additionalProperties");
        // The manifest check compiled every pattern with this engine; `None` would be one it
        // cannot compile, which might match anything.
        let patterns: Vec<_> = keywords
            .get("patternProperties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(pattern, sub)| (jsonschema::draft202012::new(&serde_json::json!({ "pattern": pattern })).ok(), sub))
            .collect();
        map.into_iter()
            .map(|(key, mut value)| {
                let declared = properties.and_then(|p| p.get(&key));
                if let Some(sub) = declared {
                    value = self.redact(sub, value, 0);
                }
                let name = Value::String(key.clone());
                let mut matched = false;
                for (matcher, sub) in &patterns {
                    match matcher {
                        Some(m) if !m.is_valid(&name) => continue,
                        Some(_) => matched = true,
                        None => {}
                    }
                    value = self.redact(sub, value, 0);
                }
                if let Some(sub) = additional.filter(|_| declared.is_none() && !matched) {
                    value = self.redact(sub, value, 0);
                }
                (key, value)
            })
            .collect()
    }

    fn array(&self, keywords: &Map<String, Value>, items: Vec<Value>) -> Vec<Value> {
        // Draft 2020-12: `prefixItems`, then `items` for the rest. Before: `items` as a list,
        // then `additionalItems`.
        let (prefix, rest) = match keywords.get("items") {
            Some(Value::Array(tuple)) => (Some(tuple), keywords.get("additionalItems")),
            items => (keywords.get("prefixItems").and_then(Value::as_array), items),
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match prefix.and_then(|p| p.get(i)).or(rest) {
                Some(sub) => self.redact(sub, item, 0),
                None => item,
            })
            .collect()
    }
}

/// The text of the values a call's schema marks secret, to scrub from what the call makes that
/// is not structured like its params: the argv it runs, its log records, its error messages.
/// Cheap to clone; empty for a tool whose schema marks nothing.
#[derive(Debug, Clone, Default)]
pub struct Secrets(Arc<[String]>);

impl Secrets {
    /// The secret values of `params` under `schema`: every string (and the text of every other
    /// scalar) that [`redact`] replaces.
    pub fn of(schema: &Value, params: &Value) -> Secrets {
        let mut found = Vec::new();
        collect(params, &redact(schema, params), &mut found);
        found.retain(|s| !s.is_empty());
        // Longest first, so that a secret containing another is replaced whole.
        found.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        found.dedup();
        Secrets(found.into())
    }

    /// Whether there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every secret replaced by [`REDACTED`].
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in self.0.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }

    /// Each of `items` scrubbed.
    pub fn scrub_all(&self, items: &[String]) -> Vec<String> {
        items.iter().map(|item| self.scrub(item).into_owned()).collect()
    }

    /// Every string in `value` scrubbed, in place.
    pub fn scrub_value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                if let Cow::Owned(scrubbed) = self.scrub(s) {
                    *s = scrubbed;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_value(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.scrub_value(v)),
            _ => {}
        }
    }
}

/// Whether `schema` can mark anything secret: a `writeOnly` or `secret` keyword, or a `$ref`
/// (which [`redact`] may be unable to follow, and then redacts). Checked once per tool, so that
/// the calls of a tool that marks nothing skip [`Secrets::of`].
pub fn may_mark_secrets(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => {
            map.iter().any(|(k, v)| matches!(k.as_str(), "writeOnly" | "secret" | "$ref") || may_mark_secrets(v))
        }
        Value::Array(items) => items.iter().any(may_mark_secrets),
        _ => false,
    }
}

/// The scalars of `original` that `redacted` replaced.
fn collect(original: &Value, redacted: &Value, out: &mut Vec<String>) {
    match (original, redacted) {
        (Value::Object(o), Value::Object(r)) => {
            for (key, value) in o {
                if let Some(r) = r.get(key) {
                    collect(value, r, out);
                }
            }
        }
        (Value::Array(o), Value::Array(r)) => o.iter().zip(r).for_each(|(o, r)| collect(o, r, out)),
        (original, Value::String(r)) if r == REDACTED && original != redacted => scalars(original, out),
        _ => {}
    }
}

fn scalars(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| scalars(v, out)),
        Value::Object(map) => map.values().for_each(|v| scalars(v, out)),
        // A flag's text ("true") is no secret worth scrubbing from every argument.
        Value::Null | Value::Bool(_) => {}
        Value::Number(n) => out.push(n.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use schemars::{JsonSchema, schema_for};
    use serde_json::json;

    use super::*;

    // The shapes a plugin author writes, marked secret the way the SDK documents.
    #[allow(dead_code)]
    #[derive(JsonSchema)]
    struct Login {
        user: String,
        #[schemars(extend("writeOnly" = true))]
        password: String,
    }

    #[allow(dead_code)]
    #[derive(JsonSchema)]
    enum Auth {
        Anonymous,
        Login(Login),
        Token {
            #[schemars(extend("writeOnly" = true))]
            token: String,
        },
    }

    #[allow(dead_code)]
    #[derive(JsonSchema)]
    struct Params {
        host: String,
        db: Login,
        replicas: Vec<Login>,
        fallback: Option<Login>,
        pair: (String, Login),
        by_region: BTreeMap<String, Login>,
        auth: Auth,
        #[schemars(extend("writeOnly" = true))]
        api_key: Option<String>,
        #[schemars(extend("writeOnly" = true))]
        admin: Login,
    }

    fn schema<T: JsonSchema>() -> anyhow::Result<Value> {
        Ok(serde_json::to_value(schema_for!(T))?)
    }

    fn login(user: &str, password: &str) -> Value {
        json!({"user": user, "password": password})
    }

    fn hidden(user: &str) -> Value {
        json!({"user": user, "password": REDACTED})
    }

    #[test]
    fn secrets_in_nested_optional_listed_and_enum_structs_are_redacted() -> anyhow::Result<()> {
        let schema = schema::<Params>()?;
        assert!(schema["$defs"]["Login"].is_object(), "nested structs are $refs: {schema}");
        let params = json!({
            "host": "db.internal",
            "db": login("app", "hunter2"),
            "replicas": [login("r1", "p1"), login("r2", "p2")],
            "fallback": login("fb", "p3"),
            "pair": ["primary", login("pp", "p4")],
            "by_region": {"eu": login("eu", "p5")},
            "auth": {"Token": {"token": "t0k"}},
            "api_key": "k3y",
            "admin": login("root", "p6"),
        });
        let shown = redact(&schema, &params);
        assert_eq!(
            shown,
            json!({
                "host": "db.internal",
                "db": hidden("app"),
                "replicas": [hidden("r1"), hidden("r2")],
                "fallback": hidden("fb"),
                "pair": ["primary", hidden("pp")],
                "by_region": {"eu": hidden("eu")},
                "auth": {"Token": {"token": REDACTED}},
                "api_key": REDACTED,
                "admin": REDACTED,
            })
        );
        for secret in ["hunter2", "p1", "p2", "p3", "p4", "p5", "p6", "t0k", "k3y"] {
            assert!(!shown.to_string().contains(secret), "{secret} leaked: {shown}");
        }
        // The other branches of the same values.
        let other = json!({"fallback": null, "auth": {"Login": login("u", "p7")}});
        assert_eq!(redact(&schema, &other), json!({"fallback": null, "auth": {"Login": hidden("u")}}));
        Ok(())
    }

    #[test]
    fn the_secret_values_are_scrubbed_from_text_longest_first() -> anyhow::Result<()> {
        let schema = schema::<Params>()?;
        let params = json!({
            "host": "db.internal",
            "db": login("app", "hunter2"),
            "replicas": [login("r1", "hunter2-old")],
            "api_key": "k3y",
            "admin": {"user": "root", "password": ""},
        });
        let secrets = Secrets::of(&schema, &params);
        // The whole `admin` object is secret: its user too; the empty password is nothing to find.
        assert_eq!(&*secrets.0, ["hunter2-old", "hunter2", "root", "k3y"]);
        let argv = ["psql", "--password=hunter2-old", "-c", "select 'k3y' from root_hunter2"].map(String::from);
        assert_eq!(
            secrets.scrub_all(&argv),
            ["psql", "--password=[redacted]", "-c", "select '[redacted]' from [redacted]_[redacted]"]
        );
        assert!(matches!(secrets.scrub("db.internal app"), Cow::Borrowed(_)), "nothing secret, nothing copied");
        let mut detail = json!({"reasons": [{"message": "`--password=hunter2` is refused"}], "n": 3});
        secrets.scrub_value(&mut detail);
        assert_eq!(detail, json!({"reasons": [{"message": "`--password=[redacted]` is refused"}], "n": 3}));
        // A schema that marks nothing has nothing to scrub.
        let plain = json!({"type": "object", "properties": {"user": {"type": "string"}}});
        assert!(Secrets::of(&plain, &params).is_empty());
        assert!(!may_mark_secrets(&plain));
        assert!(may_mark_secrets(&schema));
        Ok(())
    }

    #[allow(dead_code)]
    #[derive(JsonSchema)]
    struct Tree {
        name: String,
        #[schemars(extend("secret" = true))]
        key: String,
        children: Vec<Tree>,
    }

    #[test]
    fn recursive_types_are_followed_to_any_depth() -> anyhow::Result<()> {
        let schema = schema::<Tree>()?;
        let mut params = json!({"name": "leaf", "key": "k", "children": []});
        let mut want = json!({"name": "leaf", "key": REDACTED, "children": []});
        for _ in 0..2 * MAX_HOPS {
            params = json!({"name": "n", "key": "k", "children": [params]});
            want = json!({"name": "n", "key": REDACTED, "children": [want]});
        }
        assert_eq!(redact(&schema, &params), want);
        Ok(())
    }

    #[test]
    fn what_cannot_be_followed_is_redacted() {
        let schema = json!({
            "type": "object",
            "properties": {
                "remote": {"$ref": "https://example.invalid/schema.json"},
                "looped": {"$ref": "#/$defs/a"},
                "plain": {"type": "string"}
            },
            "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}
        });
        let params = json!({"remote": {"x": 1}, "looped": "y", "plain": "z"});
        assert_eq!(redact(&schema, &params), json!({"remote": REDACTED, "looped": REDACTED, "plain": "z"}));
    }

    #[test]
    fn pattern_properties_draft7_tuples_and_definitions() {
        let schema = json!({
            "type": "object",
            "patternProperties": {"^secret_": {"writeOnly": true}, "^list_": {"$ref": "#/definitions/tuple"}},
            "additionalProperties": {"type": "string"},
            "definitions": {"tuple": {"items": [{"type": "string"}, {"secret": true}], "additionalItems": {"writeOnly": true}}}
        });
        let params = json!({"secret_a": "s", "public": "p", "list_x": ["a", "b", "c"]});
        assert_eq!(
            redact(&schema, &params),
            json!({"secret_a": REDACTED, "public": "p", "list_x": ["a", REDACTED, REDACTED]})
        );
    }

    #[test]
    fn definitions_nothing_uses_change_nothing() {
        let unused = json!({"properties": {"path": {"type": "string"}}, "$defs": {"X": {"writeOnly": true}}});
        assert_eq!(redact(&unused, &json!({"path": "p"})), json!({"path": "p"}));
    }
}
