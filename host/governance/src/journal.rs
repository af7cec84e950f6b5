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
use toolgate_store::{Store, StoreError, Tx};
use toolgate_telemetry::{metrics, span};

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

/// Apply one submission inside `tx`: check every compare-and-set, then write. The outer error
/// aborts the whole transaction (storage failure); the inner one refuses this submission only.
fn apply(
    tx: &mut Tx<'_>,
    key: &audit::ChainKey,
    writes: &[Write],
    head: &mut (u64, String),
) -> Result<Result<Committed, JournalError>, StoreError> {
    for write in writes {
        let refused = match write {
            Write::Audit(_) => None,
            Write::Action { expect, record } => check_action(tx, *expect, record)?,
            Write::Undo { expect, record } => check_undo(tx, *expect, record)?,
        };
        if let Some(refusal) = refused {
            return Ok(Err(refusal));
        }
    }
    let mut committed = Committed::default();
    for write in writes {
        if let Write::Audit(event) = write {
            let seq = head.0 + 1;
            let (bytes, hash) = audit::encode_entry(key, seq, &head.1, event)?;
            tx.append_audit(seq, &bytes)?;
            *head = (seq, hash);
            committed.audit_seqs.push(seq);
        }
    }
    for write in writes {
        match write {
            Write::Audit(_) => {}
            Write::Action { record, .. } => {
                let mut record = record.as_ref().clone();
                if let Some(seq) = committed.last_seq() {
                    record.audit_seq = Some(seq);
                }
                tx.put_action(&record.id, &record)?;
            }
            Write::Undo { record, .. } => tx.put_undo(&record.action_id, record.as_ref())?,
        }
    }
    Ok(Ok(committed))
}

fn check_action(
    tx: &mut Tx<'_>,
    expect: Option<ActionState>,
    record: &ActionRecord,
) -> Result<Option<JournalError>, StoreError> {
    /// The part of a stored record the check needs (the rest, output included, is skipped).
    #[derive(serde::Deserialize)]
    struct Stored {
        state: ActionState,
        history: Vec<super::action::Step>,
    }
    let stored: Option<Stored> = tx.action(&record.id)?;
    let illegal = |message: String| Ok(Some(JournalError::IllegalStep { id: record.id.clone(), message }));
    let from = match (&stored, expect) {
        (None, None) => 0,
        (Some(s), Some(state)) if s.state == state => {
            if record.history.get(..s.history.len()) != Some(s.history.as_slice()) {
                return illegal("the new history does not extend the stored one".into());
            }
            s.history.len()
        }
        (found, expected) => {
            return Ok(Some(JournalError::Conflict {
                id: record.id.clone(),
                expected: expected.map_or("absent", ActionState::as_str).to_owned(),
                found: found.as_ref().map_or("absent", |s| s.state.as_str()).to_owned(),
            }));
        }
    };
    if record.history.first().map(|s| s.state) != Some(ActionState::Requested) {
        return illegal("an action starts as `requested`".into());
    }
    for pair in record.history.windows(2).skip(from.saturating_sub(1)) {
        if let [a, b] = pair
            && !a.state.can_go(b.state)
        {
            return illegal(format!("`{}` cannot go to `{}`", a.state.as_str(), b.state.as_str()));
        }
    }
    if record.history.last().map(|s| s.state) != Some(record.state) {
        return illegal("the state is not the last step of the history".into());
    }
    Ok(None)
}

