//! Where the PoCo ledger plugs in. Every contribution, reveal, finalization and failure that the
//! pool accepts passes through one [`PocoHooks`] value, in the order the pool handles them, so the
//! ledger (stakes, rewards, scores: BRIEF §2) sees exactly what the scheduler decides on.
//!
//! Until the ledger exists the pool runs with [`NoLedger`]: nothing is refused, nobody is paid,
//! and the report says who agreed with the consensus and who did not.

use edgepool_protocol::messages::{Contribution, DealSummary};
use edgepool_protocol::poco::WorkerpoolAuthorization;
use edgepool_protocol::primitives::{Address, Bytes32, Digest, TaskId};
use serde::{Deserialize, Serialize};

use crate::scheduler::TaskRun;

/// Who was paid or slashed when a task ended, as the ledger settled it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// Workers rewarded, with the amount as the ledger prints it.
    pub rewarded: Vec<(Address, String)>,
    /// Workers slashed, with the amount.
    pub slashed: Vec<(Address, String)>,
    /// Workers whose stake came back without reward (a failed, claimed task).
    pub refunded: Vec<(Address, String)>,
    /// How the ledger ended the task (`COMPLETED` finalized, `FAILED` claimed), or what it
    /// waits for (`pending: …`); empty without a ledger.
    pub status: String,
}

/// A worker's standing on the ledger, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Standing {
    /// Its score (`None` without a ledger).
    pub score: Option<u64>,
    /// Its stake, as the ledger prints it (`None` without a ledger).
    pub stake: Option<String>,
}

/// The ledger calls of the pool. Each call happens before the scheduler sees the message (an
/// `Err` refuses it: the scheduler never counts a contribution the ledger did not record), and
/// must be idempotent for a redelivered identical message (MQTT QoS 1, agent restarts).
pub trait PocoHooks: Send {
    /// Task `index` of `deal` gets its first replica (ledger: `initialize`; idempotent).
    ///
    /// # Errors
    /// Why the task cannot start: the pool does not place it.
    fn initialize(&mut self, deal: &DealSummary, index: u64, now_ms: u64) -> Result<(), String> {
        let _ = (deal, index, now_ms);
        Ok(())
    }

    /// The scheduler authorized `authorization.worker` on a task (the ledger checks that
    /// signature on `contribute`, and funds a worker it has never seen with its stake money).
    fn authorized(&mut self, authorization: &WorkerpoolAuthorization, now_ms: u64) {
        let _ = (authorization, now_ms);
    }

    /// Whether the ledger, not the scheduler's count of agreeing contributions, decides when a
    /// task reaches consensus ([`PocoHooks::consensus`]).
    fn decides_consensus(&self) -> bool {
        false
    }

    /// The consensus result hash the ledger reached for `task`, if any.
    fn consensus(&self, task: &TaskId) -> Option<Bytes32> {
        let _ = task;
        None
    }

    /// A worker contributes to `task` (ledger: `contribute`, worker and enclave signatures, the
    /// WorkerpoolAuthorization signer, stake locked).
    ///
    /// # Errors
    /// Why the contribution is refused.
    fn contribute(
        &mut self,
        task: &TaskRun,
        worker: Address,
        contribution: &Contribution,
        now_ms: u64,
    ) -> Result<(), String> {
        let _ = (task, worker, contribution, now_ms);
        Ok(())
    }

    /// A worker reveals its digest (ledger: `reveal`).
    ///
    /// # Errors
    /// Why the reveal is refused.
    fn reveal(
        &mut self,
        task: &TaskRun,
        worker: Address,
        digest: &Digest,
        now_ms: u64,
    ) -> Result<(), String> {
        let _ = (task, worker, digest, now_ms);
        Ok(())
    }

    /// The task is final with `result_hash` at `result_link` (ledger: `finalize`: rewards,
    /// slashes, scores).
    fn finalize(
        &mut self,
        task: &TaskRun,
        result_hash: Bytes32,
        result_link: &str,
        now_ms: u64,
    ) -> Settlement {
        let _ = (task, result_hash, result_link, now_ms);
        Settlement::default()
    }

    /// The task failed (ledger: `claim` after the final deadline).
    fn fail(&mut self, task_id: TaskId, reason: &str, now_ms: u64) -> Settlement {
        let _ = (task_id, reason, now_ms);
        Settlement::default()
    }

    /// Whether `worker` can lock the stake a contribution to `deal` needs (or will be funded
    /// before it has to): the pool gives no replica to a worker the ledger would refuse.
    fn can_stake(&self, worker: Address, deal: &DealSummary) -> bool {
        let _ = (worker, deal);
        true
    }

    /// A worker's score and stake.
    fn standing(&self, worker: Address) -> Standing {
        let _ = worker;
        Standing::default()
    }

    /// The settlement of `task` as of now, when it changed after [`PocoHooks::finalize`] or
    /// [`PocoHooks::fail`] returned (a finalize that waited for reveals, a claim that waited for
    /// the final deadline).
    fn settlement(&self, task: &TaskId) -> Option<Settlement> {
        let _ = task;
        None
    }

    /// Time passes: retries what waited for a deadline (claims after the final deadline,
    /// finalizations after the reveal deadline).
    fn tick(&mut self, now_ms: u64) {
        let _ = now_ms;
    }
}

/// No ledger: accepts everything, settles nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLedger;

impl PocoHooks for NoLedger {}
