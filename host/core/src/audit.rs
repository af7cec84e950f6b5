//! The audit event every layer records, and the port it is recorded through.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::BoxFuture;
use crate::model::{AuthMethod, Caller, Category, Role};

/// One audited event: a decision, a command attempt, a step of an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// What kind of event: `decision`, `exec`, `exec_decision`, `action_completed`, ...
    pub kind: String,
    /// Who caused it (user or API key name), when known.
    pub actor: Option<String>,
    /// The actor's role, when known.
    pub role: Option<Role>,
    /// How the actor authenticated, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<AuthMethod>,
    /// The actor's network address, when the call came over the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// The tool concerned, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The tool's category, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// The action it belongs to, when any.
    pub action_id: Option<String>,
    /// What ran or was asked: the argv (shell-quoted) of a command, or `tool {params}` of an action.
    pub command: Option<String>,
    /// Whether it was allowed (for outcomes: whether it succeeded).
    pub allowed: bool,
    /// Why it was allowed or refused (a reason code or message).
    pub reason: String,
    /// Everything else, as structured data: params (secrets redacted), justification, decision,
    /// argv, exit code, duration, result.
    pub detail: serde_json::Value,
    /// The trace the event happened in (filled by the journal from the current span).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl AuditEvent {
    /// An event of `kind` happening now, with everything else empty.
    pub fn new(kind: &str, allowed: bool, reason: impl Into<String>) -> AuditEvent {
        AuditEvent {
            timestamp: OffsetDateTime::now_utc(),
            kind: kind.to_owned(),
            actor: None,
            role: None,
            auth_method: None,
            source_ip: None,
            tool: None,
            category: None,
            action_id: None,
            command: None,
            allowed,
            reason: reason.into(),
            detail: serde_json::Value::Null,
            trace_id: None,
        }
    }

    /// Attribute the event to `caller`.
    pub fn by(mut self, caller: &Caller) -> AuditEvent {
        self.actor = Some(caller.name.clone());
        self.role = Some(caller.role);
        self.auth_method = Some(caller.auth_method);
        self.source_ip = caller.source_ip.map(|ip| ip.to_string());
        self
    }
}

/// Where audit events go. Implementations must not lose an event they accepted.
pub trait AuditSink: Send + Sync {
    /// Record one event (without waiting for it to be durable; a journal may offer a way to wait).
    fn record(&self, event: AuditEvent);
}

/// An in-memory audit sink, for tools that must not touch the store (`toolgate doctor`) and tests.
#[derive(Debug, Default)]
pub struct MemoryAuditSink {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemoryAuditSink {
    /// Everything recorded so far, oldest first.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl AuditSink for MemoryAuditSink {
    fn record(&self, event: AuditEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}

/// An entry as `get_audit_log` shows it: the event without its `detail`, the timestamp as the
/// RFC 3339 text it is stored as.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Summary {
    /// Position in the log.
    pub seq: u64,
    /// The event's shown fields.
    pub event: SummaryEvent,
}

/// The fields of an audit event that `get_audit_log` returns, and whose event it is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[allow(missing_docs)] // the fields of `AuditEvent`, documented there
pub struct SummaryEvent {
    pub timestamp: String,
    pub kind: String,
    pub actor: Option<String>,
    pub role: Option<Role>,
    #[serde(default)]
    pub auth_method: Option<AuthMethod>,
    #[serde(default)]
    pub tool: Option<String>,
    pub action_id: Option<String>,
    pub command: Option<String>,
    pub allowed: bool,
    pub reason: String,
}

impl Summary {
    /// The summary of `event`, stored as entry `seq`.
    pub fn of(seq: u64, event: &AuditEvent) -> Summary {
        let timestamp = event.timestamp.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        Summary {
            seq,
            event: SummaryEvent {
                timestamp,
                kind: event.kind.clone(),
                actor: event.actor.clone(),
                role: event.role,
                auth_method: event.auth_method,
                tool: event.tool.clone(),
                action_id: event.action_id.clone(),
                command: event.command.clone(),
                allowed: event.allowed,
                reason: event.reason.clone(),
            },
        }
    }
}

/// Reads the audit log for the `audit` host interface (`get_audit_log`), scoped to the caller.
pub trait AuditReader: Send + Sync {
    /// Up to `limit` entries `caller` may see, newest first: an admin sees every entry, anyone
    /// else only those they caused.
    fn visible<'a>(&'a self, caller: &'a Caller, limit: usize) -> BoxFuture<'a, Result<Vec<Summary>, String>>;
}