fn check_undo(
    tx: &mut Tx<'_>,
    expect: Option<UndoState>,
    record: &UndoRecord,
) -> Result<Option<JournalError>, StoreError> {
    let stored: Option<UndoRecord> = tx.undo(&record.action_id)?;
    let name = |s: Option<UndoState>| match s {
        None => "absent",
        Some(UndoState::Available) => "available",
        Some(UndoState::Applying) => "being applied",
        Some(UndoState::Applied) => "applied",
        Some(UndoState::Failed) => "failed",
    };
    let found = stored.as_ref().map(|s| s.state);
    let legal = match (found, expect) {
        (None, None) => record.state == UndoState::Available,
        (Some(found), Some(expected)) => found == expected && found.can_go(record.state),
        _ => false,
    };
    if legal {
        Ok(None)
    } else {
        Ok(Some(JournalError::Conflict {
            id: record.action_id.clone(),
            expected: format!("undo record {}", name(expect)),
            found: format!("undo record {}", name(found)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Operation, Step};
    use toolgate_core::model::{AuthMethod, Caller, Category, Role};

    #[test]
    fn a_full_queue_makes_submitters_wait_instead_of_growing() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let journal = Arc::new(Journal::start_bounded(store.clone(), audit::ChainKey::random(), 4)?);
        // Hold the store's write lock: the writer stalls on its first batch.
        let (held_tx, held_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            store.write(|_| {
                let _ = held_tx.send(());
                let _ = release_rx.recv();
                Ok(())
            })
        });
        held_rx.recv()?;
        // One submission first, so the writer is waiting on the store, not draining the queue
        // into one batch, while the twenty arrive.
        journal.record(AuditEvent::new("exec_decision", false, "capability_not_declared"));
        std::thread::sleep(Duration::from_millis(100));
        let (done_tx, done_rx) = mpsc::channel();
        let submitter = {
            let journal = Arc::clone(&journal);
            std::thread::spawn(move || {
                for _ in 0..20 {
                    journal.record(AuditEvent::new("exec_decision", false, "capability_not_declared"));
                }
                let _ = done_tx.send(());
            })
        };
        // The writer holds one batch and the queue four submissions: the rest must wait.
        assert_eq!(
            done_rx.recv_timeout(Duration::from_millis(300)),
            Err(mpsc::RecvTimeoutError::Timeout),
            "twenty submissions fitted in a queue of four"
        );
        release_tx.send(())?;
        holder.join().map_err(|_| anyhow::anyhow!("holder panicked"))??;
        done_rx.recv()?;
        submitter.join().map_err(|_| anyhow::anyhow!("submitter panicked"))?;
        tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(journal.flush())?;
        let written = journal.tail().newest(100, 100, |_| true).entries.len();
        assert_eq!(written, 21, "every submission was written once the writer could");
        Ok(())
    }

    fn record(id: &str, states: &[ActionState]) -> ActionRecord {
        ActionRecord {
            id: id.to_owned(),
            operation: Operation::Execute,
            rollback_of: None,
            tool: "echo".into(),
            plugin: "p".into(),
            category: Category::Read,
            caller: Caller { name: "u".into(), role: Role::Admin, auth_method: AuthMethod::Local, source_ip: None },
            params: serde_json::json!({}),
            params_redacted: serde_json::json!({}),
            justification: None,
            state: *states.last().unwrap_or(&ActionState::Requested),
            history: states
                .iter()
                .map(|s| Step { state: *s, at: time::OffsetDateTime::UNIX_EPOCH, by: None, note: None })
                .collect(),
            decision: None,
            approval: None,
            output: None,
            verify: None,
            error: None,
            undo_available: false,
            rolled_back_by: None,
            trace_id: None,
            audit_seq: None,
            binding_salt: String::new(),
        }
    }

    fn audit(kind: &str) -> Write {
        Write::Audit(Box::new(AuditEvent::new(kind, true, "ok")))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_submissions_share_one_chain_and_a_lost_race_is_refused_alone() -> anyhow::Result<()> {
        use ActionState as S;
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let key = audit::ChainKey::random();
        let journal = Arc::new(Journal::start(store.clone(), key.clone())?);
        let mut tasks = Vec::new();
        for i in 0..64 {
            let journal = journal.clone();
            tasks.push(tokio::spawn(async move { journal.submit(vec![audit(&format!("e{i}"))]).await }));
        }
        // Two creations of the same action: exactly one wins, with its audit entry.
        let racing = |j: Arc<Journal>| async move {
            j.submit(vec![
                audit("create"),
                Write::Action { expect: None, record: Box::new(record("a1", &[S::Requested])) },
            ])
            .await
        };
        let (first, second) = tokio::join!(racing(journal.clone()), racing(journal.clone()));
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.extend(task.await??.audit_seqs);
        }
        let results = [first, second];
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
        assert!(results.iter().any(|r| matches!(r, Err(JournalError::Conflict { found, .. }) if found == "requested")));
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 64, "every submission got its own sequence number");
        let report = audit::verify(&store, &key, None)?;
        assert_eq!((report.entries, report.broken), (65, None));
        Ok(())
    }

    #[tokio::test]
    async fn a_write_that_skips_a_state_or_rewrites_history_is_refused() -> anyhow::Result<()> {
        use ActionState as S;
        let dir = tempfile::tempdir()?;
        let key = audit::ChainKey::random();
        let journal = Journal::start(Store::open(dir.path())?, key.clone())?;
        let write = |expect, states: &[S]| Write::Action { expect, record: Box::new(record("a1", states)) };
        let skipped = journal.submit(vec![write(None, &[S::Requested, S::Completed])]).await;
        assert!(matches!(skipped, Err(JournalError::IllegalStep { .. })), "{skipped:?}");
        journal.submit(vec![write(None, &[S::Requested, S::Running])]).await?;
        let rewritten = journal.submit(vec![write(Some(S::Running), &[S::Requested, S::Denied, S::Running])]).await;
        assert!(matches!(rewritten, Err(JournalError::IllegalStep { .. })), "{rewritten:?}");
        let stale = journal
            .submit(vec![audit("x"), write(Some(S::Requested), &[S::Requested, S::Running, S::Completed])])
            .await;
        assert!(matches!(stale, Err(JournalError::Conflict { .. })), "{stale:?}");
        journal.submit(vec![write(Some(S::Running), &[S::Requested, S::Running, S::Completed])]).await?;
        // The refused submission wrote nothing, its audit entry included.
        assert_eq!(audit::verify(journal.store(), &key, None)?.entries, 0);
        Ok(())
    }
}
