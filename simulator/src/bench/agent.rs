//! The light agent of the benchmark: one tokio task per agent, one real MQTT connection (an
//! async rumqttc client), a real secp256k1 key, real signed envelopes both ways, real checks of
//! what the scheduler sends (envelope signature, sender, sequence, WorkerpoolAuthorization), a
//! real simulated result archive and a real signed upload to the store. Only the compute is
//! simulated (a timer), and the agent sends the subset of messages the scheduler needs: ACCEPT,
//! the contribution, the reveal, RESULT_UPLOADED and heartbeats (plus one COMPUTING status
//! update per task with `status_updates`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edgepool_protocol::envelope::{Envelope, SequenceTracker};
use edgepool_protocol::messages::{
    Accept, Assignment, CapacityAdvertisement, Contribution, CpuInfo, Heartbeat, Message,
    ResultUploaded, Reveal, StatusUpdate, TaskLimits,
};
use edgepool_protocol::primitives::{Address, Digest, TaskId};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::status::{NotificationType, ReplicateStatus};
use edgepool_protocol::tags::Tag;
use edgepool_protocol::topics::{Presence, TopicPrefix};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::service::now_ms;
use crate::workers::{simulated_result, upload};

/// Counters shared by every light agent (relaxed atomics: they are read once at the end).
#[derive(Debug, Default)]
pub struct AgentCounters {
    /// CONNACKs received (reconnections included).
    pub connected: AtomicU64,
    /// Envelopes sealed and handed to the client.
    pub published: AtomicU64,
    /// Publications the client refused (its request queue was full): a message lost.
    pub publish_errors: AtomicU64,
    /// Inbox envelopes opened and accepted.
    pub received: AtomicU64,
    /// Inbox envelopes refused (signature, sender, sequence, authorization).
    pub refused: AtomicU64,
    /// Connection errors reported by the event loop.
    pub connection_errors: AtomicU64,
    /// Uploads that failed.
    pub upload_errors: AtomicU64,
    /// Contributions sent.
    pub contributions: AtomicU64,
}

/// What every agent of a run shares.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// The pool's topic prefix.
    pub prefix: TopicPrefix,
    /// The scheduler whose signatures are trusted.
    pub scheduler: Address,
    /// Simulated compute time per task.
    pub compute: Duration,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Slots advertised.
    pub slots: u32,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Also send a COMPUTING status update per task.
    pub status_updates: bool,
}

struct AgentTask {
    assignment: Assignment,
    digest: Digest,
    archive: Arc<Vec<u8>>,
}

/// One light agent.
pub struct LightAgent {
    signer: Arc<Signer>,
    settings: Arc<AgentSettings>,
    counters: Arc<AgentCounters>,
    seq: u64,
    inbox_seq: SequenceTracker,
    tasks: HashMap<TaskId, AgentTask>,
    due: VecDeque<(Instant, TaskId)>,
}

impl std::fmt::Debug for LightAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LightAgent")
            .field("address", &self.signer.address())
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

type UploadDone = (TaskId, Result<String, String>);

impl LightAgent {
    /// A new agent with a fresh random key.
    pub fn new(settings: Arc<AgentSettings>, counters: Arc<AgentCounters>) -> Self {
        Self {
            signer: Arc::new(Signer::random(&mut rand::thread_rng())),
            settings,
            counters,
            seq: now_ms().saturating_mul(1000),
            inbox_seq: SequenceTracker::new(),
            tasks: HashMap::new(),
            due: VecDeque::new(),
        }
    }

