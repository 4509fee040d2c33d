//! Simulated workers: in-process, each with its own MQTT connection, a real key, real envelopes,
//! real contributions and a real signed upload; only the compute is simulated. Their kinds are the
//! adversaries a pool must survive:
//!
//! - `honest`: contributes the simulated result (the same for every honest simulated worker, not
//!   the result a real agent computes: mix them with liars, not with agents);
//! - `liar`: contributes a different digest (its reveal would never match);
//! - `silent`: accepts and never contributes;
//! - `slow`: contributes only after `slow_ms`, past any reasonable replica timeout;
//! - `crashing`: accepts, reports COMPUTING, then drops its connection without a DISCONNECT (the
//!   broker publishes its `offline` last will) and never comes back.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use edgepool_protocol::digest::result_digest;
use edgepool_protocol::envelope::{Envelope, SequenceTracker};
use edgepool_protocol::hash::{keccak256_concat, sha256};
use edgepool_protocol::messages::{
    Accept, Assignment, CapacityAdvertisement, Contribution, CpuInfo, Heartbeat, Message,
    ResultUploaded, Reveal, StatusUpdate, TaskLimits,
};
use edgepool_protocol::primitives::{Address, Digest, TaskId};
use edgepool_protocol::result_archive::zip_tree;
use edgepool_protocol::signature::Signer;
use edgepool_protocol::status::{NotificationType, ReplicateStatus};
use edgepool_protocol::tags::Tag;
use edgepool_protocol::topics::{Presence, TopicPrefix};
use edgepool_protocol::tree::MemTree;
use rumqttc::{Client, Event, LastWill, MqttOptions, Packet, QoS};
use serde::Deserialize;

use crate::broker::parse_mqtt_url;
use crate::service::now_ms;
use crate::store::{SIGNATURE_HEADER, WORKER_HEADER};

/// What a simulated worker does with a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Behaviour {
    /// Contributes the simulated result.
    Honest,
    /// Contributes a wrong digest.
    Liar,
    /// Never contributes.
    Silent,
    /// Contributes late.
    Slow,
    /// Vanishes mid-task.
    Crashing,
}

impl Behaviour {
    /// Its name in scenarios and reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            Behaviour::Honest => "honest",
            Behaviour::Liar => "liar",
            Behaviour::Silent => "silent",
            Behaviour::Slow => "slow",
            Behaviour::Crashing => "crashing",
        }
    }
}

/// Timing of simulated workers.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Simulated compute time.
    pub compute_ms: u64,
    /// A slow worker's compute time.
    pub slow_ms: u64,
    /// A liar's compute time (`None`: `compute_ms`).
    pub liar_ms: Option<u64>,
    /// Heartbeat period.
    pub heartbeat_ms: u64,
    /// Advertise the `tee` tag (as a software TEE), so that TEE deals are placed on it too. A
    /// simulated worker never obtains a task's enclave key: on a TEE task it signs its
    /// contribution with its own key instead, which the ledger refuses (bad enclave signature).
    pub tee: bool,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            compute_ms: 300,
            slow_ms: 60_000,
            liar_ms: None,
            heartbeat_ms: 1_000,
            tee: false,
        }
    }
}

/// A running simulated worker; stopped (cleanly) when dropped.
#[derive(Debug)]
pub struct SimWorker {
    address: Address,
    behaviour: Behaviour,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SimWorker {
    /// Starts a worker of `behaviour` in `pool`, trusting `scheduler`, on `broker_url`.
    ///
    /// # Errors
    /// A message when the URL is bad or the thread cannot start.
    pub fn start(
        behaviour: Behaviour,
        broker_url: &str,
        pool: Address,
        scheduler: Address,
        timing: Timing,
    ) -> Result<SimWorker, String> {
        let (host, port) = parse_mqtt_url(broker_url)?;
        let signer = Signer::random(&mut rand::thread_rng());
        let address = signer.address();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("sim-{}", behaviour.as_str()))
            .spawn(move || {
                let mut worker = Worker {
                    behaviour,
                    signer,
                    scheduler,
                    prefix: TopicPrefix::with_default_base(pool),
                    timing,
                    seq: now_ms().saturating_mul(1000),
                    inbox_seq: SequenceTracker::new(),
                    tasks: BTreeMap::new(),
                };
                worker.run(&host, port, &flag);
            })
            .map_err(|e| e.to_string())?;
        Ok(SimWorker {
            address,
            behaviour,
            stop,
            thread: Some(thread),
        })
    }

    /// Its address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Its behaviour.
    pub fn behaviour(&self) -> Behaviour {
        self.behaviour
    }
}

impl Drop for SimWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct SimTask {
    assignment: Assignment,
    contribute_at: Option<Instant>,
    digest: Digest,
    archive: Vec<u8>,
}

struct Worker {
    behaviour: Behaviour,
    signer: Signer,
    scheduler: Address,
    prefix: TopicPrefix,
    timing: Timing,
    seq: u64,
    inbox_seq: SequenceTracker,
    tasks: BTreeMap<TaskId, SimTask>,
}

