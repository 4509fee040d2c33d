//! The scheduler side of the single-task end-to-end tests (`pipeline_e2e`, `tee_e2e`): the
//! simulator's scheduler state machine (with its SMS for TEE tasks) on a real MQTT connection
//! ([`SchedulerLink`]), driving one [`Agent`] process task by task.
//!
//! Unlike the pool tests' [`super::pool::Driver`], which tolerates and counts what a faulty
//! network does, this driver is strict: a worker message it cannot open, or one the scheduler
//! refuses, fails the test at once. Each step hands the test the message and the scheduler's
//! actions other than sends, and every worker message is kept in [`Driver::seen`], in order.
//!
//! Hooks play the parts of an attacker or a faulty component between the two ends: a relay that
//! rewrites secret requests ([`Driver::tamper`]), a scheduler that tells the worker something
//! other than what it told the SMS ([`Driver::assignment_tamper`]), an SMS that answers late
//! ([`Driver::hold`]) and a broker that loses a contribution after its PUBACK
//! ([`Driver::lose_contribution`]).

use std::time::{Duration, Instant};

use edgepool_attestation::policy::Policy;
use edgepool_protocol::envelope::Envelope;
use edgepool_protocol::messages::{
    Assignment, CapacityAdvertisement, Contribution, DealSummary, Message, SecretRequest,
    TaskLimits,
};
use edgepool_protocol::poco;
use edgepool_protocol::primitives::{Address, Digest, TaskId};
use edgepool_protocol::status::{ReplicateStatus, ReplicateStatusCause};
use edgepool_simulator::scheduler::{Action, Scheduler};
use edgepool_simulator::sms::Sms;

use super::now_ms;
use super::pool::{topic, Agent, SchedulerLink, POOL};

/// The bound on waiting for an agent's capacity advertisement (it is up).
pub const ONLINE_WITHIN: Duration = Duration::from_secs(30);

/// The bound on driving a task until an awaited event.
pub const RUN_WITHIN: Duration = Duration::from_secs(90);

/// Rewrites a worker's secret request before the scheduler sees it (an attacker on the path).
pub type Tamper = Box<dyn FnMut(&mut SecretRequest)>;

/// Rewrites an assignment before it is sealed and sent (a scheduler that says one thing to the
/// SMS and another to the worker).
pub type AssignmentTamper = Box<dyn FnMut(&mut Assignment)>;

/// The scheduler (and its SMS, when connected with one) on a real MQTT connection.
pub struct Driver {
    pub scheduler: Scheduler,
    link: SchedulerLink,
    /// The sequence number of the last message sent.
    seq: u64,
    /// Every message received from workers, in order (after [`Driver::tamper`]).
    pub seen: Vec<Message>,
    pub tamper: Option<Tamper>,
    pub assignment_tamper: Option<AssignmentTamper>,
    /// While set, secret requests are kept in [`Driver::held`] instead of going to the SMS.
    pub hold: bool,
    pub held: Vec<(Address, Message)>,
    /// While set, the next contribution is seen but never reaches the scheduler (a broker that
    /// acknowledged it and died before delivering it); cleared when that happens.
    pub lose_contribution: bool,
}

impl Driver {
    /// Connects a scheduler without an SMS (standard tasks) to the broker on `port`.
    pub fn connect(port: u16) -> Driver {
        let link = SchedulerLink::connect(port, 64, None);
        Driver::new(Scheduler::new(link.signer.clone()), link)
    }

    /// Connects a scheduler with an SMS under `policy` (TEE tasks) to the broker on `port`.
    pub fn connect_with_sms(port: u16, policy: Policy) -> Driver {
        let link = SchedulerLink::connect(port, 64, None);
        let sms = Sms::new(link.signer.address(), policy);
        let scheduler = Scheduler::new(link.signer.clone()).with_sms(sms, POOL.parse().unwrap());
        Driver::new(scheduler, link)
    }

