//! The scheduler side of protocol v1 as a pure state machine (no I/O, no clock: time is an
//! argument, and every call returns the messages to send). The simulator wraps it with a broker
//! connection; the agent's tests drive it directly.
//!
//! One [`TaskRun`] per task follows iExec's PoCo flow, simplified to what a workerpool scheduler
//! decides:
//!
//! 1. [`Scheduler::assign`] signs a `WorkerpoolAuthorization` for a worker and sends the
//!    `Assignment`.
//! 2. The worker answers `Accept` or `Decline`, reports `StatusUpdate`s and sends its
//!    `Contribution`; the scheduler checks its hashes against the worker's address.
//! 3. Consensus: as soon as `required` contributions (the deal's trust, at least 1) agree on a
//!    `resultHash`, the contributors with that hash get `PLEASE_REVEAL` (with the reveal deadline)
//!    and the others `PLEASE_ABORT_CONSENSUS_REACHED`.
//! 4. A `Reveal` must carry the digest whose hash reached consensus. The first revealer gets
//!    `PLEASE_UPLOAD`; its `ResultUploaded` finalizes the task and every revealer gets
//!    `PLEASE_COMPLETE`.
//! 5. [`Scheduler::tick`] enforces the contribution and reveal deadlines (`PLEASE_ABORT_*`).
//!
//! TEE deals (tag `tee`): with an SMS attached ([`Scheduler::with_sms`]), `assign` takes the
//! task's enclave challenge from the SMS, a worker's `SecretRequest` is answered by the SMS (the
//! `SecretResponse` is an [`Action::Send`]), and a contribution must carry that challenge and an
//! enclave signature that recovers to it.
//!
//! A duplicate message (QoS 1 redelivery, or a worker re-sending after a restart) changes nothing;
//! a conflicting one (a second, different contribution) is refused with a typed error.

mod task;

use std::collections::BTreeMap;

use edgepool_protocol::messages::{
    Assignment, DealSummary, Message, Notification, SecretRequest, TaskLimits,
};
use edgepool_protocol::poco::{self, WorkerpoolAuthorization};
use edgepool_protocol::primitives::{Address, Bytes32, DealId, TaskId};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::status::NotificationType;

pub use task::{Phase, ReplicaState, TaskRun};

use crate::sms::{DatasetRestrictions, Sms, TaskContext};

/// What the scheduler wants done.
// Most actions are `Send`s of a message; boxing it would cost an allocation per action for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Publish `message` on `worker`'s inbox.
    Send {
        /// The worker.
        worker: Address,
        /// The message.
        message: Message,
    },
    /// The task is final: consensus reached and the result uploaded.
    Finalized {
        /// The task.
        task_id: TaskId,
        /// The consensus `resultHash`.
        result_hash: Bytes32,
        /// Where the result is.
        result_link: String,
    },
    /// The task failed (no consensus before the deadline, every worker declined, …).
    Failed {
        /// The task.
        task_id: TaskId,
        /// Why.
        reason: String,
    },
}

/// Why a message from a worker was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    /// The task is not known.
    #[error("unknown task {0}")]
    UnknownTask(TaskId),
    /// The task was not assigned to this worker.
    #[error("task {task_id} is not assigned to {worker}")]
    NotAssigned {
        /// The task.
        task_id: TaskId,
        /// The sender.
        worker: Address,
    },
    /// The task is already assigned to this worker.
    #[error("task {task_id} is already assigned to {worker}")]
    AlreadyAssigned {
        /// The task.
        task_id: TaskId,
        /// The worker.
        worker: Address,
    },
    /// The task index is outside the deal's bag of tasks.
    #[error("task index {index} is outside the deal ({bot_first}, size {bot_size})")]
    IndexOutsideDeal {
        /// The index.
        index: u64,
        /// First index of the deal.
        bot_first: u64,
        /// Number of tasks of the deal.
        bot_size: u64,
    },
    /// The contribution's hashes do not match the sender and digest.
    #[error("bad contribution: {0}")]
    BadContribution(String),
    /// The message does not fit the replica's state (a reveal before PLEASE_REVEAL, …).
    #[error("{message} from {worker} for {task_id} is not expected in state {state:?}")]
    Unexpected {
        /// The task.
        task_id: TaskId,
        /// The sender.
        worker: Address,
        /// The message kind.
        message: &'static str,
        /// The replica's state.
        state: ReplicaState,
    },
    /// A second contribution or reveal that differs from the first.
    #[error("conflicting {what} from {worker} for {task_id}")]
    Conflict {
        /// The task.
        task_id: TaskId,
        /// The sender.
        worker: Address,
        /// What conflicts.
        what: &'static str,
    },
    /// A message kind a worker never sends to the scheduler.
    #[error("a {0} message is not for the scheduler")]
    NotForScheduler(&'static str),
    /// A TEE deal or a secret request, and no SMS is attached.
    #[error("task {0} needs the SMS and none is attached")]
    NoSms(TaskId),
    /// The SMS could not make the enclave key.
    #[error("the SMS failed: {0}")]
    Sms(String),
}

