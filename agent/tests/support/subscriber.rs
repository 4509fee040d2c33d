//! A test subscriber: a rumqttc sync client on its own thread that subscribes to a topic filter
//! at QoS 1 and collects what it receives. It reconnects when the connection is lost (after a
//! broker restart, say) and subscribes again unless the broker resumed its session.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Connection, Event, Outgoing, Packet, QoS};

use super::client::{mqtt_options, ClientOptions};
use super::{poll_until, WAIT};

/// Pause between two reconnection attempts while the broker is down.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(50);

/// A received PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic name.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Whether the broker delivered it as a retained message.
    pub retain: bool,
    /// QoS of the delivery.
    pub qos: QoS,
}

/// What the subscriber thread shares with the test.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// CONNACKs received (1 after the first connection, +1 per reconnection).
    connacks: AtomicUsize,
    /// Times the subscription became active: a SUBACK, or a CONNACK resuming the session.
    ready: AtomicUsize,
    last_error: Mutex<Option<String>>,
}

/// A subscriber thread; it disconnects when dropped.
pub struct Subscriber {
    client: Client,
    messages: Receiver<Message>,
    /// Messages received but not yet matched by [`Subscriber::wait_for`].
    pending: Mutex<VecDeque<Message>>,
    shared: Arc<Shared>,
    ended: Receiver<()>,
}

impl Subscriber {
    /// Connects to `url`, subscribes to `filter` at QoS 1 and waits until the subscription is
    /// active (SUBACK, or a CONNACK resuming a persistent session).
    ///
    /// # Panics
    /// If the subscription is not active within [`WAIT`] (the message has the last error).
    pub fn start(url: &str, filter: &str, opts: ClientOptions) -> Subscriber {
        let (client, connection) = Client::new(mqtt_options(url, &opts), 64);
        let shared = Arc::new(Shared::default());
        let (messages_tx, messages) = mpsc::channel();
        let (ended_tx, ended) = mpsc::channel();
        let thread_client = client.clone();
        let thread_shared = Arc::clone(&shared);
        let filter = filter.to_owned();
        std::thread::Builder::new()
            .name(format!("subscriber-{}", opts.client_id))
            .spawn(move || {
                run(
                    connection,
                    thread_client,
                    &filter,
                    &thread_shared,
                    &messages_tx,
                );
                let _ = ended_tx.send(());
            })
            .expect("spawn the subscriber thread");
        let subscriber = Subscriber {
            client,
            messages,
            pending: Mutex::new(VecDeque::new()),
            shared,
            ended,
        };
        assert!(
            subscriber.wait_ready(1, WAIT),
            "subscriber to {url} not subscribed within {WAIT:?}; last error: {:?}",
            subscriber.last_error()
        );
        subscriber
    }

    /// Waits up to `timeout` for a message matching `predicate` and removes it; messages that
    /// do not match stay for later calls.
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut(&Message) -> bool,
        timeout: Duration,
    ) -> Option<Message> {
        let mut pending = self.pending.lock().expect("pending messages lock");
        if let Some(at) = pending.iter().position(&mut predicate) {
            return pending.remove(at);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(message) if predicate(&message) => return Some(message),
                Ok(message) => pending.push_back(message),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Waits up to `timeout` for a message on `topic`.
    pub fn wait_for_topic(&self, topic: &str, timeout: Duration) -> Option<Message> {
        self.wait_for(|m| m.topic == topic, timeout)
    }

    /// Every message received so far and not yet taken by [`Subscriber::wait_for`].
    pub fn drain(&self) -> Vec<Message> {
        let mut pending = self.pending.lock().expect("pending messages lock");
        pending.extend(self.messages.try_iter());
        pending.drain(..).collect()
    }

    /// CONNACKs received so far: 1 after the first connection, +1 per reconnection.
    pub fn connections(&self) -> usize {
        self.shared.connacks.load(Ordering::SeqCst)
    }

    /// Waits until the subscription has become active `n` times in all (the first
    /// subscription counts 1, each reconnection +1).
    pub fn wait_ready(&self, n: usize, timeout: Duration) -> bool {
        poll_until(timeout, || self.shared.ready.load(Ordering::SeqCst) >= n)
    }

    /// The last connection error the subscriber saw, as rumqttc's `Debug`.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().expect("error lock").clone()
    }

    /// Sends DISCONNECT and waits (bounded by [`WAIT`]) until the broker has closed the
    /// connection, so that what is published afterwards is queued for a persistent session
    /// instead of delivered.
    ///
    /// # Panics
    /// If the subscriber thread has not ended within [`WAIT`].
    pub fn disconnect(self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.client.try_disconnect();
        assert!(
            self.ended.recv_timeout(WAIT).is_ok(),
            "subscriber did not disconnect within {WAIT:?}"
        );
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.client.try_disconnect();
        let _ = self.ended.recv_timeout(Duration::from_secs(2));
    }
}

/// The subscriber thread: drives the connection until stopped.
fn run(
    mut connection: Connection,
    client: Client,
    filter: &str,
    shared: &Shared,
    messages: &Sender<Message>,
) {
    loop {
        let Ok(event) = connection.recv() else {
            return; // every Client is gone
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                shared.connacks.fetch_add(1, Ordering::SeqCst);
                if ack.session_present {
                    shared.ready.fetch_add(1, Ordering::SeqCst);
                } else if let Err(e) = client.try_subscribe(filter, QoS::AtLeastOnce) {
                    record(shared, format!("subscribe: {e:?}"));
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                shared.ready.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = messages.send(Message {
                    topic: p.topic.clone(),
                    payload: p.payload.to_vec(),
                    retain: p.retain,
                    qos: p.qos,
                });
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) if shared.stop.load(Ordering::SeqCst) => {
                // The broker closes the socket once it has processed the DISCONNECT.
                let _ = connection.recv_timeout(WAIT);
                return;
            }
            Ok(_) => {}
            Err(e) => {
                record(shared, format!("{e:?}"));
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(RECONNECT_BACKOFF);
            }
        }
    }
}

fn record(shared: &Shared, error: String) {
    *shared.last_error.lock().expect("error lock") = Some(error);
}
