//! Tests of the journal against real SQLite files in temporary directories.

mod cache;
mod crash;
mod open;
mod outbox;
mod tasks;

use edgepool_protocol::primitives::{DealId, TaskId};
use edgepool_protocol::status::ReplicateStatus;

use super::NewTask;

/// A task id made of one repeated byte.
fn task_id(byte: u8) -> TaskId {
    TaskId::from([byte; 32])
}

/// A new task in state CREATED, received at `at_ms`.
fn new_task(byte: u8, assignment: &[u8], at_ms: u64) -> NewTask<'_> {
    NewTask {
        task_id: task_id(byte),
        deal_id: DealId::from([0xdd; 32]),
        task_index: u64::from(byte),
        assignment,
        state: ReplicateStatus::Created,
        received_at_ms: at_ms,
    }
}
