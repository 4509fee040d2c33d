//! The MQTT broker of the pool: rumqttd embedded in the process (the default), Mosquitto as a
//! child process (for scenarios that ask for it), or an external broker given by URL.
//!
//! rumqttd 0.20's `Broker::start` blocks forever and has no shutdown API, so the embedded broker
//! runs on its own thread that lives as long as the process. It cannot listen on port 0 and report
//! the port: a free port is probed, and when rumqttd fails to bind it (its server thread ends and
//! `start` returns) the start is retried on another port. Readiness is a TCP connect.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// How long a broker start may take.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How many ports are tried when the probed one was taken in the meantime.
pub const BIND_ATTEMPTS: usize = 5;

/// Where Debian installs Mosquitto.
pub const MOSQUITTO_BIN: &str = "/usr/sbin/mosquitto";

/// Why a broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The loopback interface could not be bound to probe a port.
    #[error("probing a free loopback port: {0}")]
    Probe(#[source] std::io::Error),
    /// The broker did not accept connections in time.
    #[error("the broker did not accept connections on port {port} within {timeout:?}")]
    Timeout {
        /// The port.
        port: u16,
        /// The bound.
        timeout: Duration,
    },
    /// Every attempt lost a bind race.
    #[error("the broker did not start in {attempts} attempts: {failures:?}")]
    NoPort {
        /// Attempts made.
        attempts: usize,
        /// Why each failed.
        failures: Vec<String>,
    },
    /// The broker thread or process could not be started.
    #[error("starting the broker: {0}")]
    Spawn(String),
    /// Mosquitto is not installed.
    #[error(
        "mosquitto is not installed ({MOSQUITTO_BIN} is missing): apt-get install -y mosquitto"
    )]
    MosquittoMissing,
}

/// Returns a loopback port that was free a moment ago.
///
/// # Errors
/// [`BrokerError::Probe`].
pub fn free_port() -> Result<u16, BrokerError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(BrokerError::Probe)?;
    Ok(listener.local_addr().map_err(BrokerError::Probe)?.port())
}

/// The socket options of the simulator's own MQTT clients (the pool, scripted workers, bench
/// agents): `TCP_NODELAY`, as the agent sets it (`edgepool_agent::link::network_options`) and the
/// embedded broker does on its side (`vendor/rumqttd`). Every message is a small packet wanted on
/// the wire now; with Nagle's algorithm one sent shortly after another waits for the broker's
/// delayed ACK (40 ms).
pub fn network_options() -> rumqttc::NetworkOptions {
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network
}

/// Whether `127.0.0.1:port` accepts a TCP connection.
pub fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A running embedded rumqttd broker (plain TCP, MQTT 3.1.1, anonymous, loopback). Dropping it
/// does not stop it: its thread lives until the process exits.
#[derive(Debug)]
pub struct EmbeddedBroker {
    port: u16,
    started_in: Duration,
}

impl EmbeddedBroker {
    /// Starts a broker on a free loopback port and waits until it accepts connections.
    ///
    /// # Errors
    /// [`BrokerError`] when no port could be bound or it did not come up in time.
    pub fn start() -> Result<EmbeddedBroker, BrokerError> {
        Self::start_with(None)
    }

    /// Starts a broker on `127.0.0.1:port` (what `serve` does on a restart, so that agents find
    /// it where they were configured): one attempt, never another port.
    ///
    /// # Errors
    /// [`BrokerError`] when the port cannot be bound (taken) or it did not come up in time.
    pub fn start_on(port: u16) -> Result<EmbeddedBroker, BrokerError> {
        if accepts(port) {
            return Err(BrokerError::NoPort {
                attempts: 1,
                failures: vec![format!(
                    "port {port}: something already accepts connections"
                )],
            });
        }
        Self::start_with(Some(port))
    }

    fn start_with(fixed: Option<u16>) -> Result<EmbeddedBroker, BrokerError> {
        let mut failures = Vec::new();
        let attempts = if fixed.is_some() { 1 } else { BIND_ATTEMPTS };
        for _ in 0..attempts {
            let started = Instant::now();
            let port = match fixed {
                Some(port) => port,
                None => free_port()?,
            };
            let (ended_tx, ended_rx) = mpsc::channel();
            std::thread::Builder::new()
                .name(format!("rumqttd-{port}"))
                .spawn(move || {
                    let result = Broker::new(rumqttd_config(port)).start();
                    // start() only returns when its listener failed (bind race) or on bad config.
                    let _ = ended_tx.send(format!("{result:?}"));
                })
                .map_err(|e| BrokerError::Spawn(e.to_string()))?;
            let mut ended = None;
            let up = poll_until(START_TIMEOUT, || {
                if let Ok(why) = ended_rx.try_recv() {
                    ended = Some(why);
                    return true;
                }
                accepts(port)
            });
            // A connect may have reached another process holding the port: check again.
            if ended.is_none() {
                ended = ended_rx.try_recv().ok();
            }
            match (up, ended) {
                (true, None) => {
                    return Ok(EmbeddedBroker {
                        port,
                        started_in: started.elapsed(),
                    })
                }
                (_, Some(why)) => failures.push(format!("port {port}: broker ended: {why}")),
                (false, None) => {
                    return Err(BrokerError::Timeout {
                        port,
                        timeout: START_TIMEOUT,
                    })
                }
            }
        }
        Err(BrokerError::NoPort { attempts, failures })
    }

