//! `log`: plugin records into the host's log, tagged with plugin, tool and action.

use super::traced_now;
use crate::bindings::toolgate::plugin::log::{Host, Level};
use crate::state::HostState;

/// A plugin cannot flood the log: longer messages and values are cut, extra fields dropped.
const MAX_TEXT: usize = 2048;
const MAX_FIELDS: usize = 32;

impl Host for HostState {
    async fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) -> wasmtime::Result<()> {
        // The record becomes an event of the `host.call` span: the same rule (no secrets in logs)
        // covers what plugins write, as far as the host can tell (the values the tool's schema
        // marks secret are scrubbed).
        traced_now("log", "log", || self.emit(level, &message, &fields))
    }
}

impl HostState {
    fn emit(&self, level: Level, message: &str, fields: &[(String, String)]) -> wasmtime::Result<()> {
        let call = self.call()?;
        // Scrubbed before cut, so that no part of a secret survives at the cut.
        let scrub = |text| call.secrets.scrub(text);
        let fields: Vec<String> =
            fields.iter().take(MAX_FIELDS).map(|(k, v)| format!("{}={}", cut(&scrub(k)), cut(&scrub(v)))).collect();
        let (plugin, tool, action) = (&call.plugin, &call.tool.name, &call.context.action_id);
        let message = scrub(message);
        let (message, fields) = (cut(&message), fields.join(" "));
        match level {
            Level::Trace => tracing::trace!(plugin, tool, action, fields, "{message}"),
            Level::Debug => tracing::debug!(plugin, tool, action, fields, "{message}"),
            Level::Info => tracing::info!(plugin, tool, action, fields, "{message}"),
            Level::Warn => tracing::warn!(plugin, tool, action, fields, "{message}"),
            Level::Error => tracing::error!(plugin, tool, action, fields, "{message}"),
        }
        Ok(())
    }
}

fn cut(s: &str) -> &str {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
