//! Security events as JSON lines on stderr, in the security guide's format: exactly `timestamp`,
//! `level`, `event`, `user`, `ip`, `details`.
//!
//! INVARIANT: no password, token, API key or secret ever goes into `details`.

use std::io::Write;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How serious an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Expected, worth recording (a login, a user created).
    Info,
    /// Possibly hostile (a failed login, a bad token, a rate limit).
    Warning,
}

/// Write one security event line.
pub fn emit(level: Level, event: &str, user: Option<&str>, ip: Option<IpAddr>, details: Value) {
    // A struct, not a map, so the fields keep the guide's order.
    #[derive(Serialize)]
    struct Line<'a> {
        timestamp: String,
        level: &'static str,
        event: &'a str,
        user: Option<&'a str>,
        ip: Option<String>,
        details: Value,
    }
    let line = Line {
        timestamp: OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        level: match level {
            Level::Info => "INFO",
            Level::Warning => "WARNING",
        },
        event,
        user,
        ip: ip.map(|ip| ip.to_string()),
        details,
    };
    // One write call per line so concurrent events do not interleave.
    let mut text = serde_json::to_string(&line).unwrap_or_default();
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
