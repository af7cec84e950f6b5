//! Secret parameters never reach the audit log, the policy input or the API: a property whose
//! schema says `"writeOnly": true` or `"secret": true` is replaced by [`REDACTED`], at any depth
//! of nested objects and arrays.

use serde_json::Value;

/// What a secret value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// `params` with every value `schema` marks secret replaced by [`REDACTED`].
pub fn redact(schema: &Value, params: &Value) -> Value {
    if is_secret(schema) {
        return Value::String(REDACTED.to_owned());
    }
    match params {
        Value::Object(map) => {
            let properties = schema.get("properties");
            let additional = schema.get("additionalProperties");
            Value::Object(
                map.iter()
                    .map(|(key, value)| {
                        let sub = properties.and_then(|p| p.get(key)).or(additional).unwrap_or(&Value::Null);
                        (key.clone(), redact(sub, value))
                    })
                    .collect(),
            )
        }
        Value::Array(items) => {
            let sub = schema.get("items").unwrap_or(&Value::Null);
            Value::Array(items.iter().map(|item| redact(sub, item)).collect())
        }
        other => other.clone(),
    }
}

fn is_secret(schema: &Value) -> bool {
    let flag = |name| schema.get(name).and_then(Value::as_bool).unwrap_or(false);
    flag("writeOnly") || flag("secret")
}

/// Whether the schema marks anything secret (so callers can skip the copy).
pub fn has_secrets(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => is_secret(schema) || map.values().any(has_secrets),
        Value::Array(items) => items.iter().any(has_secrets),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secret_properties_are_redacted_at_any_depth() {
        let schema = json!({
            "type": "object",
            "properties": {
                "user": {"type": "string"},
                "password": {"type": "string", "writeOnly": true},
                "db": {"type": "object", "properties": {"token": {"type": "string", "secret": true}}},
                "keys": {"type": "array", "items": {"type": "string", "secret": true}}
            }
        });
        let params = json!({"user": "u", "password": "hunter2", "db": {"token": "t0k", "host": "h"}, "keys": ["a"]});
        let shown = redact(&schema, &params);
        assert_eq!(
            shown,
            json!({"user": "u", "password": REDACTED, "db": {"token": REDACTED, "host": "h"}, "keys": [REDACTED]})
        );
        assert!(has_secrets(&schema));
        assert!(!has_secrets(&json!({"properties": {"path": {"type": "string"}}})));
    }
}
