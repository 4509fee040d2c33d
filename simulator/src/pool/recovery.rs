//! What makes the pool restart-safe and reconnect-safe, still without I/O:
//!
//! - **Journal**: every task the pool changed is marked (`touch`); [`PoolCore::take_journal`]
//!   encodes those tasks (the pool's book and the scheduler's run, postcard), the workers whose
//!   accepted sequence number grew and the pool's outgoing sequence number into one
//!   [`JournalBatch`], which the shell commits before it publishes anything of that turn.
//! - **Recovery**: [`PoolCore::restore`] puts the tasks back (scheduler runs, placement wishes,
//!   worker loads, upload permissions, the ledger's authorizations and any settlement the ledger
//!   had not made yet), then tells each worker with an open replica what to do next.
//! - **Re-sending**: when a worker (re)appears, what it may have missed is sent again, in new
//!   envelopes with fresh sequence numbers (agents refuse a replayed sequence, and handle a
//!   repeated assignment or notification as a no-op). Bounded: at most [`RESEND_MAX`] messages
//!   per worker and round, at most one round per worker every [`RESEND_INTERVAL_MS`], and a
//!   final notification (`PLEASE_COMPLETE`, `PLEASE_ABORT*`) is sent again only once.

use edgepool_protocol::messages::{Message, Notification};
use edgepool_protocol::primitives::{Address, TaskId};
use edgepool_protocol::status::NotificationType;
use edgepool_protocol::topics::Topic;
use serde::{Deserialize, Serialize};

use super::journal::{JournalBatch, Recovered};
use super::{short, PoolCore, TaskBook};
use crate::scheduler::{Phase, ReplicaState, TaskRun};

/// At most this many messages are sent again to one worker in one round.
pub const RESEND_MAX: usize = 256;
/// At most one re-send round per worker this often.
pub const RESEND_INTERVAL_MS: u64 = 2_000;

#[derive(Serialize)]
struct SnapshotRef<'a> {
    book: &'a TaskBook,
    run: Option<&'a TaskRun>,
}

#[derive(Deserialize)]
struct Snapshot {
    book: TaskBook,
    run: Option<TaskRun>,
}

/// Why a journal could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A task row does not decode.
    #[error("pool journal: task row {row} does not decode: {why}")]
    Decode {
        /// Its position in the journal.
        row: usize,
        /// The decoder's message.
        why: String,
    },
    /// The pool already has tasks.
    #[error("a journal is restored into an empty pool, this one has {0} task(s)")]
    NotEmpty(usize),
}

impl PoolCore {
    /// From now on changes are collected for [`PoolCore::take_journal`]. Every task known so
    /// far is marked changed.
    pub fn enable_journal(&mut self) {
        self.journaled = true;
        self.dirty.extend(self.tasks.keys().copied());
    }

    pub(super) fn touch(&mut self, task_id: TaskId) {
        if self.journaled {
            self.dirty.insert(task_id);
        }
    }

    /// What changed since the last call, to commit before the turn's publications are made.
    /// Empty unless [`PoolCore::enable_journal`] was called.
    pub fn take_journal(&mut self) -> JournalBatch {
        let mut batch = JournalBatch::default();
        for task_id in std::mem::take(&mut self.dirty) {
            let Some(book) = self.tasks.get(&task_id) else {
                continue;
            };
            let snapshot = SnapshotRef {
                book,
                run: self.scheduler.task(&task_id),
            };
            match postcard::to_allocvec(&snapshot) {
                Ok(body) => batch.tasks.push((task_id, book.position, body)),
                Err(e) => self
                    .refused
                    .push(format!("journal: encoding task {task_id}: {e}")),
            }
        }
        for worker in std::mem::take(&mut self.dirty_peers) {
            if let Some(seq) = self.sequences.last(worker) {
                batch.peers.push((worker, seq));
            }
        }
        for (worker, (topic, envelope)) in std::mem::take(&mut self.dirty_capacities) {
            batch.capacities.push((worker, topic, envelope));
        }
        if self.seq > self.seq_journaled {
            batch.seq = Some(self.seq);
            self.seq_journaled = self.seq;
        }
        batch
    }

