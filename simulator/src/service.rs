//! The pool service: [`PoolCore`] on a real MQTT connection, in one event loop thread. Its inputs
//! (publications from the broker, commands, a tick timer) arrive on one channel; after each input
//! the core's publications are made and its progress lines forwarded.
//!
//! After every (re)connect the service subscribes again to every worker's presence, capacity
//! and outbox (retained presence and capacity are then redelivered, which rebuilds the registry).
//!
//! Without a journal the MQTT session is clean. With one ([`PoolOptions::journal`]) the pool is
//! restart-safe: the session is persistent (the broker keeps what workers publish while the pool
//! is down), and each turn of the loop (up to [`BATCH`] inputs, the tick when due) commits its
//! journal batch before its publications are queued, so the pool never publishes what the
//! journal does not hold. A stop commits what the turn handled.
//!
//! Acknowledgements ([`Acks`]): by default publications are acknowledged on receipt (rumqttc's
//! automatic acks), so a hard crash (`kill -9`) loses what the broker delivered during the turn
//! that did not commit. With [`Acks::AfterCommit`] (what `serve --broker URL --state DIR` uses)
//! a publication is acknowledged only once the turn that handled it is committed, so the broker
//! (which keeps the pool's persistent session while it is down) delivers again whatever the
//! pool had not journaled; a redelivered publication the pool did handle is refused as a replay
//! by the sequence check, which is what makes the redelivery idempotent. Acknowledgements of a
//! previous connection are dropped, never sent on the next one (packet ids are per connection).
//! Not the default: over rumqttd (embedded), acknowledging after the commit made it redeliver
//! unacked publications out of order over the resumed session; the pool refused them as replays
//! and the 200 × 2,000 bench stalled at 4 tasks. An embedded broker dies with the process
//! anyway, taking its sessions with it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgepool_protocol::primitives::{Address, TaskId};
use rumqttc::{Client, Event as MqttEvent, MqttOptions, Packet, Publish, QoS};

use crate::broker::parse_mqtt_url;
use crate::pool::journal::{JournalError, PoolJournal};
use crate::pool::{DealRequest, Outgoing, PoolCore, RestoreError};
use crate::report::Report;

mod options;
pub use options::{Acks, PoolOptions};

/// How often deadlines, heartbeats and replica timeouts are checked.
pub const TICK: Duration = Duration::from_millis(200);

/// How soon publications and acknowledgements the client's queue refused are tried again.
const RETRY: Duration = Duration::from_millis(5);

/// At most this many inputs are handled in one turn of the loop (one journal transaction).
pub const BATCH: usize = 256;

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
    /// The journal could not be opened or read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The journal's content could not be restored.
    #[error(transparent)]
    Restore(#[from] RestoreError),
}

type Reply<T> = Sender<T>;

enum Input {
    Publish(Box<Publish>),
    Connected,
    Submit(Box<DealRequest>, Reply<Result<Vec<TaskId>, String>>),
    Report(Reply<Report>),
    Sms(SmsCall),
    Stop,
}

/// Something to do with the pool's SMS, on the pool's thread.
type SmsCall = Box<dyn FnOnce(Option<&mut crate::sms::Sms>) + Send>;

/// A handle to the running service; stopping it (or dropping it) ends its loop.
#[derive(Debug)]
pub struct Pool {
    inputs: Sender<Input>,
    thread: Option<JoinHandle<()>>,
    scheduler: Address,
    pool: Address,
}

