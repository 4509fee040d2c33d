//! The ledger's records: accounts, registry entries, categories, deals, tasks and settlements.
//!
//! Plain data (serde, persisted as JSON rows by the ledger's store); the rules live in
//! [`super::Ledger`].

use edgepool_protocol::messages::DealSummary;
use edgepool_protocol::poco::consensus::Tally;
use edgepool_protocol::status::ChainTaskStatus;
use edgepool_protocol::{Address, Bytes32, DealId, Digest, TaskId};
use serde::{Deserialize, Serialize};

/// iExec's kitty (`KITTY_ADDRESS`): the frozen balance that collects the workerpool stakes of
/// failed tasks and pays part of them to the schedulers of later successful tasks.
pub const KITTY: Address = Address([
    0x99, 0xc2, 0x26, 0x84, 0x79, 0xb9, 0x3f, 0xde, 0x36, 0x23, 0x23, 0x51, 0x22, 0x98, 0x15, 0xdf,
    0x80, 0x83, 0x7e, 0x23,
]);

/// An account of the escrow (amounts in nRLC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Free balance.
    pub balance: u64,
    /// Locked: requester escrow of open deals, workerpool stakes, worker contribution stakes.
    pub frozen: u64,
    /// The worker score (`m_workerScores`), which sets its consensus weight.
    pub score: u64,
}

/// A registered app (a WebAssembly module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Its registry address.
    pub address: Address,
    /// Who receives the app price.
    pub owner: Address,
    /// Its name.
    pub name: String,
    /// Where to fetch it (the multiaddr).
    pub url: String,
    /// `sha256` of the module.
    pub checksum: Digest,
    /// Its size when known.
    pub size_bytes: Option<u64>,
}

/// A registered dataset (an encrypted file whose key the SMS holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    /// Its registry address.
    pub address: Address,
    /// Who receives the dataset price.
    pub owner: Address,
    /// Its name, also the file name the app sees (`IEXEC_DATASET_FILENAME`).
    pub name: String,
    /// Where to fetch the encrypted file.
    pub url: String,
    /// `sha256` of the encrypted file.
    pub checksum: Digest,
    /// Its size when known.
    pub size_bytes: Option<u64>,
}

/// A registered workerpool and its policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workerpool {
    /// Its registry address.
    pub address: Address,
    /// The scheduler: signs WorkerpoolAuthorizations, stakes per task, gets the scheduler share.
    pub owner: Address,
    /// Free text.
    pub description: String,
    /// Percent of the workerpool price a worker stakes per contribution
    /// (`m_workerStakeRatioPolicy`), 0..=100.
    pub worker_stake_ratio: u64,
    /// Percent of the reward pot the scheduler keeps (`m_schedulerRewardRatioPolicy`), 0..=100.
    pub scheduler_reward_ratio: u64,
}

/// A category: a class of tasks with its reference time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// Its index.
    pub id: u64,
    /// Its name (`XS`, `S`, …).
    pub name: String,
    /// `workClockTimeRef`, in seconds; never zero.
    pub time_ref_seconds: u64,
}

/// The order hashes a deal consumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealOrders {
    /// The app order.
    pub app: Bytes32,
    /// The dataset order, when the deal has a dataset.
    pub dataset: Option<Bytes32>,
    /// The workerpool order.
    pub workerpool: Bytes32,
    /// The request order.
    pub request: Bytes32,
}

/// A deal: matched orders, with the economics every task of it shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deal {
    /// What the scheduler and the workers see (deadlines come from it).
    pub summary: DealSummary,
    /// The workerpool.
    pub workerpool: Address,
    /// The workerpool owner (scheduler).
    pub workerpool_owner: Address,
    /// The app owner.
    pub app_owner: Address,
    /// The dataset owner, when the deal has a dataset.
    pub dataset_owner: Option<Address>,
    /// App price per task.
    pub app_price: u64,
    /// Dataset price per task.
    pub dataset_price: u64,
    /// Workerpool price per task.
    pub workerpool_price: u64,
    /// What the requester pays per task: app + dataset + workerpool price.
    pub task_price: u64,
    /// What a worker locks per contribution.
    pub worker_stake: u64,
    /// What the workerpool owner locks per task.
    pub workerpool_stake: u64,
    /// Percent of the reward pot the scheduler keeps.
    pub scheduler_reward_ratio: u64,
    /// The orders it consumed.
    pub orders: DealOrders,
}

