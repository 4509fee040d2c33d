//! The pool's core: the scheduler state machine plus what a real workerpool adds around it (the
//! worker registry, placement of replicas, lost workers and replicas, the ledger hooks, timings),
//! without I/O. Inputs are raw MQTT publications and the clock; outputs are publications to
//! make (sealed with the scheduler's key) and progress lines. [`crate::service`] is its shell.
//!
//! Placement: a task starts with `replicas` assignments (at least the deal's trust). While the
//! largest group of agreeing contributions plus the replicas still expected to contribute is below
//! the trust, one more worker is chosen: online, with the deal's tags, a free slot, least loaded,
//! never one that already held a replica of this task, and (with the ledger) never one whose
//! free balance cannot cover the deal's worker stake. A replica whose worker goes offline or
//! silent beyond the heartbeat limit is `WORKER_LOST`; one that has not contributed within the
//! deal's replica timeout is `TIMEOUT`. Either way the placement rule puts the task on another
//! worker. A `TIMEOUT` replica is told to abort and ignored from then on; a `WORKER_LOST` one is
//! taken back if its worker shows up again while the task still takes contributions (its agent
//! resumes the task from its journal), and told to abort otherwise.
//!
//! Only replicas that have not contributed are ever given up: a contribution is on the ledger,
//! whatever becomes of its worker. A contributor that was away when the consensus was reached
//! is asked to reveal when it comes back, even after another worker's upload made the task
//! final here, as long as the ledger still takes its reveal (before the reveal deadline, not
//! settled); after that it is told to abort. An uploader lost before its upload hands it to a
//! revealer that is online.

use std::collections::{BTreeMap, BTreeSet};

use edgepool_protocol::envelope::{check_sender_for_topic, Envelope, SequenceTracker};
use edgepool_protocol::messages::{DealSummary, Message, TaskLimits};
use edgepool_protocol::poco;
use edgepool_protocol::primitives::{Address, TaskId};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::status::{NotificationType, ReplicateStatusCause};
use edgepool_protocol::topics::{Channel, Presence, Topic, TopicPrefix};
use serde::{Deserialize, Serialize};

use crate::hooks::{PocoHooks, Settlement};
use crate::registry::Registry;
use crate::scheduler::{Action, Phase, ReplicaState, Scheduler, TaskRun};
use crate::sms::{DatasetRestrictions, Sms};

pub mod journal;
mod recovery;
pub use recovery::{RestoreError, RESEND_INTERVAL_MS, RESEND_MAX};
mod report;
use crate::store::StoreHandle;

/// An online worker that has not contributed to its replica this long after the assignment
/// (or the last nudge) is sent the assignment again: our message or its answer may have been
/// lost by a broker that dropped its connection. A worker with the task answers with its ACCEPT
/// or its contribution (repeats are no-ops). The interval doubles with each nudge, up to
/// [`NUDGE_MAX_MS`].
pub const NUDGE_FIRST_MS: u64 = 15_000;
/// The longest interval between two nudges of one replica.
pub const NUDGE_MAX_MS: u64 = 300_000;

fn nudge_interval_ms(nudges: u32) -> u64 {
    NUDGE_FIRST_MS
        .saturating_mul(1u64 << nudges.min(16))
        .min(NUDGE_MAX_MS)
}

/// A worker that declined a task for lack of a free slot gets no replica for this long (or
/// until a heartbeat of it reports a free slot).
pub const FULL_PAUSE_MS: u64 = 1_000;

/// A deal submitted to the pool.
#[derive(Debug, Clone)]
pub struct DealRequest {
    /// The deal (its id, app, dataset, trust, tag, volume as `bot_first`/`bot_size`, …).
    pub deal: DealSummary,
    /// Per-task limits sent with each assignment.
    pub limits: TaskLimits,
    /// Replicas assigned when a task starts (at least the trust).
    pub replicas: usize,
    /// A replica that has not contributed this long after its assignment is given up on.
    pub replica_timeout_ms: Option<u64>,
    /// The dataset order's restrictions (app, workerpool, requester), which the SMS checks
    /// before it releases the dataset key of a TEE task; `None`: unrestricted.
    pub dataset_restrictions: Option<DatasetRestrictions>,
}

/// Settings of the pool core.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PoolSettings {
    /// A worker not heard from for this long is offline (and its pending replicas lost).
    pub heartbeat_limit_ms: u64,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            heartbeat_limit_ms: 5_000,
        }
    }
}

