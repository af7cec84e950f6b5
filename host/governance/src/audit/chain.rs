//! Checking the chain with its key: [`verify`] the whole log, [`check_head`] before a journal
//! continues it, and [`adopt`] a log chained without the key (from before keyed chains) or with
//! another one.
//!
//! An adoption is an entry of kind [`ADOPTED`], signed with the key, whose detail records the
//! head it continues and the SHA-256 of every entry before it as stored (the bytes `toolgate
//! audit export` writes, each line with its newline): the entries before the newest adoption are
//! pinned by it, the entries from it on must each be signed with the key.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Anchor, Break, ChainKey, GENESIS, RawEntry, Verification, chain_hash, encode_entry};
use toolgate_core::AuditEvent;
use toolgate_core::model::AuthMethod;
use toolgate_store::{AuditEntries, Store, StoreError};

/// The kind of an adoption entry.
pub const ADOPTED: &str = "audit_chain_adopted";

/// How the entries before an adoption were chained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Previous {
    /// Plain SHA-256 links from the first entry: each is checked.
    Unkeyed,
    /// With another key (from some entry on): only their order, links and digest are checked.
    OtherKey,
}

/// The detail of an adoption entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adoption {
    /// The head it continues: the entry just before it.
    pub adopted_seq: u64,
    /// That entry's hash.
    pub adopted_hash: String,
    /// How the entries before it were chained.
    pub previous: Previous,
    /// Hex SHA-256 over every entry before it as stored, each followed by `\n`.
    pub prefix_sha256: String,
}

/// What [`adopt`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Adopted {
    /// The head it continued.
    pub previous_head: String,
    /// How the entries before were chained.
    pub previous: Previous,
    /// The first entry chained with another key, whose content could not be checked.
    pub unchecked_from: Option<u64>,
    /// The adoption entry, the new head (`SEQ:HASH`).
    pub head: String,
}

/// Why a chain cannot be continued or adopted.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The newest entry is not signed with the key: never continued silently.
    #[error(
        "the audit log's newest entry ({seq}) is {}: it is not continued silently; check it with `toolgate audit verify`, then continue it under the configured key with `toolgate audit adopt`",
        if *unkeyed { "chained without a key (a log from before keyed chains, or one rewritten without the key)" } else { "not signed with the configured key (another key, or a modified entry)" }
    )]
    ForeignHead {
        /// The newest entry.
        seq: u64,
        /// Whether it is a plain SHA-256 link.
        unkeyed: bool,
    },
    /// Nothing to adopt.
    #[error("the audit log is empty: there is nothing to adopt")]
    Empty,
    /// The log already continues under this key.
    #[error("the audit log's newest entry ({0}) is already signed with this key: there is nothing to adopt")]
    AlreadyKeyed(u64),
    /// The log to adopt does not hold together.
    #[error("the audit log is broken at entry {seq}: {reason}; it was not adopted")]
    Broken {
        /// The first bad entry.
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why an entry's keyed link does not hold.
fn unsigned_reason(unkeyed: bool) -> String {
    if unkeyed {
        "it is chained without the audit key: the log was rewritten from here by someone without the key, or it predates keyed chains (`toolgate audit adopt` continues such a log)".into()
    } else {
        "its content does not match its signed link: the entry was modified, or chained with another key".into()
    }
}

/// The newest adoption entry: its seq and its detail (`None` when unreadable).
fn newest_adoption(entries: AuditEntries<'_>) -> Result<Option<(u64, Option<Adoption>)>, StoreError> {
    #[derive(Deserialize)]
    struct Kind<'a> {
        #[serde(borrow)]
        event: KindEvent<'a>,
    }
    #[derive(Deserialize)]
    struct KindEvent<'a> {
        #[serde(borrow)]
        kind: std::borrow::Cow<'a, str>,
        #[serde(default)]
        detail: serde_json::Value,
    }
    let mut newest = None;
    for stored in entries {
        let stored = stored?;
        if let Ok(entry) = serde_json::from_slice::<Kind<'_>>(stored.bytes())
            && entry.event.kind == ADOPTED
        {
            newest = Some((stored.seq(), serde_json::from_value(entry.event.detail).ok()));
        }
    }
    Ok(newest)
}