/// The scheduler of one workerpool.
#[derive(Debug)]
pub struct Scheduler {
    signer: Signer,
    tasks: BTreeMap<TaskId, TaskRun>,
    sms: Option<Sms>,
    workerpool: Address,
    restrictions: BTreeMap<DealId, DatasetRestrictions>,
    ledger_consensus: bool,
    replaces_declined: bool,
}

impl Scheduler {
    /// A scheduler signing with `signer` (the workerpool owner's key).
    pub fn new(signer: Signer) -> Self {
        Self {
            signer,
            tasks: BTreeMap::new(),
            sms: None,
            workerpool: Address::ZERO,
            restrictions: BTreeMap::new(),
            ledger_consensus: false,
            replaces_declined: false,
        }
    }

    /// Whether someone places another replica when one is declined (the pool does): then a
    /// task whose every replica declined stays contributing, until its contribution deadline,
    /// instead of failing at once. A worker declines when it is busy (`NO_FREE_SLOT`), which
    /// says nothing about the task.
    pub fn set_replaces_declined(&mut self, on: bool) {
        self.replaces_declined = on;
    }

    /// Gives up waiting for `worker`'s reveal on a task that is already final (the ledger
    /// settled it without that reveal, or the reveal deadline passed): the replica is aborted.
    /// Returns whether it was waiting for that reveal.
    pub fn abort_reveal(&mut self, task_id: &TaskId, worker: Address) -> bool {
        self.tasks
            .get_mut(task_id)
            .is_some_and(|run| run.abort_reveal(worker))
    }

    /// Moves the upload of a revealing task from its uploader (lost) to `worker`, which has
    /// revealed: `worker` gets `PLEASE_UPLOAD`. The previous uploader may still finish its
    /// upload (the first `RESULT_UPLOADED` finalizes). Nothing happens unless `worker` revealed.
    pub fn reassign_upload(&mut self, task_id: &TaskId, worker: Address) -> Vec<Action> {
        let actions = self
            .tasks
            .get_mut(task_id)
            .map(|run| run.reassign_upload(worker))
            .unwrap_or_default();
        self.forget_finished(actions)
    }

    /// Lets the ledger decide every consensus from now on: contributions are recorded, and a
    /// task moves to revealing only through [`Scheduler::reach_consensus`] (the PoCo ledger
    /// weighs contributions by score, which a count of agreeing contributions does not).
    pub fn set_ledger_consensus(&mut self, on: bool) {
        self.ledger_consensus = on;
    }

    /// The ledger reached consensus on `result_hash` for `task_id`: the agreeing contributors
    /// get `PLEASE_REVEAL`, the others `PLEASE_ABORT_CONSENSUS_REACHED`. Nothing happens for an
    /// unknown task or one no longer contributing.
    pub fn reach_consensus(
        &mut self,
        task_id: &TaskId,
        result_hash: Bytes32,
        now_ms: u64,
    ) -> Vec<Action> {
        let actions = self
            .tasks
            .get_mut(task_id)
            .map(|run| run.enter_revealing(result_hash, now_ms))
            .unwrap_or_default();
        self.forget_finished(actions)
    }

    /// This scheduler with `sms` serving the TEE deals of `workerpool`.
    #[must_use]
    pub fn with_sms(mut self, sms: Sms, workerpool: Address) -> Self {
        self.sms = Some(sms);
        self.workerpool = workerpool;
        self
    }

