//! The daemon: one event loop over the MQTT connection, the heartbeat, capacity refresh, the
//! systemd watchdog and shutdown (STYLE.md rule 3).
//!
//! Start-up ([`Daemon::prepare`]) unlocks the wallet, opens the journal, detects the capacity
//! and seals the advertisement; [`Daemon::run`] then connects and serves until the shutdown
//! future completes, then drains: the presence goes `offline`, the outbox is flushed within the
//! drain timeout, and whatever is left stays in the journal for the next start.
//!
//! Every signed message takes the next sequence number and is committed to the journal's outbox
//! in one transaction before it is published; its row is deleted on the broker's PUBACK. After a
//! reconnect the retained presence and capacity are re-published and the outbox is flushed in
//! order.
//!
//! A journal that cannot be written (disk full, read-only state directory) does not stop the
//! daemon: it stops taking tasks and waits for the journal (`storage`).

mod advertise;
mod inbox;
pub mod refusals;
mod storage;
mod tasks;

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgepool_protocol::envelope::{Envelope, SequenceTracker};
use edgepool_protocol::messages::{Heartbeat, Message};
use edgepool_protocol::primitives::Address;
use edgepool_protocol::signature::Signer;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Outgoing, Packet, QoS};
use tokio::time::{interval, sleep_until, MissedTickBehavior};

use crate::config::Config;
use crate::identity::{self, IdentityError};
use crate::link::{self, Backoff, Failure, LinkError, PublishTracker, Tracked, WorkerTopics};
use crate::store::{SharedStore, Store, StoreError};
use crate::systemd::Notifier;

pub use advertise::Advertiser;

/// The journal's meta key holding the link's last state, shown by `status`.
pub const LINK_META: &str = "link_state";

/// How long a drain may take before the remaining outbox is left for the next start.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many job events waiting together are committed in one go.
const JOB_EVENT_BATCH: usize = 32;
/// How often the capacity is detected again (republished only when it changed).
pub const CAPACITY_REFRESH: Duration = Duration::from_secs(60);

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The wallet cannot be opened.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The journal failed.
    #[error("journal: {0}")]
    Store(#[from] StoreError),
    /// The broker link cannot be set up.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Capacity detection failed.
    #[error("capacity: {0}")]
    Capacity(String),
    /// A message could not be sealed (a bug: our own messages always validate).
    #[error("sealing a {kind} message: {reason}")]
    Seal {
        /// The message kind.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// The broker refused us for a reason retrying cannot fix.
    #[error("{0}")]
    BrokerRefused(String),
}

/// Milliseconds since the Unix epoch (the shell reads the clock; the protocol takes it as input).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Counts of what happened, for logs and `status`.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Connections established.
    pub connections: u64,
    /// Inbox messages refused (bad envelope, wrong sender, replay…) since this process started;
    /// the per-reason counts across restarts are in [`refusals::RefusalCounts`].
    pub refused: u64,
    /// Inbox messages accepted.
    pub accepted: u64,
    /// Outbox messages acknowledged by the broker.
    pub delivered: u64,
}

/// The running agent.
#[derive(Debug)]
pub struct Daemon {
    config: Config,
    signer: Signer,
    topics: WorkerTopics,
    store: SharedStore,
    advertiser: Advertiser,
    peers: SequenceTracker,
    notifier: Notifier,
    tracker: PublishTracker,
    counters: Counters,
    refusals: refusals::RefusalCounts,
    /// When the unwritten refusal counts are due to be written (none while all are written).
    refusals_due: Option<tokio::time::Instant>,
    started: Instant,
    connected: bool,
    draining: bool,
    runner: tasks::TaskRunner,
    /// Why the journal cannot be written, while it cannot.
    trouble: Option<storage::Trouble>,
    /// Work waiting for the journal, and messages to send without it.
    waiting: storage::Waiting,
    /// Start-up steps still running after which the start-up pages are given back: READY (with
    /// the task tools built after it) and the sandbox benchmark.
    startup_steps_left: u8,
    job_events: Option<tokio::sync::mpsc::UnboundedReceiver<crate::pipeline::JobEvent>>,
}

