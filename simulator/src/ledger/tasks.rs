//! `initialize`, `contribute` and `reveal`.

use edgepool_protocol::messages;
use edgepool_protocol::poco::consensus::{worker_weight, Tally};
use edgepool_protocol::poco::{self, WorkerpoolAuthorization};
use edgepool_protocol::status::ChainTaskStatus;
use edgepool_protocol::{Address, Bytes32, DealId, Digest, Signature, TaskId};

use super::batch::Batch;
use super::error::LedgerError;
use super::model::{Contribution, ContributionStatus, Task};
use super::Ledger;

/// The arguments of `contribute` (the contract's calldata plus `msg.sender`).
#[derive(Debug, Clone, Copy)]
pub struct ContributeCall<'a> {
    /// The contributing worker (`msg.sender`; the caller has authenticated it).
    pub worker: Address,
    /// The task.
    pub task_id: TaskId,
    /// `keccak256(taskId ‖ digest)`.
    pub result_hash: Bytes32,
    /// `keccak256(worker ‖ taskId ‖ digest)`.
    pub result_seal: Bytes32,
    /// The per-task enclave address, [`Address::ZERO`] for a standard task.
    pub enclave_challenge: Address,
    /// The enclave's EIP-191 signature of `keccak256(resultHash ‖ resultSeal)` (65 bytes);
    /// ignored when the challenge is zero (iExec sends 32 zero bytes then).
    pub enclave_signature: &'a [u8],
    /// The workerpool owner's signature of `keccak256(worker ‖ taskId ‖ enclaveChallenge)`.
    pub authorization: &'a Signature,
}

impl<'a> ContributeCall<'a> {
    /// The call a worker's protocol [`messages::Contribution`] and its authorization make.
    pub fn from_message(
        worker: Address,
        contribution: &'a messages::Contribution,
        authorization: &'a WorkerpoolAuthorization,
    ) -> Self {
        Self {
            worker,
            task_id: contribution.task_id,
            result_hash: contribution.result_hash,
            result_seal: contribution.result_seal,
            enclave_challenge: contribution.enclave_challenge,
            enclave_signature: &contribution.enclave_signature,
            authorization: &authorization.signature,
        }
    }
}

/// What an accepted contribution led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContributeOutcome {
    /// The consensus result hash when this contribution completed it (the task is then
    /// REVEALING); `None` while the task stays ACTIVE.
    pub consensus: Option<Bytes32>,
    /// The reveal deadline (unix ms) when consensus was reached.
    pub reveal_deadline_ms: Option<u64>,
    /// The stake the worker locked.
    pub stake: u64,
}

/// What an accepted reveal led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevealOutcome {
    /// Reveals so far.
    pub revealed: u64,
    /// Contributors in the consensus group: when equal to `revealed`, finalize may run at once.
    pub winners: u64,
}

fn expect_status(task: &Task, expected: ChainTaskStatus) -> Result<(), LedgerError> {
    if task.status == expected {
        Ok(())
    } else {
        Err(LedgerError::WrongTaskStatus {
            task: task.task_id,
            expected: expected.as_str(),
            found: task.status,
        })
    }
}

