//! An embedded rumqttd 0.20 broker (plain TCP, MQTT 3.1.1) on a free loopback port.
//!
//! `Broker::start` blocks forever and rumqttd has no shutdown API, so each broker runs on its own
//! thread that is leaked when the [`EmbeddedBroker`] is dropped (its port stays bound until the
//! test process exits). rumqttd cannot listen on port 0 and report the port: a free port is
//! probed, and when rumqttd fails to bind it (its server thread ends and `start` returns) the
//! start is retried on another port.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use super::{free_port, poll_until, BIND_ATTEMPTS};

/// How long a start may take before the harness gives up.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// A running embedded broker.
#[derive(Debug)]
pub struct EmbeddedBroker {
    port: u16,
    started_in: Duration,
}

impl EmbeddedBroker {
    /// Starts a broker on a free loopback port and waits until it accepts connections.
    ///
    /// # Panics
    /// If it does not accept connections within [`START_TIMEOUT`], or every one of
    /// [`BIND_ATTEMPTS`] ports was taken.
    pub fn start() -> EmbeddedBroker {
        let mut failures = Vec::new();
        for _ in 0..BIND_ATTEMPTS {
            let started = Instant::now();
            let port = free_port();
            let (ended_tx, ended_rx) = mpsc::channel();
            std::thread::Builder::new()
                .name(format!("rumqttd-{port}"))
                .spawn(move || {
                    let result = Broker::new(config(port)).start();
                    // start() only returns when its listener failed (bind race) or on bad config.
                    let _ = ended_tx.send(format!("{result:?}"));
                })
                .expect("spawn the rumqttd thread");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut ended = None;
            let up = poll_until(START_TIMEOUT, || {
                if let Ok(why) = ended_rx.try_recv() {
                    ended = Some(why);
                    return true;
                }
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            });
            // A connect may have reached another process holding the port: check again.
            if ended.is_none() {
                ended = ended_rx.try_recv().ok();
            }
            match (up, ended) {
                (true, None) => {
                    return EmbeddedBroker {
                        port,
                        started_in: started.elapsed(),
                    }
                }
                (_, Some(why)) => failures.push(format!("port {port}: broker ended: {why}")),
                (false, None) => panic!(
                    "rumqttd did not accept connections on port {port} within {START_TIMEOUT:?}"
                ),
            }
        }
        panic!("rumqttd did not start in {BIND_ATTEMPTS} attempts: {failures:?}")
    }

    /// The loopback port the broker listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// How long the start took until the port accepted connections.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }
}

/// One v4 (MQTT 3.1.1) listener on `127.0.0.1:port`, anonymous, limits like rumqttd's sample
/// config.
fn config(port: u16) -> Config {
    let server = ServerSettings {
        name: format!("v4-{port}"),
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 1024 * 1024,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 200,
            max_segment_size: 10 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    }
}