impl Daemon {
    /// Unlocks the wallet, opens the journal, detects the capacity and seals the advertisement.
    ///
    /// `env` looks up environment variables (password sources).
    ///
    /// # Errors
    /// [`DaemonError`] naming what is missing or wrong.
    pub fn prepare(
        config: Config,
        env: &dyn Fn(&str) -> Option<String>,
        started: Instant,
    ) -> Result<Self, DaemonError> {
        let (password, source) = identity::find_password(&config.identity, env)?;
        let keystore = config.keystore_path();
        let signer = identity::unlock(&keystore, &password)?;
        drop(password);
        tracing::info!(worker = %signer.address(), password_source = %source, keystore = %keystore.display(), "wallet unlocked");
        let mut journal = Store::open(&config.agent.state_dir)?;
        journal.skip_own_seqs(storage::UNJOURNALED_SEQ_SPAN)?;
        let store = SharedStore::new(journal);
        let topics = WorkerTopics::new(&config, signer.address())?;
        let peers = SequenceTracker::restore(store.lock().peer_sequences()?);
        let refusals = refusals::RefusalCounts::load(&store.lock())?;
        let mut advertiser = Advertiser::detect(&config, signer.address(), &store.lock())?;
        let (mut runner, job_events) = Self::task_runner(&config);
        // `tee` is claimed only after our own verifier accepted the attester's evidence.
        match crate::attest::self_attest(&config, &signer.address(), now_ms() / 1000) {
            Ok(Some(proven)) => {
                tracing::info!(kind = proven.kind.as_str(), measurement = %hex::encode(&proven.measurement), "self-attestation succeeded: tee advertised");
                advertiser.set_tee(proven.kind, proven.measurement.clone());
                runner.attester = Some(proven.attester);
            }
            Ok(None) => tracing::info!("attestation disabled: tee not advertised"),
            // `auto` on a machine without a usable TEE is the common case, not a fault.
            Err(e @ crate::attest::SelfAttestError::Unavailable(_))
                if config.agent.attestation == crate::config::AttestationMode::Auto =>
            {
                tracing::info!(reason = %e, "no attester: tee not advertised")
            }
            Err(e) => tracing::warn!(error = %e, "self-attestation failed: tee not advertised"),
        }
        let mut daemon = Self {
            runner,
            startup_steps_left: 2,
            job_events: Some(job_events),
            advertiser,
            config,
            signer,
            topics,
            store,
            peers,
            notifier: Notifier::new(),
            tracker: PublishTracker::new(),
            counters: Counters::default(),
            refusals,
            refusals_due: None,
            started,
            connected: false,
            draining: false,
            trouble: None,
            waiting: storage::Waiting::default(),
        };
        daemon.advertiser.seal_if_changed(
            &mut daemon.store.lock(),
            &daemon.signer,
            &daemon.topics.capacity,
        )?;
        Ok(daemon)
    }

    fn task_runner(
        config: &Config,
    ) -> (
        tasks::TaskRunner,
        tokio::sync::mpsc::UnboundedReceiver<crate::pipeline::JobEvent>,
    ) {
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        (
            tasks::TaskRunner {
                running: std::collections::HashSet::new(),
                events,
                results_dir: config.agent.state_dir.join("results"),
                tools: None,
                attester: None,
                secret_waiters: std::collections::HashMap::new(),
            },
            receiver,
        )
    }