/// Check the whole chain with `key`, oldest first, and that it holds `anchor` when given; stops
/// at the first break. Entries before the newest adoption are checked against it.
pub fn verify(store: &Store, key: &ChainKey, anchor: Option<&Anchor>) -> Result<Verification, StoreError> {
    // One snapshot for both passes: entries appended meanwhile are in neither.
    let snapshot = store.snapshot()?;
    let adoption = newest_adoption(snapshot.audit_entries(..)?)?;
    let adopted = adoption.as_ref().map(|(seq, _)| *seq);
    let pinned_until = adopted.unwrap_or(0);
    let unkeyed_prefix = matches!(&adoption, Some((_, Some(a))) if a.previous == Previous::Unkeyed);
    let mut prefix = Sha256::new();
    let mut prev = GENESIS.to_owned();
    let mut entries = 0;
    for stored in snapshot.audit_entries(..)? {
        let stored = stored?;
        let (seq, bytes) = (stored.seq(), stored.bytes());
        let expected = entries + 1;
        let broken =
            |reason: String| Ok(Verification { entries, head: None, broken: Some(Break { seq, reason }), adopted });
        if seq != expected {
            return broken(format!("expected entry {expected} here: entries are missing or reordered"));
        }
        let entry: RawEntry<'_> = match serde_json::from_slice(bytes) {
            Ok(entry) => entry,
            Err(e) => return broken(format!("the entry is not readable: {e}")),
        };
        if entry.seq != seq {
            return broken(format!("the entry says it is entry {}", entry.seq));
        }
        if let Err(e) = serde_json::from_str::<AuditEvent>(entry.event.get()) {
            return broken(format!("the event is not readable: {e}"));
        }
        if entry.prev_hash != prev {
            return broken("its link to the previous entry does not match that entry's hash".into());
        }
        let event = entry.event.get().as_bytes();
        if seq < pinned_until {
            prefix.update(bytes);
            prefix.update(b"\n");
            if unkeyed_prefix && chain_hash(&prev, seq, event) != entry.hash {
                return broken("its content does not match its hash: the entry was modified".into());
            }
        } else {
            if key.link(&prev, seq, event) != entry.hash {
                return broken(unsigned_reason(chain_hash(&prev, seq, event) == entry.hash));
            }
            if seq == pinned_until {
                match adoption.as_ref().and_then(|(_, a)| a.as_ref()) {
                    None => return broken("the adoption's detail is not readable".into()),
                    Some(a) if a.adopted_seq + 1 != seq || a.adopted_hash != prev => {
                        return broken("it adopted another head: the entries before it were rewritten".into());
                    }
                    Some(a) if a.prefix_sha256 != hex::encode(prefix.clone().finalize()) => {
                        return broken(
                            "the entries before it differ from those it adopted: one of them was modified".into(),
                        );
                    }
                    Some(_) => {}
                }
            }
        }
        if anchor.is_some_and(|a| a.seq == seq && a.hash != entry.hash) {
            return broken(
                "its hash differs from the anchor: the log was rewritten and chained anew (this entry or one before it)"
                    .into(),
            );
        }
        prev = entry.hash;
        entries = seq;
    }
    if let Some(anchor) = anchor.filter(|a| a.seq > entries) {
        let reason = format!("the anchor's entry is missing: the log ends at entry {entries}, entries were removed");
        return Ok(Verification { entries, head: None, broken: Some(Break { seq: anchor.seq, reason }), adopted });
    }
    Ok(Verification { entries, head: (entries > 0).then_some(prev), broken: None, adopted })
}

/// The newest entry, if any.
pub fn newest(store: &Store) -> Result<Option<Anchor>, StoreError> {
    let Some(last) = store.snapshot()?.audit_last()? else { return Ok(None) };
    let entry = RawEntry::parse(last.bytes())?;
    Ok(Some(Anchor { seq: entry.seq, hash: entry.hash }))
}

/// Refuse to continue a log whose newest entry is not signed with `key`; returns that entry.
pub fn check_head(store: &Store, key: &ChainKey) -> Result<Option<Anchor>, ChainError> {
    let Some(last) = store.snapshot()?.audit_last()? else { return Ok(None) };
    let entry = RawEntry::parse(last.bytes())?;
    let event = entry.event.get().as_bytes();
    if key.link(&entry.prev_hash, entry.seq, event) == entry.hash {
        return Ok(Some(Anchor { seq: entry.seq, hash: entry.hash }));
    }
    let unkeyed = chain_hash(&entry.prev_hash, entry.seq, event) == entry.hash;
    Err(ChainError::ForeignHead { seq: entry.seq, unkeyed })
}

