//! An embedded rumqttd broker on a free loopback port: the simulator's
//! [`edgepool_simulator::broker::EmbeddedBroker`] (a dedicated thread, a free-port probe and a
//! retry on a bind race; rumqttd has no shutdown API, so the port stays bound until the test
//! process exits), wrapped to panic on failure as test helpers do.

use std::time::Duration;

/// A running embedded broker.
#[derive(Debug)]
pub struct EmbeddedBroker(edgepool_simulator::broker::EmbeddedBroker);

impl EmbeddedBroker {
    /// Starts a broker on a free loopback port and waits until it accepts connections.
    ///
    /// # Panics
    /// If it does not start (the message says why).
    pub fn start() -> EmbeddedBroker {
        match edgepool_simulator::broker::EmbeddedBroker::start() {
            Ok(broker) => EmbeddedBroker(broker),
            Err(e) => panic!("rumqttd: {e}"),
        }
    }

    /// The loopback port the broker listens on.
    pub fn port(&self) -> u16 {
        self.0.port()
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// How long the start took until the port accepted connections.
    pub fn started_in(&self) -> Duration {
        self.0.started_in()
    }
}