    /// Restarts the job of every task that was accepted but not yet contributed: a task killed
    /// mid-compute is computed again (deterministic, so the same digest). A contributed task is
    /// never recomputed: its contribution is in the outbox, or was delivered.
    fn resume_tasks(&mut self) -> Result<(), DaemonError> {
        let active = self.store.lock().tasks(crate::store::TaskFilter::Active)?;
        for record in active {
            let before_contribution = matches!(
                record.state,
                edgepool_protocol::status::ReplicateStatus::Started
                    | edgepool_protocol::status::ReplicateStatus::AppDownloading
                    | edgepool_protocol::status::ReplicateStatus::AppDownloaded
                    | edgepool_protocol::status::ReplicateStatus::DataDownloading
                    | edgepool_protocol::status::ReplicateStatus::DataDownloaded
                    | edgepool_protocol::status::ReplicateStatus::Computing
                    | edgepool_protocol::status::ReplicateStatus::Computed
            );
            if record.state == edgepool_protocol::status::ReplicateStatus::ResultUploading {
                // Asked to upload, and the upload's outcome never committed: upload again (the
                // same archive to the same place).
                tracing::info!(task_id = %record.task_id, "resuming the result upload");
                self.start_upload(&record)?;
                continue;
            }
            if !before_contribution || record.outputs.result_digest.is_some() {
                continue;
            }
            match Envelope::open(&record.assignment, &self.topics.inbox).map(|o| o.message) {
                Ok(Message::Assignment(assignment)) => {
                    tracing::info!(task_id = %record.task_id, state = %record.state, "resuming task");
                    self.start_job(assignment)?;
                }
                _ => {
                    tracing::error!(task_id = %record.task_id, "stored assignment does not open: task left as is")
                }
            }
        }
        Ok(())
    }

    /// The worker address.
    pub fn worker(&self) -> Address {
        self.signer.address()
    }

