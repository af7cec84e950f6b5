//! The journal: the single writer of the governance tables (`audit_v1`, `actions_v1`,
//! `rollback_log_v1`).
//!
//! Callers submit a group of writes; a dedicated thread drains every submission waiting (and,
//! under load, those arriving until 1 ms after the previous commit began), applies them in order
//! in **one** redb write transaction and commits it durably, adds its audit entries to the
//! in-memory [`audit::Tail`], then answers each submitter (group commit: one `fsync` for many
//! concurrent calls, so durability does not cap throughput). A submission is all or nothing: its
//! action and undo writes are compare-and-set on the stored state, and if one does not hold, none
//! of its writes happen and its submitter gets [`JournalError::Conflict`]. Audit entries are
//! numbered and chained here, with the chain's key (the one exception: `toolgate audit adopt`,
//! [`audit::adopt`], which runs while no journal holds the store). A journal never continues a
//! log whose newest entry is not signed with its key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::action::{ActionRecord, ActionState, UndoRecord, UndoState};
use toolgate_core::{AuditEvent, AuditSink};

use super::audit;
use apply::apply;
use toolgate_store::{Store, StoreError};
use toolgate_telemetry::{metrics, span};

mod apply;

/// Most submissions applied in one transaction.
const MAX_BATCH: usize = 1024;

/// Submissions that may wait for the writer. Beyond it submitters wait (backpressure): a plugin
/// looping on host calls, each of which records an audit entry, cannot grow the queue without
/// bound; it is slowed to the pace of the disk, and ended by its deadline.
const QUEUE: usize = 4 * MAX_BATCH;

/// Shortest time between the starts of two commits. Under load, submissions that arrive meanwhile
/// join the next batch instead of each paying a commit (page writes, `fdatasync`, free-page
/// upkeep) of its own: without it a loaded journal commits back to back in batches of two. A
/// lone submission, arriving after a quiet spell, is committed at once.
const COMMIT_INTERVAL: Duration = Duration::from_millis(1);

/// A commit that takes this long is logged (a warning): every caller in its batch waited for it.
const SLOW_COMMIT: Duration = Duration::from_millis(50);

/// One write of a submission.
#[derive(Debug, Clone)]
pub enum Write {
    /// Append an entry to the audit log.
    Audit(Box<AuditEvent>),
    /// Create (`expect: None`) or advance an action record whose stored state is `expect`. Its
    /// history must extend the stored one by legal steps. When the submission also appends audit
    /// entries, the record's `audit_seq` is set to the last of them.
    Action {
        /// The state the stored record must be in; `None`: it must not exist.
        expect: Option<ActionState>,
        /// The new record.
        record: Box<ActionRecord>,
    },
    /// Create (`expect: None`) or advance an undo record.
    Undo {
        /// The state the stored record must be in; `None`: it must not exist.
        expect: Option<UndoState>,
        /// The new record.
        record: Box<UndoRecord>,
    },
}

/// What a committed submission got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Sequence numbers of its audit entries, in order.
    pub audit_seqs: Vec<u64>,
}

impl Committed {
    /// The last audit entry written, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.audit_seqs.last().copied()
    }
}

/// Why a submission was not committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// A compare-and-set did not hold: someone else moved the record first.
    #[error("`{id}` is {found}, not {expected}")]
    Conflict {
        /// The action (or undo record's action) id.
        id: String,
        /// The state the submission expected.
        expected: String,
        /// The state found (`absent` when there is no record).
        found: String,
    },
    /// The new record's history is not the stored one plus legal steps (a bug in the caller).
    #[error("action `{id}`: illegal history: {message}")]
    IllegalStep {
        /// The action id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// The transaction failed; nothing of the batch was written.
    #[error("the governance journal could not commit: {0}")]
    Failed(String),
    /// The writer thread is gone.
    #[error("the governance journal has stopped")]
    Stopped,
}

struct Submission {
    writes: Vec<Write>,
    reply: Option<oneshot::Sender<Result<Committed, JournalError>>>,
}

/// Handle to the writer thread. Cheap to share; the thread ends when the last handle is dropped,
/// after writing everything submitted.
pub struct Journal {
    sender: Mutex<mpsc::SyncSender<Submission>>,
    store: Store,
    tail: Arc<audit::Tail>,
    last_error: Arc<Mutex<Option<String>>>,
    /// Set when a write nobody waited for was lost: every later submission is refused.
    poisoned: Arc<AtomicBool>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("store", &self.store).finish_non_exhaustive()
    }
}

impl Journal {
    /// Start the writer thread over `store`, chaining entries with `key`. Refuses a log whose
    /// newest entry is not signed with `key` ([`audit::ChainError::ForeignHead`]).
    pub fn start(store: Store, key: audit::ChainKey) -> Result<Journal, audit::ChainError> {
        Journal::start_bounded(store, key, QUEUE)
    }