/// The simulated result of a task: a `result.txt` and its `computed.json`; the liar writes
/// another text. Returns (digest, zip archive).
pub fn simulated_result(assignment: &Assignment, lie: bool) -> Option<(Digest, Vec<u8>)> {
    let text = format!(
        "{} result of task {} (app {}, args {:?})\n",
        if lie { "forged" } else { "simulated" },
        assignment.task_id,
        assignment.deal.app.checksum,
        assignment.deal.args
    );
    let mut tree = MemTree::new();
    tree.insert_file("result.txt", text.into_bytes()).ok()?;
    tree.insert_file(
        "computed.json",
        br#"{"deterministic-output-path":"/iexec_out/result.txt"}"#.to_vec(),
    )
    .ok()?;
    let digest = result_digest(&tree, "").ok()?;
    let archive = zip_tree(&tree, "").ok()?;
    Some((digest, archive))
}

impl Worker {
    fn run(&mut self, host: &str, port: u16, stop: &AtomicBool) {
        let address = self.signer.address();
        let mut options =
            MqttOptions::new(format!("sim-{}", &address.to_string()[2..14]), host, port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_clean_session(true);
        options.set_last_will(LastWill::new(
            self.prefix.presence(address),
            Presence::Offline.as_bytes().to_vec(),
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut connection) = Client::new(options, 256);
        connection
            .eventloop
            .set_network_options(crate::broker::network_options());
        let mut next_heartbeat = Instant::now();
        let mut crash_at: Option<Instant> = None;
        loop {
            if stop.load(Ordering::SeqCst) {
                let _ = client.publish(
                    self.prefix.presence(address),
                    QoS::AtLeastOnce,
                    true,
                    Presence::Offline.as_bytes().to_vec(),
                );
                let _ = client.try_disconnect();
                // Let the event loop flush the last publications and the DISCONNECT.
                let until = Instant::now() + Duration::from_millis(300);
                while Instant::now() < until {
                    if connection.recv_timeout(Duration::from_millis(50)).is_err() {
                        break;
                    }
                }
                return;
            }
            if crash_at.is_some_and(|t| Instant::now() >= t) {
                // Vanish: drop the connection without a DISCONNECT; the broker sends the will.
                drop(connection);
                drop(client);
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return;
            }
            match connection.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    let _ = client.try_subscribe(self.prefix.inbox(address), QoS::AtLeastOnce);
                    let _ = client.try_publish(
                        self.prefix.presence(address),
                        QoS::AtLeastOnce,
                        true,
                        Presence::Online.as_bytes().to_vec(),
                    );
                    let capacity = Message::Capacity(self.capacity());
                    self.publish(&client, &self.prefix.capacity(address), &capacity, true);
                }
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    if let Some(crash) = self.on_inbox(&client, &p.topic, &p.payload) {
                        crash_at = Some(crash);
                    }
                }
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)),
            }
            let now = Instant::now();
            if now >= next_heartbeat {
                next_heartbeat = now + Duration::from_millis(self.timing.heartbeat_ms);
                let heartbeat = Message::Heartbeat(Heartbeat {
                    running_tasks: u32::try_from(self.tasks.len()).unwrap_or(u32::MAX),
                    free_slots: 4u32
                        .saturating_sub(u32::try_from(self.tasks.len()).unwrap_or(u32::MAX)),
                    free_memory_bytes: 1 << 30,
                    free_disk_bytes: 1 << 30,
                    accepting: true,
                });
                self.publish(&client, &self.prefix.outbox(address), &heartbeat, false);
            }
            let due: Vec<TaskId> = self
                .tasks
                .iter()
                .filter(|(_, t)| t.contribute_at.is_some_and(|at| now >= at))
                .map(|(id, _)| *id)
                .collect();
            for task_id in due {
                if let Some(task) = self.tasks.get_mut(&task_id) {
                    task.contribute_at = None;
                    let challenge = task.assignment.authorization.enclave_challenge;
                    let contribution = if challenge.is_zero() {
                        Contribution::standard(address, task_id, task.digest, 1_000)
                    } else {
                        // No enclave key without the SMS's secret exchange: sign with our own
                        // key and claim the task's challenge. The ledger refuses it.
                        let mut c =
                            Contribution::tee(address, task_id, task.digest, &self.signer, 1_000);
                        c.enclave_challenge = challenge;
                        c
                    };
                    let message = Message::Contribution(contribution);
                    self.publish(&client, &self.prefix.outbox(address), &message, false);
                }
            }
        }
    }

    fn capacity(&self) -> CapacityAdvertisement {
        CapacityAdvertisement {
            worker: self.signer.address(),
            agent_version: format!(
                "edgepool-sim {} ({})",
                env!("CARGO_PKG_VERSION"),
                self.behaviour.as_str()
            ),
            cpu: CpuInfo {
                model: "simulated".into(),
                cores: 1,
                threads: 1,
                arch: std::env::consts::ARCH.into(),
            },
            ram_bytes: 4 << 30,
            disk_free_bytes: 10 << 30,
            gpus: Vec::new(),
            tee: None,
            tee_measurement: Vec::new(),
            tags: if self.timing.tee { Tag::TEE } else { Tag::NONE },
            slots: 4,
            limits: TaskLimits::default(),
            fuel_per_second: 100_000_000,
        }
    }

    fn publish(&mut self, client: &Client, topic: &str, message: &Message, retain: bool) {
        self.seq += 1;
        if let Ok(bytes) = Envelope::seal(&self.signer, topic, self.seq, now_ms(), message) {
            let _ = client.try_publish(topic, QoS::AtLeastOnce, retain, bytes);
        }
    }

    /// Handles an inbox message; returns when to crash, for a crashing worker.
    fn on_inbox(&mut self, client: &Client, topic: &str, payload: &[u8]) -> Option<Instant> {
        let opened = Envelope::open(payload, topic).ok()?;
        if opened.sender != self.scheduler
            || self
                .inbox_seq
                .check_and_accept(opened.sender, opened.seq)
                .is_err()
        {
            return None;
        }
        let address = self.signer.address();
        let outbox = self.prefix.outbox(address);
        match opened.message {
            Message::Assignment(assignment) => {
                if assignment.authorization.verify(self.scheduler).is_err()
                    || self.tasks.contains_key(&assignment.task_id)
                {
                    return None;
                }
                let task_id = assignment.task_id;
                let (digest, archive) =
                    simulated_result(&assignment, self.behaviour == Behaviour::Liar)?;
                self.publish(client, &outbox, &Message::Accept(Accept { task_id }), false);
                let status = Message::StatusUpdate(StatusUpdate {
                    task_id,
                    status: ReplicateStatus::Computing,
                    cause: None,
                    detail: Some(format!("simulated {} worker", self.behaviour.as_str())),
                    at_ms: now_ms(),
                });
                self.publish(client, &outbox, &status, false);
                let compute = Duration::from_millis(match self.behaviour {
                    Behaviour::Liar => self.timing.liar_ms.unwrap_or(self.timing.compute_ms),
                    _ => self.timing.compute_ms,
                });
                let contribute_at = match self.behaviour {
                    Behaviour::Honest | Behaviour::Liar => Some(Instant::now() + compute),
                    Behaviour::Slow => {
                        Some(Instant::now() + Duration::from_millis(self.timing.slow_ms))
                    }
                    Behaviour::Silent | Behaviour::Crashing => None,
                };
                self.tasks.insert(
                    task_id,
                    SimTask {
                        assignment,
                        contribute_at,
                        digest,
                        archive,
                    },
                );
                if self.behaviour == Behaviour::Crashing {
                    return Some(Instant::now() + compute);
                }
            }
            Message::Notification(n) => {
                let task = self.tasks.get(&n.task_id)?;
                match n.kind {
                    NotificationType::PleaseReveal => {
                        let reveal = Message::Reveal(Reveal {
                            task_id: n.task_id,
                            result_digest: task.digest,
                        });
                        self.publish(client, &outbox, &reveal, false);
                    }
                    NotificationType::PleaseUpload => {
                        let proxy = task.assignment.deal.result_storage_proxy.clone()?;
                        let link = upload(&self.signer, &proxy, &n.task_id, &task.archive).ok()?;
                        let done = Message::ResultUploaded(ResultUploaded {
                            task_id: n.task_id,
                            result_link: link,
                        });
                        self.publish(client, &outbox, &done, false);
                    }
                    NotificationType::PleaseComplete
                    | NotificationType::PleaseAbort
                    | NotificationType::PleaseAbortConsensusReached
                    | NotificationType::PleaseAbortContributionTimeout => {
                        self.tasks.remove(&n.task_id);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        None
    }
}

/// `PUT {proxy}/results/{task}` with the worker-signed token, over plain HTTP/1.1 on a loopback
/// store. Returns the result link.
///
/// # Errors
/// A message when the proxy is not `http://host:port`, the connection fails or the store refuses.
pub fn upload(
    signer: &Signer,
    proxy: &str,
    task_id: &TaskId,
    archive: &[u8],
) -> Result<String, String> {
    let authority = proxy
        .strip_prefix("http://")
        .ok_or_else(|| format!("expected an http:// store, found {proxy:?}"))?
        .trim_end_matches('/');
    let token = signer.sign_personal(
        keccak256_concat(&[task_id.as_bytes(), sha256(archive).as_bytes()]).as_bytes(),
    );
    let path = format!("/results/{task_id}");
    let mut stream =
        TcpStream::connect(authority).map_err(|e| format!("connecting to {authority}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {authority}\r\n{WORKER_HEADER}: {}\r\n{SIGNATURE_HEADER}: {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        signer.address(),
        archive.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(archive))
        .map_err(|e| format!("uploading: {e}"))?;
    let mut response = Vec::new();
    let _ = stream.take(64 * 1024).read_to_end(&mut response);
    let status_line = String::from_utf8_lossy(&response);
    let status = status_line.split_whitespace().nth(1).unwrap_or("");
    if status.starts_with('2') {
        Ok(format!("http://{authority}{path}"))
    } else {
        Err(format!("the store answered {status:?}"))
    }
}