impl Ledger {
    /// Initializes task `index` of a deal (`initialize`): UNSET → ACTIVE, with its deadlines
    /// from the deal's start and its category's timeref (so it takes no time argument: the
    /// contract checks no deadline here either).
    ///
    /// # Errors
    /// [`LedgerError::UnknownDeal`], [`LedgerError::TaskIndexOutOfRange`],
    /// [`LedgerError::AlreadyInitialized`], [`LedgerError::Store`].
    pub fn initialize(&mut self, deal_id: &DealId, index: u64) -> Result<TaskId, LedgerError> {
        let deal = self
            .state
            .deals
            .get(deal_id)
            .ok_or(LedgerError::UnknownDeal(*deal_id))?;
        let summary = &deal.summary;
        let end = summary.bot_first.saturating_add(summary.bot_size);
        if index < summary.bot_first || index >= end {
            return Err(LedgerError::TaskIndexOutOfRange {
                index,
                first: summary.bot_first,
                size: summary.bot_size,
            });
        }
        let task_id = poco::task_id(deal_id, index);
        if self.state.tasks.contains_key(&task_id) {
            return Err(LedgerError::AlreadyInitialized(task_id));
        }
        let task = Task {
            task_id,
            deal_id: *deal_id,
            index,
            status: ChainTaskStatus::Active,
            contribution_deadline_ms: summary.contribution_deadline_ms(),
            reveal_deadline_ms: None,
            final_deadline_ms: summary.final_deadline_ms(),
            consensus: None,
            winner_counter: 0,
            reveal_counter: 0,
            result_digest: None,
            results: Vec::new(),
            contributions: Vec::new(),
            tally: Tally::new(),
        };
        let mut batch = Batch::new(&self.state);
        batch.changes.tasks.push(task);
        let changes = batch.finish()?;
        self.commit(changes)?;
        Ok(task_id)
    }

    /// A worker's contribution (`contribute`), at `now_ms`.
    ///
    /// Checks: the task is ACTIVE; `now < contribution deadline`; the worker has not
    /// contributed; a `tee` deal has a non-zero enclave challenge; the authorization is the
    /// workerpool owner's EIP-191 signature over `keccak256(worker ‖ taskId ‖ challenge)`; with
    /// a non-zero challenge, the enclave signature recovers to it over
    /// `keccak256(resultHash ‖ resultSeal)`; the worker can lock the deal's worker stake. Then
    /// the stake is locked and the consensus tally updated; reaching consensus moves the task
    /// to REVEALING with a reveal deadline of `now + 2·timeref`.
    ///
    /// # Errors
    /// [`LedgerError::UnknownTask`], [`LedgerError::WrongTaskStatus`],
    /// [`LedgerError::DeadlinePassed`], [`LedgerError::AlreadyContributed`],
    /// [`LedgerError::EnclaveChallengeRequired`], [`LedgerError::Unauthorized`],
    /// [`LedgerError::BadEnclaveSignature`], [`LedgerError::InsufficientBalance`],
    /// [`LedgerError::Store`].
    pub fn contribute(
        &mut self,
        call: &ContributeCall<'_>,
        now_ms: u64,
    ) -> Result<ContributeOutcome, LedgerError> {
        let task = self
            .state
            .tasks
            .get(&call.task_id)
            .ok_or(LedgerError::UnknownTask(call.task_id))?;
        let deal = self
            .state
            .deals
            .get(&task.deal_id)
            .ok_or(LedgerError::UnknownDeal(task.deal_id))?;
        expect_status(task, ChainTaskStatus::Active)?;
        if now_ms >= task.contribution_deadline_ms {
            return Err(LedgerError::DeadlinePassed {
                deadline: "contribution",
                deadline_ms: task.contribution_deadline_ms,
                now_ms,
            });
        }
        if task.contribution(&call.worker).is_some() {
            return Err(LedgerError::AlreadyContributed(call.worker));
        }
        if call.enclave_challenge.is_zero() && deal.summary.tag.is_tee() {
            return Err(LedgerError::EnclaveChallengeRequired);
        }
        let authorization_hash =
            poco::authorization_hash(&call.worker, &call.task_id, &call.enclave_challenge);
        call.authorization
            .verify_personal(authorization_hash.as_bytes(), deal.workerpool_owner)
            .map_err(|source| LedgerError::Unauthorized {
                expected: deal.workerpool_owner,
                source,
            })?;
        if !call.enclave_challenge.is_zero() {
            let message = poco::enclave_message_hash(&call.result_hash, &call.result_seal);
            Signature::from_slice(call.enclave_signature)
                .and_then(|sig| sig.verify_personal(message.as_bytes(), call.enclave_challenge))
                .map_err(|source| LedgerError::BadEnclaveSignature {
                    challenge: call.enclave_challenge,
                    source,
                })?;
        }

        let mut batch = Batch::new(&self.state);
        batch.lock(call.worker, deal.worker_stake)?;
        let score = batch.account(&call.worker).score;
        let mut task = task.clone();
        task.contributions.push(Contribution {
            worker: call.worker,
            status: ContributionStatus::Contributed,
            result_hash: call.result_hash,
            result_seal: call.result_seal,
            enclave_challenge: call.enclave_challenge,
            weight: worker_weight(score),
            at_ms: now_ms,
        });
        let mut outcome = ContributeOutcome {
            consensus: None,
            reveal_deadline_ms: None,
            stake: deal.worker_stake,
        };
        if task
            .tally
            .contribute(call.result_hash, score, deal.summary.trust)
        {
            let reveal_deadline = deal.summary.reveal_deadline_ms(now_ms);
            task.status = ChainTaskStatus::Revealing;
            task.consensus = Some(call.result_hash);
            task.reveal_deadline_ms = Some(reveal_deadline);
            task.reveal_counter = 0;
            task.winner_counter = task
                .contributions
                .iter()
                .filter(|c| c.result_hash == call.result_hash)
                .count() as u64;
            outcome.consensus = Some(call.result_hash);
            outcome.reveal_deadline_ms = Some(reveal_deadline);
        }
        batch.changes.tasks.push(task);
        let changes = batch.finish()?;
        self.commit(changes)?;
        Ok(outcome)
    }

