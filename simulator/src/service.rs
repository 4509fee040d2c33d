//! The pool service: [`PoolCore`] on a real MQTT connection, in one event loop thread. Its inputs
//! (publications from the broker, commands, a tick timer) arrive on one channel; after each input
//! the core's publications are made and its progress lines forwarded.
//!
//! The MQTT session is clean: after every (re)connect the service subscribes again to every
//! worker's presence, capacity and outbox (retained presence and capacity are then redelivered,
//! which rebuilds the registry).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgepool_protocol::primitives::{Address, TaskId};
use edgepool_protocol::signature::Signer;
use rumqttc::{Client, Event as MqttEvent, MqttOptions, Packet, QoS};

use crate::broker::parse_mqtt_url;
use crate::hooks::PocoHooks;
use crate::pool::{DealRequest, PoolCore, PoolSettings};
use crate::report::Report;
use crate::store::StoreHandle;

/// How often deadlines, heartbeats and replica timeouts are checked.
pub const TICK: Duration = Duration::from_millis(200);

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The broker URL is not usable.
    #[error("broker URL: {0}")]
    BrokerUrl(String),
    /// The service did not connect to the broker in time.
    #[error("the pool did not connect to the broker at {0} within 10 s")]
    NotConnected(String),
    /// The event loop thread could not start.
    #[error("starting the pool thread: {0}")]
    Thread(#[source] std::io::Error),
}

type Reply<T> = Sender<T>;

enum Input {
    Publish(String, Vec<u8>),
    Connected,
    Submit(Box<DealRequest>, Reply<Result<Vec<TaskId>, String>>),
    Report(Reply<Report>),
    Stop,
}

/// A handle to the running service; stopping it (or dropping it) ends its loop.
#[derive(Debug)]
pub struct Pool {
    inputs: Sender<Input>,
    thread: Option<JoinHandle<()>>,
    scheduler: Address,
    pool: Address,
}

impl Pool {
    /// Connects to `broker_url`, subscribes, and runs the loop. Progress lines go to `progress`.
    ///
    /// # Errors
    /// [`ServiceError`].
    pub fn start(
        broker_url: &str,
        pool: Address,
        signer: Signer,
        settings: PoolSettings,
        hooks: Box<dyn PocoHooks>,
        store: StoreHandle,
        progress: Option<Sender<String>>,
    ) -> Result<Pool, ServiceError> {
        Self::start_with_sms(
            broker_url, pool, signer, settings, hooks, store, progress, None,
        )
    }

    /// [`Pool::start`] with the SMS attached (`sms`: the SMS and the workerpool's registry
    /// address), so that TEE deals can run.
    ///
    /// # Errors
    /// [`ServiceError`].
    #[allow(clippy::too_many_arguments)]
    pub fn start_with_sms(
        broker_url: &str,
        pool: Address,
        signer: Signer,
        settings: PoolSettings,
        hooks: Box<dyn PocoHooks>,
        store: StoreHandle,
        progress: Option<Sender<String>>,
        sms: Option<(crate::sms::Sms, Address)>,
    ) -> Result<Pool, ServiceError> {
        let (host, port) = parse_mqtt_url(broker_url).map_err(ServiceError::BrokerUrl)?;
        let scheduler = signer.address();
        let mut core = PoolCore::new(pool, signer, settings, hooks, store, now_ms());
        if let Some((sms, workerpool)) = sms {
            core.attach_sms(sms, workerpool);
        }
        let subscriptions = core.subscriptions();
        let client_id = format!("edgepool-sim-{}", &scheduler.to_string()[2..10]);
        let mut options = MqttOptions::new(client_id, host, port);
        options.set_keep_alive(Duration::from_secs(10));
        options.set_clean_session(true);
        options.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
        let (client, connection) = Client::new(options, 4096);
        let (inputs, rx) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        spawn_connection(
            connection,
            client.clone(),
            subscriptions.to_vec(),
            inputs.clone(),
            Arc::clone(&stopping),
        )?;
        // Wait for the first CONNACK so that callers can publish work right away.
        let first = rx.recv_timeout(Duration::from_secs(10));
        if !matches!(first, Ok(Input::Connected)) {
            stopping.store(true, Ordering::SeqCst);
            return Err(ServiceError::NotConnected(broker_url.to_string()));
        }
        let thread = std::thread::Builder::new()
            .name("pool".into())
            .spawn(move || run(core, client, rx, progress, stopping))
            .map_err(ServiceError::Thread)?;
        Ok(Pool {
            inputs,
            thread: Some(thread),
            scheduler,
            pool,
        })
    }