    /// The SMS, if attached.
    pub fn sms(&self) -> Option<&Sms> {
        self.sms.as_ref()
    }

    /// The SMS, if attached, to push secrets or change its policy.
    pub fn sms_mut(&mut self) -> Option<&mut Sms> {
        self.sms.as_mut()
    }

    /// Records the restrictions of the dataset order `deal` matched (none = any).
    pub fn restrict_dataset(&mut self, deal: DealId, restrictions: DatasetRestrictions) {
        self.restrictions.insert(deal, restrictions);
    }

    /// The scheduler's address (what agents are configured to trust).
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// A task, if known.
    pub fn task(&self, task_id: &TaskId) -> Option<&TaskRun> {
        self.tasks.get(task_id)
    }

    /// Every task.
    pub fn tasks(&self) -> impl Iterator<Item = &TaskRun> {
        self.tasks.values()
    }

    /// Assigns task `task_index` of `deal` to `worker`. `enclave_challenge` is the zero address
    /// for a standard task; for a TEE deal with an SMS attached it is ignored and the SMS's
    /// challenge for the task is used.
    ///
    /// # Errors
    /// [`SchedulerError::IndexOutsideDeal`], [`SchedulerError::AlreadyAssigned`],
    /// [`SchedulerError::Sms`].
    pub fn assign(
        &mut self,
        deal: &DealSummary,
        task_index: u64,
        worker: Address,
        limits: TaskLimits,
        enclave_challenge: Address,
        now_ms: u64,
    ) -> Result<Vec<Action>, SchedulerError> {
        let in_deal = task_index
            .checked_sub(deal.bot_first)
            .is_some_and(|offset| offset < deal.bot_size);
        if !in_deal {
            return Err(SchedulerError::IndexOutsideDeal {
                index: task_index,
                bot_first: deal.bot_first,
                bot_size: deal.bot_size,
            });
        }
        let task_id = poco::task_id(&deal.deal_id, task_index);
        if self
            .tasks
            .get(&task_id)
            .is_some_and(|run| run.replicas.contains_key(&worker))
        {
            return Err(SchedulerError::AlreadyAssigned { task_id, worker });
        }
        let enclave_challenge = match &mut self.sms {
            Some(sms) if deal.tag.is_tee() => sms
                .enclave_challenge(task_id)
                .map_err(|e| SchedulerError::Sms(e.to_string()))?,
            _ => enclave_challenge,
        };
        let ledger_consensus = self.ledger_consensus;
        let run = self.tasks.entry(task_id).or_insert_with(|| {
            let mut run =
                TaskRun::new(task_id, deal.clone(), task_index, enclave_challenge, now_ms);
            run.ledger_consensus = ledger_consensus;
            run
        });
        run.replicas.insert(worker, task::Replica::new(now_ms));
        let authorization =
            WorkerpoolAuthorization::sign(&self.signer, worker, task_id, enclave_challenge);
        Ok(vec![Action::Send {
            worker,
            message: Message::Assignment(Assignment {
                deal: deal.clone(),
                task_index,
                task_id,
                authorization,
                limits,
            }),
        }])
    }

    /// Puts back a task run recovered from the pool's journal (replacing any run of that task).
    pub fn restore_task(&mut self, run: TaskRun) {
        if matches!(run.phase, Phase::Finalized { .. } | Phase::Failed(_)) {
            if let Some(sms) = &mut self.sms {
                sms.forget_task(&run.task_id);
            }
        }
        self.tasks.insert(run.task_id, run);
    }

    /// `actions`, after the SMS forgot the enclave keys of the tasks they finalize or fail.
    fn forget_finished(&mut self, actions: Vec<Action>) -> Vec<Action> {
        if let Some(sms) = &mut self.sms {
            for action in &actions {
                if let Action::Finalized { task_id, .. } | Action::Failed { task_id, .. } = action {
                    sms.forget_task(task_id);
                }
            }
        }
        actions
    }