    fn new(scheduler: Scheduler, link: SchedulerLink) -> Driver {
        Driver {
            scheduler,
            link,
            seq: 0,
            seen: Vec::new(),
            tamper: None,
            assignment_tamper: None,
            hold: false,
            held: Vec::new(),
            lose_contribution: false,
        }
    }

    /// Seals `message` for `worker`'s inbox with the next sequence number and publishes it.
    pub fn send(&mut self, worker: Address, message: &Message) {
        self.seq += 1;
        self.link.send(worker, self.seq, message);
    }

    /// Sends what the scheduler asked to send (assignments through
    /// [`Driver::assignment_tamper`]); returns its other actions.
    pub fn perform(&mut self, actions: Vec<Action>) -> Vec<Action> {
        let mut rest = Vec::new();
        for action in actions {
            match action {
                Action::Send {
                    worker,
                    mut message,
                } => {
                    if let (Message::Assignment(a), Some(tamper)) =
                        (&mut message, &mut self.assignment_tamper)
                    {
                        tamper(a);
                    }
                    self.send(worker, &message);
                }
                other => rest.push(other),
            }
        }
        rest
    }

    /// Assigns task 0 of `deal` to `worker` with the default limits.
    pub fn assign(&mut self, deal: &DealSummary, worker: Address) -> TaskId {
        self.assign_with_limits(deal, worker, TaskLimits::default())
    }

    /// Assigns task 0 of `deal` to `worker` with `limits`.
    pub fn assign_with_limits(
        &mut self,
        deal: &DealSummary,
        worker: Address,
        limits: TaskLimits,
    ) -> TaskId {
        let (task_id, actions) = assign_first_task(&mut self.scheduler, deal, worker, limits);
        self.perform(actions);
        task_id
    }

    /// Waits (at most [`ONLINE_WITHIN`]) for `agent`'s capacity advertisement, which says it is
    /// up; what else arrives meanwhile is dropped.
    pub fn wait_online(&mut self, agent: &Agent) -> CapacityAdvertisement {
        let capacity = topic(agent.address, "capacity");
        let deadline = Instant::now() + ONLINE_WITHIN;
        while Instant::now() < deadline {
            if let Ok((t, payload)) = self.link.incoming.recv_timeout(Duration::from_millis(100)) {
                if t == capacity {
                    if let Message::Capacity(c) = Envelope::open(&payload, &t).unwrap().message {
                        return c;
                    }
                }
            }
        }
        panic!("agent never advertised; logs:\n{}", agent.logs());
    }

    /// Waits up to 100 ms for the next outbox message, records it, hands it to the scheduler
    /// (unless a hook keeps it) and performs the sends. Returns the message and the scheduler's
    /// other actions.
    ///
    /// # Panics
    /// If the message cannot be opened or the scheduler refuses it.
    pub fn step(&mut self) -> Option<(Message, Vec<Action>)> {
        let (t, payload) = self
            .link
            .incoming
            .recv_timeout(Duration::from_millis(100))
            .ok()?;
        if !t.ends_with("/outbox") {
            return None;
        }
        let opened = Envelope::open(&payload, &t).unwrap();
        let mut message = opened.message;
        if let (Message::SecretRequest(request), Some(tamper)) = (&mut message, &mut self.tamper) {
            tamper(request);
        }
        self.seen.push(message.clone());
        if self.lose_contribution && matches!(message, Message::Contribution(_)) {
            self.lose_contribution = false;
            return Some((message, Vec::new()));
        }
        if self.hold && matches!(message, Message::SecretRequest(_)) {
            self.held.push((opened.sender, message.clone()));
            return Some((message, Vec::new()));
        }
        let actions = self
            .scheduler
            .handle(opened.sender, &message, now_ms())
            .unwrap_or_else(|e| panic!("scheduler refused {message:?}: {e}"));
        let rest = self.perform(actions);
        Some((message, rest))
    }

