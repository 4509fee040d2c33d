#![allow(clippy::unwrap_used)]

use edgepool_protocol::primitives::{Bytes32, DealId, Digest};
use edgepool_protocol::status::{ReplicateStatus, ReplicateStatusCause};

use super::{new_task, task_id};
use crate::store::{Store, StoreError, TaskFilter, TaskOutputs, Transition};

#[test]
fn inserting_the_same_task_twice_keeps_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    assert!(store.insert_task(&new_task(1, b"first", 100)).unwrap());
    assert!(!store.insert_task(&new_task(1, b"second", 200)).unwrap());

    let task = store.task(task_id(1)).unwrap().unwrap();
    assert_eq!(task.assignment, b"first");
    assert_eq!(task.created_at_ms, 100);
    assert_eq!(task.deal_id, DealId::from([0xdd; 32]));
    assert_eq!(task.task_index, 1);
    assert_eq!(store.tasks(TaskFilter::All).unwrap().len(), 1);
    assert_eq!(store.transitions(task_id(1)).unwrap().len(), 1);
}

#[test]
fn state_changes_update_the_timestamp_and_log_each_transition() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.insert_task(&new_task(1, b"a", 100)).unwrap();
    store
        .set_task_state(task_id(1), ReplicateStatus::Computing, None, 150)
        .unwrap();
    store
        .set_task_state(
            task_id(1),
            ReplicateStatus::ComputeFailed,
            Some(ReplicateStatusCause::OutOfFuel),
            180,
        )
        .unwrap();

    let task = store.task(task_id(1)).unwrap().unwrap();
    assert_eq!(task.state, ReplicateStatus::ComputeFailed);
    assert_eq!(task.cause, Some(ReplicateStatusCause::OutOfFuel));
    assert_eq!(task.created_at_ms, 100);
    assert_eq!(task.updated_at_ms, 180);

    // A later state without a cause clears it.
    store
        .set_task_state(task_id(1), ReplicateStatus::Failed, None, 190)
        .unwrap();
    let task = store.task(task_id(1)).unwrap().unwrap();
    assert_eq!((task.state, task.cause), (ReplicateStatus::Failed, None));

    let states: Vec<Transition> = store.transitions(task_id(1)).unwrap();
    let expected = [
        (ReplicateStatus::Created, None, 100),
        (ReplicateStatus::Computing, None, 150),
        (
            ReplicateStatus::ComputeFailed,
            Some(ReplicateStatusCause::OutOfFuel),
            180,
        ),
        (ReplicateStatus::Failed, None, 190),
    ];
    let got: Vec<_> = states.iter().map(|t| (t.state, t.cause, t.at_ms)).collect();
    assert_eq!(got, expected);
}

#[test]
fn changing_the_state_of_an_unknown_task_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let err = store
        .set_task_state(task_id(9), ReplicateStatus::Computing, None, 1)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::TaskNotFound(id) if id == task_id(9)),
        "{err}"
    );
}

#[test]
fn filters_and_counts_follow_the_task_states() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    for (byte, at) in [(3, 30), (1, 10), (2, 20)] {
        store.insert_task(&new_task(byte, b"x", at)).unwrap();
    }
    store
        .set_task_state(task_id(2), ReplicateStatus::Completed, None, 40)
        .unwrap();

    let all: Vec<_> = store
        .tasks(TaskFilter::All)
        .unwrap()
        .into_iter()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(all, [task_id(1), task_id(2), task_id(3)], "oldest first");
    let active: Vec<_> = store
        .tasks(TaskFilter::Active)
        .unwrap()
        .into_iter()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(active, [task_id(1), task_id(3)]);
    assert_eq!(store.tasks(TaskFilter::Final).unwrap().len(), 1);
    assert_eq!(
        store
            .tasks(TaskFilter::State(ReplicateStatus::Created))
            .unwrap()
            .len(),
        2
    );
    let counts = store.counts_by_state().unwrap();
    assert_eq!(counts.get(&ReplicateStatus::Created), Some(&2));
    assert_eq!(counts.get(&ReplicateStatus::Completed), Some(&1));
    assert_eq!(counts.len(), 2);
}

#[test]
fn outputs_are_merged_and_contribution_fields_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.insert_task(&new_task(1, b"a", 100)).unwrap();
    let digest = Digest::from([0x11; 32]);
    let first = TaskOutputs {
        result_digest: Some(digest),
        result_hash: Some(Bytes32([0x22; 32])),
        result_seal: Some(Bytes32([0x33; 32])),
        enclave_signature: Some(vec![0; 32]),
        fuel_used: Some(12_345),
        result_link: None,
    };
    store
        .transaction(|tx| tx.set_task_outputs(task_id(1), &first, 110))
        .unwrap();
    let link = TaskOutputs {
        result_link: Some("ipfs://result".to_owned()),
        ..TaskOutputs::default()
    };
    store
        .transaction(|tx| tx.set_task_outputs(task_id(1), &link, 120))
        .unwrap();
    // The same values again are fine (a retried step).
    store
        .transaction(|tx| tx.set_task_outputs(task_id(1), &first, 125))
        .unwrap();

    let task = store.task(task_id(1)).unwrap().unwrap();
    assert_eq!(
        task.outputs,
        TaskOutputs {
            result_link: Some("ipfs://result".to_owned()),
            ..first.clone()
        }
    );
    assert_eq!(task.updated_at_ms, 125);

    let other = TaskOutputs {
        result_digest: Some(Digest::from([0x99; 32])),
        result_link: Some("ipfs://other".to_owned()),
        ..TaskOutputs::default()
    };
    let err = store
        .transaction(|tx| tx.set_task_outputs(task_id(1), &other, 130))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::OutputConflict {
                field: "result_digest",
                ..
            }
        ),
        "{err}"
    );
    let task = store.task(task_id(1)).unwrap().unwrap();
    assert_eq!(task.outputs.result_digest, Some(digest));
    assert_eq!(task.outputs.result_link.as_deref(), Some("ipfs://result"));
}

#[test]
fn tasks_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.insert_task(&new_task(1, b"envelope", 100)).unwrap();
    store
        .set_task_state(task_id(1), ReplicateStatus::Contributed, None, 200)
        .unwrap();
    let before = store.task(task_id(1)).unwrap().unwrap();
    drop(store);

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.task(task_id(1)).unwrap().unwrap(), before);
}

#[test]
fn an_unknown_state_name_in_the_file_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.insert_task(&new_task(1, b"a", 100)).unwrap();
    store
        .conn
        .execute("UPDATE tasks SET state = 'DANCING'", [])
        .unwrap();
    let err = store.task(task_id(1)).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { what, .. } if what == "tasks.state"),
        "{err}"
    );
    assert!(err.to_string().contains("DANCING"), "{err}");
    assert!(store.tasks(TaskFilter::All).is_err());
}

#[test]
fn deleting_old_final_tasks_keeps_active_and_recent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    for byte in 1..=3 {
        store.insert_task(&new_task(byte, b"a", 100)).unwrap();
    }
    store
        .set_task_state(task_id(1), ReplicateStatus::Completed, None, 200)
        .unwrap();
    store
        .set_task_state(task_id(2), ReplicateStatus::Completed, None, 400)
        .unwrap();
    let removed = store.transaction(|tx| tx.delete_final_tasks(300)).unwrap();
    assert_eq!(removed, 1);
    assert_eq!(store.task(task_id(1)).unwrap(), None);
    assert!(store.transitions(task_id(1)).unwrap().is_empty());
    assert!(store.task(task_id(2)).unwrap().is_some());
    assert!(store.task(task_id(3)).unwrap().is_some());
}