    /// [`Journal::start`] with room for `queue` waiting submissions.
    fn start_bounded(store: Store, key: audit::ChainKey, queue: usize) -> Result<Journal, audit::ChainError> {
        audit::check_head(&store, &key)?;
        let (sender, receiver) = mpsc::sync_channel::<Submission>(queue);
        let last_error = Arc::new(Mutex::new(None));
        let poisoned = Arc::new(AtomicBool::new(false));
        let tail = Arc::new(audit::Tail::load(&store)?);
        let writer = Writer {
            store: store.clone(),
            tail: tail.clone(),
            last_error: last_error.clone(),
            poisoned: poisoned.clone(),
            key,
            head: None,
        };
        std::thread::Builder::new()
            .name("toolgate-journal".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| StoreError::Task(format!("cannot start the journal thread: {e}")))?;
        Ok(Journal { sender: Mutex::new(sender), store, tail, last_error, poisoned })
    }

    /// The store it writes to (for reads).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The newest audit entries, committed.
    pub fn tail(&self) -> &audit::Tail {
        &self.tail
    }

    /// Submit `writes` and wait until they are durably committed (or refused).
    pub async fn submit(&self, writes: Vec<Write>) -> Result<Committed, JournalError> {
        use tracing::Instrument as _;
        let (reply, answer) = oneshot::channel();
        let span = writes.iter().find_map(|w| match w {
            Write::Audit(event) => {
                Some(span::audit(&event.kind, event.allowed, event.action_id.as_deref().unwrap_or_default()))
            }
            _ => None,
        });
        // A full queue is waited out asleep, not blocking this async worker.
        let mut submission = Submission { writes, reply: Some(reply) };
        while let Some(full) = self.try_send(submission)? {
            submission = full;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let answer = async { answer.await.map_err(|_| JournalError::Stopped)? };
        // The span covers the wait for the durable commit (group commit included).
        match span {
            Some(span) => answer.instrument(span).await,
            None => answer.await,
        }
    }

    /// Submit `writes` without waiting. Anything submitted later and waited for is committed
    /// after these (the journal keeps submission order).
    pub fn submit_detached(&self, writes: Vec<Write>) {
        if let Err(e) = self.send(Submission { writes, reply: None }) {
            tracing::error!(error = %e, "an audit write was lost");
        }
    }

    /// Wait until everything submitted so far is committed.
    pub async fn flush(&self) -> Result<(), JournalError> {
        self.submit(Vec::new()).await.map(|_| ())
    }

    /// Readiness: the writer thread is alive and its last transaction committed.
    pub fn health(&self) -> Result<(), String> {
        if self.poisoned.load(Ordering::SeqCst) && self.last_error.lock().map(|e| e.is_none()).unwrap_or(true) {
            return Err("the journal's writer thread has stopped".into());
        }
        match self.last_error.lock().map(|e| e.clone()) {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(e),
            Err(_) => Err("journal state poisoned".into()),
        }
    }

    fn send(&self, submission: Submission) -> Result<(), JournalError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(JournalError::Failed("an earlier audit write was lost; restart the server".into()));
        }
        let sender = self.sender.lock().map_err(|_| JournalError::Stopped)?;
        // Blocks while the queue is full: the writer thread drains it whatever this thread does.
        sender.send(submission).map_err(|_| JournalError::Stopped)
    }

    /// Queue `submission` if there is room; hands it back when the queue is full.
    fn try_send(&self, submission: Submission) -> Result<Option<Submission>, JournalError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(JournalError::Failed("an earlier audit write was lost; restart the server".into()));
        }
        let sender = self.sender.lock().map_err(|_| JournalError::Stopped)?;
        match sender.try_send(submission) {
            Ok(()) => Ok(None),
            Err(mpsc::TrySendError::Full(submission)) => Ok(Some(submission)),
            Err(mpsc::TrySendError::Disconnected(_)) => Err(JournalError::Stopped),
        }
    }
}

impl AuditSink for Journal {
    fn record(&self, mut event: AuditEvent) {
        if event.trace_id.is_none() {
            event.trace_id = toolgate_telemetry::current_trace_id();
        }
        let span = span::audit(&event.kind, event.allowed, event.action_id.as_deref().unwrap_or_default());
        span.in_scope(|| self.submit_detached(vec![Write::Audit(Box::new(event))]));
    }
}