/// Continue a log chained without `key` (or with another key) under `key`: check what can be
/// checked (order and links; every hash while the log is unkeyed; `anchor` when given), then
/// append an adoption entry signed with `key`. Refuses an empty log, one already signed with
/// `key`, and one that does not hold together. Runs where no journal holds the store (the CLI,
/// server stopped), so it is the only writer.
pub fn adopt(store: &Store, key: &ChainKey, anchor: Option<&Anchor>) -> Result<Adopted, ChainError> {
    store.write(|tx| {
        let mut prefix = Sha256::new();
        let mut prev = GENESIS.to_owned();
        let mut count = 0;
        let mut unchecked_from = None;
        let mut keyed_head = false;
        let mut last_keyed = None;
        for stored in tx.audit_entries()? {
            let stored = stored?;
            let (seq, bytes) = (stored.seq(), stored.bytes());
            let broken = |reason: String| -> Result<Result<Adopted, ChainError>, StoreError> {
                Ok(Err(ChainError::Broken { seq, reason }))
            };
            if seq != count + 1 {
                return broken(format!("expected entry {} here: entries are missing or reordered", count + 1));
            }
            let entry = match serde_json::from_slice::<RawEntry<'_>>(bytes) {
                Ok(entry) if entry.seq == seq => entry,
                Ok(entry) => return broken(format!("the entry says it is entry {}", entry.seq)),
                Err(e) => return broken(format!("the entry is not readable: {e}")),
            };
            let event: AuditEvent = match serde_json::from_str(entry.event.get()) {
                Ok(event) => event,
                Err(e) => return broken(format!("the event is not readable: {e}")),
            };
            if entry.prev_hash != prev {
                return broken("its link to the previous entry does not match that entry's hash".into());
            }
            let raw = entry.event.get().as_bytes();
            if unchecked_from.is_none() && chain_hash(&prev, seq, raw) != entry.hash {
                // An unkeyed log ends where a key (another one) took over: at its first entry or
                // at an adoption; anything else is an unkeyed entry modified in place.
                if seq != 1 && event.kind != ADOPTED {
                    return broken(
                        "its content does not match its hash: the log was modified, adopting it would sign the change"
                            .into(),
                    );
                }
                unchecked_from = Some(seq);
            }
            if anchor.is_some_and(|a| a.seq == seq && a.hash != entry.hash) {
                return broken("its hash differs from the anchor: the log was rewritten".into());
            }
            keyed_head = key.link(&prev, seq, raw) == entry.hash;
            if keyed_head {
                last_keyed = Some(seq);
            }
            prefix.update(bytes);
            prefix.update(b"\n");
            prev = entry.hash;
            count = seq;
        }
        if count == 0 {
            return Ok(Err(ChainError::Empty));
        }
        if keyed_head {
            return Ok(Err(ChainError::AlreadyKeyed(count)));
        }
        // This log was kept under this very key, and what follows is not signed with it: not
        // an older log nor another key's, but a rewrite by someone without the key.
        if let Some(keyed) = last_keyed {
            let reason = format!(
                "entry {keyed} is signed with the configured key and this one is not: the log was rewritten after it, adopting it would sign the rewrite"
            );
            return Ok(Err(ChainError::Broken { seq: keyed + 1, reason }));
        }
        if let Some(anchor) = anchor.filter(|a| a.seq > count) {
            let reason = format!("the anchor's entry is missing: the log ends at entry {count}");
            return Ok(Err(ChainError::Broken { seq: anchor.seq, reason }));
        }
        let previous = if unchecked_from.is_some() { Previous::OtherKey } else { Previous::Unkeyed };
        let adoption = Adoption {
            adopted_seq: count,
            adopted_hash: prev.clone(),
            previous,
            prefix_sha256: hex::encode(prefix.finalize()),
        };
        let mut event = AuditEvent::new(ADOPTED, true, "adopted");
        event.auth_method = Some(AuthMethod::Local);
        event.command = Some("toolgate audit adopt".into());
        event.detail =
            serde_json::to_value(&adoption).map_err(|source| StoreError::Corrupt { table: "audit_v1", source })?;
        let seq = count + 1;
        let (bytes, hash) = encode_entry(key, seq, &prev, &event)?;
        tx.append_audit(seq, &bytes)?;
        Ok(Ok(Adopted {
            previous_head: Anchor { seq: count, hash: prev }.to_string(),
            previous,
            unchecked_from,
            head: Anchor { seq, hash }.to_string(),
        }))
    })?
}

#[cfg(test)]
mod tests {
    use crate::Journal;
    use crate::audit::{self, ChainError, ChainKey};
    use crate::journal::Write;
    use toolgate_core::AuditEvent;

    use toolgate_store::Store;

    fn entry(kind: &str) -> Write {
        Write::Audit(Box::new(AuditEvent::new(kind, true, "ok")))
    }

    #[tokio::test]
    async fn a_journal_continues_only_its_own_key_and_adoption_hands_the_log_over() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let (old, new) = (ChainKey::random(), ChainKey::random());
        assert!(matches!(audit::adopt(&store, &new, None), Err(ChainError::Empty)));
        let journal = Journal::start(store.clone(), old.clone())?;
        journal.submit(vec![entry("a"), entry("b")]).await?;
        drop(journal);

