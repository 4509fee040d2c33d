//! Test MQTT clients on rumqttc 0.25 (sync API): options, URL parsing, a connected client that
//! publishes and waits for the acknowledgement, and that can drop its connection without
//! DISCONNECT (to fire its last will).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{
    Client, ConnectionError, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, RecvTimeoutError,
    TlsConfiguration, Transport,
};

use super::tls::tls_client_config;
use super::WAIT;

/// How a test client connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// MQTT client id (unique by default, see [`unique_id`]).
    pub client_id: String,
    /// CA that signs the broker's certificate; required for `mqtts://` URLs.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for TLS client authentication.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Username and password.
    pub credentials: Option<(String, String)>,
    /// `false` keeps a persistent session under `client_id`.
    pub clean_session: bool,
    /// Last will published by the broker when the connection is lost without DISCONNECT.
    pub last_will: Option<LastWill>,
    /// MQTT keep alive.
    pub keep_alive: Duration,
}

impl ClientOptions {
    /// Anonymous, clean session, unique client id starting with `prefix`, keep alive 30 s.
    pub fn new(prefix: &str) -> ClientOptions {
        ClientOptions {
            client_id: unique_id(prefix),
            ca: None,
            client_cert: None,
            credentials: None,
            clean_session: true,
            last_will: None,
            keep_alive: Duration::from_secs(30),
        }
    }

    /// Trusts `ca` for the broker's certificate.
    pub fn ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.ca = Some(ca.into());
        self
    }

    /// Authenticates with a client certificate.
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Authenticates with a username and password.
    pub fn credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Uses a persistent session under the fixed id `client_id`.
    pub fn persistent(mut self, client_id: &str) -> Self {
        self.client_id = client_id.to_owned();
        self.clean_session = false;
        self
    }

    /// Sets a last will.
    pub fn last_will(mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Self {
        self.last_will = Some(LastWill::new(topic, payload.to_vec(), qos, retain));
        self
    }
}

/// A client id unique in this test process: `PREFIX-PID-N`.
pub fn unique_id(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// rumqttc options for `url` (`mqtt://HOST:PORT` or `mqtts://HOST:PORT`).
///
/// # Panics
/// On a malformed URL, an `mqtts` URL without `opts.ca`, or unreadable PEM files.
pub fn mqtt_options(url: &str, opts: &ClientOptions) -> MqttOptions {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("expected SCHEME://HOST:PORT, found {url}"));
    let (host, port) = rest
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("expected HOST:PORT in {url}"));
    let port: u16 = port
        .parse()
        .unwrap_or_else(|e| panic!("expected a port number in {url}: {e}"));
    let mut options = MqttOptions::new(opts.client_id.clone(), host, port);
    options
        .set_clean_session(opts.clean_session)
        .set_keep_alive(opts.keep_alive);
    if let Some((user, password)) = &opts.credentials {
        options.set_credentials(user.clone(), password.clone());
    }
    if let Some(will) = &opts.last_will {
        options.set_last_will(will.clone());
    }
    match scheme {
        "mqtt" | "tcp" => {}
        "mqtts" | "ssl" => {
            let ca = opts
                .ca
                .as_ref()
                .expect("an mqtts URL needs ClientOptions::ca");
            let client = opts
                .client_cert
                .as_ref()
                .map(|(c, k)| (c.as_path(), k.as_path()));
            let config = tls_client_config(ca, client).unwrap_or_else(|e| panic!("{e}"));
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(config),
            )));
        }
        other => panic!("expected scheme mqtt or mqtts, found {other} in {url}"),
    }
    options
}

/// A connected client (its CONNACK was received).
#[allow(missing_debug_implementations)] // rumqttc's Connection is not Debug
pub struct TestClient {
    client: Client,
    connection: rumqttc::Connection,
    /// Whether the broker resumed a stored session.
    pub session_present: bool,
}

impl TestClient {
    /// Connects and waits for the CONNACK; the error is what rumqttc reports for a refused or
    /// failed connection.
    ///
    /// # Panics
    /// If nothing happens within [`WAIT`].
    // The large error is the point: tests look at rumqttc's exact `ConnectionError`.
    #[allow(clippy::result_large_err)]
    pub fn connect(url: &str, opts: &ClientOptions) -> Result<TestClient, ConnectionError> {
        let (client, mut connection) = Client::new(mqtt_options(url, opts), 16);
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match connection.recv_timeout(left) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                    return Ok(TestClient {
                        client,
                        connection,
                        session_present: ack.session_present,
                    })
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => panic!("no CONNACK from {url} within {WAIT:?}"),
                Err(RecvTimeoutError::Disconnected) => unreachable!("the client is alive"),
            }
        }
    }

    /// Publishes and waits until it is sent (QoS 0) or acknowledged (QoS 1 and 2).
    ///
    /// # Panics
    /// On a connection error, or if it is not acknowledged within [`WAIT`].
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
        self.client
            .publish(topic, qos, retain, payload.to_vec())
            .expect("queue a publish");
        self.wait_event(|event| {
            matches!(
                (qos, event),
                (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_)))
                    | (QoS::AtLeastOnce, Event::Incoming(Packet::PubAck(_)))
                    | (QoS::ExactlyOnce, Event::Incoming(Packet::PubComp(_)))
            )
        });
    }

    /// Sends DISCONNECT (the broker discards the last will) and waits until it is sent.
    pub fn disconnect(mut self) {
        self.client.disconnect().expect("queue a disconnect");
        self.wait_event(|event| matches!(event, Event::Outgoing(Outgoing::Disconnect)));
    }

    /// Drops the connection without DISCONNECT: the socket is closed and the broker publishes
    /// the last will.
    pub fn abort(self) {
        drop(self.connection);
        drop(self.client);
    }

    fn wait_event(&mut self, mut done: impl FnMut(&Event) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.connection.recv_timeout(left) {
                Ok(Ok(event)) if done(&event) => return,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("connection error while waiting: {e:?}"),
                Err(e) => panic!("expected event not seen within {WAIT:?}: {e:?}"),
            }
        }
    }
}

/// Connects, publishes one message, waits for its acknowledgement and disconnects.
///
/// # Panics
/// If the connection is refused or the publish is not acknowledged within [`WAIT`].
pub fn publish_once(
    url: &str,
    opts: &ClientOptions,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
) {
    let mut client = TestClient::connect(url, opts)
        .unwrap_or_else(|e| panic!("publisher could not connect to {url}: {e:?}"));
    client.publish(topic, payload, qos, retain);
    client.disconnect();
}
