//! One task's PoCo run: its replicas (one per assigned worker) and its phase.

use std::collections::BTreeMap;

use edgepool_protocol::messages::{Contribution, DealSummary, Message};
use edgepool_protocol::poco;
use edgepool_protocol::primitives::{Address, Bytes32, TaskId};
use edgepool_protocol::status::{NotificationType, ReplicateStatus};
use serde::{Deserialize, Serialize};

use super::{notify, Action, SchedulerError};

/// Where a task is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Waiting for enough agreeing contributions.
    Contributing,
    /// Consensus on `result_hash` at `at_ms`; waiting for reveals and the upload.
    Revealing {
        /// The consensus `resultHash`.
        result_hash: Bytes32,
        /// When consensus was reached.
        at_ms: u64,
        /// The worker asked to upload, once one revealed.
        uploader: Option<Address>,
    },
    /// Final.
    Finalized {
        /// The consensus `resultHash`.
        result_hash: Bytes32,
        /// Where the result is.
        result_link: String,
    },
    /// Failed.
    Failed(String),
}

/// Where one worker's replica is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaState {
    /// Assignment sent.
    Assigned,
    /// The worker accepted.
    Accepted,
    /// The worker declined.
    Declined,
    /// The worker contributed.
    Contributed,
    /// Asked to reveal.
    RevealRequested,
    /// Revealed the consensus digest.
    Revealed,
    /// Asked to upload.
    UploadRequested,
    /// Uploaded the result.
    Uploaded,
    /// Told to complete.
    Completed,
    /// Told to abort.
    Aborted,
}

/// One worker's replica of a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replica {
    /// Its state.
    pub state: ReplicaState,
    /// Its contribution, once received.
    pub contribution: Option<Contribution>,
    /// The last status it reported.
    pub last_status: Option<ReplicateStatus>,
    /// When it was assigned.
    pub assigned_at_ms: u64,
}

impl Replica {
    pub(crate) fn new(now_ms: u64) -> Self {
        Self {
            state: ReplicaState::Assigned,
            contribution: None,
            last_status: None,
            assigned_at_ms: now_ms,
        }
    }
}

/// A task being run by the workerpool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRun {
    /// The task.
    pub task_id: TaskId,
    /// Its deal.
    pub deal: DealSummary,
    /// Its index in the deal.
    pub task_index: u64,
    /// One replica per assigned worker.
    pub replicas: BTreeMap<Address, Replica>,
    /// Its phase.
    pub phase: Phase,
    /// When it was first assigned.
    pub created_at_ms: u64,
    /// The enclave challenge of a TEE task (the SMS's enclave address), zero otherwise.
    pub enclave_challenge: Address,
    /// The ledger decides the consensus ([`super::Scheduler::reach_consensus`]): contributions
    /// are recorded but never counted into a consensus here.
    pub ledger_consensus: bool,
}

impl TaskRun {
    pub(crate) fn new(
        task_id: TaskId,
        deal: DealSummary,
        task_index: u64,
        enclave_challenge: Address,
        now_ms: u64,
    ) -> Self {
        Self {
            task_id,
            deal,
            task_index,
            replicas: BTreeMap::new(),
            phase: Phase::Contributing,
            created_at_ms: now_ms,
            enclave_challenge,
            ledger_consensus: false,
        }
    }

    /// Contributions needed for consensus: the deal's trust, at least 1.
    pub fn required(&self) -> usize {
        usize::try_from(self.deal.trust.max(1)).unwrap_or(usize::MAX)
    }

    fn unexpected(
        &self,
        worker: Address,
        message: &'static str,
        state: ReplicaState,
    ) -> SchedulerError {
        SchedulerError::Unexpected {
            task_id: self.task_id,
            worker,
            message,
            state,
        }
    }