    /// Restores what a journal holds into this (empty) pool at `now_ms`, and queues for each
    /// worker with an open replica what it must do next. Returns the number of tasks restored.
    ///
    /// # Errors
    /// [`RestoreError`]; the pool is then unchanged.
    pub fn restore(&mut self, recovered: Recovered, now_ms: u64) -> Result<usize, RestoreError> {
        if !self.tasks.is_empty() {
            return Err(RestoreError::NotEmpty(self.tasks.len()));
        }
        let mut snapshots = Vec::with_capacity(recovered.tasks.len());
        for (row, body) in recovered.tasks.iter().enumerate() {
            let snapshot: Snapshot =
                postcard::from_bytes(body).map_err(|e| RestoreError::Decode {
                    row,
                    why: e.to_string(),
                })?;
            snapshots.push(snapshot);
        }
        self.sequences = edgepool_protocol::envelope::SequenceTracker::restore(recovered.peers);
        // Never below the journaled one: agents refuse a sequence number they have seen.
        self.seq = self.seq.max(recovered.seq);
        self.seq_journaled = recovered.seq;
        let count = snapshots.len();
        let mut workers = std::collections::BTreeSet::new();
        // The registry's knowledge of each worker's capacity (a resumed MQTT session may not
        // get the retained advertisements again); checked as when they first arrived.
        for (topic, envelope) in &recovered.capacities {
            self.on_publish(topic, envelope, now_ms);
            if let Ok(parsed) = Topic::parse(&self.prefix, topic) {
                if self
                    .registry
                    .get(&parsed.worker)
                    .is_some_and(|w| w.capacity.is_some())
                {
                    workers.insert(parsed.worker);
                }
            }
        }
        for Snapshot { mut book, run } in snapshots {
            let task_id = run.as_ref().map_or_else(
                || edgepool_protocol::poco::task_id(&book.deal.deal_id, book.task_index),
                |r| r.task_id,
            );
            book.position = self.order.len();
            let contributing = run.as_ref().is_none_or(|r| r.phase == Phase::Contributing);
            if contributing {
                self.wanting.insert(book.position, task_id);
            }
            for (worker, replica) in &book.replicas {
                if !replica.released {
                    self.registry.assigned(*worker);
                    workers.insert(*worker);
                }
                self.follow_ups.entry(*worker).or_default().insert(task_id);
            }
            if let Some(uploader) = book.uploader {
                self.store.allow_upload(task_id, uploader);
            }
            let had_replicas = !book.replicas.is_empty();
            let (deal, index) = (book.deal.clone(), book.task_index);
            self.order.push(task_id);
            self.tasks.insert(task_id, book);
            let Some(run) = run else {
                continue;
            };
            let phase = run.phase.clone();
            let replicas: Vec<Address> = run.replicas.keys().copied().collect();
            self.scheduler.restore_task(run);
            // The ledger keeps its own state; what it learned from the pool in memory (the
            // authorizations it checks contributions against) is given again.
            if had_replicas {
                if let Err(why) = self.hooks.initialize(&deal, index, now_ms) {
                    self.refuse(format!("the ledger cannot initialize {task_id}: {why}"));
                }
            }
            for worker in replicas {
                if let Some(authorization) = self.scheduler.authorization(&task_id, worker) {
                    self.hooks.authorized(&authorization, now_ms);
                }
            }
            self.resettle(task_id, phase, now_ms);
        }
        // Known workers count as seen now: one that never comes back is lost after the
        // heartbeat limit, and its replicas go elsewhere.
        for worker in &workers {
            self.registry.seen(*worker, now_ms);
        }
        let everyone: Vec<Address> = self.follow_ups.keys().copied().collect();
        for worker in everyone {
            self.resend_pending(worker, now_ms);
        }
        // Those sends may reach nobody (a broker that lost the workers' sessions, e.g. an
        // embedded one that died with the pool): they do not hold back the round that a
        // worker's next `online` triggers.
        self.resent_at.clear();
        self.progress.push(format!(
            "recovered {count} task(s) from the journal; {} worker(s) known",
            workers.len()
        ));
        self.place(now_ms);
        Ok(count)
    }

    /// A final task the ledger had not settled before the restart is settled now.
    fn resettle(&mut self, task_id: TaskId, phase: Phase, now_ms: u64) {
        if self.hooks.settlement(&task_id).is_some() {
            return;
        }
        let settlement = match phase {
            Phase::Finalized {
                result_hash,
                result_link,
            } => match self.scheduler.task(&task_id) {
                Some(run) => self.hooks.finalize(run, result_hash, &result_link, now_ms),
                None => return,
            },
            Phase::Failed(reason) => self.hooks.fail(task_id, &reason, now_ms),
            Phase::Contributing | Phase::Revealing { .. } => return,
        };
        if settlement != crate::hooks::Settlement::default() {
            if let Some(book) = self.tasks.get_mut(&task_id) {
                book.settlement = settlement;
            }
            self.touch(task_id);
        }
    }

