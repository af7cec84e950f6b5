//! Entries of the audit log as stored: a sequence number and the entry's JSON bytes exactly as
//! the journal wrote them (its chain hash covers them), read without copying.

use redb::AccessGuard;
use serde::de::DeserializeOwned;

use crate::StoreError;
use crate::tables::decode;

/// One stored audit entry.
pub struct AuditEntry<'a> {
    seq: u64,
    value: AccessGuard<'a, &'static [u8]>,
}

impl std::fmt::Debug for AuditEntry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditEntry").field("seq", &self.seq).field("bytes", &self.bytes().len()).finish()
    }
}

impl AuditEntry<'_> {
    /// Its sequence number (the table key).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Its JSON, byte for byte as stored.
    pub fn bytes(&self) -> &[u8] {
        self.value.value()
    }

    /// Its JSON decoded as `T` (a corrupt entry is [`StoreError::Corrupt`]).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        decode("audit_v1", self.bytes())
    }
}

/// Audit entries in sequence order (oldest first; [`Iterator::rev`] for newest first), read from
/// the store as they are iterated: a log of any length is streamed, never loaded whole.
pub struct AuditEntries<'a>(pub(crate) redb::Range<'a, u64, &'static [u8]>);

impl std::fmt::Debug for AuditEntries<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditEntries").finish_non_exhaustive()
    }
}

/// A key and value of the audit table.
pub(crate) type Stored<'a> = (AccessGuard<'a, u64>, AccessGuard<'a, &'static [u8]>);

impl<'a> From<Stored<'a>> for AuditEntry<'a> {
    fn from((key, value): Stored<'a>) -> Self {
        AuditEntry { seq: key.value(), value }
    }
}

fn entry(item: Result<Stored<'_>, redb::StorageError>) -> Result<AuditEntry<'_>, StoreError> {
    Ok(item?.into())
}

impl<'a> Iterator for AuditEntries<'a> {
    type Item = Result<AuditEntry<'a>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(entry)
    }
}

impl DoubleEndedIterator for AuditEntries<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(entry)
    }
}