struct Writer {
    store: Store,
    tail: Arc<audit::Tail>,
    last_error: Arc<Mutex<Option<String>>>,
    poisoned: Arc<AtomicBool>,
    /// The chain's key.
    key: audit::ChainKey,
    /// The last committed audit entry's sequence number and hash, once read: this thread is the
    /// only writer, so it need not read it back for every batch. Forgotten when a commit fails.
    head: Option<(u64, String)>,
}

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<Submission>) {
        /// Marks the journal stopped if this thread ends for any reason (a panic included), so
        /// that writes are refused and readiness says so.
        struct Stopped(Arc<AtomicBool>);
        impl Drop for Stopped {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _stopped = Stopped(self.poisoned.clone());
        let mut next_start = Instant::now();
        while let Ok(first) = receiver.recv() {
            // Sleep out the pacing window instead of receiving through it: submitters then send
            // to a thread that is not blocked on the channel, which costs them no wake-up, and
            // this thread wakes once per batch rather than once per submission.
            std::thread::sleep(next_start.saturating_duration_since(Instant::now()));
            let mut batch = vec![first];
            batch.extend(receiver.try_iter().take(MAX_BATCH - 1));
            let started = Instant::now();
            next_start = started + COMMIT_INTERVAL;
            let committed = self.commit(&batch);
            let took = started.elapsed();
            if took >= SLOW_COMMIT {
                // Every submitter of the batch waited this long: the storage is the bottleneck.
                tracing::warn!(took_ms = took.as_millis(), submissions = batch.len(), "slow journal commit");
            }
            let outcomes = match committed {
                Ok(outcomes) => outcomes,
                // One bad submission must not fail the others: retry each in its own transaction.
                Err(error) if batch.len() > 1 => {
                    tracing::error!(%error, submissions = batch.len(), "journal batch failed; retrying one by one");
                    batch
                        .iter()
                        .map(|s| match self.commit(std::slice::from_ref(s)) {
                            Ok(mut one) => one.pop().unwrap_or(Err(JournalError::Stopped)),
                            Err(error) => Err(JournalError::Failed(error)),
                        })
                        .collect()
                }
                Err(error) => vec![Err(JournalError::Failed(error))],
            };
            // Every committed entry is in the tail before anyone hears of its commit.
            for (submission, outcome) in batch.iter().zip(&outcomes) {
                if let Ok(committed) = outcome {
                    let events = submission.writes.iter().filter_map(|w| match w {
                        Write::Audit(event) => Some(event),
                        _ => None,
                    });
                    for (seq, event) in committed.audit_seqs.iter().zip(events) {
                        self.tail.push(*seq, event);
                    }
                    count_active(&submission.writes);
                }
            }
            for (submission, outcome) in batch.into_iter().zip(outcomes) {
                match (submission.reply, outcome) {
                    // The submitter may have gone away (client disconnected): nothing to do.
                    (Some(reply), outcome) => {
                        let _ = reply.send(outcome);
                    }
                    (None, Ok(_)) => {}
                    (None, Err(error)) => {
                        // Nobody waits for this write (an exec entry, say), so nobody can refuse
                        // on it: from now on every submission is refused (fail closed), and
                        // readiness says why, until the server restarts.
                        tracing::error!(%error, "a detached governance write was lost; refusing all further writes");
                        self.poisoned.store(true, Ordering::SeqCst);
                        if let Ok(mut last) = self.last_error.lock() {
                            *last = Some(format!("an audit write was lost ({error}); restart the server"));
                        }
                    }
                }
            }
        }
    }

    /// Apply `batch` in one transaction; `Err` when the transaction itself failed.
    fn commit(&mut self, batch: &[Submission]) -> Result<Vec<Result<Committed, JournalError>>, String> {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut head = self.head.take();
        let result = self.store.write(|tx| {
            let head = match &mut head {
                Some(head) => head,
                None => head.insert(audit::head(tx)?),
            };
            for submission in batch {
                outcomes.push(apply(tx, &self.key, &submission.writes, head)?);
            }
            Ok(())
        });
        if result.is_ok() {
            self.head = head;
        }
        if !self.poisoned.load(Ordering::SeqCst)
            && let Ok(mut last) = self.last_error.lock()
        {
            *last = result.as_ref().err().map(ToString::to_string);
        }
        result.map(|()| outcomes).map_err(|e| e.to_string())
    }
}

/// The `toolgate_actions_active` gauge follows every committed move into or out of an open state.
fn count_active(writes: &[Write]) {
    for write in writes {
        if let Write::Action { expect, record } = write {
            if let Some(from) = expect.filter(|s| s.is_open() && *s != record.state) {
                metrics::actions_active(from.as_str(), -1);
            }
            if record.state.is_open() && *expect != Some(record.state) {
                metrics::actions_active(record.state.as_str(), 1);
            }
        }
    }
}

#[cfg(test)]
mod tests;
