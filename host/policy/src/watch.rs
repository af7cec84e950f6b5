//! Hot reload: watch the policy directory, wait for the writes to settle, validate the new set
//! and swap it in; a broken change is logged and the last good set stays active.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::{PolicyEngine, PolicyError};

/// Editors write a file in several steps; reload once they have been quiet this long.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// A running watch. Dropping it stops watching.
pub struct PolicyWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for PolicyWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyWatcher")
    }
}

impl PolicyWatcher {
    pub(super) fn start(engine: Arc<PolicyEngine>, dir: &Path) -> Result<PolicyWatcher, PolicyError> {
        let watch_err = |e: notify::Error| PolicyError::Watch { path: dir.to_owned(), message: e.to_string() };
        let (tx, rx) = channel();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send(());
            }
        })
        .map_err(watch_err)?;
        watcher.watch(dir, RecursiveMode::Recursive).map_err(watch_err)?;
        std::thread::Builder::new()
            .name("policy-watch".into())
            .spawn(move || reload_loop(&engine, &rx))
            .map_err(|e| PolicyError::Watch { path: dir.to_owned(), message: e.to_string() })?;
        Ok(PolicyWatcher { _watcher: watcher })
    }
}

/// Until the watcher is dropped (the channel closes): on each burst of changes, reload once.
fn reload_loop(engine: &PolicyEngine, rx: &Receiver<()>) {
    while rx.recv().is_ok() {
        loop {
            match rx.recv_timeout(DEBOUNCE) {
                Ok(()) => continue,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        let before = engine.revision();
        match engine.reload() {
            Ok(revision) if revision == before => tracing::debug!(%revision, "policy files touched, content unchanged"),
            Ok(revision) => tracing::info!(%revision, previous = %before, "policy set reloaded"),
            Err(error) => {
                tracing::error!(%error, active = %before, "policy change refused; the last good set stays active");
            }
        }
    }
}
