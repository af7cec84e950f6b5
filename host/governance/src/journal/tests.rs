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
        j.submit(vec![audit("create"), Write::Action { expect: None, record: Box::new(record("a1", &[S::Requested])) }])
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
    let stale =
        journal.submit(vec![audit("x"), write(Some(S::Requested), &[S::Requested, S::Running, S::Completed])]).await;
    assert!(matches!(stale, Err(JournalError::Conflict { .. })), "{stale:?}");
    journal.submit(vec![write(Some(S::Running), &[S::Requested, S::Running, S::Completed])]).await?;
    // The refused submission wrote nothing, its audit entry included.
    assert_eq!(audit::verify(journal.store(), &key, None)?.entries, 0);
    Ok(())
}

#[tokio::test]
async fn an_entry_is_stored_as_its_seq_links_and_the_event_json_byte_for_byte() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let key = audit::ChainKey::random();
    let journal = Journal::start(store.clone(), key.clone())?;
    let mut event = AuditEvent::new("exec", true, "ok");
    event.detail = serde_json::json!({"b": 1.5, "a": "\u{e9}\n"});
    journal.submit(vec![Write::Audit(Box::new(event.clone()))]).await?;
    let event_json = serde_json::to_vec(&event)?;
    let hash = key.link(audit::GENESIS, 1, &event_json);
    let mut expected = format!(r#"{{"seq":1,"prev_hash":"{}","hash":"{hash}","event":"#, audit::GENESIS).into_bytes();
    expected.extend_from_slice(&event_json);
    expected.push(b'}');
    let stored = store.snapshot()?.audit_last()?.map(|e| e.bytes().to_vec());
    assert_eq!(stored.as_deref(), Some(expected.as_slice()));
    let mut exported = Vec::new();
    audit::export(&store, &mut exported)?;
    assert_eq!(exported, [expected.as_slice(), b"\n"].concat(), "export writes the stored bytes");
    Ok(())
}