        let refused = Journal::start(store.clone(), new.clone()).err();
        assert!(matches!(refused, Some(ChainError::ForeignHead { seq: 2, unkeyed: false })), "{refused:?}");
        let adopted = audit::adopt(&store, &new, None)?;
        assert_eq!((adopted.previous, adopted.unchecked_from), (audit::chain::Previous::OtherKey, Some(1)));
        assert!(matches!(audit::adopt(&store, &new, None), Err(ChainError::AlreadyKeyed(3))));
        let journal = Journal::start(store.clone(), new.clone())?;
        journal.submit(vec![entry("c")]).await?;
        let report = audit::verify(&store, &new, None)?;
        assert_eq!((report.entries, report.adopted, report.broken), (4, Some(3), None));
        // The old key no longer verifies the log past its own entries.
        assert_eq!(audit::verify(&store, &old, None)?.broken.map(|b| b.seq), Some(3));
        Ok(())
    }

    #[tokio::test]
    async fn a_tail_rewritten_without_the_key_is_never_adopted_under_that_key() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let key = ChainKey::random();
        let journal = Journal::start(store.clone(), key.clone())?;
        journal.submit(vec![entry("a"), entry("b")]).await?;
        drop(journal);
        // Entry 3 written by someone without the key, chained as an unkeyed log would be.
        let prev = audit::recent::<audit::StoredEntry>(&store, 1, None)?.remove(0).hash;
        let event = AuditEvent::new("forged", true, "ok");
        let json = serde_json::to_vec(&event)?;
        let hash = audit::chain_hash(&prev, 3, &json);
        let forged = serde_json::to_vec(&audit::StoredEntry { seq: 3, prev_hash: prev, hash, event })?;
        store.write(|tx| tx.append_audit(3, &forged))?;
        assert!(matches!(
            Journal::start(store.clone(), key.clone()).err(),
            Some(ChainError::ForeignHead { seq: 3, .. })
        ));
        let refused = audit::adopt(&store, &key, None);
        assert!(matches!(&refused, Err(ChainError::Broken { seq: 3, .. })), "{refused:?}");
        assert_eq!(audit::verify(&store, &key, None)?.broken.map(|b| b.seq), Some(3), "nothing was appended");
        Ok(())
    }

    #[tokio::test]
    async fn an_anchor_catches_a_log_chained_anew_or_cut_short() -> anyhow::Result<()> {
        // Even by someone holding the key.
        let key = audit::ChainKey::random();
        let log = |kinds: &'static [&'static str]| {
            let key = key.clone();
            async move {
                let dir = tempfile::tempdir()?;
                let journal = Journal::start(Store::open(dir.path())?, key)?;
                for kind in kinds {
                    journal.submit(vec![entry(kind)]).await?;
                }
                anyhow::Ok((dir, journal))
            }
        };
        let (_dir, original) = log(&["a", "b", "c"]).await?;
        let report = audit::verify(original.store(), &key, None)?;
        let anchor = audit::Anchor { seq: 3, hash: report.head.unwrap_or_default() };
        assert_eq!(audit::verify(original.store(), &key, Some(&anchor))?.broken, None);
        // The same length, every link valid, but not the log the anchor was taken from.
        let (_other, forged) = log(&["a", "x", "c"]).await?;
        assert_eq!(audit::verify(forged.store(), &key, None)?.broken, None);
        let broken = audit::verify(forged.store(), &key, Some(&anchor))?.broken.map(|b| (b.seq, b.reason));
        assert!(
            broken.as_ref().is_some_and(|(seq, r)| *seq == 3 && r.contains("differs from the anchor")),
            "{broken:?}"
        );
        // Shorter than the anchor.
        let (_short, short) = log(&["a", "b"]).await?;
        let broken = audit::verify(short.store(), &key, Some(&anchor))?.broken.map(|b| (b.seq, b.reason));
        assert!(broken.as_ref().is_some_and(|(seq, r)| *seq == 3 && r.contains("log ends at entry 2")), "{broken:?}");

        let parsed: audit::Anchor = format!("3:{}", anchor.hash.to_uppercase()).parse().map_err(anyhow::Error::msg)?;
        assert_eq!(parsed, anchor);
        for bad in ["3", "0:ab", "x:ab", &format!("3:{}", &anchor.hash[1..]), &format!("-1:{}", anchor.hash)] {
            assert!(bad.parse::<audit::Anchor>().is_err(), "{bad}");
        }
        Ok(())
    }
}