    /// Steps until `found` takes something from a step (→ it), at most [`RUN_WITHIN`].
    ///
    /// # Panics
    /// When the bound passes first, with `agent`'s logs.
    fn drive<T>(
        &mut self,
        agent: &Agent,
        mut found: impl FnMut(Message, Vec<Action>) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + RUN_WITHIN;
        while Instant::now() < deadline {
            if let Some(hit) = self.step().and_then(|(m, actions)| found(m, actions)) {
                return hit;
            }
        }
        panic!("the awaited event never came; logs:\n{}", agent.logs());
    }

    /// Steps until `done` accepts a step's message and other actions.
    pub fn run_until(&mut self, agent: &Agent, mut done: impl FnMut(&Message, &[Action]) -> bool) {
        self.drive(agent, |m, actions| done(&m, &actions).then_some(()));
    }

    /// Steps until the scheduler produces an action `done` accepts; returns it.
    pub fn run_until_action(
        &mut self,
        agent: &Agent,
        mut done: impl FnMut(&Action) -> bool,
    ) -> Action {
        self.drive(agent, |_, actions| actions.into_iter().find(|a| done(a)))
    }

    /// Steps until the scheduler finalizes `task_id`.
    pub fn run_until_finalized(&mut self, agent: &Agent, task_id: TaskId) {
        self.run_until_action(
            agent,
            |a| matches!(a, Action::Finalized { task_id: t, .. } if *t == task_id),
        );
    }

    /// Steps until the task's failure is reported; returns its status and cause.
    pub fn run_until_failed(
        &mut self,
        agent: &Agent,
        task_id: TaskId,
    ) -> (ReplicateStatus, ReplicateStatusCause) {
        self.drive(agent, |m, _| match m {
            Message::StatusUpdate(u) if u.task_id == task_id => u.cause.map(|c| (u.status, c)),
            _ => None,
        })
    }

    /// Records outbox messages without handing them to the scheduler until one of the recorded
    /// messages matches `seen` (→ true) or `within` passes (→ false).
    pub fn watch_until(&mut self, within: Duration, seen: impl Fn(&Message) -> bool) -> bool {
        let deadline = Instant::now() + within;
        while !self.seen.iter().any(&seen) {
            if Instant::now() >= deadline {
                return false;
            }
            if let Ok((t, payload)) = self.link.incoming.recv_timeout(Duration::from_millis(100)) {
                if t.ends_with("/outbox") {
                    self.seen
                        .push(Envelope::open(&payload, &t).unwrap().message);
                }
            }
        }
        true
    }

    /// Hands the held secret requests to the scheduler, oldest first, and sends the answers.
    pub fn release_held(&mut self) {
        self.hold = false;
        for (sender, message) in std::mem::take(&mut self.held) {
            let actions = self.scheduler.handle(sender, &message, now_ms()).unwrap();
            self.perform(actions);
        }
    }

    /// The contributions seen for `task_id`, in order (re-sent ones included).
    pub fn contributions(&self, task_id: TaskId) -> Vec<&Contribution> {
        self.seen
            .iter()
            .filter_map(|m| match m {
                Message::Contribution(c) if c.task_id == task_id => Some(c),
                _ => None,
            })
            .collect()
    }

    /// The result digests of [`Driver::contributions`].
    pub fn contributed_digests(&self, task_id: TaskId) -> Vec<Digest> {
        self.contributions(task_id)
            .iter()
            .map(|c| c.result_digest)
            .collect()
    }

    /// Whether a contribution for `task_id` was seen.
    pub fn contributed(&self, task_id: TaskId) -> bool {
        !self.contributions(task_id).is_empty()
    }
}

/// Has `scheduler` assign task 0 of `deal` to `worker` under `limits` (no callback): the task's
/// id and the actions to perform.
///
/// # Panics
/// If the scheduler refuses the assignment.
pub fn assign_first_task(
    scheduler: &mut Scheduler,
    deal: &DealSummary,
    worker: Address,
    limits: TaskLimits,
) -> (TaskId, Vec<Action>) {
    let actions = scheduler
        .assign(deal, 0, worker, limits, Address::ZERO, now_ms())
        .unwrap();
    (poco::task_id(&deal.deal_id, 0), actions)
}
