//! Account, API-key and login events: each is a security event line on stderr and an entry of
//! the hash-chained audit log, written through the governance journal like every other entry.
//!
//! INVARIANT: no password, token, API key or secret ever goes into `detail`; user input in it
//! is capped ([`toolgate_auth::capped`]).

use std::net::IpAddr;

use serde_json::Value;

use super::AppState;
use toolgate_core::AuditEvent;
use toolgate_core::model::Caller;
use toolgate_governance::journal::Write;
use toolgate_telemetry::security::{self, Level};

/// Who an event is about: an authenticated caller, or a name given at login (capped).
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    /// An authenticated caller.
    Caller(&'a Caller),
    /// A user name as typed, and the client's address.
    Named(Option<&'a str>, Option<IpAddr>),
}

/// Record `kind` with `detail`; a warning is a refusal (`allowed: false` in the audit entry), its
/// reason `detail.reason` when there is one. Waits until the entry is committed; a journal that
/// cannot commit is logged (the account change itself is already stored).
pub async fn record(state: &AppState, level: Level, kind: &str, who: Who<'_>, detail: Value) {
    let (name, ip) = match who {
        Who::Caller(caller) => (Some(caller.name.clone()), caller.source_ip),
        Who::Named(name, ip) => (name.map(toolgate_auth::capped), ip),
    };
    security::emit(level, kind, name.as_deref(), ip, detail.clone());
    let reason = detail.get("reason").and_then(Value::as_str).unwrap_or(kind).to_owned();
    let mut event = AuditEvent::new(kind, level == Level::Info, reason);
    match who {
        Who::Caller(caller) => event = event.by(caller),
        Who::Named(_, ip) => {
            event.actor = name;
            event.source_ip = ip.map(|ip| ip.to_string());
        }
    }
    event.detail = detail;
    if let Err(e) = state.gateway.journal.submit(vec![Write::Audit(Box::new(event))]).await {
        tracing::error!(error = %e, event = kind, "an account event could not be written to the audit log");
    }
}
