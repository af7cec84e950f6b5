//! INVARIANT: every redb table of the host is declared here and nowhere else. Names carry a
//! version suffix; a change of key or value layout is a new table plus a migration, never an
//! in-place reinterpretation of old bytes.
//!
//! Records are JSON documents. Their redb value type stays `&[u8]`, typed by the operations of
//! this crate ([`decode`], [`encode`] and the generic reads and writes of [`crate::Snapshot`] and
//! [`crate::Tx`]), rather than a `Json<T>` value type as in redb's `bincode_keys` example: redb
//! records each table's value type name in the file and refuses to open a table under another
//! (`TableTypeMismatch`), so a new value type would make every existing data file unreadable.
//! The governance records (audit entries, action and undo records) are defined by the governance
//! crate, which this one does not depend on, so their reads and writes are generic over
//! `T: Serialize + DeserializeOwned`; audit entries are kept as the bytes the journal wrote,
//! because their chain hashes cover those bytes exactly.

use redb::TableDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StoreError;

/// User accounts: user name → [`super::UserRecord`] as JSON.
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users_v1");

/// Revoked token ids: `jti` → the token's expiry (Unix seconds); purged once expired.
pub const REVOKED_TOKENS: TableDefinition<&str, u64> = TableDefinition::new("revoked_tokens_v1");

/// API keys of service accounts: key id → [`super::ApiKeyRecord`] as JSON.
pub const API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys_v1");

/// The audit log, append-only and hash-chained: sequence number → `governance::audit::StoredEntry`
/// as JSON, byte for byte as the journal wrote it. Written only by the journal's writer thread
/// (and `toolgate audit adopt`).
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_v1");

/// Action records: action id (UUIDv7, so ids sort by creation time) →
/// `governance::action::ActionRecord` as JSON. Written only by the journal.
pub const ACTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("actions_v1");

/// The rollback log: id of the action that made the change → `governance::action::UndoRecord`
/// as JSON. Written only by the journal.
pub const ROLLBACK_LOG: TableDefinition<&str, &[u8]> = TableDefinition::new("rollback_log_v1");

/// Decode a record of `table`.
pub(crate) fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt { table, source })
}

/// Encode a record of `table`.
pub(crate) fn encode<T: Serialize + ?Sized>(table: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Corrupt { table, source })
}
