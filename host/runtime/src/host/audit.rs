//! `audit`: the newest audit entries, scoped to the caller by the host's [`AuditReader`]
//! (`HostServices::audit_log`): an admin sees every entry, anyone else only those they caused.

use toolgate_core::audit::Summary;

use super::require;
use crate::bindings::Error;
use crate::bindings::toolgate::plugin::audit::{Entry, Host};
use crate::manifest::Capability;
use crate::state::HostState;

/// Largest `last-n`, as for `GET /api/v1/audit`.
pub const MAX_ENTRIES: u32 = 1000;

impl Host for HostState {
    async fn recent(&mut self, last_n: u32) -> wasmtime::Result<Result<Vec<Entry>, Error>> {
        super::traced("audit", "recent", async move {
            let call = self.call()?;
            if let Err(e) = require(&call, &Capability::AuditRead) {
                return Ok(Err(e));
            }
            if !(1..=MAX_ENTRIES).contains(&last_n) {
                return Ok(Err(Error::InvalidParams(format!(
                    "`last_n` must be between 1 and {MAX_ENTRIES}, not {last_n}"
                ))));
            }
            let Some(log) = self.services.audit_log.clone() else {
                return Ok(Err(Error::Unavailable("this host keeps no audit log".into())));
            };
            let limit = usize::try_from(last_n).unwrap_or(usize::MAX);
            let read = log.visible(&call.context.caller, limit).await;
            Ok(read
                .map(|found| found.iter().map(entry).collect())
                .map_err(|e| Error::Failed(format!("cannot read the audit log: {e}"))))
        })
        .await
    }
}

fn entry(summary: &Summary) -> Entry {
    let event = &summary.event;
    Entry {
        seq: summary.seq,
        timestamp: event.timestamp.clone(),
        kind: event.kind.clone(),
        actor: event.actor.clone(),
        role: event.role.map(|r| r.as_str().to_owned()),
        tool: event.tool.clone(),
        action_id: event.action_id.clone(),
        command: event.command.clone(),
        allowed: event.allowed,
        reason: event.reason.clone(),
    }
}
