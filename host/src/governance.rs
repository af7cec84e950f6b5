//! Governance: the one path every tool call takes, and the durable record of it.
//!
//! - [`pipeline`]: [`Governor`], the execute pipeline (params → action decision → approval →
//!   invoke → verify → complete or roll back), approvals, manual rollback, crash recovery.
//! - [`action`]: action records and their state machine, undo records of the rollback log.
//! - [`audit`]: the hash-chained audit log: entry format, chain verification, export, reads,
//!   and the in-memory tail of the newest entries that `get_audit_log` reads.
//! - [`journal`]: the single writer of the governance tables: batches every write of concurrent
//!   calls into one durable redb transaction (group commit) and answers each caller once its
//!   writes are committed.
//! - [`command`]: a call whose category follows its command line (`run_command`): the argv the
//!   action policy classifies, and the category the call then runs at.
//! - [`redact`]: parameters marked secret in a tool's schema never reach the audit log.
//!
//! INVARIANT: an action is acknowledged to its caller only after the journal committed its audit
//! entry and its undo record; the journal writes entries in the order they were submitted.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{AuthMethod, Caller, Category, Role};
use crate::policy::Decision;

pub mod action;
pub mod audit;
pub mod command;
pub mod journal;
pub mod pipeline;
pub mod redact;

pub use action::{ActionRecord, ActionState, UndoRecord, UndoState};
pub use audit::StoredEntry;
pub use journal::{Journal, JournalError};
pub use pipeline::{ExecuteRequest, GovernanceError, Governor};

/// `[governance]`: verify, approval and audit settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GovernanceConfig {
    /// Verify after every state-changing tool, not only where the category requires it
    /// (`VERIFY_REQUIRED`).
    pub verify_required: bool,
    /// How long a CRITICAL action waits for its approval, in seconds (default 15 min).
    pub approval_ttl_secs: u64,
    /// Largest tool output kept in an action record, in bytes; a larger output is replaced by a
    /// note saying so (the caller still receives it whole).
    pub max_stored_output_bytes: u64,
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        Self { verify_required: false, approval_ttl_secs: 15 * 60, max_stored_output_bytes: 64 * 1024 }
    }
}

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

    /// Every reason code of the decision, comma-separated, or `allowed`.
    pub fn reason_of(decision: &Decision) -> String {
        match decision.reasons.as_slice() {
            [] => "allowed".to_owned(),
            reasons => reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(","),
        }
    }
}

/// Where audit events go. Implementations must not lose an event they accepted.
pub trait AuditSink: Send + Sync {
    /// Record one event (without waiting for it to be durable; see [`Journal::submit`] for that).
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
