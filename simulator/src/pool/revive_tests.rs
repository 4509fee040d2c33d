//! Workers lost and back: the pool core with the real PoCo ledger (in-memory SQLite) and
//! protocol-faithful workers (real keys, real envelopes), driven step by step with time as an
//! argument. A worker whose contribution the ledger holds is asked to reveal when it comes back
//! and is rewarded, never slashed for being honest; a replica lost before contributing is taken
//! back while the task still takes contributions; a lost uploader is replaced by another
//! revealer; a busy worker's decline does not fail the task.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use edgepool_protocol::envelope::Envelope;
use edgepool_protocol::hash::sha256;
use edgepool_protocol::messages::{
    Accept, CapacityAdvertisement, Contribution, CpuInfo, Decline, Message, ResultUploaded, Reveal,
    TaskLimits,
};
use edgepool_protocol::primitives::{Address, Digest};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::status::{NotificationType, ReplicateStatusCause};
use edgepool_protocol::tags::Tag;
use edgepool_protocol::topics::{Presence, Topic};

use super::journal::PoolJournal;
use super::*;
use crate::economy::{DealOffer, Market};
use crate::ledger::Ledger;
use crate::store::Store;

const T0: u64 = 1_700_000_000_000;
const TIME_REF_SECS: u64 = 10;
const POOL: Address = Address([0x70; 20]);

fn owner() -> Signer {
    Signer::from_bytes(&[99; 32]).unwrap()
}

fn market() -> Market {
    market_on(Arc::new(Mutex::new(Ledger::in_memory().unwrap())))
}

fn market_on(ledger: Arc<Mutex<Ledger>>) -> Market {
    Market::new(ledger, owner().address(), "test pool").unwrap()
}

fn offer(trust: u64) -> DealOffer {
    DealOffer {
        app_name: "app.wasm".into(),
        app_url: "http://127.0.0.1:1/apps/app.wasm".into(),
        app_checksum: Digest(sha256(b"module")),
        app_size: 6,
        dataset: None,
        requester: Address([0x51; 20]),
        args: String::new(),
        input_files: Vec::new(),
        tag: Tag::NONE,
        trust,
        time_ref_secs: TIME_REF_SECS,
        volume: 1,
        result_storage_proxy: None,
        result_encryption: false,
    }
}

fn core(market: &Market, store: &Store) -> PoolCore {
    PoolCore::new(
        POOL,
        owner(),
        PoolSettings {
            heartbeat_limit_ms: 5_000,
        },
        Box::new(market.hooks()),
        store.handle(),
        T0,
    )
}

/// A protocol-faithful worker: its own key, sealed envelopes, a growing outbox sequence.
struct Worker {
    signer: Signer,
    seq: u64,
}

impl Worker {
    fn new(n: u8) -> Self {
        Self {
            signer: Signer::from_bytes(&[n; 32]).unwrap(),
            seq: 0,
        }
    }

    fn address(&self) -> Address {
        self.signer.address()
    }

    fn presence(&self, core: &mut PoolCore, presence: Presence, now: u64) {
        let topic = core.prefix().presence(self.address());
        core.on_publish(&topic, presence.as_bytes(), now);
    }

    fn send(&mut self, core: &mut PoolCore, message: &Message, now: u64) {
        self.seq += 1;
        let topic = match message {
            Message::Capacity(_) => core.prefix().capacity(self.address()),
            _ => core.prefix().outbox(self.address()),
        };
        let payload = Envelope::seal(&self.signer, &topic, self.seq, now, message).unwrap();
        core.on_publish(&topic, &payload, now);
    }

    /// Online with a capacity of `slots`.
    fn join(&mut self, core: &mut PoolCore, slots: u32, now: u64) {
        self.presence(core, Presence::Online, now);
        let capacity = Message::Capacity(CapacityAdvertisement {
            worker: self.address(),
            agent_version: "test".into(),
            cpu: CpuInfo {
                model: "cpu".into(),
                cores: 1,
                threads: 1,
                arch: "x86_64".into(),
            },
            ram_bytes: 1 << 30,
            disk_free_bytes: 1 << 30,
            gpus: Vec::new(),
            tee: None,
            tee_measurement: Vec::new(),
            tags: Tag::NONE,
            slots,
            limits: TaskLimits::default(),
            fuel_per_second: 1,
        });
        self.send(core, &capacity, now);
    }

