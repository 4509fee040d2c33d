#![allow(clippy::unwrap_used)]

use edgepool_protocol::primitives::Address;
use edgepool_protocol::status::ReplicateStatus;

use super::{new_task, task_id};
use crate::store::{Store, StoreError};

fn topics(store: &Store) -> Vec<String> {
    store
        .pending_outbox(100)
        .unwrap()
        .into_iter()
        .map(|e| e.topic)
        .collect()
}

#[test]
fn the_outbox_keeps_insertion_order_across_acks_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let ids: Vec<i64> = (0..5)
        .map(|i| {
            store
                .enqueue(&format!("t/{i}"), &[i as u8; 3], i == 4, 1000 + i)
                .unwrap()
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert!(store.ack_outbox(ids[1]).unwrap());
    assert!(!store.ack_outbox(ids[1]).unwrap(), "second ack is a no-op");
    drop(store);

    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(topics(&store), ["t/0", "t/2", "t/3", "t/4"]);
    let first_two = store.pending_outbox(2).unwrap();
    assert_eq!(first_two.len(), 2);
    assert_eq!(first_two[0].payload, [0u8; 3]);
    assert_eq!(first_two[0].created_at_ms, 1000);
    assert!(!first_two[0].retain);
    assert!(store.pending_outbox(100).unwrap()[3].retain);

    // Acking the newest then enqueueing again never reuses an id.
    store.ack_outbox(ids[4]).unwrap();
    let new_id = store.enqueue("t/5", b"five", false, 2000).unwrap();
    assert!(new_id > ids[4]);
    assert_eq!(topics(&store), ["t/0", "t/2", "t/3", "t/5"]);
    assert_eq!(store.outbox_len().unwrap(), 4);
}

#[test]
fn a_failed_transaction_leaves_no_state_change_outbox_row_or_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.insert_task(&new_task(1, b"a", 100)).unwrap();

    let err = store
        .transaction(|tx| {
            tx.set_task_state(task_id(1), ReplicateStatus::Computing, None, 150)?;
            let seq = tx.next_own_seq()?;
            assert_eq!(seq, 1);
            tx.enqueue("status", &seq.to_be_bytes(), false, 150)?;
            tx.accept_peer_seq(Address([1; 20]), 7)?;
            tx.meta_set("k", b"v")?;
            Err::<(), _>(StoreError::Sqlite("signing failed".to_owned()))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Sqlite(_)));

    let task = store.task(task_id(1)).unwrap().unwrap();
    assert_eq!(task.state, ReplicateStatus::Created);
    assert_eq!(task.updated_at_ms, 100);
    assert_eq!(store.transitions(task_id(1)).unwrap().len(), 1);
    assert_eq!(store.outbox_len().unwrap(), 0);
    assert_eq!(store.last_own_seq().unwrap(), 0);
    assert!(store.peer_sequences().unwrap().is_empty());
    assert_eq!(store.meta_get("k").unwrap(), None);

    // The next transaction gets sequence number 1 again.
    let seq = store.transaction(|tx| tx.next_own_seq()).unwrap();
    assert_eq!(seq, 1);
}

/// A caller error type that is not a store error, as when signing fails inside the closure.
#[derive(Debug)]
enum SignError {
    Store(#[allow(dead_code)] StoreError),
    NoKey,
}

impl From<StoreError> for SignError {
    fn from(err: StoreError) -> Self {
        SignError::Store(err)
    }
}

#[test]
fn a_closure_with_its_own_error_type_rolls_back_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let err = store
        .transaction_with_error(|tx| {
            tx.next_own_seq()?;
            tx.enqueue("status", b"unsigned", false, 1)?;
            Err::<(), _>(SignError::NoKey)
        })
        .unwrap_err();
    assert!(matches!(err, SignError::NoKey));
    assert_eq!(store.outbox_len().unwrap(), 0);
    assert_eq!(store.last_own_seq().unwrap(), 0);
}

#[test]
fn a_panicking_closure_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = store.transaction(|tx| {
            tx.enqueue("status", b"x", false, 1)?;
            panic!("bug in the caller");
            #[allow(unreachable_code)]
            Ok(())
        });
    }));
    assert!(result.is_err());
    assert_eq!(store.outbox_len().unwrap(), 0);
    store.enqueue("status", b"y", false, 2).unwrap();
    assert_eq!(store.outbox_len().unwrap(), 1);
}

#[test]
fn own_sequence_numbers_start_at_one_and_grow_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut store = Store::open(dir.path()).unwrap();
        for _ in 0..2 {
            seen.push(store.transaction(|tx| tx.next_own_seq()).unwrap());
        }
        let (a, b) = store
            .transaction(|tx| Ok((tx.next_own_seq()?, tx.next_own_seq()?)))
            .unwrap();
        seen.extend([a, b]);
    }
    assert_eq!(seen, (1..=12).collect::<Vec<u64>>());
}

#[test]
fn peer_sequences_keep_the_highest_number_per_sender_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = Address([0xab; 20]);
    let other = Address([0x01; 20]);
    let mut store = Store::open(dir.path()).unwrap();
    store.accept_peer_seq(scheduler, 5).unwrap();
    store.accept_peer_seq(scheduler, 3).unwrap();
    store.accept_peer_seq(other, 1).unwrap();
    drop(store);

    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.peer_sequences().unwrap(),
        [(other, 1), (scheduler, 5)]
    );
    store.accept_peer_seq(scheduler, 9).unwrap();
    assert_eq!(store.peer_sequences().unwrap()[1], (scheduler, 9));
    let err = store.accept_peer_seq(other, u64::MAX).unwrap_err();
    assert!(matches!(err, StoreError::OutOfRange { .. }), "{err}");
}