    pub(crate) fn handle(
        &mut self,
        worker: Address,
        message: &Message,
        now_ms: u64,
    ) -> Result<Vec<Action>, SchedulerError> {
        let task_id = self.task_id;
        let state = self
            .replicas
            .get(&worker)
            .map(|r| r.state)
            .ok_or(SchedulerError::NotAssigned { task_id, worker })?;
        match message {
            Message::Accept(_) => {
                if state == ReplicaState::Assigned {
                    self.set_state(worker, ReplicaState::Accepted);
                }
                Ok(Vec::new())
            }
            Message::Decline(_) => {
                if matches!(state, ReplicaState::Assigned | ReplicaState::Accepted) {
                    self.set_state(worker, ReplicaState::Declined);
                }
                // The scheduler fails the task when nobody is left, unless someone places
                // another replica (see `Scheduler::set_replaces_declined`).
                Ok(Vec::new())
            }
            Message::StatusUpdate(update) => {
                if let Some(replica) = self.replicas.get_mut(&worker) {
                    replica.last_status = Some(update.status);
                }
                Ok(Vec::new())
            }
            Message::Contribution(contribution) => {
                self.on_contribution(worker, state, contribution, now_ms)
            }
            Message::Reveal(reveal) => {
                let (result_hash, uploader) = match &self.phase {
                    Phase::Revealing {
                        result_hash,
                        uploader,
                        ..
                    } => (*result_hash, *uploader),
                    // Final for the scheduler (the result is uploaded) but the ledger still
                    // takes reveals until every winner revealed or the reveal deadline: a
                    // contributor asked to reveal (e.g. while its agent was down) still may.
                    Phase::Finalized { result_hash, .. } => (*result_hash, None),
                    _ => return Err(self.unexpected(worker, "reveal", state)),
                };
                if poco::result_hash(&task_id, &reveal.result_digest) != result_hash {
                    return Err(SchedulerError::Conflict {
                        task_id,
                        worker,
                        what: "reveal",
                    });
                }
                match state {
                    ReplicaState::RevealRequested => {}
                    ReplicaState::Revealed
                    | ReplicaState::UploadRequested
                    | ReplicaState::Uploaded => return Ok(Vec::new()),
                    ReplicaState::Completed if matches!(self.phase, Phase::Finalized { .. }) => {
                        return Ok(Vec::new())
                    }
                    other => return Err(self.unexpected(worker, "reveal", other)),
                }
                if matches!(self.phase, Phase::Finalized { .. }) {
                    self.set_state(worker, ReplicaState::Completed);
                    return Ok(vec![notify(
                        worker,
                        task_id,
                        NotificationType::PleaseComplete,
                        None,
                    )]);
                }
                let ask_upload = uploader.is_none();
                self.set_state(worker, ReplicaState::Revealed);
                if ask_upload {
                    if let Phase::Revealing { uploader, .. } = &mut self.phase {
                        *uploader = Some(worker);
                    }
                    self.set_state(worker, ReplicaState::UploadRequested);
                    return Ok(vec![notify(
                        worker,
                        task_id,
                        NotificationType::PleaseUpload,
                        None,
                    )]);
                }
                Ok(Vec::new())
            }
            Message::ResultUploaded(uploaded) => {
                match state {
                    ReplicaState::UploadRequested => {}
                    ReplicaState::Uploaded | ReplicaState::Completed => return Ok(Vec::new()),
                    other => return Err(self.unexpected(worker, "result uploaded", other)),
                }
                let Phase::Revealing { result_hash, .. } = self.phase.clone() else {
                    return Err(self.unexpected(worker, "result uploaded", state));
                };
                self.set_state(worker, ReplicaState::Uploaded);
                self.phase = Phase::Finalized {
                    result_hash,
                    result_link: uploaded.result_link.clone(),
                };
                let mut actions = vec![Action::Finalized {
                    task_id,
                    result_hash,
                    result_link: uploaded.result_link.clone(),
                }];
                for (address, replica) in &mut self.replicas {
                    if matches!(
                        replica.state,
                        ReplicaState::Revealed
                            | ReplicaState::UploadRequested
                            | ReplicaState::Uploaded
                    ) {
                        replica.state = ReplicaState::Completed;
                        actions.push(notify(
                            *address,
                            task_id,
                            NotificationType::PleaseComplete,
                            None,
                        ));
                    }
                }
                Ok(actions)
            }
            other => Err(SchedulerError::NotForScheduler(other.kind().as_str())),
        }
    }