/// Where a contribution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContributionStatus {
    /// Contributed, not revealed.
    Contributed,
    /// Revealed the consensus digest.
    Proved,
}

/// One worker's contribution to a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contribution {
    /// The worker.
    pub worker: Address,
    /// Where it stands.
    pub status: ContributionStatus,
    /// `keccak256(taskId ‖ digest)`.
    pub result_hash: Bytes32,
    /// `keccak256(worker ‖ taskId ‖ digest)`.
    pub result_seal: Bytes32,
    /// The enclave challenge, [`Address::ZERO`] for a standard task.
    pub enclave_challenge: Address,
    /// Its consensus weight ([`edgepool_protocol::poco::consensus::worker_weight`] of the score
    /// it had when contributing).
    pub weight: u64,
    /// When it was accepted (unix ms).
    pub at_ms: u64,
}

/// A task of a deal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// `keccak256(dealId ‖ index)`.
    pub task_id: TaskId,
    /// Its deal.
    pub deal_id: DealId,
    /// Its index in the deal.
    pub index: u64,
    /// ACTIVE, REVEALING, COMPLETED or FAILED (UNSET tasks have no record).
    pub status: ChainTaskStatus,
    /// `start + 7·timeref` (unix ms).
    pub contribution_deadline_ms: u64,
    /// `consensus + 2·timeref` once consensus is reached.
    pub reveal_deadline_ms: Option<u64>,
    /// `start + 10·timeref` (unix ms).
    pub final_deadline_ms: u64,
    /// The consensus result hash once reached.
    pub consensus: Option<Bytes32>,
    /// How many contributors are in the consensus group (`winnerCounter`).
    pub winner_counter: u64,
    /// How many of them revealed (`revealCounter`).
    pub reveal_counter: u64,
    /// The revealed digest.
    pub result_digest: Option<Digest>,
    /// What `finalize` recorded (the result link).
    pub results: Vec<u8>,
    /// Contributions in arrival order (`task.contributors`).
    pub contributions: Vec<Contribution>,
    /// The running consensus.
    pub tally: Tally,
}

impl Task {
    /// The contribution of `worker`, if any.
    pub fn contribution(&self, worker: &Address) -> Option<&Contribution> {
        self.contributions.iter().find(|c| &c.worker == worker)
    }
}

/// What happened to one contributor when its task settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerOutcome {
    /// Revealed the consensus: stake back plus a reward.
    Rewarded,
    /// Wrong or silent: stake seized, score ×2/3.
    Slashed,
    /// The task failed (claimed): stake back, score unchanged.
    Refunded,
}

/// One contributor's line in a [`Settlement`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSettlement {
    /// The worker.
    pub worker: Address,
    /// The hash it contributed.
    pub result_hash: Bytes32,
    /// What happened.
    pub outcome: WorkerOutcome,
    /// Its stake (returned or seized).
    pub stake: u64,
    /// Its reward on top of the returned stake.
    pub reward: u64,
    /// Its score before settlement.
    pub score_before: u64,
    /// Its score after.
    pub score_after: u64,
}

/// How a task ended, with every transfer it caused (for the report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The task.
    pub task_id: TaskId,
    /// Its deal.
    pub deal_id: DealId,
    /// COMPLETED (finalized) or FAILED (claimed).
    pub status: ChainTaskStatus,
    /// When (unix ms).
    pub at_ms: u64,
    /// The consensus result hash, if one was reached.
    pub consensus: Option<Bytes32>,
    /// The revealed digest, if any.
    pub result_digest: Option<Digest>,
    /// The requester.
    pub requester: Address,
    /// What the requester paid (task price on success, 0 on failure).
    pub requester_paid: u64,
    /// What the requester got back (task price on failure, 0 on success).
    pub requester_refunded: u64,
    /// Paid to the app owner.
    pub app_owner_reward: u64,
    /// Paid to the dataset owner.
    pub dataset_owner_reward: u64,
    /// Paid to the scheduler: its share of the pot, rounding remainders and the kitty share.
    pub scheduler_reward: u64,
    /// The workerpool stake: returned on success, seized into the kitty on failure.
    pub workerpool_stake: u64,
    /// Per contributor, in contribution order.
    pub workers: Vec<WorkerSettlement>,
}