#[test]
fn unjournaled_numbers_sit_between_the_used_ones_and_the_next_journaled_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let a = store.transaction(|tx| tx.next_own_seq()).unwrap();
    let u1 = store.unjournaled_seq().unwrap();
    let u2 = store.unjournaled_seq().unwrap();
    // A rolled-back transaction leaves the unjournaled numbers alone.
    let rolled_back: Result<(), StoreError> = store.transaction(|tx| {
        tx.next_own_seq()?;
        Err(StoreError::Sqlite("rolled back on purpose".into()))
    });
    assert!(rolled_back.is_err());
    let b = store.transaction(|tx| tx.next_own_seq()).unwrap();
    assert!(a < u1 && u1 < u2 && u2 < b, "{a} {u1} {u2} {b}");
    // Nothing of the unjournaled numbers is on disk: only a skip at the next start keeps a
    // new run from using them again.
    drop(store);
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(store.last_own_seq().unwrap(), b);
    store.skip_own_seqs(1 << 20).unwrap();
    let c = store.transaction(|tx| tx.next_own_seq()).unwrap();
    assert_eq!(c, b + (1 << 20) + 1);
    assert!(store.unjournaled_seq().unwrap() > c);
}

#[test]
fn runs_that_could_not_journal_their_start_never_share_a_number_with_the_next_runs() {
    const SPAN: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.start_run(SPAN, 1_000).unwrap();
    let last = store.transaction(|tx| tx.next_own_seq()).unwrap();
    drop(store);

    // Two runs in a row cannot write (held starts, 50 ms apart), each sending a few
    // unjournaled messages: the second begins above the first.
    let mut first = Store::open(dir.path()).unwrap();
    first.hold_run(SPAN, 11_000).unwrap();
    let a: Vec<u64> = (0..5).map(|_| first.unjournaled_seq().unwrap()).collect();
    drop(first);
    let mut second = Store::open(dir.path()).unwrap();
    second.hold_run(SPAN, 11_050).unwrap();
    let b: Vec<u64> = (0..5).map(|_| second.unjournaled_seq().unwrap()).collect();
    assert!(last < a[0] && a[4] < b[0], "{last} {a:?} {b:?}");
    drop(second);

    // A run that can write starts above both.
    let mut third = Store::open(dir.path()).unwrap();
    third.start_run(SPAN, 11_100).unwrap();
    let c = third.transaction(|tx| tx.next_own_seq()).unwrap();
    assert!(b[4] < c, "{b:?} {c}");
    drop(third);

    // A held run that can write again journals its start: its numbers, unjournaled before
    // and journaled after, stay below the next run's.
    let mut fourth = Store::open(dir.path()).unwrap();
    fourth.hold_run(SPAN, 20_000).unwrap();
    let d = fourth.unjournaled_seq().unwrap();
    assert!(c < d);
    fourth.resume_run(20_500).unwrap();
    assert!(fourth.last_own_seq().unwrap() >= d);
    let e = fourth.transaction(|tx| tx.next_own_seq()).unwrap();
    let f = fourth.unjournaled_seq().unwrap();
    assert!(d < e && e < f, "{d} {e} {f}");
    drop(fourth);
    let mut fifth = Store::open(dir.path()).unwrap();
    fifth.start_run(SPAN, 20_600).unwrap();
    let g = fifth.transaction(|tx| tx.next_own_seq()).unwrap();
    assert!(f < g, "{f} {g}");
    // A clock gone back skips the span alone.
    fifth.start_run(SPAN, 1).unwrap();
    let h = fifth.transaction(|tx| tx.next_own_seq()).unwrap();
    assert_eq!(h, g + SPAN + 1);
}

#[test]
fn a_probe_write_fails_typed_on_a_read_only_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.probe_write(1).unwrap();
    drop(store);
    let mut reader = Store::open_read_only(dir.path()).unwrap();
    assert!(matches!(
        reader.probe_write(2),
        Err(StoreError::Unavailable(_))
    ));
}

/// `PRAGMA synchronous` as the writer connection has it now (2 = FULL, 1 = NORMAL).
fn synchronous(store: &Store) -> i64 {
    store
        .conn
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .unwrap()
}

#[test]
fn relaxed_commits_leave_the_connection_durable_again_even_when_they_fail() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(synchronous(&store), 2, "the writer is FULL");
    let id = store.enqueue("t/0", b"zero", false, 1).unwrap();
    assert!(store.ack_outbox(id).unwrap());
    assert_eq!(synchronous(&store), 2, "FULL again after a relaxed ack");

    let sender = Address([0x5c; 20]);
    store
        .transaction_relaxed(|tx| tx.accept_peer_seq(sender, 7))
        .unwrap();
    assert_eq!(synchronous(&store), 2);
    let failed = store.transaction_relaxed(|tx| {
        tx.accept_peer_seq(sender, 9)?;
        Err::<(), _>(StoreError::TaskNotFound(task_id(1)))
    });
    assert!(matches!(failed, Err(StoreError::TaskNotFound(_))));
    assert_eq!(
        synchronous(&store),
        2,
        "FULL again after a failed relaxed transaction"
    );
    drop(store);

    // Relaxed commits are commits: a new connection sees them, and not the rolled-back one.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.outbox_len().unwrap(), 0);
    assert_eq!(store.peer_sequences().unwrap(), vec![(sender, 7)]);
}