/// A publication to make.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The topic.
    pub topic: String,
    /// The sealed envelope.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ReplicaBook {
    assigned_ms: u64,
    /// When the assignment was last sent again to a worker that stayed silent about it, and
    /// how many times (see [`NUDGE_FIRST_MS`]).
    #[serde(default)]
    nudged_ms: u64,
    #[serde(default)]
    nudges: u32,
    /// Why and how (`WORKER_LOST`, `TIMEOUT`) the pool gave the replica up.
    lost: Option<(String, String)>,
    contributed_ms: Option<u64>,
    released: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TaskBook {
    task_index: u64,
    deal: DealSummary,
    limits: TaskLimits,
    initial: usize,
    replica_timeout_ms: Option<u64>,
    replicas: BTreeMap<Address, ReplicaBook>,
    created_ms: u64,
    position: usize,
    consensus_ms: Option<u64>,
    final_ms: Option<u64>,
    revealers: BTreeSet<Address>,
    settlement: Settlement,
    uploader: Option<Address>,
}

/// The pool core.
pub struct PoolCore {
    settings: PoolSettings,
    prefix: TopicPrefix,
    signer: Signer,
    scheduler: Scheduler,
    registry: Registry,
    sequences: SequenceTracker,
    hooks: Box<dyn PocoHooks>,
    store: StoreHandle,
    tasks: BTreeMap<TaskId, TaskBook>,
    order: Vec<TaskId>,
    /// Tasks that may need a replica, by position in `order`: placement looks only at these
    /// (a task leaves when it has what it needs or is no longer contributing, and comes back on
    /// any message, loss or timeout of one of its replicas).
    wanting: BTreeMap<usize, TaskId>,
    seq: u64,
    outgoing: Vec<Outgoing>,
    progress: Vec<String>,
    refused: Vec<String>,
    /// Whether changes are collected for a journal ([`PoolCore::take_journal`]).
    journaled: bool,
    /// Tasks changed since the last [`PoolCore::take_journal`].
    dirty: BTreeSet<TaskId>,
    /// Workers whose accepted sequence number grew since the last journal batch.
    dirty_peers: BTreeSet<Address>,
    /// Capacity advertisements (topic, envelope) to journal.
    dirty_capacities: BTreeMap<Address, (String, Vec<u8>)>,
    /// The outgoing sequence number last written to the journal.
    seq_journaled: u64,
    /// Per worker, the tasks for which it may still need to be told something (see
    /// [`PoolCore::resend_pending`]).
    follow_ups: BTreeMap<Address, BTreeSet<TaskId>>,
    /// When each worker was last sent its pending notifications again.
    resent_at: BTreeMap<Address, u64>,
}

impl std::fmt::Debug for PoolCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolCore")
            .field("pool", &self.prefix.pool())
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

fn short(a: &impl std::fmt::Display) -> String {
    let s = a.to_string();
    s.get(..10).unwrap_or(&s).to_string()
}

impl PoolCore {
    /// A pool `pool` scheduled with `signer`; its first outgoing sequence number is `now_ms`
    /// times 1,000, so that a restarted simulator keeps counting up (agents refuse replays).
    pub fn new(
        pool: Address,
        signer: Signer,
        settings: PoolSettings,
        hooks: Box<dyn PocoHooks>,
        store: StoreHandle,
        now_ms: u64,
    ) -> Self {
        let mut scheduler = Scheduler::new(signer.clone());
        scheduler.set_ledger_consensus(hooks.decides_consensus());
        scheduler.set_replaces_declined(true);
        Self {
            settings,
            prefix: TopicPrefix::with_default_base(pool),
            scheduler,
            signer,
            registry: Registry::new(),
            sequences: SequenceTracker::new(),
            hooks,
            store,
            tasks: BTreeMap::new(),
            order: Vec::new(),
            wanting: BTreeMap::new(),
            seq: now_ms.saturating_mul(1000),
            outgoing: Vec::new(),
            progress: Vec::new(),
            refused: Vec::new(),
            journaled: false,
            dirty: BTreeSet::new(),
            dirty_peers: BTreeSet::new(),
            dirty_capacities: BTreeMap::new(),
            seq_journaled: 0,
            follow_ups: BTreeMap::new(),
            resent_at: BTreeMap::new(),
        }
    }

    /// Attaches the SMS (before any deal): TEE tasks then get its enclave challenge, and their
    /// secret requests are answered by it. `workerpool` is the pool's registry address, which
    /// dataset orders restrict to.
    pub fn attach_sms(&mut self, sms: Sms, workerpool: Address) {
        let mut scheduler = Scheduler::new(self.signer.clone()).with_sms(sms, workerpool);
        scheduler.set_ledger_consensus(self.hooks.decides_consensus());
        scheduler.set_replaces_declined(true);
        self.scheduler = scheduler;
    }

    /// The attached SMS, e.g. to push a dataset key while the pool runs (`serve`).
    pub fn sms_mut(&mut self) -> Option<&mut Sms> {
        self.scheduler.sms_mut()
    }

