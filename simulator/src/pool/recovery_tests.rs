//! The pool core restarted from its journal, and workers that reconnect: real envelopes, a real
//! SQLite journal file, the core driven step by step with time as an argument.

#![allow(clippy::unwrap_used)]

use edgepool_protocol::envelope::Envelope;
use edgepool_protocol::messages::{
    Accept, AppRef, CapacityAdvertisement, Contribution, CpuInfo, DealSummary, Message,
    ResultUploaded, Reveal, TaskLimits,
};
use edgepool_protocol::primitives::{Address, DealId, Digest};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::status::NotificationType;
use edgepool_protocol::tags::Tag;
use edgepool_protocol::topics::Presence;

use super::journal::PoolJournal;
use super::*;
use crate::hooks::NoLedger;
use crate::store::Store;

const T0: u64 = 1_700_000_000_000;
const POOL: Address = Address([0x70; 20]);

fn deal() -> DealSummary {
    DealSummary {
        deal_id: DealId::from([7; 32]),
        app: AppRef {
            address: Address([0xa1; 20]),
            url: "http://127.0.0.1:1/app.wasm".into(),
            checksum: Digest::from([1; 32]),
            size_bytes: None,
        },
        dataset: None,
        input_files: Vec::new(),
        args: String::new(),
        tag: Tag::NONE,
        trust: 1,
        category: 0,
        time_ref_seconds: 600,
        start_time_ms: T0,
        requester: Address([0x51; 20]),
        beneficiary: Address([0x52; 20]),
        callback: Address::ZERO,
        result_encryption: false,
        result_storage_provider: "ipfs".into(),
        result_storage_proxy: None,
        bot_first: 0,
        bot_size: 1,
    }
}

struct Worker {
    signer: Signer,
    seq: u64,
    sent: Vec<(String, Vec<u8>)>,
}

impl Worker {
    fn new() -> Self {
        Self {
            signer: Signer::from_bytes(&[3; 32]).unwrap(),
            seq: 0,
            sent: Vec::new(),
        }
    }

    fn address(&self) -> Address {
        self.signer.address()
    }

    fn online(&self, core: &mut PoolCore, now: u64) {
        let topic = core.prefix().presence(self.address());
        core.on_publish(&topic, Presence::Online.as_bytes(), now);
    }

    fn send(&mut self, core: &mut PoolCore, message: &Message, now: u64) {
        self.seq += 1;
        let topic = match message {
            Message::Capacity(_) => core.prefix().capacity(self.address()),
            _ => core.prefix().outbox(self.address()),
        };
        let payload = Envelope::seal(&self.signer, &topic, self.seq, now, message).unwrap();
        core.on_publish(&topic, &payload, now);
        self.sent.push((topic, payload));
    }
}

fn capacity(worker: Address) -> Message {
    Message::Capacity(CapacityAdvertisement {
        worker,
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
        slots: 2,
        limits: TaskLimits::default(),
        fuel_per_second: 1,
    })
}

fn scheduler() -> Signer {
    Signer::from_bytes(&[99; 32]).unwrap()
}

fn core(store: &Store) -> PoolCore {
    PoolCore::new(
        POOL,
        scheduler(),
        PoolSettings {
            heartbeat_limit_ms: 60_000,
        },
        Box::new(NoLedger),
        store.handle(),
        T0,
    )
}

/// What the pool sent, opened: (sequence, message).
fn sent(core: &mut PoolCore) -> Vec<(u64, Message)> {
    core.take_outgoing()
        .into_iter()
        .map(|o| {
            let opened = Envelope::open(&o.payload, &o.topic).unwrap();
            assert_eq!(opened.sender, scheduler().address());
            (opened.seq, opened.message)
        })
        .collect()
}

fn kinds(messages: &[(u64, Message)]) -> Vec<&'static str> {
    messages
        .iter()
        .map(|(_, m)| match m {
            Message::Notification(n) => match n.kind {
                NotificationType::PleaseReveal => "PLEASE_REVEAL",
                NotificationType::PleaseUpload => "PLEASE_UPLOAD",
                NotificationType::PleaseComplete => "PLEASE_COMPLETE",
                _ => "PLEASE_ABORT*",
            },
            other => other.kind().as_str(),
        })
        .collect()
}

