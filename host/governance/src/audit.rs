//! The audit log: append-only, hash-chained entries in the `audit_v1` table.
//!
//! Entry `n` is stored as `{"seq": n, "prev_hash": h(n-1), "hash": h(n), "event": {...}}` where
//! `h(n) = HMAC-SHA256(key, h(n-1) "\n" n "\n" event-bytes)` over the event's JSON exactly as
//! stored, and `h(0)` is 64 zeros. The key ([`key::ChainKey`]) is kept outside the data
//! directory: changing, removing or reordering any entry breaks the chain at that entry, and
//! without the key nobody can recompute the links after it; [`verify`] names the first break.
//! Logs written before the chain was keyed (`h(n)` a plain SHA-256, [`chain_hash`]) or with
//! another key are continued only after `toolgate audit adopt` ([`chain::adopt`]) appended an
//! adoption entry, signed with the key, that pins everything before it. The journal appends
//! ([`super::journal`]); nothing ever updates or deletes an entry.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use toolgate_core::AuditEvent;
use toolgate_core::audit::Summary;
use toolgate_store::{Store, StoreError};

pub mod chain;
pub mod key;
pub mod reader;

pub use chain::{Adopted, ChainError, adopt, check_head, newest, verify};
pub use key::{AuditConfig, ChainKey, KeyError};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One entry as stored and exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEntry {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// Hash of the previous entry ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
    /// What happened.
    pub event: AuditEvent,
}

/// An entry as the API and the `get_audit_log` tool show it: the event's fields at the top level.
#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    /// Position in the log.
    pub seq: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// This entry's hash (the chain link).
    pub hash: String,
}

impl From<StoredEntry> for EntryView {
    fn from(entry: StoredEntry) -> Self {
        EntryView { seq: entry.seq, event: entry.event, hash: entry.hash }
    }
}

/// The first place the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// The entry that fails (the one whose content or link is wrong).
    pub seq: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// An entry known from outside the database, `SEQ:HASH` (what `toolgate audit verify` prints as
/// the head, what the server logs at start and stop, or `seq` and `hash` of
/// `GET /api/v1/audit?last_n=1`). The keyed chain proves that no entry was changed, nor the log
/// chained anew, without the key, but not that the newest were not removed, nor that someone
/// holding the key did not rewrite it; an anchor kept elsewhere proves both, up to the time it
/// was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The entry.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

impl std::fmt::Display for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(s: &str) -> Result<Anchor, String> {
        let bad = || format!("`{s}` is not an anchor: expected SEQ:HASH, as `toolgate audit verify` prints the head");
        let (seq, hash) = s.split_once(':').ok_or_else(bad)?;
        let seq = seq.parse().ok().filter(|seq| *seq > 0).ok_or_else(bad)?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Anchor { seq, hash: hash.to_ascii_lowercase() })
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Entries checked.
    pub entries: u64,
    /// Hash of the last entry (the head), when the log is not empty.
    pub head: Option<String>,
    /// The first break, if any.
    pub broken: Option<Break>,
    /// The newest adoption entry (`toolgate audit adopt`): the entries before it were chained
    /// without the key, or with another, and are pinned by it.
    pub adopted: Option<u64>,
}

/// The unkeyed link of entry `seq` after `prev`: a plain SHA-256, as logs were chained before
/// the chain was keyed (recognised, never written).
pub fn chain_hash(prev: &str, seq: u64, event_json: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(b"\n");
    hasher.update(seq.to_string().as_bytes());
    hasher.update(b"\n");
    hasher.update(event_json);
    hex::encode(hasher.finalize())
}