    fn on_contribution(
        &mut self,
        worker: Address,
        state: ReplicaState,
        contribution: &Contribution,
        now_ms: u64,
    ) -> Result<Vec<Action>, SchedulerError> {
        let task_id = self.task_id;
        // A TEE contribution must be signed by this task's enclave key, and a standard task's
        // must not claim one (the PoCo contract checks the same on `contribute`).
        if contribution.enclave_challenge != self.enclave_challenge {
            return Err(SchedulerError::BadContribution(format!(
                "enclave challenge must be {}, found {}",
                self.enclave_challenge, contribution.enclave_challenge
            )));
        }
        contribution
            .verify_hashes(worker)
            .map_err(|e| SchedulerError::BadContribution(e.to_string()))?;
        if let Some(existing) = self
            .replicas
            .get(&worker)
            .and_then(|r| r.contribution.as_ref())
        {
            return if existing == contribution {
                Ok(Vec::new())
            } else {
                Err(SchedulerError::Conflict {
                    task_id,
                    worker,
                    what: "contribution",
                })
            };
        }
        if !matches!(state, ReplicaState::Assigned | ReplicaState::Accepted) {
            return Err(self.unexpected(worker, "contribution", state));
        }
        if now_ms > self.deal.contribution_deadline_ms() {
            return Err(self.unexpected(worker, "late contribution", state));
        }
        if let Some(replica) = self.replicas.get_mut(&worker) {
            replica.contribution = Some(contribution.clone());
            replica.state = ReplicaState::Contributed;
        }
        match &self.phase {
            Phase::Contributing => Ok(self.try_consensus(now_ms)),
            Phase::Revealing { result_hash, .. } => {
                // A late contributor that agrees is asked to reveal too; one that does not is told.
                let (kind, next) = if contribution.result_hash == *result_hash {
                    (
                        NotificationType::PleaseReveal,
                        ReplicaState::RevealRequested,
                    )
                } else {
                    (
                        NotificationType::PleaseAbortConsensusReached,
                        ReplicaState::Aborted,
                    )
                };
                self.set_state(worker, next);
                Ok(vec![notify(worker, task_id, kind, self.reveal_deadline())])
            }
            Phase::Finalized { .. } | Phase::Failed(_) => Ok(Vec::new()),
        }
    }

    fn try_consensus(&mut self, now_ms: u64) -> Vec<Action> {
        if self.ledger_consensus {
            return Vec::new();
        }
        let mut counts: BTreeMap<Bytes32, usize> = BTreeMap::new();
        for replica in self.replicas.values() {
            if let Some(c) = &replica.contribution {
                *counts.entry(c.result_hash).or_default() += 1;
            }
        }
        let Some((&result_hash, _)) = counts.iter().find(|(_, n)| **n >= self.required()) else {
            return Vec::new();
        };
        self.enter_revealing(result_hash, now_ms)
    }

    /// Consensus on `result_hash`: its contributors are asked to reveal, the others aborted.
    /// Nothing happens unless the task is still contributing.
    pub(crate) fn enter_revealing(&mut self, result_hash: Bytes32, now_ms: u64) -> Vec<Action> {
        if self.phase != Phase::Contributing {
            return Vec::new();
        }
        self.phase = Phase::Revealing {
            result_hash,
            at_ms: now_ms,
            uploader: None,
        };
        let deadline = self.reveal_deadline();
        let task_id = self.task_id;
        let mut actions = Vec::new();
        for (address, replica) in &mut self.replicas {
            match &replica.contribution {
                Some(c) if c.result_hash == result_hash => {
                    replica.state = ReplicaState::RevealRequested;
                    actions.push(notify(
                        *address,
                        task_id,
                        NotificationType::PleaseReveal,
                        deadline,
                    ));
                }
                Some(_) => {
                    replica.state = ReplicaState::Aborted;
                    actions.push(notify(
                        *address,
                        task_id,
                        NotificationType::PleaseAbortConsensusReached,
                        None,
                    ));
                }
                None => {}
            }
        }
        actions
    }

