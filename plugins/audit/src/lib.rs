//! Built-in plugin `audit`: `get_audit_log`, the newest entries of the gateway's audit log through
//! the `audit` host interface. The host scopes the entries to the caller (an admin sees every
//! entry, anyone else only their own), so the tool is READ and open to every role.

use toolgate_sdk::audit::{self, Entry};
use toolgate_sdk::prelude::*;

/// Most entries one call returns (the host's cap too).
pub const MAX_ENTRIES: u32 = 1000;

toolgate_sdk::plugin!(name = "audit", tools = [GetAuditLog]);

/// Parameters of `get_audit_log`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// How many of the newest entries to return (1 to 1000).
    #[serde(default = "default_last_n")]
    #[schemars(range(min = 1, max = 1000))]
    pub last_n: u32,
}

fn default_last_n() -> u32 {
    20
}

/// Output of `get_audit_log`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Output {
    /// Newest first: `seq`, `timestamp`, `kind`, `actor`, `role`, `tool`, `action_id`, `command`,
    /// `allowed`, `reason`.
    pub entries: Vec<Entry>,
}

/// `get_audit_log`: the newest audit entries the caller may see.
pub struct GetAuditLog;

impl Tool for GetAuditLog {
    const NAME: &'static str = "get_audit_log";
    const DESCRIPTION: &'static str = "Returns the newest entries of the audit log (at most 1000), newest first: \
         when, who with which role, what command or tool call, whether it was allowed and why. \
         Admins see every entry, other callers only their own.";
    const CATEGORY: Category = Category::Read;
    const CAPABILITIES: &'static [Capability] = &[Capability::AuditRead];
    type Params = Params;
    type Output = Output;

    fn invoke(params: Params) -> Result<Output, Error> {
        if !(1..=MAX_ENTRIES).contains(&params.last_n) {
            return Err(Error::invalid_params(format!(
                "`last_n`: {} is not between 1 and {MAX_ENTRIES}",
                params.last_n
            )));
        }
        Ok(Output { entries: audit::recent(params.last_n)? })
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    #[test]
    fn the_manifest_documents_params_and_output() {
        let m = PLUGIN.manifest();
        let tool = &m.tools[0];
        assert_eq!((tool.name.as_str(), tool.category), ("get_audit_log", Category::Read));
        assert_eq!(tool.capabilities, [toolgate_sdk::bindings::toolgate::plugin::types::Capability::AuditRead]);
        let params: serde_json::Value = serde_json::from_str(&tool.params_schema).expect("params schema");
        let last_n = &params["properties"]["last_n"];
        assert_eq!((&last_n["minimum"], &last_n["maximum"], &last_n["default"]), (&1.into(), &1000.into(), &20.into()));
        let output: serde_json::Value = serde_json::from_str(&tool.output_schema).expect("output schema");
        let text = output.to_string();
        for field in ["seq", "timestamp", "kind", "actor", "role", "tool", "action_id", "command", "allowed", "reason"]
        {
            assert!(text.contains(&format!("\"{field}\"")), "{field} missing from {text}");
        }
    }

    #[test]
    fn bad_params_are_refused_before_the_host_is_asked() {
        for params in [r#"{"last_n":0}"#, r#"{"last_n":1001}"#] {
            let err = PLUGIN.invoke("get_audit_log", params).expect_err(params);
            assert!(matches!(&err, Error::InvalidParams(m) if m.contains("`last_n`")), "{params}: {err}");
        }
        let err = PLUGIN.invoke("get_audit_log", r#"{"last":5}"#).expect_err("unknown field");
        assert!(matches!(err, Error::InvalidParams(_)), "{err}");
        // `last_n` defaults to 20; natively there is no host, so the read itself is unavailable.
        let err = PLUGIN.invoke("get_audit_log", "{}").expect_err("no host");
        assert!(matches!(err, Error::Unavailable(_)), "{err}");
    }
}
