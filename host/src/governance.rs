//! Governance: the audit sink every decision and execution is written to, and (with the
//! governance issue) approvals, verify and rollback.
//!
//! Until the durable, hash-chained audit log lands, [`MemoryAuditSink`] stands behind the same
//! [`AuditSink`] trait.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::Role;

/// `[governance]`: verify, approval and audit settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GovernanceConfig {
    /// Verify after every state-changing tool, not only where the category requires it
    /// (`VERIFY_REQUIRED`).
    pub verify_required: bool,
}

/// One audited event: a decision, a command attempt, an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// What kind of event: `exec`, `action`, `decision`, ...
    pub kind: String,
    /// Who caused it (user or API key name), when known.
    pub actor: Option<String>,
    /// The actor's role, when known.
    pub role: Option<Role>,
    /// The action it belongs to, when any.
    pub action_id: Option<String>,
    /// The command, for command attempts (argv joined for display; the argv is in `detail`).
    pub command: Option<String>,
    /// Whether it was allowed.
    pub allowed: bool,
    /// Why it was allowed or refused (a reason code or message).
    pub reason: String,
    /// Everything else, as structured data (argv, exit code, duration, result, warnings).
    pub detail: serde_json::Value,
}

/// Where audit events go. Implementations must not lose an event they accepted.
pub trait AuditSink: Send + Sync {
    /// Record one event.
    fn record(&self, event: AuditEvent);
}

/// An in-memory audit sink (tests, and until the durable log lands).
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
