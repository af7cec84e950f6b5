//! The operations on the governance records (audit log, action records, undo records), through
//! the store's public API only: what a second backend must do alike.

use std::sync::{Arc, Barrier};

use serde::{Deserialize, Serialize};
use toolgate_store::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    id: String,
    state: String,
}

fn record(id: &str, state: &str) -> Record {
    Record { id: id.into(), state: state.into() }
}

/// An entry as the journal writes it: JSON laid out by hand, which a decode and re-encode would
/// not reproduce (spacing, key order, number form).
fn entry(seq: u64) -> Vec<u8> {
    format!(r#"{{"seq":{seq},"prev_hash":"p{seq}","hash":"h{seq}","event":{{"z":1.50, "a" :[ ]}}}}"#).into_bytes()
}

fn open() -> anyhow::Result<(tempfile::TempDir, Store)> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    Ok((dir, store))
}

#[test]
fn audit_entries_keep_their_bytes_exactly_and_survive_reopening() -> anyhow::Result<()> {
    let (dir, store) = open()?;
    store.write(|tx| {
        assert!(tx.audit_last()?.is_none());
        tx.append_audit(1, &entry(1))?;
        tx.append_audit(2, &entry(2))?;
        // The transaction sees its own appends.
        assert_eq!(tx.audit_last()?.map(|e| (e.seq(), e.bytes().to_vec())), Some((2, entry(2))));
        Ok(())
    })?;
    drop(store);
    let store = Store::open(dir.path())?;
    let snapshot = store.snapshot()?;
    let stored: Vec<(u64, Vec<u8>)> =
        snapshot.audit_entries(..)?.map(|e| e.map(|e| (e.seq(), e.bytes().to_vec()))).collect::<Result<_, _>>()?;
    assert_eq!(stored, [(1, entry(1)), (2, entry(2))]);
    assert_eq!(snapshot.audit_last()?.map(|e| e.bytes().to_vec()), Some(entry(2)));
    Ok(())
}

#[test]
fn the_audit_log_is_append_only_and_a_failed_transaction_writes_nothing() -> anyhow::Result<()> {
    let (_dir, store) = open()?;
    store.write(|tx| tx.append_audit(1, &entry(1)))?;
    let rewrite = store.write(|tx| {
        tx.put_action("a1", &record("a1", "requested"))?;
        tx.append_audit(2, &entry(2))?;
        tx.append_audit(1, b"{}")
    });
    assert!(matches!(rewrite, Err(StoreError::AuditSeqTaken(1))), "{rewrite:?}");
    let snapshot = store.snapshot()?;
    assert_eq!(snapshot.audit_last()?.map(|e| (e.seq(), e.bytes().to_vec())), Some((1, entry(1))));
    assert_eq!(snapshot.action::<Record>("a1")?, None);
    Ok(())
}

#[test]
fn audit_pages_run_newest_first_strictly_before_the_cursor() -> anyhow::Result<()> {
    #[derive(Deserialize)]
    struct Seq {
        seq: u64,
    }
    let (_dir, store) = open()?;
    store.write(|tx| (1..=10).try_for_each(|seq| tx.append_audit(seq, &entry(seq))))?;
    let seqs = |page: Vec<Seq>| page.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(store.audit_page(None, 3)?), [10, 9, 8]);
    assert_eq!(seqs(store.audit_page(Some(8), 3)?), [7, 6, 5]);
    assert_eq!(seqs(store.audit_page(Some(3), 5)?), [2, 1]);
    assert!(store.audit_page::<Seq>(Some(1), 5)?.is_empty());
    let newest_first: Vec<u64> =
        store.snapshot()?.audit_entries(4..=6)?.rev().map(|e| e.map(|e| e.seq())).collect::<Result<_, _>>()?;
    assert_eq!(newest_first, [6, 5, 4]);
    Ok(())
}

