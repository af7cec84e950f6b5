//! Reads of the governance records (audit log, action records, undo records) from one consistent
//! view of the store.

use std::ops::RangeBounds;

use redb::{ReadTransaction, ReadableTable};
use serde::de::DeserializeOwned;

use crate::tables::{self, decode};
use crate::{AuditEntries, AuditEntry, StoreError};

/// A consistent, read-only view of the store ([`crate::Store::snapshot`]): every read through it
/// sees the same committed state, whatever is written meanwhile. It does not block writers.
pub struct Snapshot {
    tx: ReadTransaction,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").finish_non_exhaustive()
    }
}

impl Snapshot {
    pub(crate) fn new(tx: ReadTransaction) -> Snapshot {
        Snapshot { tx }
    }

    /// The audit entries whose sequence numbers are in `range`, oldest first, streamed.
    pub fn audit_entries(&self, range: impl RangeBounds<u64>) -> Result<AuditEntries<'static>, StoreError> {
        Ok(AuditEntries(self.tx.open_table(tables::AUDIT)?.range(range)?))
    }

    /// The newest audit entry, if any.
    pub fn audit_last(&self) -> Result<Option<AuditEntry<'static>>, StoreError> {
        self.audit_entries(..)?.next_back().transpose()
    }

    /// Up to `limit` audit entries, newest first, strictly before `before` when given
    /// (pagination), decoded as `T`: the whole entry, or a lighter view that skips what it does
    /// not need.
    pub fn audit_page<T: DeserializeOwned>(&self, before: Option<u64>, limit: usize) -> Result<Vec<T>, StoreError> {
        let entries = match before {
            Some(before) => self.audit_entries(..before)?,
            None => self.audit_entries(..)?,
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for entry in entries.rev().take(limit) {
            out.push(entry?.decode()?);
        }
        Ok(out)
    }

    /// The action record `id`, decoded as `T`.
    pub fn action<T: DeserializeOwned>(&self, id: &str) -> Result<Option<T>, StoreError> {
        let table = self.tx.open_table(tables::ACTIONS)?;
        table.get(id)?.map(|v| decode("actions_v1", v.value())).transpose()
    }

    /// Up to `limit` action records that `keep` accepts, newest first (ids sort by creation
    /// time), among those whose id sorts strictly before `before` when given (pagination).
    pub fn actions_page<T: DeserializeOwned>(
        &self,
        before: Option<&str>,
        limit: usize,
        mut keep: impl FnMut(&T) -> bool,
    ) -> Result<Vec<T>, StoreError> {
        let table = self.tx.open_table(tables::ACTIONS)?;
        let range = match before {
            Some(before) => table.range(..before)?,
            None => table.range::<&str>(..)?,
        };
        let mut out = Vec::new();
        for item in range.rev() {
            if out.len() >= limit {
                break;
            }
            let (_, v) = item?;
            let record = decode("actions_v1", v.value())?;
            if keep(&record) {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Every action record that `keep` accepts, oldest first.
    pub fn actions<T: DeserializeOwned>(&self, keep: impl FnMut(&T) -> bool) -> Result<Vec<T>, StoreError> {
        scan(&self.tx.open_table(tables::ACTIONS)?, "actions_v1", keep)
    }

    /// The undo record of action `id`, decoded as `T`.
    pub fn undo<T: DeserializeOwned>(&self, id: &str) -> Result<Option<T>, StoreError> {
        let table = self.tx.open_table(tables::ROLLBACK_LOG)?;
        table.get(id)?.map(|v| decode("rollback_log_v1", v.value())).transpose()
    }

    /// Every undo record that `keep` accepts, by action id.
    pub fn undo_records<T: DeserializeOwned>(&self, keep: impl FnMut(&T) -> bool) -> Result<Vec<T>, StoreError> {
        scan(&self.tx.open_table(tables::ROLLBACK_LOG)?, "rollback_log_v1", keep)
    }
}

/// Every record of `table` that `keep` accepts, in key order.
fn scan<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &'static str,
    mut keep: impl FnMut(&T) -> bool,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for item in table.iter()? {
        let (_, v) = item?;
        let record = decode(name, v.value())?;
        if keep(&record) {
            out.push(record);
        }
    }
    Ok(out)
}
