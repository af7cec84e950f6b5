//! INVARIANT: every redb table of the host is declared here and nowhere else. Names carry a
//! version suffix; a change of key or value layout is a new table plus a migration, never an
//! in-place reinterpretation of old bytes.

use redb::TableDefinition;

/// User accounts: user name → [`super::UserRecord`] as JSON.
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users_v1");

/// Revoked token ids: `jti` → the token's expiry (Unix seconds); purged once expired.
pub const REVOKED_TOKENS: TableDefinition<&str, u64> = TableDefinition::new("revoked_tokens_v1");

/// API keys of service accounts: key id → [`super::ApiKeyRecord`] as JSON.
pub const API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys_v1");

/// The audit log, append-only and hash-chained: sequence number → [`toolgate_governance::audit::StoredEntry`]
/// as JSON. Written only by the journal's writer thread.
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_v1");

/// Action records: action id (UUIDv7, so ids sort by creation time) →
/// [`toolgate_governance::action::ActionRecord`] as JSON. Written only by the journal.
pub const ACTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("actions_v1");

/// The rollback log: id of the action that made the change → [`toolgate_governance::action::UndoRecord`]
/// as JSON. Written only by the journal.
pub const ROLLBACK_LOG: TableDefinition<&str, &[u8]> = TableDefinition::new("rollback_log_v1");
