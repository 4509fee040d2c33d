//! The agent daemon against real brokers (embedded rumqttd and Mosquitto): presence, the signed
//! capacity advertisement, heartbeats through the journal's outbox, the last will after
//! `kill -9`, TLS with passwords and client certificates, a broker restart with queued messages,
//! SIGTERM drain, and refusal of forged inbox messages.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edgepool_protocol::envelope::Envelope;
use edgepool_protocol::messages::{Heartbeat, Message};
use edgepool_protocol::primitives::Address;
use edgepool_protocol::signature::Signer;
use rumqttc::QoS;
use support::certs::TestCerts;
use support::client::{publish_once, ClientOptions};
use support::mosquitto::{Mosquitto, MosquittoOptions, MosquittoTls};
use support::rumqttd::EmbeddedBroker;
use support::subscriber::Subscriber;
use support::{poll_until, WAIT};

const POOL: &str = "0x1111111111111111111111111111111111111111";
const SCHEDULER_KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const PASSWORD: &str = "test keystore password";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgepool-agent"))
}

fn scheduler() -> Signer {
    Signer::from_hex(SCHEDULER_KEY).unwrap()
}

/// A worker set up with `init`, in a temp dir.
struct Worker {
    dir: tempfile::TempDir,
    config: PathBuf,
    password: PathBuf,
    address: Address,
}