    /// The topic prefix (`edgepool/v1/{pool}`).
    pub fn prefix(&self) -> &TopicPrefix {
        &self.prefix
    }

    /// The topic filters to subscribe to.
    pub fn subscriptions(&self) -> [String; 3] {
        [
            self.prefix.all_presence(),
            self.prefix.all_capacity(),
            self.prefix.all_outbox(),
        ]
    }

    /// Publications to make, in order.
    pub fn take_outgoing(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.outgoing)
    }

    /// Progress lines for humans, in order.
    pub fn take_progress(&mut self) -> Vec<String> {
        std::mem::take(&mut self.progress)
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn refuse(&mut self, why: String) {
        self.refused.push(why);
    }

    /// Submits a deal: one task per index of its bag, placed at once if workers are available.
    ///
    /// # Errors
    /// A message when the deal is invalid or one of its tasks already exists.
    pub fn submit(&mut self, request: DealRequest, now_ms: u64) -> Result<Vec<TaskId>, String> {
        request.deal.validate().map_err(|e| e.to_string())?;
        if request.deal.bot_size == 0 {
            return Err("a deal needs at least one task (volume 0)".into());
        }
        let ids: Vec<(u64, TaskId)> = (0..request.deal.bot_size)
            .map(|i| {
                let index = request.deal.bot_first + i;
                (index, poco::task_id(&request.deal.deal_id, index))
            })
            .collect();
        if let Some((_, id)) = ids.iter().find(|(_, id)| self.tasks.contains_key(id)) {
            return Err(format!("task {id} already exists"));
        }
        let required = usize::try_from(request.deal.trust.max(1)).unwrap_or(usize::MAX);
        if let Some(restrictions) = request.dataset_restrictions {
            self.scheduler
                .restrict_dataset(request.deal.deal_id, restrictions);
        }
        for (index, id) in &ids {
            if self.journaled {
                self.dirty.insert(*id);
            }
            self.tasks.insert(
                *id,
                TaskBook {
                    task_index: *index,
                    deal: request.deal.clone(),
                    limits: request.limits,
                    initial: request.replicas.max(required),
                    replica_timeout_ms: request.replica_timeout_ms,
                    replicas: BTreeMap::new(),
                    created_ms: now_ms,
                    position: self.order.len(),
                    consensus_ms: None,
                    final_ms: None,
                    revealers: BTreeSet::new(),
                    settlement: Settlement::default(),
                    uploader: None,
                },
            );
            self.wanting.insert(self.order.len(), *id);
            self.order.push(*id);
        }
        self.progress.push(format!(
            "deal {} submitted: {} task(s), trust {}, tag {}",
            short(&request.deal.deal_id),
            ids.len(),
            request.deal.trust,
            request.deal.tag
        ));
        self.place(now_ms);
        Ok(ids.into_iter().map(|(_, id)| id).collect())
    }

    /// Handles a publication received on `topic`.
    pub fn on_publish(&mut self, topic: &str, payload: &[u8], now_ms: u64) {
        let parsed = match Topic::parse(&self.prefix, topic) {
            Ok(t) => t,
            Err(e) => return self.refuse(format!("{topic}: {e}")),
        };
        match parsed.channel {
            Channel::Presence => match Presence::parse(payload) {
                Ok(Presence::Online) => {
                    if !self.registry.get(&parsed.worker).is_some_and(|w| w.online) {
                        self.progress
                            .push(format!("worker {} online", short(&parsed.worker)));
                    }
                    self.registry.presence(parsed.worker, true, now_ms);
                    // An agent publishes `online` at every (re)connect: what it may have
                    // missed while away is sent again (bounded, see `resend_pending`).
                    self.resend_pending(parsed.worker, now_ms);
                    self.place(now_ms);
                }
                Ok(Presence::Offline) => {
                    if self.registry.presence(parsed.worker, false, now_ms) {
                        self.lose_worker(parsed.worker, "presence offline", now_ms);
                    }
                }
                Err(e) => self.refuse(format!("{topic}: {e}")),
            },
            Channel::Capacity | Channel::Outbox => {
                self.on_envelope(&parsed, topic, payload, now_ms)
            }
            Channel::Inbox => {}
        }
    }

    fn on_envelope(&mut self, parsed: &Topic, topic: &str, payload: &[u8], now_ms: u64) {
        let opened = match Envelope::open(payload, topic) {
            Ok(o) => o,
            Err(e) => return self.refuse(format!("{topic}: {e}")),
        };
        if let Err(e) = check_sender_for_topic(&opened, parsed, self.signer.address()) {
            return self.refuse(format!("{topic}: {e}"));
        }
        let worker = opened.sender;
        match opened.message {
            Message::Capacity(capacity) => {
                let newer = self
                    .registry
                    .get(&worker)
                    .is_none_or(|w| w.capacity.is_none() || opened.seq >= w.capacity_seq);
                if self.journaled && newer {
                    self.dirty_capacities
                        .insert(worker, (topic.to_string(), payload.to_vec()));
                }
                self.registry.capacity(worker, opened.seq, capacity, now_ms);
                self.place(now_ms);
            }
            message => {
                // Capacity and outbox share one sequence, but the capacity is a retained
                // snapshot: only the outbox must grow strictly.
                if let Err(e) = self.sequences.check_and_accept(worker, opened.seq) {
                    return self.refuse(format!("{topic}: {e}"));
                }
                if self.journaled {
                    self.dirty_peers.insert(worker);
                }
                self.on_message(worker, message, now_ms);
            }
        }
    }

    fn on_message(&mut self, worker: Address, message: Message, now_ms: u64) {
        let was_online = self.registry.get(&worker).is_some_and(|w| w.online);
        match &message {
            Message::Heartbeat(h) => self.registry.heartbeat(worker, h.clone(), now_ms),
            _ => self.registry.seen(worker, now_ms),
        }
        if !was_online {
            self.progress
                .push(format!("worker {} online", short(&worker)));
            self.resend_pending(worker, now_ms);
        }
        let Some(task_id) = message.task_id() else {
            return self.place(now_ms);
        };
        let Some(book) = self.tasks.get(&task_id) else {
            return self.refuse(format!(
                "{} from {worker} for unknown task {task_id}",
                message.kind().as_str()
            ));
        };
        if let Some((why, _)) = book.replicas.get(&worker).and_then(|r| r.lost.clone()) {
            // A worker lost while its task still takes contributions is taken back (its agent
            // kept the task: a killed agent resumes it from its journal); otherwise the pool
            // has moved on without it.
            if !self.revive(task_id, worker, now_ms) {
                return self.refuse(format!(
                    "{} from {worker} for {task_id} ignored: its replica was given up ({why})",
                    message.kind().as_str()
                ));
            }
        }
        let Some(book) = self.tasks.get(&task_id) else {
            return;
        };
        self.wanting.insert(book.position, task_id);
        self.touch(task_id);
        // The ledger sees contributions and reveals before the scheduler counts them.
        if let Some(run) = self.scheduler.task(&task_id) {
            let hooked = match &message {
                Message::Contribution(c) => self.hooks.contribute(run, worker, c, now_ms),
                Message::Reveal(r) => self.hooks.reveal(run, worker, &r.result_digest, now_ms),
                _ => Ok(()),
            };
            if let Err(why) = hooked {
                return self.refuse(format!(
                    "ledger refused {} from {worker} for {task_id}: {why}",
                    message.kind().as_str()
                ));
            }
        }
        let mut actions = match self.scheduler.handle(worker, &message, now_ms) {
            Ok(actions) => actions,
            Err(e) => {
                return self.refuse(format!("{} from {worker}: {e}", message.kind().as_str()))
            }
        };
        match &message {
            Message::Contribution(c) => {
                if self.hooks.decides_consensus() {
                    if let Some(hash) = self.hooks.consensus(&task_id) {
                        let more = self.scheduler.reach_consensus(&task_id, hash, now_ms);
                        actions.extend(more);
                    }
                }
                if let Some(r) = self
                    .tasks
                    .get_mut(&task_id)
                    .and_then(|b| b.replicas.get_mut(&worker))
                {
                    r.contributed_ms.get_or_insert(now_ms);
                }
                self.progress.push(format!(
                    "task {}: {} contributed {}",
                    short(&task_id),
                    short(&worker),
                    short(&c.result_hash)
                ));
            }
            Message::Reveal(_) => {
                if let Some(b) = self.tasks.get_mut(&task_id) {
                    b.revealers.insert(worker);
                }
                // The uploader chosen earlier is gone: this revealer uploads instead.
                let uploader_gone = self.scheduler.task(&task_id).is_some_and(|run| {
                    matches!(run.phase, Phase::Revealing { uploader: Some(u), .. }
                        if u != worker && !self.registry.get(&u).is_some_and(|w| w.online))
                });
                if uploader_gone {
                    actions.extend(self.scheduler.reassign_upload(&task_id, worker));
                }
            }
            Message::ResultUploaded(_) => {
                // With a replaced uploader, whoever's upload made the task final is the one.
                let finalized = actions
                    .iter()
                    .any(|a| matches!(a, Action::Finalized { .. }));
                if let Some(b) = self.tasks.get_mut(&task_id).filter(|_| finalized) {
                    b.uploader = Some(worker);
                }
            }
            Message::StatusUpdate(u)
                if u.status == edgepool_protocol::status::ReplicateStatus::ResultUploadFailed =>
            {
                // An upload cut short (e.g. the store died with a killed `serve`): ask again now
                // rather than at the worker's next reconnect; the agent retries on a repeated
                // PLEASE_UPLOAD. Bounded by the task's reveal deadline.
                self.resent_at.remove(&worker);
                self.resend_pending(worker, now_ms);
            }
            Message::Decline(d) => {
                if d.cause == ReplicateStatusCause::NoFreeSlot {
                    self.registry
                        .full(worker, now_ms.saturating_add(FULL_PAUSE_MS));
                }
                self.release(task_id, worker);
                self.progress.push(format!(
                    "task {}: {} declined ({})",
                    short(&task_id),
                    short(&worker),
                    d.cause
                ));
            }
            _ => {}
        }
        self.perform(actions, now_ms);
        self.place(now_ms);
    }

    /// Enforces deadlines, heartbeats and replica timeouts at `now_ms`, then places replicas.
    pub fn tick(&mut self, now_ms: u64) {
        for worker in self
            .registry
            .expire(now_ms, self.settings.heartbeat_limit_ms)
        {
            self.lose_worker(worker, "no heartbeat within the limit", now_ms);
        }
        let mut timed_out = Vec::new();
        // Contributors still asked to reveal on a task the scheduler finalized: once the
        // ledger settled without them or their reveal deadline passed, they are told to stop.
        let mut unrevealed = Vec::new();
        // Replicas an online worker stays silent about: the assignment goes again.
        let mut nudge = Vec::new();
        for (task_id, book) in &self.tasks {
            let Some(run) = self.scheduler.task(task_id) else {
                continue;
            };
            match (&run.phase, book.replica_timeout_ms) {
                (Phase::Contributing, timeout) => {
                    for (worker, r) in &book.replicas {
                        let pending = run.replicas.get(worker).is_some_and(|s| {
                            matches!(s.state, ReplicaState::Assigned | ReplicaState::Accepted)
                        });
                        if !pending || r.lost.is_some() {
                            continue;
                        }
                        if timeout.is_some_and(|t| now_ms.saturating_sub(r.assigned_ms) > t) {
                            timed_out.push((*task_id, *worker));
                        } else if now_ms.saturating_sub(r.assigned_ms.max(r.nudged_ms))
                            > nudge_interval_ms(r.nudges)
                            && self.registry.get(worker).is_some_and(|e| e.online)
                        {
                            nudge.push((*task_id, *worker));
                        }
                    }
                }
                (Phase::Finalized { .. }, _) => {
                    let mut waiting = run
                        .replicas
                        .iter()
                        .filter(|(_, r)| r.state == ReplicaState::RevealRequested)
                        .peekable();
                    if waiting.peek().is_some() && self.reveal_open(task_id, book, now_ms).is_none()
                    {
                        unrevealed.extend(waiting.map(|(w, _)| (*task_id, *w)));
                    }
                }
                _ => {}
            }
        }
        for (task_id, worker) in nudge {
            let Some(book) = self.tasks.get_mut(&task_id) else {
                continue;
            };
            let limits = book.limits;
            if let Some(r) = book.replicas.get_mut(&worker) {
                r.nudged_ms = now_ms;
                r.nudges = r.nudges.saturating_add(1);
            }
            if let Some(assignment) = self.scheduler.assignment(&task_id, worker, limits) {
                self.progress.push(format!(
                    "task {}: {} silent about its replica, assignment sent again",
                    short(&task_id),
                    short(&worker)
                ));
                self.send(worker, assignment, now_ms);
            }
        }
        for (task_id, worker) in unrevealed {
            if self.scheduler.abort_reveal(&task_id, worker) {
                self.touch(task_id);
                self.progress.push(format!(
                    "task {}: {} did not reveal before the ledger settled",
                    short(&task_id),
                    short(&worker)
                ));
                self.notify(worker, task_id, NotificationType::PleaseAbort, now_ms);
            }
        }
        self.registry.resume(now_ms);
        for (task_id, worker) in timed_out {
            self.give_up(
                task_id,
                worker,
                "no contribution within the replica timeout".into(),
                "TIMEOUT",
                now_ms,
            );
            self.notify(
                worker,
                task_id,
                NotificationType::PleaseAbortContributionTimeout,
                now_ms,
            );
        }
        let actions = self.scheduler.tick(now_ms);
        self.perform(actions, now_ms);
        if let Some(sms) = self.scheduler.sms_mut() {
            self.progress.extend(sms.take_vault_failures());
        }
        self.hooks.tick(now_ms);
        self.place(now_ms);
    }

    fn lose_worker(&mut self, worker: Address, why: &str, now_ms: u64) {
        self.registry.count_lost(worker);
        self.progress
            .push(format!("worker {} lost: {why}", short(&worker)));
        // Only the worker's own tasks are looked at: `follow_ups` holds every task it was given a
        // replica on and has not finished (10,000 agents leaving a 100,000-task pool must not
        // walk every task 10,000 times: that stalled the pool for minutes).
        let mine: Vec<TaskId> = self
            .follow_ups
            .get(&worker)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default();
        let mut pending: Vec<TaskId> = Vec::new();
        // Its replicas that contributed stay: the ledger holds their contributions, and the
        // worker is asked to reveal when it comes back. But a task waiting for its upload
        // moves the upload to another revealer that is online, if there is one.
        let mut uploads: Vec<(TaskId, Address)> = Vec::new();
        for id in &mine {
            let Some(replica) = self.tasks.get(id).and_then(|b| b.replicas.get(&worker)) else {
                continue;
            };
            let Some(run) = self.scheduler.task(id) else {
                continue;
            };
            let assigned = run.replicas.get(&worker).is_some_and(|s| {
                matches!(s.state, ReplicaState::Assigned | ReplicaState::Accepted)
            });
            if replica.lost.is_none() && run.phase == Phase::Contributing && assigned {
                pending.push(*id);
            }
            if matches!(run.phase, Phase::Revealing { uploader: Some(u), .. } if u == worker) {
                if let Some((other, _)) = run.replicas.iter().find(|(w, r)| {
                    r.state == ReplicaState::Revealed
                        && self.registry.get(w).is_some_and(|e| e.online)
                }) {
                    uploads.push((*id, *other));
                }
            }
        }
        for task_id in pending {
            self.give_up(task_id, worker, why.to_string(), "WORKER_LOST", now_ms);
        }
        for (task_id, other) in uploads {
            let actions = self.scheduler.reassign_upload(&task_id, other);
            if !actions.is_empty() {
                self.progress.push(format!(
                    "task {}: uploader {} lost, {} uploads instead",
                    short(&task_id),
                    short(&worker),
                    short(&other)
                ));
            }
            self.perform(actions, now_ms);
        }
        self.place(now_ms);
    }

    /// Takes back a replica given up as `WORKER_LOST` when its worker shows up again while the
    /// task still takes contributions (before its contribution deadline) and the replica has
    /// not been told to stop. Returns whether it did.
    fn revive(&mut self, task_id: TaskId, worker: Address, now_ms: u64) -> bool {
        let online = self.registry.get(&worker).is_some_and(|w| w.online);
        let revivable = online
            && self.tasks.get(&task_id).is_some_and(|book| {
                book.replicas
                    .get(&worker)
                    .and_then(|r| r.lost.as_ref())
                    .is_some_and(|(_, state)| state == "WORKER_LOST")
            })
            && self.scheduler.task(&task_id).is_some_and(|run| {
                run.phase == Phase::Contributing
                    && now_ms <= run.deal.contribution_deadline_ms()
                    && run.replicas.get(&worker).is_some_and(|r| {
                        matches!(r.state, ReplicaState::Assigned | ReplicaState::Accepted)
                            && !r.last_status.is_some_and(|s| s.is_final())
                    })
            });
        if !revivable {
            return false;
        }
        let mut take_slot = false;
        if let Some(book) = self.tasks.get_mut(&task_id) {
            if let Some(r) = book.replicas.get_mut(&worker) {
                r.lost = None;
                take_slot = std::mem::replace(&mut r.released, false);
            }
            self.wanting.insert(book.position, task_id);
        }
        if take_slot {
            self.registry.assigned(worker);
        }
        self.follow_ups.entry(worker).or_default().insert(task_id);
        self.touch(task_id);
        self.progress.push(format!(
            "task {}: replica of {} taken back (its worker is back)",
            short(&task_id),
            short(&worker)
        ));
        true
    }

    /// The reveal deadline of a task the scheduler finalized, while the ledger may still take
    /// reveals for it (it has not settled, the deadline has not passed); `None` otherwise.
    fn reveal_open(&self, task_id: &TaskId, book: &TaskBook, now_ms: u64) -> Option<u64> {
        let deadline = book.deal.reveal_deadline_ms(book.consensus_ms?);
        (now_ms <= deadline && self.hooks.settlement(task_id).is_none()).then_some(deadline)
    }

    fn give_up(
        &mut self,
        task_id: TaskId,
        worker: Address,
        why: String,
        state: &'static str,
        now_ms: u64,
    ) {
        let _ = now_ms;
        if let Some(r) = self
            .tasks
            .get_mut(&task_id)
            .and_then(|b| b.replicas.get_mut(&worker))
        {
            r.lost = Some((why.clone(), state.to_string()));
        }
        self.touch(task_id);
        if let Some(b) = self.tasks.get(&task_id) {
            self.wanting.insert(b.position, task_id);
        }
        self.release(task_id, worker);
        self.progress.push(format!(
            "task {}: replica of {} {state} ({why}); placing it elsewhere",
            short(&task_id),
            short(&worker)
        ));
    }

    fn release(&mut self, task_id: TaskId, worker: Address) {
        if let Some(r) = self
            .tasks
            .get_mut(&task_id)
            .and_then(|b| b.replicas.get_mut(&worker))
        {
            if !r.released {
                r.released = true;
                self.registry.released(worker);
                self.touch(task_id);
            }
        }
    }

    fn notify(&mut self, worker: Address, task_id: TaskId, kind: NotificationType, now_ms: u64) {
        let action = crate::scheduler::Action::Send {
            worker,
            message: Message::Notification(edgepool_protocol::messages::Notification {
                task_id,
                kind,
                deadline_ms: None,
                detail: None,
            }),
        };
        self.perform(vec![action], now_ms);
    }

    /// Seals and queues sends; settles final tasks through the hooks.
    fn perform(&mut self, actions: Vec<Action>, now_ms: u64) {
        for action in actions {
            match action {
                Action::Send { worker, message } => self.send(worker, message, now_ms),
                Action::Finalized {
                    task_id,
                    result_hash,
                    result_link,
                } => {
                    let settlement = match self.scheduler.task(&task_id) {
                        Some(run) => self.hooks.finalize(run, result_hash, &result_link, now_ms),
                        None => Settlement::default(),
                    };
                    let pending = self.pending_replicas(&task_id);
                    if let Some(book) = self.tasks.get_mut(&task_id) {
                        book.final_ms = Some(now_ms);
                        book.settlement = settlement;
                    }
                    self.touch(task_id);
                    for worker in pending {
                        self.notify(
                            worker,
                            task_id,
                            NotificationType::PleaseAbortConsensusReached,
                            now_ms,
                        );
                    }
                    self.progress.push(format!(
                        "task {} COMPLETED: consensus {} at {result_link}",
                        short(&task_id),
                        short(&result_hash)
                    ));
                }
                Action::Failed { task_id, reason } => {
                    let settlement = self.hooks.fail(task_id, &reason, now_ms);
                    let workers: Vec<Address> = self
                        .tasks
                        .get(&task_id)
                        .map(|b| b.replicas.keys().copied().collect())
                        .unwrap_or_default();
                    for w in workers {
                        self.release(task_id, w);
                    }
                    if let Some(book) = self.tasks.get_mut(&task_id) {
                        book.final_ms = Some(now_ms);
                        book.settlement = settlement;
                    }
                    self.touch(task_id);
                    self.progress
                        .push(format!("task {} FAILED: {reason}", short(&task_id)));
                }
            }
        }
    }

    /// Replicas assigned, not lost, that have not contributed.
    fn pending_replicas(&self, task_id: &TaskId) -> Vec<Address> {
        let (Some(book), Some(run)) = (self.tasks.get(task_id), self.scheduler.task(task_id))
        else {
            return Vec::new();
        };
        run.replicas
            .iter()
            .filter(|(w, s)| {
                matches!(s.state, ReplicaState::Assigned | ReplicaState::Accepted)
                    && book.replicas.get(w).is_some_and(|r| r.lost.is_none())
            })
            .map(|(w, _)| *w)
            .collect()
    }

    fn send(&mut self, worker: Address, message: Message, now_ms: u64) {
        if let Some(task_id) = message.task_id() {
            self.touch(task_id);
        }
        if let Message::Notification(n) = &message {
            match n.kind {
                NotificationType::PleaseUpload => {
                    self.store.allow_upload(n.task_id, worker);
                    if let Some(b) = self.tasks.get_mut(&n.task_id) {
                        b.uploader = Some(worker);
                    }
                }
                NotificationType::PleaseReveal => {
                    if let Some(b) = self.tasks.get_mut(&n.task_id) {
                        b.consensus_ms.get_or_insert(now_ms);
                    }
                }
                NotificationType::PleaseComplete
                | NotificationType::PleaseAbort
                | NotificationType::PleaseAbortConsensusReached
                | NotificationType::PleaseAbortContributionTimeout => {
                    self.release(n.task_id, worker)
                }
                _ => {}
            }
        }
        self.seq += 1;
        let topic = self.prefix.inbox(worker);
        match Envelope::seal(&self.signer, &topic, self.seq, now_ms, &message) {
            Ok(payload) => self.outgoing.push(Outgoing { topic, payload }),
            Err(e) => self.refuse(format!(
                "sealing {} for {worker}: {e}",
                message.kind().as_str()
            )),
        }
    }

    /// Puts replicas where tasks need them (see the module documentation).
    fn place(&mut self, now_ms: u64) {
        let mut from = 0;
        while let Some((position, task_id)) = self.wanting.range(from..).next() {
            let (position, task_id) = (*position, *task_id);
            from = position + 1;
            if !self.registry.has_free_slot() {
                return;
            }
            while let Some(book) = self.tasks.get(&task_id) {
                let run = self.scheduler.task(&task_id);
                if run.is_some_and(|r| r.phase != Phase::Contributing) {
                    self.wanting.remove(&position);
                    break;
                }
                let required = usize::try_from(book.deal.trust.max(1)).unwrap_or(usize::MAX);
                let (best, pending) = run.map_or((0, 0), |r| tally(r, book));
                // The first `initial` replicas go out at once; after that, only what the
                // consensus still needs. The ledger weighs contributions by score: after a
                // dissent it can need more than `trust` agreeing ones (BRIEF §2), so when every
                // replica has contributed and the task still has no consensus, one more goes out.
                let enough = if self.hooks.decides_consensus() {
                    pending > 0 && best + pending >= required
                } else {
                    best + pending >= required
                };
                if book.replicas.len() >= book.initial && enough {
                    self.wanting.remove(&position);
                    break;
                }
                let exclude: Vec<Address> = book.replicas.keys().copied().collect();
                // With a ledger, ties in load go to the higher score (its contributions weigh more);
                // without one (the bench's light pools), the O(log n) free-slot index decides.
                let worker = if self.hooks.decides_consensus() {
                    // Nobody whose free balance cannot cover the deal's worker stake: the
                    // ledger would refuse its contribution (a slashed liar runs dry).
                    let hooks = &self.hooks;
                    self.registry
                        .candidates_scored(book.deal.tag, &exclude, |w| {
                            hooks.standing(*w).score.unwrap_or(0)
                        })
                        .into_iter()
                        .find(|w| hooks.can_stake(*w, &book.deal))
                } else {
                    self.registry.best_candidate(book.deal.tag, &exclude)
                };
                let Some(worker) = worker else {
                    break;
                };
                let (deal, index, limits) = (book.deal.clone(), book.task_index, book.limits);
                if book.replicas.is_empty() {
                    if let Err(why) = self.hooks.initialize(&deal, index, now_ms) {
                        self.refuse(format!("the ledger cannot initialize {task_id}: {why}"));
                        break;
                    }
                }
                // With the SMS attached, the scheduler takes a TEE task's enclave challenge
                // from it; a standard task has none.
                match self
                    .scheduler
                    .assign(&deal, index, worker, limits, Address::ZERO, now_ms)
                {
                    Ok(actions) => {
                        for action in &actions {
                            if let Action::Send {
                                message: Message::Assignment(a),
                                ..
                            } = action
                            {
                                self.hooks.authorized(&a.authorization, now_ms);
                            }
                        }
                        self.registry.assigned(worker);
                        self.follow_ups.entry(worker).or_default().insert(task_id);
                        self.touch(task_id);
                        if let Some(b) = self.tasks.get_mut(&task_id) {
                            if b.replicas.is_empty() {
                                b.created_ms = now_ms;
                            }
                            b.replicas.insert(
                                worker,
                                ReplicaBook {
                                    assigned_ms: now_ms,
                                    nudged_ms: 0,
                                    nudges: 0,
                                    lost: None,
                                    contributed_ms: None,
                                    released: false,
                                },
                            );
                        }
                        self.progress.push(format!(
                            "task {}: assigned to {}",
                            short(&task_id),
                            short(&worker)
                        ));
                        self.perform(actions, now_ms);
                    }
                    Err(e) => {
                        self.refuse(format!("assigning {task_id} to {worker}: {e}"));
                        break;
                    }
                }
            }
        }
    }
}

/// (size of the largest group of agreeing contributions, replicas still expected to contribute).
fn tally(run: &TaskRun, book: &TaskBook) -> (usize, usize) {
    let mut groups: BTreeMap<_, usize> = BTreeMap::new();
    let mut pending = 0;
    for (worker, replica) in &run.replicas {
        if let Some(c) = &replica.contribution {
            *groups.entry(c.result_hash).or_default() += 1;
        } else if matches!(
            replica.state,
            ReplicaState::Assigned | ReplicaState::Accepted
        ) && book.replicas.get(worker).is_some_and(|r| r.lost.is_none())
        {
            pending += 1;
        }
    }
    (groups.values().copied().max().unwrap_or(0), pending)
}
#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod revive_tests;