    /// Connects and serves until `shutdown` turns true; then publishes `offline` and disconnects.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let address = self.signer.address();
        let prefix = self.settings.prefix.clone();
        let mut options = MqttOptions::new(
            format!("bench-{}", &address.to_string()[2..18]),
            self.settings.host.clone(),
            self.settings.port,
        );
        options.set_keep_alive(self.settings.keep_alive);
        options.set_clean_session(true);
        options.set_last_will(LastWill::new(
            prefix.presence(address),
            Presence::Offline.as_bytes().to_vec(),
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        eventloop.set_network_options(crate::broker::network_options());
        let (uploads_tx, mut uploads) = mpsc::unbounded_channel::<UploadDone>();
        let mut heartbeat = tokio::time::interval_at(
            Instant::now() + self.settings.heartbeat,
            self.settings.heartbeat,
        );
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_due = self.due.front().map(|(at, _)| *at);
            tokio::select! {
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => self.on_connected(&client),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        self.on_inbox(&client, &p.topic, &p.payload, &uploads_tx);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        self.counters.connection_errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
                () = sleep_until_opt(next_due), if next_due.is_some() => self.contribute_due(&client),
                Some((task_id, result)) = uploads.recv() => self.on_uploaded(&client, task_id, result),
                _ = heartbeat.tick() => self.heartbeat(&client),
                _ = shutdown.changed() => break,
            }
        }
        let _ = client.try_publish(
            prefix.presence(address),
            QoS::AtLeastOnce,
            true,
            Presence::Offline.as_bytes().to_vec(),
        );
        let _ = client.try_disconnect();
        // Let the event loop flush the last publication and the DISCONNECT (bounded).
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while eventloop.poll().await.is_ok() {}
        })
        .await;
    }

    fn on_connected(&mut self, client: &AsyncClient) {
        self.counters.connected.fetch_add(1, Ordering::Relaxed);
        let address = self.signer.address();
        let prefix = &self.settings.prefix;
        let _ = client.try_subscribe(prefix.inbox(address), QoS::AtLeastOnce);
        let _ = client.try_publish(
            prefix.presence(address),
            QoS::AtLeastOnce,
            true,
            Presence::Online.as_bytes().to_vec(),
        );
        let capacity = Message::Capacity(self.capacity());
        let topic = prefix.capacity(address);
        self.publish(client, &topic, &capacity, true);
    }

    fn capacity(&self) -> CapacityAdvertisement {
        CapacityAdvertisement {
            worker: self.signer.address(),
            agent_version: format!("edgepool-sim bench {}", env!("CARGO_PKG_VERSION")),
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
            tags: Tag::NONE,
            slots: self.settings.slots,
            limits: TaskLimits::default(),
            fuel_per_second: 100_000_000,
        }
    }

    fn publish(&mut self, client: &AsyncClient, topic: &str, message: &Message, retain: bool) {
        self.seq += 1;
        let Ok(bytes) = Envelope::seal(&self.signer, topic, self.seq, now_ms(), message) else {
            self.counters.publish_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match client.try_publish(topic, QoS::AtLeastOnce, retain, bytes) {
            Ok(()) => self.counters.published.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.counters.publish_errors.fetch_add(1, Ordering::Relaxed),
        };
    }

    fn outbox(&self) -> String {
        self.settings.prefix.outbox(self.signer.address())
    }

    fn heartbeat(&mut self, client: &AsyncClient) {
        let running = u32::try_from(self.tasks.len()).unwrap_or(u32::MAX);
        let message = Message::Heartbeat(Heartbeat {
            running_tasks: running,
            free_slots: self.settings.slots.saturating_sub(running),
            free_memory_bytes: 1 << 30,
            free_disk_bytes: 1 << 30,
            accepting: true,
        });
        let topic = self.outbox();
        self.publish(client, &topic, &message, false);
    }

    fn on_inbox(
        &mut self,
        client: &AsyncClient,
        topic: &str,
        payload: &[u8],
        uploads: &mpsc::UnboundedSender<UploadDone>,
    ) {
        let accepted = Envelope::open(payload, topic).ok().filter(|o| {
            o.sender == self.settings.scheduler
                && self.inbox_seq.check_and_accept(o.sender, o.seq).is_ok()
        });
        let Some(opened) = accepted else {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let outbox = self.outbox();
        match opened.message {
            Message::Assignment(assignment) => self.on_assignment(client, &outbox, assignment),
            Message::Notification(n) => match n.kind {
                NotificationType::PleaseReveal => {
                    if let Some(task) = self.tasks.get(&n.task_id) {
                        let reveal = Message::Reveal(Reveal {
                            task_id: n.task_id,
                            result_digest: task.digest,
                        });
                        self.publish(client, &outbox, &reveal, false);
                    }
                }
                NotificationType::PleaseUpload => {
                    let Some(task) = self.tasks.get(&n.task_id) else {
                        return;
                    };
                    let Some(proxy) = task.assignment.deal.result_storage_proxy.clone() else {
                        self.counters.upload_errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    let (signer, archive, tx) = (
                        Arc::clone(&self.signer),
                        Arc::clone(&task.archive),
                        uploads.clone(),
                    );
                    let task_id = n.task_id;
                    // The store client is blocking HTTP/1.1 (the simulated workers' one).
                    tokio::task::spawn_blocking(move || {
                        let result = upload(&signer, &proxy, &task_id, &archive);
                        let _ = tx.send((task_id, result));
                    });
                }
                NotificationType::PleaseComplete
                | NotificationType::PleaseAbort
                | NotificationType::PleaseAbortConsensusReached
                | NotificationType::PleaseAbortContributionTimeout => {
                    self.tasks.remove(&n.task_id);
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn on_assignment(&mut self, client: &AsyncClient, outbox: &str, assignment: Assignment) {
        if assignment
            .authorization
            .verify(self.settings.scheduler)
            .is_err()
        {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let task_id = assignment.task_id;
        if let Some(task) = self.tasks.get(&task_id) {
            // Sent again: the pool never saw our answer. As the real agent does, the same
            // contribution goes again, or the ACCEPT while the task still computes.
            let message = if self.due.iter().any(|(_, t)| *t == task_id) {
                Message::Accept(Accept { task_id })
            } else {
                Message::Contribution(Contribution::standard(
                    self.signer.address(),
                    task_id,
                    task.digest,
                    1_000,
                ))
            };
            self.publish(client, outbox, &message, false);
            return;
        }
        let Some((digest, archive)) = simulated_result(&assignment, false) else {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.publish(client, outbox, &Message::Accept(Accept { task_id }), false);
        if self.settings.status_updates {
            let status = Message::StatusUpdate(StatusUpdate {
                task_id,
                status: ReplicateStatus::Computing,
                cause: None,
                detail: None,
                at_ms: now_ms(),
            });
            self.publish(client, outbox, &status, false);
        }
        self.tasks.insert(
            task_id,
            AgentTask {
                assignment,
                digest,
                archive: Arc::new(archive),
            },
        );
        // Constant compute time: the queue stays ordered by due time.
        self.due
            .push_back((Instant::now() + self.settings.compute, task_id));
    }

    fn contribute_due(&mut self, client: &AsyncClient) {
        let now = Instant::now();
        let outbox = self.outbox();
        while let Some((at, task_id)) = self.due.front().copied() {
            if at > now {
                break;
            }
            self.due.pop_front();
            let Some(digest) = self.tasks.get(&task_id).map(|t| t.digest) else {
                continue;
            };
            let contribution =
                Contribution::standard(self.signer.address(), task_id, digest, 1_000);
            self.publish(client, &outbox, &Message::Contribution(contribution), false);
            self.counters.contributions.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_uploaded(
        &mut self,
        client: &AsyncClient,
        task_id: TaskId,
        result: Result<String, String>,
    ) {
        match result {
            Ok(link) => {
                let message = Message::ResultUploaded(ResultUploaded {
                    task_id,
                    result_link: link,
                });
                let outbox = self.outbox();
                self.publish(client, &outbox, &message, false);
            }
            Err(_) => {
                self.counters.upload_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