    /// Connects and serves until `shutdown` completes, then drains.
    ///
    /// # Errors
    /// [`DaemonError::BrokerRefused`] when the broker refuses the credentials or certificates;
    /// [`DaemonError::Store`] when the journal fails.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
        let options = link::options(&self.config, self.worker(), &self.topics)?;
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        eventloop.set_network_options(link::network_options());
        let mut backoff = Backoff::new(Duration::from_secs(self.config.broker.reconnect_max_secs));
        let mut heartbeat = interval(Duration::from_secs(self.config.agent.heartbeat_secs));
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let watchdog_every = Notifier::watchdog_interval();
        let mut watchdog = interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
        let mut refresh = interval(CAPACITY_REFRESH);
        refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
        refresh.tick().await; // the first tick is immediate: capacity was just detected
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut journal_retry = interval(storage::RETRY_EVERY);
        journal_retry.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut bench = Some(tokio::task::spawn_blocking(
            crate::capacity::fuel_per_second,
        ));
        let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
        tokio::pin!(shutdown);
        let mut job_events = self.job_events.take().expect("run is called once");
        self.resume_tasks()?;
        self.notifier.status("connecting to the broker");
        tracing::info!(broker = %self.config.broker.url, worker = %self.worker(), "connecting");
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                event = eventloop.poll(), if retry_at.is_none() => {
                    match event {
                        Ok(event) => {
                            if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                                // A resumed session makes the client replay what was in flight;
                                // the outbox is re-sent from the journal instead, in order and
                                // tracked, so the client's copies are dropped.
                                eventloop.pending.clear();
                            }
                            self.handle_event(event, &client, &mut backoff)?;
                        }
                        Err(error) => {
                            let delay = self.connection_lost(&error, &mut backoff)?;
                            retry_at = Some(tokio::time::Instant::now() + delay);
                        }
                    }
                }
                () = sleep_until(retry_at.unwrap_or(far)), if retry_at.is_some() => retry_at = None,
                () = sleep_until(self.refusals_due.unwrap_or(far)), if self.refusals_due.is_some() => {
                    self.write_refusals();
                }
                _ = heartbeat.tick() => {
                    self.check_state_dir();
                    self.enqueue_heartbeat()?;
                    self.flush(&client)?;
                }
                Some(event) = job_events.recv() => {
                    // Whatever else is already waiting is handled with it (see on_job_events);
                    // while the journal cannot be written, they wait for it, in order.
                    let mut events = vec![event];
                    while events.len() < JOB_EVENT_BATCH {
                        match job_events.try_recv() {
                            Ok(event) => events.push(event),
                            Err(_) => break,
                        }
                    }
                    self.on_job_events(events)?;
                    self.flush(&client)?;
                }
                _ = journal_retry.tick(), if self.trouble.is_some() => {
                    self.retry_journal(&client)?;
                    self.flush(&client)?;
                }
                _ = watchdog.tick(), if watchdog_every.is_some() => self.notifier.watchdog(),
                _ = refresh.tick() => {
                    let refreshed = self.refresh_capacity(&client);
                    self.tolerate(refreshed)?;
                }
                joined = async { bench.as_mut().expect("guarded by is_some").await }, if bench.is_some() => {
                    bench = None;
                    match joined {
                        Ok(Ok(measured)) => {
                            tracing::info!(fuel_per_second = measured, "sandbox benchmark");
                            let updated = self.advertiser.update_fuel(&mut self.store.lock(), measured);
                            let resealed = match updated {
                                Ok(true) => self.reseal_and_publish(&client),
                                Ok(false) => Ok(()),
                                Err(e) => Err(e),
                            };
                            self.tolerate(resealed)?;
                        }
                        Ok(Err(e)) => tracing::warn!(error = %e, "sandbox benchmark failed"),
                        Err(e) => tracing::warn!(error = %e, "sandbox benchmark did not finish"),
                    }
                    self.startup_step_done();
                }
            }
        }
        self.drain(&client, &mut eventloop).await
    }

    fn handle_event(
        &mut self,
        event: Event,
        client: &AsyncClient,
        backoff: &mut Backoff,
    ) -> Result<(), DaemonError> {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                backoff.reset();
                self.connected = true;
                self.counters.connections += 1;
                self.tracker.reset();
                tracing::info!(broker = %self.config.broker.url, connection = self.counters.connections, "connected");
                self.record_link(format!("connected to {}", self.config.broker.url));
                self.publish_retained(client)?;
                self.flush(client)?;
                self.update_status();
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => self.tracker.assigned(pkid),
            Event::Incoming(Packet::PubAck(ack)) => {
                match self.tracker.acknowledged(ack.pkid) {
                    Some(Tracked::Outbox(id)) => {
                        #[cfg(feature = "failpoints")]
                        self.crash_point_on_ack(id)?;
                        if self.trouble.is_some() || !self.try_ack_outbox(id)? {
                            self.waiting.deferred.push_back(storage::Deferred::Ack(id));
                        }
                        self.counters.delivered += 1;
                    }
                    Some(Tracked::Capacity) => {
                        if !self.notifier.is_ready() {
                            self.notifier.ready();
                            tracing::info!(
                                worker = %self.worker(),
                                startup_ms = self.started.elapsed().as_millis() as u64,
                                "ready: connected and advertised"
                            );
                            // Now that READY is out, build what tasks need.
                            self.tools()?;
                            self.startup_step_done();
                        }
                    }
                    Some(Tracked::Presence | Tracked::Unjournaled) | None => {}
                }
                self.flush(client)?;
            }
            Event::Incoming(Packet::Publish(publish)) => {
                if publish.topic == self.topics.inbox {
                    if let Some((message, sender, seq)) =
                        self.handle_inbox(&publish.topic, &publish.payload)?
                    {
                        // Not acted on (the journal cannot be written): it waits, and is
                        // acknowledged once acted on.
                        let connection = self.counters.connections;
                        self.waiting.deferred.push_back(storage::Deferred::Inbox {
                            message: Box::new(message),
                            sender,
                            seq,
                            publish,
                            connection,
                        });
                        self.flush(client)?;
                        return Ok(());
                    }
                }
                // Acknowledged only now that its effects are committed: a crash before this
                // line gets it redelivered (persistent session), and acting again is harmless.
                let _ = client.try_ack(&publish);
                self.flush(client)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Opens an inbox message; refused ones are logged and counted, accepted ones are acted on,
    /// then their sequence number is committed. Returns the message when it must wait for the
    /// journal (it cannot be written, or earlier work is waiting for it).
    fn handle_inbox(
        &mut self,
        topic: &str,
        payload: &[u8],
    ) -> Result<Option<(Message, Address, u64)>, DaemonError> {
        match inbox::open(
            payload,
            topic,
            self.config.pool.address,
            &self.config.broker.topic_base,
            self.config.pool.scheduler,
            &self.peers,
        ) {
            Ok(opened) => {
                // Acted on first, then its sequence number committed: a crash in between gets
                // the message redelivered and accepted again, and every handler is idempotent
                // (a journaled assignment, a notification for a state already left). The other
                // order would lose it: refused as a replay.
                let (sender, seq) = (opened.sender, opened.seq);
                self.peers.accept(sender, seq);
                self.counters.accepted += 1;
                // Notifications keep their order behind work already waiting for the journal;
                // assignments (declined while it cannot be written) and secret answers (held
                // in memory only) need no journal.
                let waits = matches!(opened.message, Message::Notification(_));
                if waits && self.trouble.is_some() {
                    return Ok(Some((opened.message, sender, seq)));
                }
                if !matches!(
                    opened.message,
                    Message::Assignment(_) | Message::Notification(_) | Message::SecretResponse(_)
                ) {
                    inbox::ignore(&opened);
                }
                if !self.act_on(&opened.message, payload)? {
                    return Ok(Some((opened.message, sender, seq)));
                }
                // Relaxed (durable with the next durable commit): lost to a power cut, the
                // number only goes back to one whose message was already acted on, and acting
                // on it again is harmless, as above. If it cannot be committed at all, a
                // redelivery after a restart is acted on again, which is as harmless.
                self.try_commit_relaxed(|tx| tx.accept_peer_seq(sender, seq))?;
            }
            Err(e) => {
                self.counters.refused += 1;
                self.refusals.record(e.reason());
                if self.refusals_due.is_none() {
                    self.refusals_due = Some(tokio::time::Instant::now() + refusals::FLUSH_EVERY);
                }
                tracing::warn!(
                    reason = e.reason(),
                    error = %e,
                    refused_total = self.counters.refused,
                    "inbox message refused"
                );
            }
        }
        Ok(None)
    }

    /// Acts on an accepted inbox message; `Ok(false)` when it must wait for the journal.
    fn act_on(&mut self, message: &Message, payload: &[u8]) -> Result<bool, DaemonError> {
        match message {
            Message::Assignment(assignment) => {
                self.on_assignment(assignment.clone(), payload)?;
                Ok(true)
            }
            Message::Notification(notification) => self.on_notification(notification),
            Message::SecretResponse(response) => {
                self.on_secret_response(response.clone());
                Ok(true)
            }
            _ => Ok(true),
        }
    }

    /// Writes the refusal counts to the journal. A failure is logged, not fatal: the counts are
    /// diagnostics and are tried again at the next refusal or at shutdown.
    fn write_refusals(&mut self) {
        self.refusals_due = None;
        if let Err(e) = self.refusals.flush(&self.store.lock()) {
            tracing::warn!(error = %e, "refusal counts not written to the journal");
        }
    }

    fn connection_lost(
        &mut self,
        error: &ConnectionError,
        backoff: &mut Backoff,
    ) -> Result<Duration, DaemonError> {
        let was_connected = self.connected;
        self.connected = false;
        self.tracker.reset();
        match link::classify(error) {
            Failure::Fatal(message) => {
                tracing::error!(broker = %self.config.broker.url, error = %message, "cannot connect");
                Err(DaemonError::BrokerRefused(message))
            }
            Failure::Retry(message) => {
                let delay = backoff.next_delay(rand::random::<f64>());
                if was_connected {
                    tracing::warn!(error = %message, retry_in_ms = delay.as_millis() as u64, "connection lost");
                    self.record_link(format!(
                        "connection to {} lost ({message}), reconnecting",
                        self.config.broker.url
                    ));
                } else {
                    tracing::warn!(error = %message, retry_in_ms = delay.as_millis() as u64, "cannot connect");
                    if self.counters.connections == 0 {
                        self.record_link(format!(
                            "cannot connect to {} ({message}), retrying",
                            self.config.broker.url
                        ));
                    }
                }
                self.update_status();
                Ok(delay)
            }
        }
    }

    /// Notes the link's state in the journal for `status` (best effort: a journal that cannot
    /// be written does not hold the link up).
    fn record_link(&mut self, line: String) {
        let stamped = format!("{line} (at {} ms)", now_ms());
        if let Err(e) = self.store.lock().meta_set(LINK_META, stamped.as_bytes()) {
            tracing::debug!(error = %e, "link state not journaled");
        }
    }

    /// Presence `online` and the capacity advertisement, both retained.
    fn publish_retained(&mut self, client: &AsyncClient) -> Result<(), DaemonError> {
        let _ = client.try_subscribe(&self.topics.inbox, QoS::AtLeastOnce);
        if client
            .try_publish(&self.topics.presence, QoS::AtLeastOnce, true, link::ONLINE)
            .is_ok()
        {
            self.tracker.requested(Tracked::Presence);
        }
        let sealed = self.advertiser.sealed().to_vec();
        if client
            .try_publish(&self.topics.capacity, QoS::AtLeastOnce, true, sealed)
            .is_ok()
        {
            self.tracker.requested(Tracked::Capacity);
        }
        Ok(())
    }

    /// Publishes outbox rows not yet sent on this connection, oldest first, within the in-flight
    /// window.
    fn flush(&mut self, client: &AsyncClient) -> Result<(), DaemonError> {
        if !self.connected {
            return Ok(());
        }
        let room = self.tracker.outbox_room();
        if room == 0 {
            return Ok(());
        }
        for entry in self.store.lock().pending_outbox(2 * link::MAX_IN_FLIGHT)? {
            if !self.tracker.needs_sending(entry.id) {
                continue;
            }
            if self.tracker.outbox_room() == 0 {
                break;
            }
            if client
                .try_publish(&entry.topic, QoS::AtLeastOnce, entry.retain, entry.payload)
                .is_err()
            {
                break;
            }
            self.tracker.requested(Tracked::Outbox(entry.id));
            crate::failpoints::crash_point("outbox.after_publish");
        }
        self.flush_unjournaled(client)
    }

    /// `outbox.acked.<kind>`: the broker acknowledged the row, which is still in the journal.
    #[cfg(feature = "failpoints")]
    fn crash_point_on_ack(&mut self, id: i64) -> Result<(), DaemonError> {
        let pending = self.store.lock().pending_outbox(4 * link::MAX_IN_FLIGHT)?;
        if let Some(entry) = pending.into_iter().find(|e| e.id == id) {
            if let Ok(opened) = Envelope::open(&entry.payload, &entry.topic) {
                crate::failpoints::crash_point_at("outbox.acked", opened.message.kind().as_str());
            }
        }
        Ok(())
    }

    /// The heartbeat for now: no free slot and not accepting while draining or while the
    /// journal cannot be written.
    fn heartbeat(&self) -> Message {
        let accepting = !self.draining && self.trouble.is_none();
        Message::Heartbeat(Heartbeat {
            running_tasks: 0,
            free_slots: if accepting {
                self.config.agent.slots
            } else {
                0
            },
            free_memory_bytes: crate::capacity::available_memory_bytes(
                &self.config.agent.system_root,
            ),
            free_disk_bytes: self.advertiser.disk_free_bytes(),
            accepting,
        })
    }

    /// Seals a heartbeat and commits it to the outbox (delivered now or after reconnect); while
    /// the journal cannot be written, it is sent without a journal row.
    fn enqueue_heartbeat(&mut self) -> Result<(), DaemonError> {
        let heartbeat = self.heartbeat();
        if self.trouble.is_some() {
            self.queue_unjournaled(heartbeat);
            return Ok(());
        }
        let topic = self.topics.outbox.clone();
        let signer = self.signer.clone();
        let now = now_ms();
        // When this cannot be committed, the trouble just started and queued its own heartbeat
        // (not accepting).
        self.try_commit(|tx| tasks::enqueue_in(tx, &signer, &topic, &heartbeat, now))?;
        Ok(())
    }

    fn refresh_capacity(&mut self, client: &AsyncClient) -> Result<(), DaemonError> {
        self.advertiser.redetect(&self.config)?;
        self.reseal_and_publish(client)
    }

    /// Seals the advertisement again if it changed, and publishes it when connected.
    fn reseal_and_publish(&mut self, client: &AsyncClient) -> Result<(), DaemonError> {
        let changed = self.advertiser.seal_if_changed(
            &mut self.store.lock(),
            &self.signer,
            &self.topics.capacity,
        )?;
        if changed && self.connected {
            let sealed = self.advertiser.sealed().to_vec();
            if client
                .try_publish(&self.topics.capacity, QoS::AtLeastOnce, true, sealed)
                .is_ok()
            {
                self.tracker.requested(Tracked::Capacity);
            }
            tracing::info!("capacity changed: advertisement republished");
        }
        Ok(())
    }

    /// Once start-up is over (READY and the sandbox benchmark), gives the kernel back the pages of
    /// the binary that only start-up used (see [`crate::footprint`]).
    fn startup_step_done(&mut self) {
        self.startup_steps_left = self.startup_steps_left.saturating_sub(1);
        if self.startup_steps_left != 0 {
            return;
        }
        match crate::footprint::release_startup_pages() {
            Ok(released) => tracing::debug!(
                mappings = released.mappings,
                resident_bytes = released.resident_bytes,
                heap_trimmed = released.heap_trimmed,
                "start-up pages given back"
            ),
            Err(e) => tracing::debug!(error = %e, "start-up pages not given back"),
        }
    }

    fn update_status(&mut self) {
        let line = if self.draining {
            "draining: no new tasks".to_string()
        } else if let Some(trouble) = &self.trouble {
            format!(
                "the journal cannot be written ({}): not accepting tasks",
                trouble.reason
            )
        } else if self.connected {
            format!(
                "connected, {}/{} slots busy",
                self.runner.running.len(),
                self.config.agent.slots
            )
        } else {
            "disconnected, reconnecting".to_string()
        };
        self.notifier.status(&line);
    }

    /// No new tasks; presence `offline`; flush the outbox until it is empty or the drain timeout.
    async fn drain(
        mut self,
        client: &AsyncClient,
        eventloop: &mut EventLoop,
    ) -> Result<(), DaemonError> {
        self.draining = true;
        self.notifier.stopping();
        self.update_status();
        tracing::info!(connected = self.connected, "draining");
        if !self.connected {
            return Ok(());
        }
        if client
            .try_publish(&self.topics.presence, QoS::AtLeastOnce, true, link::OFFLINE)
            .is_ok()
        {
            self.tracker.requested(Tracked::Presence);
        }
        self.flush(client)?;
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while !(self.tracker.is_idle() && self.store.lock().outbox_len()? == 0) {
            tokio::select! {
                event = eventloop.poll() => match event {
                    Ok(event) => {
                        let mut backoff = Backoff::new(Duration::from_secs(1));
                        self.handle_event(event, client, &mut backoff)?;
                    }
                    Err(_) => break,
                },
                () = sleep_until(deadline) => {
                    tracing::warn!(left = self.store.lock().outbox_len()?, "drain timeout: the rest stays in the journal");
                    break;
                }
            }
        }
        let _ = client.try_disconnect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            tokio::select! {
                event = eventloop.poll() => match event {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                },
                () = sleep_until(deadline) => break,
            }
        }
        self.write_refusals();
        tracing::info!(delivered = self.counters.delivered, "stopped");
        Ok(())
    }
}
