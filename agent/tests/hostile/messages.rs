//! Hostile inbox messages: each refused with its typed reason and counted; the agent keeps
//! serving.

use std::collections::HashMap;

use edgepool_protocol::envelope::{Envelope, MAX_ENVELOPE_BYTES};
use edgepool_protocol::messages::{Accept, Message, Notification, TaskLimits};
use edgepool_protocol::primitives::{Address, TaskId};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::status::NotificationType;
use edgepool_simulator::scheduler::{Action, Scheduler};

use crate::harness::{deal, now_ms, repo, topic, Agent, Driver, HttpServer};
use crate::support::rumqttd::EmbeddedBroker;

/// xorshift64*: reproducible random payloads from a printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn notification(task_id: TaskId, kind: NotificationType) -> Message {
    Message::Notification(Notification {
        task_id,
        kind,
        deadline_ms: None,
        detail: None,
    })
}

/// What the receiver must say about `payload` on `inbox` if the envelope layer refuses it (the
/// protocol crate's own decoder is the oracle for random bytes, whose exact failure depends on
/// the bytes drawn).
fn envelope_reason(payload: &[u8], inbox: &str) -> &'static str {
    match Envelope::open(payload, inbox) {
        Err(e) => e.reason(),
        Ok(opened) => panic!("random bytes opened as {opened:?}"),
    }
}