/// Serialise an entry for the table, linked with `key`; returns the bytes and the entry's hash.
pub(super) fn encode_entry(
    key: &ChainKey,
    seq: u64,
    prev: &str,
    event: &AuditEvent,
) -> Result<(Vec<u8>, String), StoreError> {
    let event_json = serde_json::to_vec(event).map_err(|source| StoreError::Corrupt { table: "audit_v1", source })?;
    let hash = key.link(prev, seq, &event_json);
    let mut out = Vec::with_capacity(event_json.len() + 200);
    // Written by hand so the event's bytes are exactly the ones hashed.
    out.extend_from_slice(format!(r#"{{"seq":{seq},"prev_hash":"{prev}","hash":"{hash}","event":"#).as_bytes());
    out.extend_from_slice(&event_json);
    out.push(b'}');
    Ok((out, hash))
}

#[derive(Deserialize)]
struct RawEntry<'a> {
    seq: u64,
    prev_hash: String,
    hash: String,
    #[serde(borrow)]
    event: &'a RawValue,
}

impl<'a> RawEntry<'a> {
    /// The stored entry `bytes`, its event left as it is.
    fn parse(bytes: &'a [u8]) -> Result<RawEntry<'a>, StoreError> {
        serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt { table: "audit_v1", source })
    }
}

/// The last entry's sequence number and hash in `tx`: where the next append continues.
pub(super) fn head(tx: &mut toolgate_store::Tx<'_>) -> Result<(u64, String), StoreError> {
    match tx.audit_last()? {
        None => Ok((0, GENESIS.to_owned())),
        Some(last) => {
            let entry = RawEntry::parse(last.bytes())?;
            Ok((entry.seq, entry.hash))
        }
    }
}

/// Up to `limit` entries, newest first, strictly before `before` when given (pagination),
/// decoded as `T`: [`StoredEntry`], or a lighter view that skips what it does not need.
pub fn recent<T: serde::de::DeserializeOwned>(
    store: &Store,
    limit: usize,
    before: Option<u64>,
) -> Result<Vec<T>, StoreError> {
    store.audit_page(before, limit)
}

/// How many of the newest entries [`Tail`] keeps: the most one `get_audit_log` call returns.
pub const TAIL_LEN: usize = 1000;

/// The newest [`TAIL_LEN`] entries as [`Summary`]s, in memory: the journal adds each entry once
/// it is committed (before its submitter is answered), so reading the tail of the log, which
/// every `get_audit_log` call does, costs neither a transaction nor decoding.
#[derive(Debug)]
pub struct Tail {
    /// Oldest first.
    entries: RwLock<VecDeque<Arc<Summary>>>,
}

/// What [`Tail::newest`] found.
#[derive(Debug)]
pub struct Found {
    /// Matching entries, newest first.
    pub entries: Vec<Arc<Summary>>,
    /// How many entries were looked at.
    pub scanned: usize,
    /// Where a search must go on in the store (entries before this seq), when the tail did not
    /// hold enough matches and older entries exist; `None` when the search is complete.
    pub before: Option<u64>,
}

impl Tail {
    /// The newest entries of `store`.
    pub fn load(store: &Store) -> Result<Tail, StoreError> {
        let newest: Vec<Summary> = recent(store, TAIL_LEN, None)?;
        Ok(Tail { entries: RwLock::new(newest.into_iter().rev().map(Arc::new).collect()) })
    }

    /// Add committed entry `seq`.
    pub(super) fn push(&self, seq: u64, event: &AuditEvent) {
        let summary = Arc::new(Summary::of(seq, event));
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() == TAIL_LEN {
                entries.pop_front();
            }
            entries.push_back(summary);
        }
    }

    /// Up to `limit` entries that `keep` accepts, newest first, looking at no more than `scan`
    /// entries.
    pub fn newest(&self, limit: usize, scan: usize, keep: impl Fn(&Summary) -> bool) -> Found {
        let mut found = Found { entries: Vec::with_capacity(limit.min(TAIL_LEN)), scanned: 0, before: None };
        let Ok(entries) = self.entries.read() else {
            // Poisoned: a writer panicked mid-update. Read everything from the store instead.
            found.before = Some(u64::MAX);
            return found;
        };
        for entry in entries.iter().rev().take(scan) {
            if found.entries.len() == limit {
                return found;
            }
            found.scanned += 1;
            if keep(entry) {
                found.entries.push(Arc::clone(entry));
            }
        }
        if found.entries.len() < limit && found.scanned < scan {
            found.before = entries.front().map(|e| e.seq).filter(|&seq| seq > 1);
        }
        found
    }
}

/// Write every entry, oldest first, as JSON lines (the stored form); returns how many.
pub fn export(store: &Store, out: &mut dyn Write) -> Result<u64, ExportError> {
    let mut count = 0;
    for entry in store.snapshot()?.audit_entries(..)? {
        out.write_all(entry?.bytes()).map_err(ExportError::Write)?;
        out.write_all(b"\n").map_err(ExportError::Write)?;
        count += 1;
    }
    out.flush().map_err(ExportError::Write)?;
    Ok(count)
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The output could not be written.
    #[error("cannot write the export: {0}")]
    Write(std::io::Error),
}