    fn accept(&mut self, core: &mut PoolCore, task_id: TaskId, now: u64) {
        self.send(core, &Message::Accept(Accept { task_id }), now);
    }

    fn contribute(&mut self, core: &mut PoolCore, task_id: TaskId, digest: Digest, now: u64) {
        let c = Contribution::standard(self.address(), task_id, digest, 1);
        self.send(core, &Message::Contribution(c), now);
    }

    fn reveal(&mut self, core: &mut PoolCore, task_id: TaskId, digest: Digest, now: u64) {
        let reveal = Reveal {
            task_id,
            result_digest: digest,
        };
        self.send(core, &Message::Reveal(reveal), now);
    }

    fn upload(&mut self, core: &mut PoolCore, task_id: TaskId, now: u64) {
        let uploaded = ResultUploaded {
            task_id,
            result_link: format!("http://127.0.0.1:1/results/{task_id}"),
        };
        self.send(core, &Message::ResultUploaded(uploaded), now);
    }
}

/// What the pool sent, opened: (to whom, what).
fn sent(core: &mut PoolCore) -> Vec<(Address, &'static str)> {
    core.take_outgoing()
        .into_iter()
        .map(|o| {
            let opened = Envelope::open(&o.payload, &o.topic).unwrap();
            assert_eq!(opened.sender, owner().address());
            let to = Topic::parse(core.prefix(), &o.topic).unwrap().worker;
            let kind = match opened.message {
                Message::Notification(n) => match n.kind {
                    NotificationType::PleaseReveal => {
                        assert!(
                            n.deadline_ms.is_some(),
                            "PLEASE_REVEAL without its deadline"
                        );
                        "PLEASE_REVEAL"
                    }
                    NotificationType::PleaseUpload => "PLEASE_UPLOAD",
                    NotificationType::PleaseComplete => "PLEASE_COMPLETE",
                    NotificationType::PleaseAbort => "PLEASE_ABORT",
                    NotificationType::PleaseAbortConsensusReached => "PLEASE_ABORT_CONSENSUS",
                    NotificationType::PleaseAbortContributionTimeout => "PLEASE_ABORT_TIMEOUT",
                    _ => "notification",
                },
                other => other.kind().as_str(),
            };
            (to, kind)
        })
        .collect()
}

fn submit(core: &mut PoolCore, market: &Market, trust: u64, replicas: usize) -> TaskId {
    let deal = market.open_deal(&offer(trust), T0).unwrap().summary;
    core.submit(
        DealRequest {
            deal,
            limits: TaskLimits::default(),
            replicas,
            replica_timeout_ms: None,
            dataset_restrictions: None,
        },
        T0,
    )
    .unwrap()[0]
}

fn honest() -> Digest {
    Digest(sha256(b"honest result"))
}

fn rewarded(core: &PoolCore) -> Vec<Address> {
    let mut r: Vec<Address> = core.report().tasks[0]
        .settlement
        .rewarded
        .iter()
        .map(|(a, _)| *a)
        .collect();
    r.sort();
    r
}

fn sorted(mut v: Vec<Address>) -> Vec<Address> {
    v.sort();
    v
}

/// Three workers on a trust-3 task (two agreeing fresh workers reach the ledger's consensus):
/// `a` contributes and its agent dies; `b` contributes (consensus), reveals and uploads: the
/// task is final for the scheduler, while the ledger waits for `a`'s reveal.
fn a_contributed_then_died(
    core: &mut PoolCore,
    market: &Market,
) -> (TaskId, Worker, Worker, Worker) {
    let (mut a, mut b, mut c) = (Worker::new(1), Worker::new(2), Worker::new(3));
    for w in [&mut a, &mut b, &mut c] {
        w.join(core, 2, T0);
    }
    let task = submit(core, market, 3, 3);
    assert_eq!(sent(core).len(), 3);
    for w in [&mut a, &mut b, &mut c] {
        w.accept(core, task, T0 + 1);
    }
    a.contribute(core, task, honest(), T0 + 10);
    assert!(sent(core).is_empty());
    // Killed: its last will says offline. Its contribution stays on the ledger.
    a.presence(core, Presence::Offline, T0 + 20);
    b.contribute(core, task, honest(), T0 + 30);
    // Consensus: both contributors are asked to reveal; `a` is down and misses it.
    assert_eq!(
        sorted_pairs(sent(core)),
        sorted_pairs(vec![
            (a.address(), "PLEASE_REVEAL"),
            (b.address(), "PLEASE_REVEAL")
        ])
    );
    b.reveal(core, task, honest(), T0 + 40);
    assert_eq!(sent(core), [(b.address(), "PLEASE_UPLOAD")]);
    b.upload(core, task, T0 + 50);
    assert_eq!(
        sorted_pairs(sent(core)),
        sorted_pairs(vec![
            (b.address(), "PLEASE_COMPLETE"),
            (c.address(), "PLEASE_ABORT_CONSENSUS")
        ])
    );
    let report = core.report();
    assert_eq!(report.tasks[0].status, "COMPLETED");
    assert!(
        report.tasks[0].settlement.status.starts_with("pending"),
        "{:?}",
        report.tasks[0].settlement
    );
    (task, a, b, c)
}