    /// The assignment of `task_id` to `worker` again (a re-send after a restart or a
    /// reconnect: the same authorization, signed again, in a new envelope), or `None` when the
    /// task is not assigned to that worker.
    pub fn assignment(
        &self,
        task_id: &TaskId,
        worker: Address,
        limits: TaskLimits,
    ) -> Option<Message> {
        let run = self.tasks.get(task_id)?;
        run.replicas.get(&worker)?;
        let authorization =
            WorkerpoolAuthorization::sign(&self.signer, worker, *task_id, run.enclave_challenge);
        Some(Message::Assignment(Assignment {
            deal: run.deal.clone(),
            task_index: run.task_index,
            task_id: *task_id,
            authorization,
            limits,
        }))
    }

    /// The authorization of `worker` on `task_id`, signed again (for a ledger reloaded after a
    /// restart), or `None` when the task is not assigned to that worker.
    pub fn authorization(
        &self,
        task_id: &TaskId,
        worker: Address,
    ) -> Option<WorkerpoolAuthorization> {
        let run = self.tasks.get(task_id)?;
        run.replicas.get(&worker)?;
        Some(WorkerpoolAuthorization::sign(
            &self.signer,
            worker,
            *task_id,
            run.enclave_challenge,
        ))
    }

    /// Handles a message from `worker`.
    ///
    /// # Errors
    /// [`SchedulerError`] when the message is refused; the state is then unchanged.
    pub fn handle(
        &mut self,
        worker: Address,
        message: &Message,
        now_ms: u64,
    ) -> Result<Vec<Action>, SchedulerError> {
        let Some(task_id) = message.task_id() else {
            return match message {
                // Load reports are the simulator's business, not the task state machine's.
                Message::Heartbeat(_) | Message::Capacity(_) => Ok(Vec::new()),
                other => Err(SchedulerError::NotForScheduler(other.kind().as_str())),
            };
        };
        if let Message::SecretRequest(request) = message {
            return self.on_secret_request(worker, request, now_ms);
        }
        let run = self
            .tasks
            .get_mut(&task_id)
            .ok_or(SchedulerError::UnknownTask(task_id))?;
        let mut actions = run.handle(worker, message, now_ms)?;
        if matches!(message, Message::Decline(_)) && !self.replaces_declined {
            actions.extend(run.fail_if_hopeless());
        }
        Ok(self.forget_finished(actions))
    }

    /// Relays a worker's secret request to the SMS with what the SMS must know about the task,
    /// and sends its answer back.
    fn on_secret_request(
        &mut self,
        worker: Address,
        request: &SecretRequest,
        now_ms: u64,
    ) -> Result<Vec<Action>, SchedulerError> {
        let task_id = request.task_id;
        let run = self
            .tasks
            .get(&task_id)
            .ok_or(SchedulerError::UnknownTask(task_id))?;
        let state = run
            .replicas
            .get(&worker)
            .map(|r| r.state)
            .ok_or(SchedulerError::NotAssigned { task_id, worker })?;
        let sms = self.sms.as_ref().ok_or(SchedulerError::NoSms(task_id))?;
        let active = matches!(run.phase, Phase::Contributing | Phase::Revealing { .. })
            && matches!(state, ReplicaState::Assigned | ReplicaState::Accepted)
            && now_ms < run.deal.contribution_deadline_ms();
        let ctx = TaskContext {
            task_id,
            deal: run.deal.clone(),
            workerpool: self.workerpool,
            active,
            dataset_restrictions: self
                .restrictions
                .get(&run.deal.deal_id)
                .copied()
                .unwrap_or_default(),
        };
        let response = sms.handle(request, worker, &ctx, now_ms / 1000);
        Ok(vec![Action::Send {
            worker,
            message: Message::SecretResponse(response),
        }])
    }

    /// Enforces deadlines at `now_ms`.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let actions = self
            .tasks
            .values_mut()
            .flat_map(|run| run.tick(now_ms))
            .collect();
        self.forget_finished(actions)
    }
}

/// A notification for one task.
pub(crate) fn notify(
    worker: Address,
    task_id: TaskId,
    kind: NotificationType,
    deadline_ms: Option<u64>,
) -> Action {
    Action::Send {
        worker,
        message: Message::Notification(Notification {
            task_id,
            kind,
            deadline_ms,
            detail: None,
        }),
    }
}

#[cfg(test)]
mod tests;
