//! `audit`: the newest audit entries, scoped to the caller. The log holds every user's actions,
//! so an admin sees every entry and any other caller only those it caused (fail closed: an entry
//! without a known actor is an admin's to read).

use std::time::Instant;

use super::require;
use crate::governance::audit::recent;
use crate::model::{AuthMethod, Caller, Role};
use crate::plugins::bindings::Error;
use crate::plugins::bindings::toolgate::plugin::audit::{Entry, Host};
use crate::plugins::manifest::Capability;
use crate::plugins::state::HostState;
use crate::store::{Store, StoreError};

/// Largest `last-n`, as for `GET /api/v1/audit`.
pub const MAX_ENTRIES: u32 = 1000;

/// How many of the newest entries a non-admin's call looks through for its own. Without a bound,
/// a user with few entries in a long log would make every call read the whole log.
pub const SCAN_LIMIT: usize = 10_000;

/// Entries read per transaction while a non-admin's call looks for its own.
const PAGE: usize = 500;

impl Host for HostState {
    async fn recent(&mut self, last_n: u32) -> wasmtime::Result<Result<Vec<Entry>, Error>> {
        super::traced("audit", "recent", async {
            let call = self.call()?;
            if let Err(e) = require(&call, &Capability::AuditRead) {
                return Ok(Err(e));
            }
            if !(1..=MAX_ENTRIES).contains(&last_n) {
                return Ok(Err(Error::InvalidParams(format!(
                    "`last_n` must be between 1 and {MAX_ENTRIES}, not {last_n}"
                ))));
            }
            let Some(store) = self.services.store.clone() else {
                return Ok(Err(Error::Unavailable("this host keeps no audit log".into())));
            };
            let limit = usize::try_from(last_n).unwrap_or(usize::MAX);
            let started = Instant::now();
            let caller = call.context.caller.clone();
            let read = if caller.role == Role::Admin {
                // The newest pages, in memory: cheaper on this thread than a hop to the blocking
                // pool and back.
                visible(&store, &caller, limit)
            } else {
                // A scan of up to SCAN_LIMIT entries: off the async workers.
                store.call(move |store| visible(store, &caller, limit)).await
            };
            self.clock.host_time(started.elapsed());
            Ok(read
                .map_err(|e| Error::Failed(format!("cannot read the audit log: {e}")))
                .and_then(|entries| entries.into_iter().map(entry).collect()))
        })
        .await
    }
}

/// An entry as this interface shows it: the event's `detail` is skipped, not decoded, and the
/// timestamp stays the RFC 3339 text it is stored as.
#[derive(Debug, serde::Deserialize)]
pub struct Summary {
    /// Position in the log.
    pub seq: u64,
    /// The event's shown fields.
    pub event: SummaryEvent,
}

/// The fields of an audit event `get_audit_log` returns.
#[derive(Debug, serde::Deserialize)]
pub struct SummaryEvent {
    timestamp: String,
    /// `decision`, `exec`, ...
    pub kind: String,
    actor: Option<String>,
    role: Option<Role>,
    #[serde(default)]
    auth_method: Option<AuthMethod>,
    #[serde(default)]
    tool: Option<String>,
    action_id: Option<String>,
    command: Option<String>,
    allowed: bool,
    reason: String,
}

/// Up to `limit` entries `caller` may see, newest first.
pub fn visible(store: &Store, caller: &Caller, limit: usize) -> Result<Vec<Summary>, StoreError> {
    if caller.role == Role::Admin {
        return recent(store, limit, None);
    }
    let mut found = Vec::new();
    let mut before = None;
    let mut scanned = 0;
    while found.len() < limit && scanned < SCAN_LIMIT {
        let page: Vec<Summary> = recent(store, PAGE.min(SCAN_LIMIT - scanned), before)?;
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        scanned += page.len();
        found.extend(page.into_iter().filter(|e| caused_by(e, caller)).take(limit - found.len()));
    }
    Ok(found)
}

/// Whether `caller` caused the entry. The name alone is not enough: a user and an API key may
/// share one.
fn caused_by(entry: &Summary, caller: &Caller) -> bool {
    entry.event.actor.as_deref() == Some(caller.name.as_str()) && entry.event.auth_method == Some(caller.auth_method)
}

fn entry(summary: Summary) -> Result<Entry, Error> {
    let event = summary.event;
    Ok(Entry {
        seq: summary.seq,
        timestamp: event.timestamp,
        kind: event.kind,
        actor: event.actor,
        role: event.role.map(|r| r.as_str().to_owned()),
        tool: event.tool,
        action_id: event.action_id,
        command: event.command,
        allowed: event.allowed,
        reason: event.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::journal::Write;
    use crate::governance::{AuditEvent, Journal};
    use crate::model::AuthMethod;

    fn caller(name: &str, role: Role, auth_method: AuthMethod) -> Caller {
        Caller { name: name.into(), role, auth_method, source_ip: None }
    }

    #[tokio::test]
    async fn a_non_admin_sees_only_what_they_caused_within_the_scan_limit() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let journal = Journal::start(store.clone())?;
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

        let seen = visible(&store, &user, 1000)?;
        let seen: Vec<(u64, &str)> = seen.iter().map(|e| (e.seq, e.event.kind.as_str())).collect();
        assert_eq!(seen, [(newest, "exec")], "the key's entries and the anonymous one are not his");
        let admin = caller("root", Role::Admin, AuthMethod::Password);
        let all = visible(&store, &admin, 3)?;
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [newest, newest - 1, newest - 2]);
        Ok(())
    }
}