fn sorted_pairs(mut v: Vec<(Address, &'static str)>) -> Vec<(Address, &'static str)> {
    v.sort();
    v
}

#[test]
fn a_worker_killed_after_contributing_is_asked_to_reveal_when_it_returns_and_is_rewarded() {
    let (market, store) = (market(), Store::start().unwrap());
    let mut core = core(&market, &store);
    let (task, mut a, b, _) = a_contributed_then_died(&mut core, &market);

    // Back (restarted agent): asked to reveal, not told to abort.
    a.presence(&mut core, Presence::Online, T0 + 3_000);
    assert_eq!(sent(&mut core), [(a.address(), "PLEASE_REVEAL")]);
    a.reveal(&mut core, task, honest(), T0 + 3_010);
    assert_eq!(sent(&mut core), [(a.address(), "PLEASE_COMPLETE")]);

    // The ledger settled at once (every winner revealed): both rewarded, nobody slashed.
    let report = core.report();
    let settlement = &report.tasks[0].settlement;
    assert_eq!(settlement.status, "COMPLETED", "{settlement:?}");
    assert_eq!(rewarded(&core), sorted(vec![a.address(), b.address()]));
    assert!(settlement.slashed.is_empty(), "{settlement:?}");
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    // Nothing more for anyone, and `a`'s slot is free again.
    core.tick(T0 + 3_000_000);
    assert!(sent(&mut core).is_empty());
    assert_eq!(core.registry().get(&a.address()).unwrap().active, 0);
}

#[test]
fn after_a_restart_from_the_journal_a_returning_contributor_is_still_asked_to_reveal() {
    let (market, store) = (market(), Store::start().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.sqlite");
    let (task, mut a, b) = {
        let mut first = core(&market, &store);
        first.enable_journal();
        let (task, a, b, _) = a_contributed_then_died(&mut first, &market);
        PoolJournal::open(&path)
            .unwrap()
            .write(&first.take_journal())
            .unwrap();
        (task, a, b)
    };
    // The simulator restarts (the ledger keeps its own state).
    let mut second = core(&market, &store);
    second
        .restore(
            PoolJournal::open(&path).unwrap().load().unwrap(),
            T0 + 2_000,
        )
        .unwrap();
    second.enable_journal();
    // Recovery tells every known worker what to do next: `a` is asked to reveal.
    let out = sent(&mut second);
    assert!(out.contains(&(a.address(), "PLEASE_REVEAL")), "{out:?}");
    a.presence(&mut second, Presence::Online, T0 + 5_000);
    assert_eq!(sent(&mut second), [(a.address(), "PLEASE_REVEAL")]);
    a.reveal(&mut second, task, honest(), T0 + 5_010);
    assert_eq!(sent(&mut second), [(a.address(), "PLEASE_COMPLETE")]);
    assert_eq!(second.report().tasks[0].settlement.status, "COMPLETED");
    assert_eq!(rewarded(&second), sorted(vec![a.address(), b.address()]));
}

#[test]
fn a_contributor_that_never_returns_is_slashed_at_the_reveal_deadline_and_the_task_settles() {
    let (market, store) = (market(), Store::start().unwrap());
    let mut core = core(&market, &store);
    let (_, a, b, _) = a_contributed_then_died(&mut core, &market);
    // Before the reveal deadline nothing happens to it.
    core.tick(T0 + 30 + 2 * TIME_REF_SECS * 1000 - 1);
    assert!(sent(&mut core).is_empty());
    // After it, the ledger finalizes from the revealers (iExec's rule) and `a` is told to stop;
    // its slot is given back.
    core.tick(T0 + 30 + 2 * TIME_REF_SECS * 1000 + 1);
    assert_eq!(sent(&mut core), [(a.address(), "PLEASE_ABORT")]);
    let report = core.report();
    let settlement = &report.tasks[0].settlement;
    assert_eq!(settlement.status, "COMPLETED", "{settlement:?}");
    assert_eq!(rewarded(&core), vec![b.address()]);
    assert_eq!(
        settlement
            .slashed
            .iter()
            .map(|(w, _)| *w)
            .collect::<Vec<_>>(),
        vec![a.address()]
    );
    assert_eq!(core.registry().get(&a.address()).unwrap().active, 0);
}

#[test]
fn a_replica_lost_before_contributing_is_taken_back_when_its_worker_returns_in_time() {
    let (market, store) = (market(), Store::start().unwrap());
    let mut core = core(&market, &store);
    let (mut a, mut b, mut c) = (Worker::new(1), Worker::new(2), Worker::new(3));
    for w in [&mut a, &mut b, &mut c] {
        w.join(&mut core, 2, T0);
    }
    let task = submit(&mut core, &market, 3, 3);
    assert_eq!(sent(&mut core).len(), 3);
    for w in [&mut a, &mut b, &mut c] {
        w.accept(&mut core, task, T0 + 1);
    }
    // `a` dies while computing: WORKER_LOST (no other worker to place the task on).
    a.presence(&mut core, Presence::Offline, T0 + 20);
    assert!(core.report().tasks[0]
        .replicas
        .iter()
        .any(|r| r.lost.is_some()));
    b.contribute(&mut core, task, honest(), T0 + 30);
    assert!(sent(&mut core).is_empty());
    // It comes back within the contribution deadline: not told to abort, taken back.
    a.presence(&mut core, Presence::Online, T0 + 3_000);
    let out = sent(&mut core);
    assert!(
        !out.iter().any(|(_, k)| k.starts_with("PLEASE_ABORT")),
        "{out:?}"
    );
    assert!(core.report().tasks[0]
        .replicas
        .iter()
        .all(|r| r.lost.is_none()));
    // Its agent resumed the task from its journal: its contribution counts (consensus).
    a.contribute(&mut core, task, honest(), T0 + 3_100);
    assert_eq!(
        sorted_pairs(sent(&mut core)),
        sorted_pairs(vec![
            (a.address(), "PLEASE_REVEAL"),
            (b.address(), "PLEASE_REVEAL")
        ])
    );
    a.reveal(&mut core, task, honest(), T0 + 3_200);
    assert_eq!(sent(&mut core), [(a.address(), "PLEASE_UPLOAD")]);
    a.upload(&mut core, task, T0 + 3_300);
    assert_eq!(
        sorted_pairs(sent(&mut core)),
        sorted_pairs(vec![
            (a.address(), "PLEASE_COMPLETE"),
            (c.address(), "PLEASE_ABORT_CONSENSUS")
        ])
    );
    // `b` reveals after the upload (final for the scheduler, not for the ledger).
    b.reveal(&mut core, task, honest(), T0 + 3_400);
    assert_eq!(sent(&mut core), [(b.address(), "PLEASE_COMPLETE")]);
    let report = core.report();
    assert_eq!(report.tasks[0].settlement.status, "COMPLETED");
    assert_eq!(rewarded(&core), sorted(vec![a.address(), b.address()]));
    assert!(report.refused.is_empty(), "{:?}", report.refused);
}

#[test]
fn a_lost_uploader_is_replaced_by_a_revealer_that_is_online() {
    let (market, store) = (market(), Store::start().unwrap());
    let mut core = core(&market, &store);
    let (mut a, mut b, mut c) = (Worker::new(1), Worker::new(2), Worker::new(3));
    for w in [&mut a, &mut b, &mut c] {
        w.join(&mut core, 2, T0);
    }
    let task = submit(&mut core, &market, 3, 3);
    sent(&mut core);
    for w in [&mut a, &mut b, &mut c] {
        w.accept(&mut core, task, T0 + 1);
    }
    a.contribute(&mut core, task, honest(), T0 + 10);
    b.contribute(&mut core, task, honest(), T0 + 11);
    sent(&mut core);
    a.reveal(&mut core, task, honest(), T0 + 20);
    assert_eq!(sent(&mut core), [(a.address(), "PLEASE_UPLOAD")]);
    // The uploader dies before anyone else revealed; `b` reveals next and uploads instead.
    a.presence(&mut core, Presence::Offline, T0 + 30);
    assert!(sent(&mut core).is_empty());
    b.reveal(&mut core, task, honest(), T0 + 40);
    assert_eq!(sent(&mut core), [(b.address(), "PLEASE_UPLOAD")]);
    b.upload(&mut core, task, T0 + 50);
    let out = sent(&mut core);
    assert!(out.contains(&(b.address(), "PLEASE_COMPLETE")), "{out:?}");
    let report = core.report();
    assert_eq!(report.tasks[0].status, "COMPLETED");
    assert_eq!(report.tasks[0].uploader, Some(b.address()));
    assert_eq!(report.tasks[0].settlement.status, "COMPLETED");
    assert_eq!(rewarded(&core), sorted(vec![a.address(), b.address()]));
}

#[test]
fn an_uploader_lost_after_others_revealed_hands_the_upload_to_one_of_them() {
    let (market, store) = (market(), Store::start().unwrap());
    let mut core = core(&market, &store);
    let (mut a, mut b, mut c) = (Worker::new(1), Worker::new(2), Worker::new(3));
    for w in [&mut a, &mut b, &mut c] {
        w.join(&mut core, 2, T0);
    }
    let task = submit(&mut core, &market, 3, 3);
    sent(&mut core);
    a.contribute(&mut core, task, honest(), T0 + 10);
    b.contribute(&mut core, task, honest(), T0 + 11);
    sent(&mut core);
    a.reveal(&mut core, task, honest(), T0 + 20);
    b.reveal(&mut core, task, honest(), T0 + 21);
    assert_eq!(sent(&mut core), [(a.address(), "PLEASE_UPLOAD")]);
    a.presence(&mut core, Presence::Offline, T0 + 30);
    assert_eq!(sent(&mut core), [(b.address(), "PLEASE_UPLOAD")]);
    b.upload(&mut core, task, T0 + 40);
    assert_eq!(core.report().tasks[0].status, "COMPLETED");
    assert_eq!(core.report().tasks[0].uploader, Some(b.address()));
}

#[test]
fn a_busy_workers_decline_moves_the_task_and_pauses_that_worker_instead_of_failing_the_task() {
    let (market, store) = (market(), Store::start().unwrap());
    let mut core = core(&market, &store);
    let (mut a, mut b) = (Worker::new(1), Worker::new(2));
    a.join(&mut core, 4, T0);
    let task = submit(&mut core, &market, 1, 1);
    assert_eq!(sent(&mut core), [(a.address(), "assignment")]);
    b.join(&mut core, 4, T0 + 5);
    // `a` is busier than the pool thinks (a task it was told to abort still runs there).
    let decline = Decline {
        task_id: task,
        cause: ReplicateStatusCause::NoFreeSlot,
        detail: "no free slot".into(),
    };
    a.send(&mut core, &Message::Decline(decline), T0 + 10);
    assert_eq!(sent(&mut core), [(b.address(), "assignment")]);
    let report = core.report();
    assert_eq!(
        report.tasks[0].status, "CONTRIBUTING",
        "{:?}",
        report.tasks[0]
    );
    // No replica goes to `a` for a while: a second task goes to `b`.
    let second = submit_volume(&mut core, &market);
    assert_eq!(sent(&mut core), [(b.address(), "assignment")]);
    assert!(core
        .registry()
        .get(&a.address())
        .unwrap()
        .full_until_ms
        .is_some());
    core.tick(T0 + 10 + FULL_PAUSE_MS);
    assert!(core
        .registry()
        .get(&a.address())
        .unwrap()
        .full_until_ms
        .is_none());
    b.contribute(&mut core, task, honest(), T0 + 2_000);
    assert_eq!(sent(&mut core), [(b.address(), "PLEASE_REVEAL")]);
    let _ = second;
}

/// Another one-task trust-1 deal.
fn submit_volume(core: &mut PoolCore, market: &Market) -> TaskId {
    let mut offer = offer(1);
    offer.args = "second".into();
    let deal = market.open_deal(&offer, T0).unwrap().summary;
    core.submit(
        DealRequest {
            deal,
            limits: TaskLimits::default(),
            replicas: 1,
            replica_timeout_ms: None,
            dataset_restrictions: None,
        },
        T0 + 20,
    )
    .unwrap()[0]
}

#[test]
fn a_worker_whose_balance_cannot_cover_the_stake_gets_no_replica() {
    let ledger = Arc::new(Mutex::new(Ledger::in_memory().unwrap()));
    let market = market_on(Arc::clone(&ledger));
    let store = Store::start().unwrap();
    let mut core = core(&market, &store);
    // Of two fresh workers with equal load and score, placement takes the lower address first:
    // that one is made poor (10 nRLC, the deal's worker stake is 30), like a liar slashed dry.
    let (mut x, mut y) = (Worker::new(1), Worker::new(2));
    let (mut poor, mut rich) = if x.address() < y.address() {
        (x, y)
    } else {
        std::mem::swap(&mut x, &mut y);
        (x, y)
    };
    ledger.lock().unwrap().deposit(poor.address(), 10).unwrap();
    poor.join(&mut core, 4, T0);
    let task = submit(&mut core, &market, 1, 1);
    // Alone, it gets nothing: the task waits.
    assert!(sent(&mut core).is_empty());
    assert_eq!(core.report().tasks[0].replicas.len(), 0);
    rich.join(&mut core, 4, T0 + 10);
    assert_eq!(sent(&mut core), [(rich.address(), "assignment")]);
    // Funded again, it is a candidate again (a second deal goes to it: least loaded).
    ledger.lock().unwrap().deposit(poor.address(), 100).unwrap();
    submit_volume(&mut core, &market);
    assert_eq!(sent(&mut core), [(poor.address(), "assignment")]);
    rich.contribute(&mut core, task, honest(), T0 + 100);
    assert_eq!(sent(&mut core), [(rich.address(), "PLEASE_REVEAL")]);
}

/// A worker that stays online (heartbeats) but silent about its replica — the assignment or its
/// answer was lost by a broker that dropped a connection — is sent the assignment again after
/// [`NUDGE_FIRST_MS`], then after twice that; its answer (the contribution it had made) lets
/// the task go on.
#[test]
fn a_silent_replica_of_an_online_worker_is_sent_its_assignment_again_with_backoff() {
    let (market, store) = (market(), Store::start().unwrap());
    let mut core = core(&market, &store);
    let mut a = Worker::new(1);
    a.join(&mut core, 1, T0);
    let task = submit(&mut core, &market, 1, 1);
    assert_eq!(sent(&mut core), [(a.address(), "assignment")]);
    let heartbeat = |a: &mut Worker, core: &mut PoolCore, now: u64| {
        let h = Message::Heartbeat(edgepool_protocol::messages::Heartbeat {
            running_tasks: 1,
            free_slots: 0,
            free_memory_bytes: 1 << 30,
            free_disk_bytes: 1 << 30,
            accepting: true,
        });
        a.send(core, &h, now);
        core.tick(now);
    };
    // Silent (its ACCEPT was lost): nothing before the first interval, then the assignment.
    let mut now = T0;
    while now < T0 + NUDGE_FIRST_MS {
        now += 1_000;
        heartbeat(&mut a, &mut core, now);
        if now <= T0 + NUDGE_FIRST_MS {
            assert!(sent(&mut core).is_empty(), "at {}", now - T0);
        }
    }
    heartbeat(&mut a, &mut core, T0 + NUDGE_FIRST_MS + 1);
    assert_eq!(sent(&mut core), [(a.address(), "assignment")]);
    // Still silent: the next one comes after twice the interval, not before.
    now = T0 + NUDGE_FIRST_MS + 1;
    for _ in 0..(2 * NUDGE_FIRST_MS / 1_000) {
        now += 1_000;
        heartbeat(&mut a, &mut core, now);
        assert!(sent(&mut core).is_empty(), "at {}", now - T0);
    }
    heartbeat(&mut a, &mut core, now + 2);
    assert_eq!(sent(&mut core), [(a.address(), "assignment")]);
    // It answers with the contribution it had made: the task goes on to the reveal.
    a.accept(&mut core, task, now + 10);
    a.contribute(&mut core, task, honest(), now + 20);
    assert_eq!(sent(&mut core), [(a.address(), "PLEASE_REVEAL")]);
    assert!(
        core.report().refused.is_empty(),
        "{:?}",
        core.report().refused
    );
}