#[test]
fn action_and_undo_records_round_trip_and_scan() -> anyhow::Result<()> {
    let (_dir, store) = open()?;
    store.write(|tx| {
        for (id, state) in [("a1", "completed"), ("a2", "running"), ("a3", "failed"), ("a4", "running")] {
            tx.put_action(id, &record(id, state))?;
        }
        tx.put_undo("a1", &record("a1", "available"))?;
        tx.put_undo("a3", &record("a3", "applying"))?;
        Ok(())
    })?;
    assert_eq!(store.action::<Record>("a2")?, Some(record("a2", "running")));
    assert_eq!(store.action::<Record>("a9")?, None);
    assert_eq!(store.undo::<Record>("a3")?, Some(record("a3", "applying")));
    assert_eq!(store.undo::<Record>("a2")?, None);
    let snapshot = store.snapshot()?;
    let ids = |records: Vec<Record>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(snapshot.actions(|r: &Record| r.state == "running")?), ["a2", "a4"]);
    assert_eq!(ids(snapshot.undo_records(|r: &Record| r.state == "applying")?), ["a3"]);
    assert_eq!(ids(snapshot.actions_page(None, 2, |_: &Record| true)?), ["a4", "a3"]);
    assert_eq!(ids(snapshot.actions_page(Some("a4"), 10, |r: &Record| r.state != "failed")?), ["a2", "a1"]);
    // A part of a record decodes alone.
    #[derive(Deserialize)]
    struct State {
        state: String,
    }
    assert_eq!(store.action::<State>("a1")?.map(|s| s.state).as_deref(), Some("completed"));
    Ok(())
}

#[test]
fn a_snapshot_does_not_see_later_writes() -> anyhow::Result<()> {
    let (_dir, store) = open()?;
    let before = store.snapshot()?;
    store.write(|tx| {
        tx.append_audit(1, &entry(1))?;
        tx.put_action("a1", &record("a1", "requested"))
    })?;
    assert!(before.audit_last()?.is_none());
    assert_eq!(before.action::<Record>("a1")?, None);
    assert!(store.snapshot()?.audit_last()?.is_some());
    Ok(())
}

#[test]
fn a_check_and_write_in_one_transaction_is_a_compare_and_set() -> anyhow::Result<()> {
    let (_dir, store) = open()?;
    store.write(|tx| tx.put_action("a1", &record("a1", "requested")))?;
    let barrier = Arc::new(Barrier::new(8));
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store.write(|tx| {
                    let stored: Option<Record> = tx.action("a1")?;
                    if stored.is_some_and(|r| r.state == "requested") {
                        tx.put_action("a1", &record("a1", &format!("won by {i}")))?;
                        return Ok(true);
                    }
                    Ok(false)
                })
            })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        won += usize::from(racer.join().map_err(|_| anyhow::anyhow!("racer panicked"))??);
    }
    assert_eq!(won, 1, "exactly one compare-and-set holds");
    assert!(store.action::<Record>("a1")?.is_some_and(|r| r.state.starts_with("won by")));
    Ok(())
}

#[test]
fn a_file_written_before_the_store_api_opens_and_reads_the_same() -> anyhow::Result<()> {
    // The tables as the host wrote them before: redb `&[u8]` values holding JSON.
    const AUDIT: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit_v1");
    const ACTIONS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("actions_v1");
    const ROLLBACK_LOG: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("rollback_log_v1");
    let dir = tempfile::tempdir()?;
    {
        let db = redb::Database::create(dir.path().join(toolgate_store::DB_FILE))?;
        let tx = db.begin_write()?;
        tx.open_table(AUDIT)?.insert(1, entry(1).as_slice())?;
        tx.open_table(ACTIONS)?.insert("a1", br#"{"id":"a1","state":"completed"}"#.as_slice())?;
        tx.open_table(ROLLBACK_LOG)?.insert("a1", br#"{"id":"a1","state":"applied"}"#.as_slice())?;
        tx.commit()?;
    }
    let store = Store::open(dir.path())?;
    assert_eq!(store.snapshot()?.audit_last()?.map(|e| e.bytes().to_vec()), Some(entry(1)));
    assert_eq!(store.action::<Record>("a1")?, Some(record("a1", "completed")));
    assert_eq!(store.undo::<Record>("a1")?, Some(record("a1", "applied")));
    // And what the store writes, the old code reads: the same keys, the same JSON.
    store.write(|tx| {
        tx.append_audit(2, &entry(2))?;
        tx.put_action("a2", &record("a2", "running"))
    })?;
    drop(store);
    let db = redb::Database::create(dir.path().join(toolgate_store::DB_FILE))?;
    let tx = redb::ReadableDatabase::begin_read(&db)?;
    let audit = tx.open_table(AUDIT)?;
    assert_eq!(redb::ReadableTable::get(&audit, 2)?.map(|v| v.value().to_vec()), Some(entry(2)));
    let actions = tx.open_table(ACTIONS)?;
    let a2 = redb::ReadableTable::get(&actions, "a2")?.map(|v| v.value().to_vec());
    assert_eq!(a2.as_deref(), Some(br#"{"id":"a2","state":"running"}"#.as_slice()));
    Ok(())
}