impl Pool {
    /// Connects to `broker_url`, subscribes, and runs the loop as `options` say (see
    /// [`PoolOptions`]: progress lines, SMS, journal, acknowledgements). With a journal, the
    /// pool's state is restored from it first and each worker with an open replica is told
    /// again what to do next (see the module documentation).
    ///
    /// # Errors
    /// [`ServiceError`].
    pub fn start(broker_url: &str, options: PoolOptions) -> Result<Pool, ServiceError> {
        let PoolOptions {
            pool,
            signer,
            settings,
            hooks,
            store,
            progress,
            sms,
            journal,
            acks,
        } = options;
        let (host, port) = parse_mqtt_url(broker_url).map_err(ServiceError::BrokerUrl)?;
        let scheduler = signer.address();
        let mut core = PoolCore::new(pool, signer, settings, hooks, store, now_ms());
        if let Some((sms, workerpool)) = sms {
            core.attach_sms(sms, workerpool);
        }
        let journal = match journal {
            Some(path) => {
                let journal = PoolJournal::open(&path)?;
                core.restore(journal.load()?, now_ms())?;
                core.enable_journal();
                Some(journal)
            }
            None => None,
        };
        let durable = journal.is_some();
        let manual_acks = durable && acks == Acks::AfterCommit;
        let subscriptions = core.subscriptions();
        let client_id = format!("edgepool-sim-{}", &scheduler.to_string()[2..10]);
        let mut mqtt = MqttOptions::new(client_id, host, port);
        mqtt.set_keep_alive(Duration::from_secs(10));
        mqtt.set_clean_session(!durable);
        mqtt.set_manual_acks(manual_acks);
        mqtt.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
        let (client, mut connection) = Client::new(mqtt, 4096);
        connection
            .eventloop
            .set_network_options(crate::broker::network_options());
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
            .spawn(move || run(core, journal, manual_acks, client, rx, progress, stopping))
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
            Input::Publish(_) => "Publish",
            Input::Connected => "Connected",
            Input::Submit(..) => "Submit",
            Input::Report(_) => "Report",
            Input::Sms(_) => "Sms",
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

    /// Runs `f` with the pool's SMS (`None` when it has none) on the pool's thread, between two
    /// turns, and returns its result (`None` when the service has stopped). `serve` pushes
    /// dataset keys this way.
    pub fn with_sms<R: Send + 'static>(
        &self,
        f: impl FnOnce(Option<&mut crate::sms::Sms>) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = mpsc::channel();
        let call: SmsCall = Box::new(move |sms| {
            let _ = tx.send(f(sms));
        });
        self.inputs.send(Input::Sms(call)).ok()?;
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
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => Input::Publish(Box::new(p)),
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
    mut journal: Option<PoolJournal>,
    manual_acks: bool,
    client: Client,
    inputs: Receiver<Input>,
    progress: Option<Sender<String>>,
    stopping: Arc<AtomicBool>,
) {
    let mut next_tick = Instant::now() + TICK;
    // Which connection a publication came on (counted by CONNACKs, which arrive on the same
    // channel before that connection's publications): an acknowledgement is only sent on the
    // connection that delivered it.
    let mut connection: u64 = 0;
    let mut consumed: Vec<(u64, Publish)> = Vec::new();
    // What the client's request queue did not take yet. The loop never blocks on that queue:
    // with manual acknowledgements, a loop blocked behind its own publications would stop
    // acknowledging, and the broker stops delivering (and acknowledging) in turn.
    let mut to_ack: VecDeque<(u64, Publish)> = VecDeque::new();
    let mut to_publish: VecDeque<Outgoing> = VecDeque::new();
    let mut stop = false;
    'turns: while !stop {
        let mut wait = next_tick.saturating_duration_since(Instant::now());
        if !to_ack.is_empty() || !to_publish.is_empty() {
            wait = wait.min(RETRY);
        }
        for n in 0..BATCH {
            // The first input of a turn is waited for; the others only taken if already there.
            let input = if n == 0 {
                inputs.recv_timeout(wait)
            } else {
                inputs.try_recv().map_err(|e| match e {
                    mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            };
            match input {
                Ok(Input::Publish(publish)) => {
                    core.on_publish(&publish.topic, &publish.payload, now_ms());
                    if manual_acks {
                        consumed.push((connection, *publish));
                    }
                }
                Ok(Input::Connected) => connection += 1,
                Ok(Input::Submit(request, reply)) => {
                    let result = core.submit(*request, now_ms());
                    // The deal is answered only once it is journaled.
                    if let Err(why) = commit(&mut core, &mut journal) {
                        let _ = reply.send(Err(why));
                        break 'turns;
                    }
                    let _ = reply.send(result);
                }
                Ok(Input::Report(reply)) => {
                    let _ = reply.send(core.report());
                }
                Ok(Input::Sms(call)) => call(core.sms_mut()),
                // What this turn handled is still committed and published.
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    stop = true;
                    break;
                }
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        if Instant::now() >= next_tick {
            core.tick(now_ms());
            next_tick = Instant::now() + TICK;
        }
        // Journal first: nothing is published or acknowledged that a restart would not know.
        if let Err(why) = commit(&mut core, &mut journal) {
            if let Some(tx) = &progress {
                let _ = tx.send(why);
            }
            break;
        }
        to_ack.extend(consumed.drain(..));
        // In the order received, as MQTT requires; a previous connection's are dropped (the
        // broker delivers those again on the resumed session, and they are refused as replays).
        to_ack.retain(|(on, _)| *on == connection);
        while let Some((_, publish)) = to_ack.front() {
            if client.try_ack(publish).is_err() {
                break;
            }
            to_ack.pop_front();
        }
        to_publish.extend(core.take_outgoing());
        while let Some(out) = to_publish.front() {
            let queued = client.try_publish(
                out.topic.clone(),
                QoS::AtLeastOnce,
                false,
                out.payload.clone(),
            );
            if queued.is_err() {
                break;
            }
            to_publish.pop_front();
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

/// Commits what the core changed, if the pool keeps a journal.
fn commit(core: &mut PoolCore, journal: &mut Option<PoolJournal>) -> Result<(), String> {
    let Some(journal) = journal else {
        return Ok(());
    };
    let batch = core.take_journal();
    journal
        .write(&batch)
        .map_err(|e| format!("the pool stops: {e}; nothing of this turn was published"))
}
