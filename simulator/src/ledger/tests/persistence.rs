//! Reopening the SQLite file restores the same state.

use super::*;

#[test]
fn a_reopened_ledger_has_the_same_state_and_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let (task, state) = {
        let mut w = world_in(Ledger::open(&path).unwrap());
        let (_, task) = active_task(&mut w, 3);
        contribute(&mut w, 0, task, digest(1), T0 + 1).unwrap();
        contribute(&mut w, 3, task, digest(2), T0 + 1).unwrap();
        contribute(&mut w, 1, task, digest(1), T0 + 2).unwrap();
        contribute(&mut w, 2, task, digest(1), T0 + 2).unwrap();
        reveal(&mut w, 0, task, digest(1), T0 + 3).unwrap();
        (task, w.ledger.state.clone())
    };
    let mut reopened = Ledger::open(&path).unwrap();
    assert_eq!(reopened.state, state);
    // It carries on where it stopped: the remaining reveals, then finalize.
    for n in [11u8, 12] {
        reopened
            .reveal(signer(n).address(), &task, digest(1), T0 + 4)
            .unwrap();
    }
    let settlement = reopened.finalize(&task, b"done", T0 + 5).unwrap();
    drop(reopened);
    let again = Ledger::open(&path).unwrap();
    assert_eq!(again.settlement(&task), Some(&settlement));
    assert_eq!(
        again.task(&task).unwrap().status,
        ChainTaskStatus::Completed
    );
    assert_conserved(&again);
}

#[test]
fn a_corrupt_record_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    drop(world_in(Ledger::open(&path).unwrap()));
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE record SET value = '{' WHERE kind = 'app'", [])
        .unwrap();
    drop(conn);
    assert!(matches!(Ledger::open(&path), Err(LedgerError::Corrupt { kind, .. }) if kind == "app"));
}

#[test]
fn a_call_the_store_refuses_changes_nothing_in_memory_or_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let mut w = world_in(Ledger::open(&path).unwrap());
    let (_, task) = active_task(&mut w, 3);
    let before = w.ledger.state.clone();
    // Another process breaks the next task write: the contribution's stake lock, written in
    // the same transaction, must roll back with it.
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER break_tasks BEFORE UPDATE ON record WHEN NEW.kind = 'task'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    assert!(matches!(
        contribute(&mut w, 0, task, digest(1), T0 + 1),
        Err(LedgerError::Store(_))
    ));
    assert_eq!(w.ledger.state, before);
    drop(w);
    other.execute_batch("DROP TRIGGER break_tasks").unwrap();
    let mut reopened = Ledger::open(&path).unwrap();
    assert_eq!(reopened.state, before);
    // And the same call succeeds once the store accepts it.
    let worker = signer(10);
    let hashes = ContributionHashes::new(&worker.address(), &task, &digest(1));
    let authorization = signer(1).sign_personal(
        poco::authorization_hash(&worker.address(), &task, &Address::ZERO).as_bytes(),
    );
    let call = ContributeCall {
        worker: worker.address(),
        task_id: task,
        result_hash: hashes.result_hash,
        result_seal: hashes.result_seal,
        enclave_challenge: Address::ZERO,
        enclave_signature: &poco::NON_TEE_ENCLAVE_SIGNATURE,
        authorization: &authorization,
    };
    reopened.contribute(&call, T0 + 1).unwrap();
    assert_eq!(reopened.account(&worker.address()).frozen, STAKE);
}

#[test]
fn the_ledger_file_is_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let _ledger = Ledger::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}
