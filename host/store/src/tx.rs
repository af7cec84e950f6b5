//! The write operations on the governance records, inside one write transaction
//! ([`crate::Store::write`]): the journal's group commit reads the audit head, checks the stored
//! action and undo records (compare-and-set) and writes, all in one transaction.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::tables::{self, decode, encode};
use crate::{AuditEntries, AuditEntry, StoreError};

type JsonTable<'t, K> = Table<'t, K, &'static [u8]>;

/// A write transaction of [`crate::Store::write`]: everything written through it is committed
/// together, once, if the closure succeeds; nothing if it fails. One write transaction runs at a
/// time, so a record read through it cannot change before the commit: a check of the stored state
/// followed by a write is a compare-and-set.
pub struct Tx<'t> {
    tx: &'t WriteTransaction,
    // Opened on first use and kept for the transaction (redb opens a table once at a time).
    audit: Option<JsonTable<'t, u64>>,
    actions: Option<JsonTable<'t, &'static str>>,
    undo: Option<JsonTable<'t, &'static str>>,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

/// `slot`'s table, opened in `tx` if it is not yet.
fn open<'s, 't, K: redb::Key + 'static>(
    tx: &'t WriteTransaction,
    slot: &'s mut Option<JsonTable<'t, K>>,
    definition: TableDefinition<K, &'static [u8]>,
) -> Result<&'s mut JsonTable<'t, K>, StoreError> {
    Ok(match slot {
        Some(table) => table,
        None => slot.insert(tx.open_table(definition)?),
    })
}

impl<'t> Tx<'t> {
    /// Run `f` on the governance tables of `tx`; they are closed before `tx` commits.
    pub(crate) fn scoped<T>(
        tx: &'t WriteTransaction,
        f: impl FnOnce(&mut Tx<'t>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&mut Tx { tx, audit: None, actions: None, undo: None })
    }

    fn audit(&mut self) -> Result<&mut JsonTable<'t, u64>, StoreError> {
        open(self.tx, &mut self.audit, tables::AUDIT)
    }

    fn actions(&mut self) -> Result<&mut JsonTable<'t, &'static str>, StoreError> {
        open(self.tx, &mut self.actions, tables::ACTIONS)
    }

    fn undo_log(&mut self) -> Result<&mut JsonTable<'t, &'static str>, StoreError> {
        open(self.tx, &mut self.undo, tables::ROLLBACK_LOG)
    }

    /// The newest audit entry, if any: where the next append continues.
    pub fn audit_last(&mut self) -> Result<Option<AuditEntry<'_>>, StoreError> {
        Ok(self.audit()?.last()?.map(AuditEntry::from))
    }

    /// Every audit entry, oldest first, streamed (as this transaction has written them so far).
    pub fn audit_entries(&mut self) -> Result<AuditEntries<'_>, StoreError> {
        Ok(AuditEntries(self.audit()?.iter()?))
    }

    /// Append entry `seq`, its JSON `bytes` stored exactly as given. The log is append-only: an
    /// existing `seq` fails the transaction ([`StoreError::AuditSeqTaken`]), nothing is committed.
    pub fn append_audit(&mut self, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        if self.audit()?.insert(seq, bytes)?.is_some() {
            return Err(StoreError::AuditSeqTaken(seq));
        }
        Ok(())
    }

    /// The action record `id` as stored now, decoded as `T` (any part of the record).
    pub fn action<T: DeserializeOwned>(&mut self, id: &str) -> Result<Option<T>, StoreError> {
        self.actions()?.get(id)?.map(|v| decode("actions_v1", v.value())).transpose()
    }

    /// Store the action record `id` (created or replaced).
    pub fn put_action<T: Serialize + ?Sized>(&mut self, id: &str, record: &T) -> Result<(), StoreError> {
        let bytes = encode("actions_v1", record)?;
        self.actions()?.insert(id, bytes.as_slice())?;
        Ok(())
    }

    /// The undo record of action `id` as stored now, decoded as `T`.
    pub fn undo<T: DeserializeOwned>(&mut self, id: &str) -> Result<Option<T>, StoreError> {
        self.undo_log()?.get(id)?.map(|v| decode("rollback_log_v1", v.value())).transpose()
    }

    /// Store the undo record of action `id` (created or replaced).
    pub fn put_undo<T: Serialize + ?Sized>(&mut self, id: &str, record: &T) -> Result<(), StoreError> {
        let bytes = encode("rollback_log_v1", record)?;
        self.undo_log()?.insert(id, bytes.as_slice())?;
        Ok(())
    }
}