impl Worker {
    fn init(broker_url: &str) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
        let config = dir.path().join("agent.toml");
        let out = bin()
            .args(["init", "--json", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--broker", broker_url, "--pool", POOL, "--scheduler"])
            .arg(scheduler().address().to_string())
            .arg("--password-file")
            .arg(&password)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let address = report["address"].as_str().unwrap().parse().unwrap();
        Worker {
            dir,
            config,
            password,
            address,
        }
    }

    fn topic(&self, channel: &str) -> String {
        format!(
            "edgepool/v1/{}/workers/{}/{channel}",
            POOL.to_lowercase(),
            self.address.to_string().to_lowercase()
        )
    }

    fn spawn(&self, extra_env: &[(&str, String)]) -> Agent {
        let log = self.dir.path().join(format!("agent-{}.log", rand_suffix()));
        let mut cmd = bin();
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("EDGEPOOL_IDENTITY_PASSWORD_FILE", &self.password)
            .env("EDGEPOOL_AGENT_HEARTBEAT_SECS", "1")
            .env("EDGEPOOL_AGENT_MIN_FREE_DISK_MB", "1")
            .env("EDGEPOOL_LOG", "debug")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Agent {
            child: Some(cmd.spawn().unwrap()),
            log,
        }
    }

    fn status(&self) -> serde_json::Value {
        let out = bin()
            .args(["status", "--json", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn rand_suffix() -> u64 {
    rand::random::<u32>() as u64
}

/// A running agent process; killed when dropped.
struct Agent {
    child: Option<Child>,
    log: PathBuf,
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        wait_exit(&mut child, Duration::from_secs(15)).expect("the agent stops after SIGTERM")
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut().unwrap();
        wait_exit(child, timeout)
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let mut status = None;
    poll_until(timeout, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn open(message: &support::subscriber::Message) -> edgepool_protocol::envelope::Opened {
    Envelope::open(&message.payload, &message.topic)
        .unwrap_or_else(|e| panic!("{} does not verify: {e}", message.topic))
}

/// What every broker must show: retained `online`, a retained capacity advertisement signed by
/// the worker, heartbeats on the outbox, and `offline` after `kill -9`.
fn presence_capacity_heartbeat_and_last_will(url: &str, subscriber_opts: ClientOptions) {
    let worker = Worker::init(url);
    let mut agent = worker.spawn(&[]);
    let sub = Subscriber::start(url, &worker.topic("#"), subscriber_opts);

    let online = sub
        .wait_for(
            |m| m.topic == worker.topic("presence") && m.payload == b"online",
            WAIT,
        )
        .unwrap_or_else(|| panic!("no online presence; agent log:\n{}", agent.log()));
    let _ = online;
    let capacity = sub
        .wait_for_topic(&worker.topic("capacity"), WAIT)
        .unwrap_or_else(|| panic!("no capacity; agent log:\n{}", agent.log()));
    let opened = open(&capacity);
    assert_eq!(opened.sender, worker.address);
    match &opened.message {
        Message::Capacity(ad) => {
            assert_eq!(ad.worker, worker.address);
            assert!(ad.cpu.threads >= 1 && ad.ram_bytes > 0, "{ad:?}");
            assert!(
                ad.tee.is_none(),
                "tee is never claimed before attestation exists"
            );
            assert_eq!(ad.slots, 1);
        }
        other => panic!("capacity topic carried {other:?}"),
    }
    let heartbeat = sub
        .wait_for_topic(&worker.topic("outbox"), WAIT)
        .unwrap_or_else(|| panic!("no heartbeat; agent log:\n{}", agent.log()));
    let opened = open(&heartbeat);
    assert_eq!(opened.sender, worker.address);
    assert!(matches!(
        opened.message,
        Message::Heartbeat(Heartbeat {
            accepting: true,
            free_slots: 1,
            ..
        })
    ));

    // A late subscriber sees the retained advertisement too.
    let late = Subscriber::start(url, &worker.topic("capacity"), ClientOptions::new("late"));
    let retained = late
        .wait_for_topic(&worker.topic("capacity"), WAIT)
        .unwrap();
    assert!(retained.retain);
    assert_eq!(open(&retained).sender, worker.address);

    agent.kill9();
    sub.wait_for(
        |m| m.topic == worker.topic("presence") && m.payload == b"offline",
        WAIT,
    )
    .expect("the broker publishes the offline last will after kill -9");
}

#[test]
fn on_rumqttd_the_agent_is_online_advertised_and_offline_after_kill_9() {
    let broker = EmbeddedBroker::start();
    presence_capacity_heartbeat_and_last_will(&broker.url(), ClientOptions::new("sub"));
}

#[test]
fn on_mosquitto_the_agent_is_online_advertised_and_offline_after_kill_9() {
    let broker = Mosquitto::start(MosquittoOptions::default());
    presence_capacity_heartbeat_and_last_will(&broker.url(), ClientOptions::new("sub"));
}

fn tls_broker(certs: &TestCerts, require_certificate: bool) -> Mosquitto {
    Mosquitto::start(MosquittoOptions {
        users: vec![("worker".into(), "broker secret".into())],
        tls: Some(MosquittoTls {
            ca: certs.ca.clone(),
            cert: certs.server_cert.clone(),
            key: certs.server_key.clone(),
            require_certificate,
        }),
        persistence: false,
        port: None,
    })
}

#[test]
fn over_tls_with_a_password_the_agent_connects_and_a_wrong_password_is_a_clear_error() {
    let certs = TestCerts::generate();
    let broker = tls_broker(&certs, false);
    let worker = Worker::init(&broker.url());
    let good = worker.dir.path().join("broker-password");
    std::fs::write(&good, "broker secret\n").unwrap();
    let tls_env = |password: &Path| {
        vec![
            ("EDGEPOOL_BROKER_CA_FILE", certs.ca.display().to_string()),
            ("EDGEPOOL_BROKER_USERNAME", "worker".to_string()),
            (
                "EDGEPOOL_BROKER_PASSWORD_FILE",
                password.display().to_string(),
            ),
        ]
    };
    let sub_opts = ClientOptions::new("tls-sub")
        .ca(&certs.ca)
        .credentials("worker", "broker secret");
    let sub = Subscriber::start(&broker.url(), &worker.topic("#"), sub_opts);
    let agent = worker.spawn(&tls_env(&good));
    sub.wait_for(
        |m| m.topic == worker.topic("presence") && m.payload == b"online",
        WAIT,
    )
    .unwrap_or_else(|| panic!("no online over tls; agent log:\n{}", agent.log()));
    drop(agent);

    let bad = worker.dir.path().join("wrong-password");
    std::fs::write(&bad, "not the secret\n").unwrap();
    let mut refused = worker.spawn(&tls_env(&bad));
    let status = refused
        .wait_exit(Duration::from_secs(20))
        .expect("the agent stops when the broker refuses its password");
    assert_eq!(status.code(), Some(5), "{}", refused.log());
    let log = refused.log();
    assert!(
        log.contains("broker refused the connection") && log.contains("password"),
        "{log}"
    );
    assert!(
        !log.contains("not the secret"),
        "the password must not be logged"
    );
}

#[test]
fn with_client_certificates_the_agent_connects_and_an_unknown_ca_is_refused() {
    let certs = TestCerts::generate();
    let broker = tls_broker(&certs, true);
    let worker = Worker::init(&broker.url());
    let sub_opts = ClientOptions::new("cert-sub")
        .ca(&certs.ca)
        .client_cert(&certs.client_cert, &certs.client_key);
    let sub = Subscriber::start(&broker.url(), &worker.topic("#"), sub_opts);
    let agent = worker.spawn(&[
        ("EDGEPOOL_BROKER_CA_FILE", certs.ca.display().to_string()),
        (
            "EDGEPOOL_BROKER_CLIENT_CERT",
            certs.client_cert.display().to_string(),
        ),
        (
            "EDGEPOOL_BROKER_CLIENT_KEY",
            certs.client_key.display().to_string(),
        ),
    ]);
    sub.wait_for(
        |m| m.topic == worker.topic("presence") && m.payload == b"online",
        WAIT,
    )
    .unwrap_or_else(|| panic!("no online with a client certificate; log:\n{}", agent.log()));
    drop(agent);

    // Trusting the wrong CA: the server certificate does not verify; a clear, fatal error.
    let mut wrong = worker.spawn(&[
        (
            "EDGEPOOL_BROKER_CA_FILE",
            certs.other_ca.display().to_string(),
        ),
        (
            "EDGEPOOL_BROKER_CLIENT_CERT",
            certs.client_cert.display().to_string(),
        ),
        (
            "EDGEPOOL_BROKER_CLIENT_KEY",
            certs.client_key.display().to_string(),
        ),
    ]);
    let status = wrong
        .wait_exit(Duration::from_secs(20))
        .expect("the agent stops on an untrusted broker certificate");
    assert_eq!(status.code(), Some(5), "{}", wrong.log());
    assert!(
        wrong.log().contains("tls handshake failed"),
        "{}",
        wrong.log()
    );
}

#[test]
fn a_mosquitto_restart_with_queued_messages_loses_none_and_keeps_their_order() {
    let mut broker = Mosquitto::start(MosquittoOptions {
        persistence: true,
        ..MosquittoOptions::default()
    });
    let url = broker.url();
    let worker = Worker::init(&url);
    let sub = Subscriber::start(
        &url,
        &worker.topic("#"),
        ClientOptions::new("persistent").persistent("edgepool-test-persistent"),
    );
    let agent = worker.spawn(&[]);
    sub.wait_for_topic(&worker.topic("outbox"), WAIT)
        .unwrap_or_else(|| panic!("no heartbeat; log:\n{}", agent.log()));

    broker.stop();
    // Messages produced while the broker is down wait in the journal's outbox.
    assert!(
        poll_until(Duration::from_secs(20), || {
            worker.status()["outbox_pending"].as_u64().unwrap_or(0) >= 3
        }),
        "no messages queued while the broker was down; log:\n{}",
        agent.log()
    );
    broker.restart();
    assert!(
        poll_until(Duration::from_secs(30), || worker.status()
            ["outbox_pending"]
            == 0),
        "the outbox was not flushed after the restart; log:\n{}",
        agent.log()
    );
    assert!(
        sub.wait_ready(2, WAIT),
        "subscriber did not resume its session"
    );
    // Collect until the flow is back to live heartbeats.
    let mut received = Vec::new();
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < end {
        if let Some(m) = sub.wait_for(|_| true, Duration::from_millis(200)) {
            received.push(m);
        }
    }
    received.extend(sub.drain());
    // QoS 1 is at least once: a message published just before the broker stopped may arrive
    // twice, the very same bytes (same sequence number). Anything else under a repeated number
    // is a defect.
    let mut outbox: Vec<&support::subscriber::Message> = Vec::new();
    for m in received
        .iter()
        .filter(|m| m.topic == worker.topic("outbox"))
    {
        if let Some(same) = outbox.iter().find(|o| open(o).seq == open(m).seq) {
            assert_eq!(same.payload, m.payload, "sequence {} reused", open(m).seq);
            continue;
        }
        outbox.push(m);
    }
    let outbox_seqs: Vec<u64> = outbox.iter().map(|m| open(m).seq).collect();
    let capacity_seqs: Vec<u64> = received
        .iter()
        .filter(|m| m.topic == worker.topic("capacity"))
        .map(|m| open(m).seq)
        .collect();
    assert!(outbox_seqs.len() >= 3, "{outbox_seqs:?}");
    assert!(
        outbox_seqs.windows(2).all(|w| w[0] < w[1]),
        "out of order: {outbox_seqs:?}"
    );
    let (first, last) = (outbox_seqs[0], *outbox_seqs.last().unwrap());
    for seq in first..=last {
        assert!(
            outbox_seqs.contains(&seq) || capacity_seqs.contains(&seq),
            "sequence {seq} lost: outbox {outbox_seqs:?}, capacity {capacity_seqs:?}"
        );
    }
}

#[test]
fn sigterm_drains_publishes_offline_and_exits_cleanly() {
    let broker = EmbeddedBroker::start();
    let worker = Worker::init(&broker.url());
    let mut agent = worker.spawn(&[]);
    let sub = Subscriber::start(
        &broker.url(),
        &worker.topic("#"),
        ClientOptions::new("drain"),
    );
    sub.wait_for(
        |m| m.topic == worker.topic("presence") && m.payload == b"online",
        WAIT,
    )
    .unwrap_or_else(|| panic!("no online; log:\n{}", agent.log()));
    let status = agent.terminate();
    assert!(status.success(), "{status:?}: {}", agent.log());
    sub.wait_for(
        |m| m.topic == worker.topic("presence") && m.payload == b"offline",
        WAIT,
    )
    .expect("offline is published by the drain");
    assert_eq!(worker.status()["outbox_pending"], 0);
}

#[test]
fn forged_and_replayed_inbox_messages_are_refused_and_the_agent_keeps_serving() {
    let broker = EmbeddedBroker::start();
    let url = broker.url();
    let worker = Worker::init(&url);
    let agent = worker.spawn(&[]);
    let sub = Subscriber::start(&url, &worker.topic("#"), ClientOptions::new("forge"));
    sub.wait_for(
        |m| m.topic == worker.topic("presence") && m.payload == b"online",
        WAIT,
    )
    .unwrap_or_else(|| panic!("no online; log:\n{}", agent.log()));
    let inbox = worker.topic("inbox");
    let heartbeat = Message::Heartbeat(Heartbeat {
        running_tasks: 0,
        free_slots: 0,
        free_memory_bytes: 0,
        free_disk_bytes: 0,
        accepting: false,
    });
    // Garbage, a message signed by someone else, and a replay of the scheduler's message.
    publish_once(
        &url,
        &ClientOptions::new("forger"),
        &inbox,
        b"\x00\x01garbage",
        QoS::AtLeastOnce,
        false,
    );
    let stranger =
        Signer::from_hex("0x0123456789012345678901234567890123456789012345678901234567890123")
            .unwrap();
    let forged = Envelope::seal(&stranger, &inbox, 1, 0, &heartbeat).unwrap();
    publish_once(
        &url,
        &ClientOptions::new("forger"),
        &inbox,
        &forged,
        QoS::AtLeastOnce,
        false,
    );
    assert!(
        poll_until(WAIT, || agent
            .log()
            .matches("inbox message refused")
            .count()
            >= 2),
        "{}",
        agent.log()
    );
    // The agent still serves: heartbeats keep coming.
    sub.drain();
    sub.wait_for_topic(&worker.topic("outbox"), WAIT)
        .expect("heartbeats continue after refused messages");
}

#[test]
fn doctor_passes_against_a_live_broker_and_fails_with_the_broker_down() {
    let broker = Mosquitto::start(MosquittoOptions::default());
    let worker = Worker::init(&broker.url());
    let doctor = |worker: &Worker| {
        bin()
            .args(["doctor", "--json", "--config"])
            .arg(&worker.config)
            .env("EDGEPOOL_IDENTITY_PASSWORD_FILE", &worker.password)
            .env("EDGEPOOL_AGENT_MIN_FREE_DISK_MB", "1")
            .output()
            .unwrap()
    };
    let out = doctor(&worker);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["ok"], true);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in ["config", "keystore", "journal", "disk", "tee", "broker"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    drop(broker);
    let out = doctor(&worker);
    assert_eq!(out.status.code(), Some(6));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let broker_check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "broker")
        .unwrap()
        .clone();
    assert_eq!(broker_check["ok"], false, "{report}");
}

#[test]
fn after_a_broker_restart_that_lost_everything_the_retained_messages_are_published_again() {
    let mut broker = Mosquitto::start(MosquittoOptions::default());
    let url = broker.url();
    let worker = Worker::init(&url);
    let agent = worker.spawn(&[]);
    let sub = Subscriber::start(&url, &worker.topic("#"), ClientOptions::new("before"));
    let first = sub
        .wait_for_topic(&worker.topic("capacity"), WAIT)
        .unwrap_or_else(|| panic!("no capacity; log:\n{}", agent.log()));
    sub.disconnect();
    // No persistence: the restarted broker has no retained message at all.
    broker.restart();
    // Whether this subscriber sees them live or retained depends on who reconnects first.
    let late = Subscriber::start(&url, &worker.topic("+"), ClientOptions::new("after"));
    late.wait_for(
        |m| m.topic == worker.topic("presence") && m.payload == b"online",
        Duration::from_secs(20),
    )
    .unwrap_or_else(|| panic!("presence not re-published; log:\n{}", agent.log()));
    late.wait_for_topic(&worker.topic("capacity"), Duration::from_secs(20))
        .unwrap_or_else(|| panic!("capacity not re-published; log:\n{}", agent.log()));
    // Having passed through the new broker, they are now retained there.
    let third = Subscriber::start(&url, &worker.topic("capacity"), ClientOptions::new("third"));
    let again = third
        .wait_for_topic(&worker.topic("capacity"), WAIT)
        .expect("the re-published capacity is retained");
    assert!(again.retain);
    assert_eq!(open(&again).sender, worker.address);
    assert!(open(&again).seq >= open(&first).seq);
    assert!(
        agent.log().matches("connected broker=").count() >= 2,
        "{}",
        agent.log()
    );
}