    /// The loopback port.
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

/// One v4 listener on `127.0.0.1:port`, anonymous, limits like rumqttd's sample config.
fn rumqttd_config(port: u16) -> Config {
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
            // `edgepool-sim bench` connects 10,000 agents plus the pool.
            max_connections: 100_000,
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

/// A Mosquitto broker run as a child process on a free loopback port (anonymous, no
/// persistence), its config and log in a temp dir; killed when dropped.
#[derive(Debug)]
pub struct MosquittoBroker {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl MosquittoBroker {
    /// Starts Mosquitto and waits until it says it runs and accepts connections.
    ///
    /// # Errors
    /// [`BrokerError::MosquittoMissing`], or it did not come up.
    pub fn start() -> Result<MosquittoBroker, BrokerError> {
        let bin = Path::new(MOSQUITTO_BIN);
        if !bin.exists() {
            return Err(BrokerError::MosquittoMissing);
        }
        let dir = tempfile::tempdir().map_err(|e| BrokerError::Spawn(e.to_string()))?;
        let mut failures = Vec::new();
        for _ in 0..BIND_ATTEMPTS {
            let port = free_port()?;
            let mut conf = String::new();
            // As root Mosquitto would drop to the `mosquitto` user; stay the invoking user.
            let _ = writeln!(conf, "user root");
            let _ = writeln!(conf, "log_dest stderr");
            let _ = writeln!(conf, "listener {port} 127.0.0.1");
            let _ = writeln!(conf, "allow_anonymous true");
            let _ = writeln!(conf, "persistence false");
            let conf_path = dir.path().join("mosquitto.conf");
            let log_path = dir.path().join(format!("mosquitto-{port}.log"));
            std::fs::write(&conf_path, conf).map_err(|e| BrokerError::Spawn(e.to_string()))?;
            let log =
                std::fs::File::create(&log_path).map_err(|e| BrokerError::Spawn(e.to_string()))?;
            let log_err = log
                .try_clone()
                .map_err(|e| BrokerError::Spawn(e.to_string()))?;
            let mut child = Command::new(bin)
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .spawn()
                .map_err(|e| BrokerError::Spawn(format!("{MOSQUITTO_BIN}: {e}")))?;
            let mut exited = false;
            let up = poll_until(START_TIMEOUT, || {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    exited = true;
                    return true;
                }
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                log.contains(" running") && accepts(port)
            });
            if up && !exited {
                return Ok(MosquittoBroker { dir, port, child });
            }
            let _ = child.kill();
            let _ = child.wait();
            failures.push(std::fs::read_to_string(&log_path).unwrap_or_default());
        }
        Err(BrokerError::NoPort {
            attempts: BIND_ATTEMPTS,
            failures,
        })
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL: sessions and queued messages are lost, as in a crash).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the broker again with the same config, on the same port, and waits until it
    /// accepts connections (a killed one is killed first).
    ///
    /// # Errors
    /// [`BrokerError`] when it did not come up.
    pub fn restart(&mut self) -> Result<(), BrokerError> {
        self.kill();
        let bin = Path::new(MOSQUITTO_BIN);
        let conf_path = self.dir.path().join("mosquitto.conf");
        let log_path = self
            .dir
            .path()
            .join(format!("mosquitto-{}-restarted.log", self.port));
        let mut failures = Vec::new();
        for _ in 0..BIND_ATTEMPTS {
            let log =
                std::fs::File::create(&log_path).map_err(|e| BrokerError::Spawn(e.to_string()))?;
            let log_err = log
                .try_clone()
                .map_err(|e| BrokerError::Spawn(e.to_string()))?;
            let mut child = Command::new(bin)
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .spawn()
                .map_err(|e| BrokerError::Spawn(format!("{MOSQUITTO_BIN}: {e}")))?;
            let port = self.port;
            let mut exited = false;
            let up = poll_until(START_TIMEOUT, || {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    exited = true;
                    return true;
                }
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                log.contains(" running") && accepts(port)
            });
            if up && !exited {
                self.child = child;
                return Ok(());
            }
            let _ = child.kill();
            let _ = child.wait();
            failures.push(std::fs::read_to_string(&log_path).unwrap_or_default());
            // The port may still be held a moment by the killed process.
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(BrokerError::NoPort {
            attempts: BIND_ATTEMPTS,
            failures,
        })
    }

    /// Where its config and log are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MosquittoBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Host and port of an `mqtt://host:port` URL (port 1883 by default).
///
/// # Errors
/// A message when the URL is not `mqtt://`.
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("mqtt://")
        .ok_or_else(|| format!("expected an mqtt://host:port URL, found {url:?}"))?;
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse()
                .map_err(|_| format!("expected a port number in {url:?}, found {port:?}"))?;
            Ok((host.to_string(), port))
        }
        None if !rest.is_empty() => Ok((rest.to_string(), 1883)),
        None => Err(format!("expected a host in {url:?}")),
    }
}

/// Calls `done` every 10 ms until it returns true (→ true) or `timeout` passes (→ false).
pub fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_urls_parse_with_and_without_a_port() {
        assert_eq!(
            parse_mqtt_url("mqtt://127.0.0.1:1999").unwrap(),
            ("127.0.0.1".to_string(), 1999)
        );
        assert_eq!(
            parse_mqtt_url("mqtt://broker").unwrap(),
            ("broker".to_string(), 1883)
        );
        assert!(parse_mqtt_url("http://x:1").is_err());
        assert!(parse_mqtt_url("mqtt://x:port").is_err());
    }
}