    /// Sends `worker` again what it may have missed (see the module documentation). Tasks for
    /// which nothing more will be asked of the worker leave its follow-up list.
    pub(super) fn resend_pending(&mut self, worker: Address, now_ms: u64) {
        let tasks: Vec<TaskId> = match self.follow_ups.get(&worker) {
            Some(tasks) if !tasks.is_empty() => tasks.iter().copied().collect(),
            _ => return,
        };
        // Replicas given up while it was away, on tasks that still take contributions, are
        // taken back first: its agent kept them (no PLEASE_ABORT for those).
        for task_id in &tasks {
            let lost = self
                .tasks
                .get(task_id)
                .and_then(|b| b.replicas.get(&worker))
                .is_some_and(|r| r.lost.is_some());
            if lost {
                self.revive(*task_id, worker, now_ms);
            }
        }
        if self
            .resent_at
            .get(&worker)
            .is_some_and(|at| now_ms.saturating_sub(*at) < RESEND_INTERVAL_MS)
        {
            return;
        }
        self.resent_at.insert(worker, now_ms);
        let mut sends = Vec::new();
        let mut done = Vec::new();
        for task_id in tasks {
            if sends.len() >= RESEND_MAX {
                break;
            }
            match self.follow_up(worker, &task_id, now_ms) {
                FollowUp::Send(message, last) => {
                    sends.push((message, task_id));
                    if last {
                        done.push(task_id);
                    }
                }
                FollowUp::Wait => {}
                FollowUp::Done => done.push(task_id),
            }
        }
        if let Some(set) = self.follow_ups.get_mut(&worker) {
            for task_id in &done {
                set.remove(task_id);
            }
            if set.is_empty() {
                self.follow_ups.remove(&worker);
            }
        }
        if sends.is_empty() {
            return;
        }
        self.progress.push(format!(
            "worker {}: {} pending message(s) sent again",
            short(&worker),
            sends.len()
        ));
        for (message, _) in sends {
            self.send(worker, *message, now_ms);
        }
    }

    /// What `worker` should be told about `task_id` now.
    fn follow_up(&self, worker: Address, task_id: &TaskId, now_ms: u64) -> FollowUp {
        let (Some(book), Some(run)) = (self.tasks.get(task_id), self.scheduler.task(task_id))
        else {
            return FollowUp::Done;
        };
        let (Some(mine), Some(replica)) = (book.replicas.get(&worker), run.replicas.get(&worker))
        else {
            return FollowUp::Done;
        };
        let told_final = replica.last_status.is_some_and(|s| s.is_final());
        let notify = |kind, deadline_ms, last| {
            FollowUp::Send(
                Box::new(Message::Notification(Notification {
                    task_id: *task_id,
                    kind,
                    deadline_ms,
                    detail: None,
                })),
                last,
            )
        };
        if mine.lost.is_some() {
            // The pool gave this replica up; a worker that comes back is told to stop.
            return if told_final {
                FollowUp::Done
            } else {
                notify(NotificationType::PleaseAbort, None, true)
            };
        }
        match replica.state {
            ReplicaState::Assigned => match run.phase {
                Phase::Contributing => self
                    .scheduler
                    .assignment(task_id, worker, book.limits)
                    .map_or(FollowUp::Done, |a| FollowUp::Send(Box::new(a), false)),
                _ => FollowUp::Done,
            },
            ReplicaState::Accepted | ReplicaState::Contributed => FollowUp::Wait,
            ReplicaState::RevealRequested => match &run.phase {
                Phase::Revealing { at_ms, .. } => notify(
                    NotificationType::PleaseReveal,
                    Some(run.deal.reveal_deadline_ms(*at_ms)),
                    false,
                ),
                // Uploaded by another worker while this one was away, but the ledger waits
                // for its reveal (and rewards it) until the reveal deadline.
                Phase::Finalized { .. } => match self.reveal_open(task_id, book, now_ms) {
                    Some(deadline) => notify(NotificationType::PleaseReveal, Some(deadline), false),
                    // `tick` aborts it.
                    None => FollowUp::Wait,
                },
                _ => FollowUp::Done,
            },
            ReplicaState::UploadRequested => match run.phase {
                Phase::Revealing { .. } => notify(NotificationType::PleaseUpload, None, false),
                _ => FollowUp::Done,
            },
            ReplicaState::Revealed | ReplicaState::Uploaded => FollowUp::Wait,
            ReplicaState::Declined => FollowUp::Done,
            ReplicaState::Completed if !told_final => {
                notify(NotificationType::PleaseComplete, None, true)
            }
            ReplicaState::Aborted if !told_final => {
                let kind = match &run.phase {
                    Phase::Failed(reason) if reason.contains("contribution deadline") => {
                        NotificationType::PleaseAbortContributionTimeout
                    }
                    Phase::Failed(_) => NotificationType::PleaseAbort,
                    _ => NotificationType::PleaseAbortConsensusReached,
                };
                notify(kind, None, true)
            }
            ReplicaState::Completed | ReplicaState::Aborted => FollowUp::Done,
        }
    }
}

enum FollowUp {
    /// Send this; `true`: nothing more after it.
    Send(Box<Message>, bool),
    /// Nothing to send now, maybe later.
    Wait,
    /// Nothing more for this worker on this task.
    Done,
}
