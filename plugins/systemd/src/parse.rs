//! The parser of `journalctl -o json` output: one JSON object per line.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JournalEntry {
    /// When it was logged: microseconds since the epoch (`__REALTIME_TIMESTAMP`).
    pub timestamp_us: u64,
    /// Syslog priority, 0 (emergency) to 7 (debug), when given.
    pub priority: Option<u8>,
    /// Syslog identifier, e.g. `nginx` or `systemd`.
    pub identifier: Option<String>,
    /// Process id that logged it.
    pub pid: Option<u32>,
    /// The message (binary messages decoded as UTF-8, invalid sequences replaced).
    pub message: String,
}

/// Parse `journalctl -o json` output; a line that is not a journal entry is left out.
pub fn journal(text: &str) -> Vec<JournalEntry> {
    text.lines().filter_map(|line| entry(serde_json::from_str(line).ok()?)).collect()
}

fn entry(fields: serde_json::Map<String, serde_json::Value>) -> Option<JournalEntry> {
    let text = |name: &str| fields.get(name).and_then(field_text);
    Some(JournalEntry {
        timestamp_us: text("__REALTIME_TIMESTAMP")?.parse().ok()?,
        priority: text("PRIORITY").and_then(|p| p.parse().ok()),
        identifier: text("SYSLOG_IDENTIFIER"),
        pid: text("_PID").and_then(|p| p.parse().ok()),
        message: text("MESSAGE").unwrap_or_default(),
    })
}

/// A field's value: a string, or an array of bytes for a value that is not valid UTF-8 text.
fn field_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(bytes) => {
            let bytes: Option<Vec<u8>> = bytes.iter().map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok())).collect();
            Some(String::from_utf8_lossy(&bytes?).into_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_from_json_lines() {
        let text = concat!(
            r#"{"__REALTIME_TIMESTAMP":"1733230000123456","PRIORITY":"6","SYSLOG_IDENTIFIER":"sh","_PID":"42","MESSAGE":"toolgate-test started 42"}"#,
            "\n",
            r#"{"__REALTIME_TIMESTAMP":"1733230001000000","MESSAGE":[104,105,255]}"#,
            "\nnot json\n",
        );
        let entries = journal(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].timestamp_us, 1_733_230_000_123_456);
        assert_eq!(entries[0].priority, Some(6));
        assert_eq!(entries[0].identifier.as_deref(), Some("sh"));
        assert_eq!(entries[0].pid, Some(42));
        assert_eq!(entries[0].message, "toolgate-test started 42");
        assert_eq!(entries[1].message, "hi\u{fffd}");
        assert_eq!(entries[1].identifier, None);
    }
}