    /// The scheduler's address (what agents are configured to trust).
    pub fn scheduler(&self) -> Address {
        self.scheduler
    }

    /// The workerpool address.
    pub fn pool(&self) -> Address {
        self.pool
    }

    /// Submits a deal; returns its task ids.
    ///
    /// # Errors
    /// A message when the deal is refused or the service has stopped.
    pub fn submit(&self, request: DealRequest) -> Result<Vec<TaskId>, String> {
        self.remote().submit(request)
    }

    /// The report as of now (`None` if the service has stopped).
    pub fn report(&self) -> Option<Report> {
        self.remote().report()
    }

    /// A cheap clonable handle for other threads (e.g. the control API).
    pub fn remote(&self) -> PoolRemote {
        PoolRemote {
            inputs: self.inputs.clone(),
        }
    }

    /// Stops the loop and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.inputs.send(Input::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What other threads may ask of a running pool.
#[derive(Debug, Clone)]
pub struct PoolRemote {
    inputs: Sender<Input>,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Input::Publish(..) => "Publish",
            Input::Connected => "Connected",
            Input::Submit(..) => "Submit",
            Input::Report(_) => "Report",
            Input::Stop => "Stop",
        })
    }
}

impl PoolRemote {
    /// See [`Pool::submit`].
    ///
    /// # Errors
    /// A message when the deal is refused or the service has stopped.
    pub fn submit(&self, request: DealRequest) -> Result<Vec<TaskId>, String> {
        let (tx, rx) = mpsc::channel();
        self.inputs
            .send(Input::Submit(Box::new(request), tx))
            .map_err(|_| "the pool has stopped".to_string())?;
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the pool did not answer".to_string())?
    }

    /// See [`Pool::report`].
    pub fn report(&self) -> Option<Report> {
        let (tx, rx) = mpsc::channel();
        self.inputs.send(Input::Report(tx)).ok()?;
        rx.recv_timeout(Duration::from_secs(10)).ok()
    }
}

fn spawn_connection(
    mut connection: rumqttc::Connection,
    client: Client,
    subscriptions: Vec<String>,
    inputs: Sender<Input>,
    stopping: Arc<AtomicBool>,
) -> Result<(), ServiceError> {
    std::thread::Builder::new()
        .name("pool-mqtt".into())
        .spawn(move || {
            for event in connection.iter() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let input = match event {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        for filter in &subscriptions {
                            // try_: this thread drives the request queue, it must never block on it.
                            let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                        }
                        Input::Connected
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        Input::Publish(p.topic.clone(), p.payload.to_vec())
                    }
                    Ok(_) => continue,
                    Err(_) => {
                        // The event loop reconnects on the next poll; do not spin.
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                };
                if inputs.send(input).is_err() {
                    return;
                }
            }
        })
        .map_err(ServiceError::Thread)?;
    Ok(())
}

fn run(
    mut core: PoolCore,
    client: Client,
    inputs: Receiver<Input>,
    progress: Option<Sender<String>>,
    stopping: Arc<AtomicBool>,
) {
    let mut next_tick = Instant::now() + TICK;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match inputs.recv_timeout(wait) {
            Ok(Input::Publish(topic, payload)) => core.on_publish(&topic, &payload, now_ms()),
            Ok(Input::Connected) => {}
            Ok(Input::Submit(request, reply)) => {
                let _ = reply.send(core.submit(*request, now_ms()));
            }
            Ok(Input::Report(reply)) => {
                let _ = reply.send(core.report());
            }
            Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() >= next_tick {
            core.tick(now_ms());
            next_tick = Instant::now() + TICK;
        }
        for out in core.take_outgoing() {
            let _ = client.publish(out.topic, QoS::AtLeastOnce, false, out.payload);
        }
        for line in core.take_progress() {
            if let Some(tx) = &progress {
                let _ = tx.send(line);
            }
        }
    }
    stopping.store(true, Ordering::SeqCst);
    let _ = client.try_disconnect();
}