    fn reveal_deadline(&self) -> Option<u64> {
        match &self.phase {
            Phase::Revealing { at_ms, .. } => Some(self.deal.reveal_deadline_ms(*at_ms)),
            _ => None,
        }
    }

    fn set_state(&mut self, worker: Address, state: ReplicaState) {
        if let Some(replica) = self.replicas.get_mut(&worker) {
            replica.state = state;
        }
    }

    /// See [`super::Scheduler::abort_reveal`].
    pub(crate) fn abort_reveal(&mut self, worker: Address) -> bool {
        let waiting = matches!(self.phase, Phase::Finalized { .. })
            && self
                .replicas
                .get(&worker)
                .is_some_and(|r| r.state == ReplicaState::RevealRequested);
        if waiting {
            self.set_state(worker, ReplicaState::Aborted);
        }
        waiting
    }

    /// See [`super::Scheduler::reassign_upload`].
    pub(crate) fn reassign_upload(&mut self, worker: Address) -> Vec<Action> {
        let revealed = self
            .replicas
            .get(&worker)
            .is_some_and(|r| r.state == ReplicaState::Revealed);
        let Phase::Revealing { uploader, .. } = &mut self.phase else {
            return Vec::new();
        };
        if !revealed || *uploader == Some(worker) {
            return Vec::new();
        }
        *uploader = Some(worker);
        self.set_state(worker, ReplicaState::UploadRequested);
        vec![notify(
            worker,
            self.task_id,
            NotificationType::PleaseUpload,
            None,
        )]
    }

    /// Fails the task when no replica can still contribute.
    pub(crate) fn fail_if_hopeless(&mut self) -> Vec<Action> {
        if self.phase != Phase::Contributing {
            return Vec::new();
        }
        let live = self
            .replicas
            .values()
            .filter(|r| !matches!(r.state, ReplicaState::Declined | ReplicaState::Aborted))
            .count();
        if live == 0 {
            let reason = "every assigned worker declined".to_string();
            self.phase = Phase::Failed(reason.clone());
            return vec![Action::Failed {
                task_id: self.task_id,
                reason,
            }];
        }
        Vec::new()
    }

    pub(crate) fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let task_id = self.task_id;
        let timed_out = match &self.phase {
            Phase::Contributing => now_ms > self.deal.contribution_deadline_ms(),
            Phase::Revealing { .. } => self.reveal_deadline().is_some_and(|d| now_ms > d),
            Phase::Finalized { .. } | Phase::Failed(_) => false,
        };
        if !timed_out {
            return Vec::new();
        }
        let (kind, reason) = match self.phase {
            Phase::Contributing => (
                NotificationType::PleaseAbortContributionTimeout,
                "no consensus before the contribution deadline",
            ),
            _ => (
                NotificationType::PleaseAbort,
                "no upload before the reveal deadline",
            ),
        };
        self.phase = Phase::Failed(reason.to_string());
        let mut actions = Vec::new();
        for (address, replica) in &mut self.replicas {
            if !matches!(
                replica.state,
                ReplicaState::Declined | ReplicaState::Aborted | ReplicaState::Completed
            ) {
                replica.state = ReplicaState::Aborted;
                actions.push(notify(*address, task_id, kind, None));
            }
        }
        actions.push(Action::Failed {
            task_id,
            reason: reason.to_string(),
        });
        actions
    }
}
