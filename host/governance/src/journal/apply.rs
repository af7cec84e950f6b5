//! What one submission does inside the journal's transaction: every compare-and-set checked
//! against the stored records first, then the writes, or none of them.

use toolgate_store::{StoreError, Tx};

use super::{Committed, JournalError, Write};
use crate::action::{ActionRecord, ActionState, UndoRecord, UndoState};
use crate::audit;

/// Apply one submission inside `tx`: check every compare-and-set, then write. The outer error
/// aborts the whole transaction (storage failure); the inner one refuses this submission only.
pub(super) fn apply(
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
        history: Vec<crate::action::Step>,
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