#[test]
fn hostile_messages_are_refused_by_reason_counted_and_the_agent_keeps_serving() {
    let app = std::fs::read(repo().join("apps/mandelbrot/mandelbrot.wasm")).unwrap();
    let args =
        std::fs::read_to_string(repo().join("apps/mandelbrot/samples/small/iexec_args")).unwrap();
    let expected = crate::expected_digest(&repo().join("apps/mandelbrot/samples/small/expected"));
    let server = HttpServer::start(HashMap::from([(
        "mandelbrot.wasm".to_string(),
        app.clone(),
    )]));
    let broker = EmbeddedBroker::start();
    let mut driver = Driver::connect(broker.port());
    let scheduler = driver.scheduler.address();
    let a = Agent::start(&broker.url(), scheduler, &[]);
    let b = Agent::start(&broker.url(), scheduler, &[]);
    driver.wait_online(&[&a, &b]);
    let logs = || format!("{}\n---- agent b\n{}", a.log(), b.log());

    // A first honest task, whose assignment envelope is replayed later.
    let first = driver.assign(
        &deal(&server, "mandelbrot.wasm", &app, args.trim(), 1),
        a.address,
        TaskLimits::default(),
    );
    let (finalized, failed) = driver.run_until_settled(&[first], &logs);
    assert!(
        failed.is_empty() && finalized.contains_key(&first),
        "{}",
        logs()
    );
    let assignment = driver.sent[0].1.clone();

    let inbox = topic(a.address, "inbox");
    let mut expected_counts: HashMap<String, u64> = HashMap::new();
    let mut count = |reason: &str| *expected_counts.entry(reason.to_string()).or_default() += 1;

    // Random bytes (half with the right version byte, so the decoder itself is reached), and
    // an empty payload.
    let seed = now_ms();
    println!("random payload seed {seed}");
    let mut rng = Rng(seed | 1);
    for i in 0..24 {
        let len = 1 + (rng.next() % 2048) as usize;
        let mut payload = rng.bytes(len);
        if i % 2 == 0 {
            payload[0] = edgepool_protocol::envelope::PROTOCOL_VERSION;
        }
        count(envelope_reason(&payload, &inbox));
        driver.publish_raw(&inbox, payload);
    }
    driver.publish_raw(&inbox, Vec::new());
    count("decode");

    // Truncated valid envelopes (never sent whole: their sequence numbers are simply skipped).
    let valid = driver.seal_next(
        a.address,
        &notification(first, NotificationType::PleaseAbort),
    );
    for cut in [1, 2, 23, valid.len() / 2, valid.len() - 65, valid.len() - 1] {
        driver.publish_raw(&inbox, valid[..cut].to_vec());
        count("decode");
    }

    // Oversized: one byte over the envelope limit, and 900 KiB (under the broker's 1 MiB).
    for len in [MAX_ENVELOPE_BYTES + 1, 900 * 1024] {
        let mut payload = vec![0u8; len];
        payload[0] = edgepool_protocol::envelope::PROTOCOL_VERSION;
        driver.publish_raw(&inbox, payload);
        count("too_large");
    }

    // A replayed envelope: the first task's assignment, byte for byte.
    driver.publish_raw(&inbox, assignment.clone());
    count("replay");

    // Reordered: seq n+2 is delivered before n+1, which is then a replay.
    let n1 = driver.seal_next(
        a.address,
        &notification(TaskId::from([0x0e; 32]), NotificationType::PleaseContinue),
    );
    let n2 = driver.seal_next(
        a.address,
        &notification(TaskId::from([0x0f; 32]), NotificationType::PleaseContinue),
    );
    driver.publish_raw(&inbox, n2);
    driver.publish_raw(&inbox, n1);
    count("replay");

    // Wrong signatures: a byte of the signature flipped; a byte of the body flipped.
    let mut bad = driver.seal_next(
        a.address,
        &notification(first, NotificationType::PleaseAbort),
    );
    let last = bad.len() - 10;
    bad[last] ^= 0x01;
    driver.publish_raw(&inbox, bad);
    count("bad_signature");
    let mut bad = driver.seal_next(
        a.address,
        &notification(first, NotificationType::PleaseAbort),
    );
    let in_body = bad.len() - 65 - 20;
    bad[in_body] ^= 0x01;
    driver.publish_raw(&inbox, bad);
    count("bad_signature");

    // Signed by another worker, and by a scheduler that is not the configured one (a whole
    // forged assignment of a new task).
    let worker = Signer::from_bytes(&[0x77; 32]).unwrap();
    let forged = Envelope::seal(
        &worker,
        &inbox,
        1_000_000,
        now_ms(),
        &notification(first, NotificationType::PleaseAbort),
    )
    .unwrap();
    driver.publish_raw(&inbox, forged);
    count("sender_not_allowed");
    let rogue = Signer::from_bytes(&[0x5d; 32]).unwrap();
    let mut rogue_scheduler = Scheduler::new(rogue.clone());
    let rogue_deal = deal(&server, "mandelbrot.wasm", &app, args.trim(), 66);
    let rogue_task = edgepool_protocol::poco::task_id(&rogue_deal.deal_id, 0);
    let rogue_actions = rogue_scheduler
        .assign(
            &rogue_deal,
            0,
            a.address,
            TaskLimits::default(),
            Address::ZERO,
            now_ms(),
        )
        .unwrap();
    for action in rogue_actions {
        if let Action::Send { message, .. } = action {
            let sealed = Envelope::seal(&rogue, &inbox, 1_000_000, now_ms(), &message).unwrap();
            driver.publish_raw(&inbox, sealed);
            count("sender_not_allowed");
        }
    }

    // The configured scheduler's key on a kind that never travels to a worker.
    let accept = driver.seal_next(a.address, &Message::Accept(Accept { task_id: first }));
    driver.publish_raw(&inbox, accept);
    count("kind_not_allowed");

    // An envelope sealed for worker A, published on worker B's inbox.
    let for_a = driver.seal_next(
        a.address,
        &notification(first, NotificationType::PleaseAbort),
    );
    driver.publish_raw(&topic(b.address, "inbox"), for_a);

    let total: u64 = expected_counts.values().sum();
    let counted = a.wait_refused(total);
    assert_eq!(counted, expected_counts, "{}", a.log());
    let counted_b = b.wait_refused(1);
    assert_eq!(
        counted_b,
        HashMap::from([("bad_signature".to_string(), 1)]),
        "{}",
        b.log()
    );
    println!("agent A refused {total} messages: {counted:?}");

    // The agent kept serving: a new honest task completes, with the recorded sample's digest.
    let second = driver.assign(
        &deal(&server, "mandelbrot.wasm", &app, args.trim(), 2),
        a.address,
        TaskLimits::default(),
    );
    let (finalized, failed) = driver.run_until_settled(&[second], &logs);
    assert!(
        failed.is_empty() && finalized.contains_key(&second),
        "{}",
        logs()
    );
    for task in [first, second] {
        let digests = driver.contributions(task);
        assert!(
            !digests.is_empty() && digests.iter().all(|d| *d == expected),
            "{task}: {digests:?} vs {expected}"
        );
    }
    // Nothing hostile changed state: the journal has the two honest tasks, both COMPLETED (the
    // forged PLEASE_ABORTs and the rogue assignment did nothing), and nothing more was refused.
    let tasks = a.tasks();
    let states: HashMap<String, String> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["task_id"].as_str().unwrap().to_string(),
                t["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(states.len(), 2, "{tasks}");
    assert_eq!(
        states.get(&first.to_string()).map(String::as_str),
        Some("COMPLETED"),
        "{tasks}"
    );
    assert!(!states.contains_key(&rogue_task.to_string()));
    let ok = crate::support::poll_until(std::time::Duration::from_secs(10), || {
        a.tasks()
            .as_array()
            .is_some_and(|t| t.iter().all(|t| t["state"] == "COMPLETED"))
    });
    assert!(ok, "{}", a.tasks());
    assert_eq!(a.refused(), expected_counts);
    for task in [first, second] {
        assert!(
            !server.uploads(&format!("/results/{task}")).is_empty(),
            "no upload for {task}"
        );
    }
    for agent in [&a, &b] {
        assert!(!agent.log().contains("panicked"), "{}", agent.log());
    }
    let mut a = a;
    let mut b = b;
    a.assert_running();
    b.assert_running();
}
