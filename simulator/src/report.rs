//! The JSON report of a pool: per task and per worker. `edgepool-sim run --json`, `edgepool-sim
//! report` and the demo's summary all print this.

use edgepool_protocol::primitives::{Address, Bytes32, DealId, Digest, TaskId};
use serde::Serialize;

use crate::hooks::Settlement;

/// The whole pool.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The workerpool address.
    pub pool: Option<Address>,
    /// The scheduler's address.
    pub scheduler: Option<Address>,
    /// Every task, in submission order.
    pub tasks: Vec<TaskReport>,
    /// Every worker ever seen.
    pub workers: Vec<WorkerReport>,
    /// Messages the pool refused, with why (forged, replayed, out of turn, …).
    pub refused: Vec<String>,
}

/// One task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    /// The task id.
    pub task_id: TaskId,
    /// Its deal.
    pub deal_id: DealId,
    /// Its index in the deal.
    pub index: u64,
    /// `CONTRIBUTING`, `REVEALING`, `COMPLETED` or `FAILED`.
    pub status: String,
    /// Why it failed.
    pub failure: Option<String>,
    /// Contributions the consensus needs (the deal's trust).
    pub required: usize,
    /// The consensus `resultHash`.
    pub consensus_hash: Option<Bytes32>,
    /// The result digest of the consensus.
    pub result_digest: Option<Digest>,
    /// The result link.
    pub result_link: Option<String>,
    /// Who the uploaded result came from.
    pub uploader: Option<Address>,
    /// Every replica: who, its state, its contribution.
    pub replicas: Vec<ReplicaReport>,
    /// Workers that revealed.
    pub revealers: Vec<Address>,
    /// Contributors whose result hash is the consensus.
    pub agreed: Vec<Address>,
    /// Contributors whose result hash is not.
    pub disagreed: Vec<Address>,
    /// What the ledger paid and slashed (empty without a ledger).
    pub settlement: Settlement,
    /// Timings.
    pub timings: TaskTimings,
}

/// One replica of a task.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaReport {
    /// The worker.
    pub worker: Address,
    /// What the worker is, when the runner knows (`agent`, `liar`, …).
    pub kind: Option<String>,
    /// The scheduler's replica state (`Assigned`, `Contributed`, `Completed`, …), or `WORKER_LOST`
    /// / `TIMEOUT` when the pool gave up on it.
    pub state: String,
    /// Why the pool gave up on it.
    pub lost: Option<String>,
    /// The last status the worker reported.
    pub last_status: Option<String>,
    /// Its `resultHash`.
    pub result_hash: Option<Bytes32>,
    /// Its result digest.
    pub result_digest: Option<Digest>,
    /// Milliseconds from assignment to contribution.
    pub contributed_after_ms: Option<u64>,
}

/// When things happened, in milliseconds after the task was first assigned.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskTimings {
    /// Unix ms of the first assignment.
    pub assigned_at_ms: u64,
    /// Consensus.
    pub consensus_after_ms: Option<u64>,
    /// Completion or failure.
    pub final_after_ms: Option<u64>,
}

/// One worker.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerReport {
    /// Its address.
    pub address: Address,
    /// What it is, when the runner knows.
    pub kind: Option<String>,
    /// Online now.
    pub online: bool,
    /// The agent version it advertised.
    pub agent_version: Option<String>,
    /// Replicas assigned to it.
    pub tasks: u32,
    /// Contributions it made.
    pub contributions: u32,
    /// Contributions that agreed with a consensus.
    pub agreed: u32,
    /// Contributions that did not.
    pub disagreed: u32,
    /// Times the pool declared it lost.
    pub lost: u32,
    /// Its score (ledger).
    pub score: Option<u64>,
    /// Its stake (ledger).
    pub stake: Option<String>,
}

impl Report {
    /// Labels workers (and their replicas) with what they are.
    pub fn label(&mut self, kinds: &[(Address, String)]) {
        let kind_of = |a: &Address| kinds.iter().find(|(k, _)| k == a).map(|(_, v)| v.clone());
        for worker in &mut self.workers {
            worker.kind = kind_of(&worker.address);
        }
        for task in &mut self.tasks {
            for replica in &mut task.replicas {
                replica.kind = kind_of(&replica.worker);
            }
        }
    }

    /// Tasks by status: (contributing, revealing, completed, failed).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let count = |s: &str| self.tasks.iter().filter(|t| t.status == s).count();
        (
            count("CONTRIBUTING"),
            count("REVEALING"),
            count("COMPLETED"),
            count("FAILED"),
        )
    }

    /// Whether every task is final.
    pub fn all_final(&self) -> bool {
        self.tasks
            .iter()
            .all(|t| t.status == "COMPLETED" || t.status == "FAILED")
    }
}
