//! Governance: the one path every tool call takes, and the durable record of it. Uses every host
//! crate but the server: core, telemetry, store (through one journal), auth (provenance), policy,
//! sandbox and the runtime (through the `Tools` port).
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
//!
//! INVARIANT: an action is acknowledged to its caller only after the journal committed its audit
//! entry and its undo record; the journal writes entries in the order they were submitted.

use serde::{Deserialize, Serialize};

pub mod action;
pub mod audit;
pub mod command;
pub mod journal;
pub mod pipeline;

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
