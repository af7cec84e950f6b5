//! The audit log as a plugin reads it (the core's [`AuditReader`] port): the newest entries,
//! scoped to the caller. The log holds every user's actions, so an admin sees every entry and any
//! other caller only those it caused (fail closed: an entry without a known actor is an admin's
//! to read).

use toolgate_core::audit::Summary;
use toolgate_core::model::{Caller, Role};
use toolgate_core::{AuditReader, BoxFuture};
use toolgate_store::{Store, StoreError};

use super::recent;
use crate::Journal;

/// How many of the newest entries a non-admin's call looks through for its own. Without a bound,
/// a user with few entries in a long log would make every call read the whole log.
pub const SCAN_LIMIT: usize = 10_000;

/// Entries read per transaction while a non-admin's call looks for its own.
const PAGE: usize = 500;

impl AuditReader for Journal {
    fn visible<'a>(&'a self, caller: &'a Caller, limit: usize) -> BoxFuture<'a, Result<Vec<Summary>, String>> {
        Box::pin(async move { visible(self, caller, limit).await.map_err(|e| e.to_string()) })
    }
}

/// Up to `limit` entries `caller` may see, newest first: from the journal's tail, then, for a
/// non-admin with too few entries of their own there, from the store (off the async workers),
/// looking at no more than [`SCAN_LIMIT`] entries in all.
pub async fn visible(journal: &Journal, caller: &Caller, limit: usize) -> Result<Vec<Summary>, StoreError> {
    let found = journal.tail().newest(limit, SCAN_LIMIT, |e| visible_to(e, caller));
    let mut entries: Vec<Summary> = found.entries.iter().map(|e| Summary::clone(e)).collect();
    if let Some(before) = found.before {
        let (caller, wanted, budget) = (caller.clone(), limit - entries.len(), SCAN_LIMIT - found.scanned);
        let older = journal.store().call(move |store| scan(store, &caller, wanted, budget, before)).await?;
        entries.extend(older);
    }
    Ok(entries)
}

/// Whether `caller` may see the entry: an admin every entry, anyone else only what they caused.
fn visible_to(entry: &Summary, caller: &Caller) -> bool {
    caller.role == Role::Admin || caused_by(entry, caller)
}

/// Up to `wanted` entries `caller` may see, newest first, from the entries before `before`,
/// looking at no more than `budget` of them.
fn scan(store: &Store, caller: &Caller, wanted: usize, budget: usize, before: u64) -> Result<Vec<Summary>, StoreError> {
    let mut found = Vec::new();
    let mut before = Some(before);
    let mut scanned = 0;
    while found.len() < wanted && scanned < budget {
        let page: Vec<Summary> = recent(store, PAGE.min(budget - scanned), before)?;
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        scanned += page.len();
        found.extend(page.into_iter().filter(|e| visible_to(e, caller)).take(wanted - found.len()));
    }
    Ok(found)
}

/// Whether `caller` caused the entry. The name alone is not enough: a user and an API key may
/// share one.
fn caused_by(entry: &Summary, caller: &Caller) -> bool {
    entry.event.actor.as_deref() == Some(caller.name.as_str()) && entry.event.auth_method == Some(caller.auth_method)
}

#[cfg(test)]
mod tests {
    use toolgate_core::AuditEvent;
    use toolgate_core::model::AuthMethod;

    use super::*;
    use crate::audit::ChainKey;
    use crate::journal::Write;

    fn caller(name: &str, role: Role, auth_method: AuthMethod) -> Caller {
        Caller { name: name.into(), role, auth_method, source_ip: None }
    }

    #[tokio::test]
    async fn a_non_admin_sees_only_what_they_caused_within_the_scan_limit() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let key = ChainKey::random();
        let journal = Journal::start(store.clone(), key.clone())?;
        let user = caller("bob", Role::Viewer, AuthMethod::Password);
        let key_named_like_him = caller("bob", Role::Operator, AuthMethod::ApiKey);
        let mut events = vec![AuditEvent::new("decision", true, "allowed").by(&user)];
        events.push(AuditEvent::new("decision", true, "allowed").by(&key_named_like_him));
        events.push(AuditEvent::new("recovery", true, "nothing to recover"));
        // Bob's first entry ends up just past the scan window.
        events
            .extend((0..SCAN_LIMIT - 2).map(|_| AuditEvent::new("decision", true, "allowed").by(&key_named_like_him)));
        events.push(AuditEvent::new("exec", false, "exec_denied").by(&user));
        journal.submit(events.into_iter().map(|e| Write::Audit(Box::new(e))).collect()).await?;
        let newest = u64::try_from(SCAN_LIMIT)? + 2;
        let admin = caller("root", Role::Admin, AuthMethod::Password);

        // The same answers from the tail kept while writing and from one loaded at start-up.
        for journal in [journal, Journal::start(store.clone(), key)?] {
            let seen = visible(&journal, &user, 1000).await?;
            let seen: Vec<(u64, &str)> = seen.iter().map(|e| (e.seq, e.event.kind.as_str())).collect();
            assert_eq!(seen, [(newest, "exec")], "the key's entries and the anonymous one are not his");
            let all = visible(&journal, &admin, 3).await?;
            assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [newest, newest - 1, newest - 2]);
            // The key's newest 1000: 999 from the tail (which holds the user's entry too), one
            // more from the store.
            let keys = visible(&journal, &key_named_like_him, 1000).await?;
            assert_eq!(keys.len(), 1000);
            assert_eq!((keys[0].seq, keys[999].seq), (newest - 1, newest - 1000));
            assert!(keys.iter().all(|e| e.event.actor.as_deref() == Some("bob") && e.event.kind == "decision"));
        }
        Ok(())
    }
}