    /// A worker reveals its digest (`reveal`), at `now_ms`.
    ///
    /// Checks: the task is REVEALING; `now < reveal deadline`; the worker contributed and did
    /// not reveal yet; its hash is the consensus; `keccak256(taskId ‖ digest)` is its result hash
    /// and `keccak256(worker ‖ taskId ‖ digest)` its seal.
    ///
    /// # Errors
    /// [`LedgerError::UnknownTask`], [`LedgerError::WrongTaskStatus`],
    /// [`LedgerError::DeadlinePassed`], [`LedgerError::NothingToReveal`],
    /// [`LedgerError::NotInConsensus`], [`LedgerError::RevealMismatch`], [`LedgerError::Store`].
    pub fn reveal(
        &mut self,
        worker: Address,
        task_id: &TaskId,
        result_digest: Digest,
        now_ms: u64,
    ) -> Result<RevealOutcome, LedgerError> {
        let task = self
            .state
            .tasks
            .get(task_id)
            .ok_or(LedgerError::UnknownTask(*task_id))?;
        expect_status(task, ChainTaskStatus::Revealing)?;
        let deadline = task.reveal_deadline_ms.unwrap_or(0);
        if now_ms >= deadline {
            return Err(LedgerError::DeadlinePassed {
                deadline: "reveal",
                deadline_ms: deadline,
                now_ms,
            });
        }
        let position = task
            .contributions
            .iter()
            .position(|c| c.worker == worker && c.status == ContributionStatus::Contributed)
            .ok_or(LedgerError::NothingToReveal(worker))?;
        let contribution = &task.contributions[position];
        if Some(contribution.result_hash) != task.consensus {
            return Err(LedgerError::NotInConsensus(worker));
        }
        if contribution.result_hash != poco::result_hash(task_id, &result_digest) {
            return Err(LedgerError::RevealMismatch("result hash"));
        }
        if contribution.result_seal != poco::result_seal(&worker, task_id, &result_digest) {
            return Err(LedgerError::RevealMismatch("result seal"));
        }
        let mut task = task.clone();
        task.contributions[position].status = ContributionStatus::Proved;
        task.reveal_counter += 1;
        task.result_digest = Some(result_digest);
        let outcome = RevealOutcome {
            revealed: task.reveal_counter,
            winners: task.winner_counter,
        };
        let mut batch = Batch::new(&self.state);
        batch.changes.tasks.push(task);
        let changes = batch.finish()?;
        self.commit(changes)?;
        Ok(outcome)
    }
}