/// A pool that assigned the deal's one task to `worker`, which contributed; the pool asked it
/// to reveal. Returns the task id and the PLEASE_REVEAL's sequence number.
fn contributed(core: &mut PoolCore, worker: &mut Worker) -> (TaskId, u64) {
    worker.online(core, T0);
    worker.send(core, &capacity(worker.address()), T0);
    let ids = core
        .submit(
            DealRequest {
                deal: deal(),
                limits: TaskLimits::default(),
                replicas: 1,
                replica_timeout_ms: None,
                dataset_restrictions: None,
            },
            T0,
        )
        .unwrap();
    let task_id = ids[0];
    assert_eq!(kinds(&sent(core)), ["assignment"]);
    worker.send(core, &Message::Accept(Accept { task_id }), T0 + 1);
    let contribution = Contribution::standard(worker.address(), task_id, Digest::from([5; 32]), 1);
    worker.send(core, &Message::Contribution(contribution), T0 + 2);
    let out = sent(core);
    assert_eq!(kinds(&out), ["PLEASE_REVEAL"]);
    (task_id, out[0].0)
}

#[test]
fn a_pool_restarted_from_its_journal_asks_again_for_the_reveal_and_finishes_the_task() {
    let store = Store::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.sqlite");
    let mut worker = Worker::new();
    let (task_id, reveal_seq) = {
        let mut first = core(&store);
        first.enable_journal();
        let (task_id, seq) = contributed(&mut first, &mut worker);
        PoolJournal::open(&path)
            .unwrap()
            .write(&first.take_journal())
            .unwrap();
        // The pool dies here: whatever it would still have done is gone.
        (task_id, seq)
    };

    // Same key, same clock start: only the journal keeps its sequence numbers growing.
    let mut second = core(&store);
    let restored = second
        .restore(PoolJournal::open(&path).unwrap().load().unwrap(), T0 + 10)
        .unwrap();
    assert_eq!(restored, 1);
    second.enable_journal();
    let out = sent(&mut second);
    assert_eq!(kinds(&out), ["PLEASE_REVEAL"]);
    assert!(out[0].0 > reveal_seq, "{} <= {reveal_seq}", out[0].0);

    // A replayed envelope of the worker (its contribution) is refused by sequence.
    let (topic, payload) = worker.sent.last().cloned().unwrap();
    second.on_publish(&topic, &payload, T0 + 11);
    assert!(
        second
            .report()
            .refused
            .iter()
            .any(|r| r.contains("sequence")),
        "{:?}",
        second.report().refused
    );

    worker.send(
        &mut second,
        &Message::Reveal(Reveal {
            task_id,
            result_digest: Digest::from([5; 32]),
        }),
        T0 + 12,
    );
    assert_eq!(kinds(&sent(&mut second)), ["PLEASE_UPLOAD"]);
    worker.send(
        &mut second,
        &Message::ResultUploaded(ResultUploaded {
            task_id,
            result_link: "http://127.0.0.1:1/results/x".into(),
        }),
        T0 + 13,
    );
    assert_eq!(kinds(&sent(&mut second)), ["PLEASE_COMPLETE"]);
    let report = second.report();
    assert_eq!(report.tasks[0].status, "COMPLETED", "{:?}", report.tasks);
}

#[test]
fn a_worker_that_comes_back_online_is_sent_its_pending_notification_again_but_not_in_a_storm() {
    let store = Store::start().unwrap();
    let mut pool = core(&store);
    let mut worker = Worker::new();
    let (_, first_seq) = contributed(&mut pool, &mut worker);

    // Its connection dropped and the PLEASE_REVEAL with it; it comes back.
    worker.online(&mut pool, T0 + RESEND_INTERVAL_MS + 10);
    let again = sent(&mut pool);
    assert_eq!(kinds(&again), ["PLEASE_REVEAL"]);
    assert!(again[0].0 > first_seq);

    // Flapping: at most one round per interval.
    worker.online(&mut pool, T0 + RESEND_INTERVAL_MS + 20);
    assert!(sent(&mut pool).is_empty());
    worker.online(&mut pool, T0 + 2 * RESEND_INTERVAL_MS + 20);
    assert_eq!(kinds(&sent(&mut pool)), ["PLEASE_REVEAL"]);
}
