//! The benchmark's broker: Mosquitto 2 with `set_tcp_nodelay true` (a child process), or the
//! embedded rumqttd of the integration tests (with TCP_NODELAY on its sockets: `vendor/rumqttd`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::rumqttd::EmbeddedBroker;
use crate::{free_port, poll_until};

/// Where Debian installs Mosquitto.
const MOSQUITTO_BIN: &str = "/usr/sbin/mosquitto";

/// A running broker; a Mosquitto child is killed when dropped (an embedded rumqttd thread runs
/// until the process exits).
#[derive(Debug)]
pub enum Broker {
    /// Mosquitto with its config in a temp dir.
    Mosquitto {
        /// The broker process.
        child: Child,
        /// Its config.
        _dir: tempfile::TempDir,
        /// Its loopback port.
        port: u16,
    },
    /// rumqttd on a thread of this process.
    Rumqttd(EmbeddedBroker),
}

impl Broker {
    /// Starts the broker named `kind` (`mosquitto` or `rumqttd`).
    pub fn start(kind: &str) -> Result<Broker> {
        match kind {
            "rumqttd" => Ok(Broker::Rumqttd(EmbeddedBroker::start())),
            "mosquitto" => start_mosquitto(),
            other => bail!("unknown broker {other:?}: expected mosquitto or rumqttd"),
        }
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        match self {
            Broker::Mosquitto { port, .. } => *port,
            Broker::Rumqttd(broker) => broker.port(),
        }
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Broker::Mosquitto { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_mosquitto() -> Result<Broker> {
    if !Path::new(MOSQUITTO_BIN).exists() {
        bail!("{MOSQUITTO_BIN} not found: apt-get install -y mosquitto, or --broker rumqttd");
    }
    let dir = tempfile::tempdir()?;
    for _ in 0..crate::BIND_ATTEMPTS {
        let port = free_port();
        let config = dir.path().join("mosquitto.conf");
        // `user root` keeps it from dropping privileges when run as root; set_tcp_nodelay: the
        // agent sets TCP_NODELAY on its side, the broker must too or a small message can wait
        // ~40 ms for a delayed ACK.
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 user root\nset_tcp_nodelay true\n"
            ),
        )?;
        let mut child = Command::new(MOSQUITTO_BIN)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mosquitto")?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let up = poll_until(Duration::from_secs(5), || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        if up && child.try_wait()?.is_none() {
            return Ok(Broker::Mosquitto {
                child,
                _dir: dir,
                port,
            });
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    bail!("mosquitto did not start")
}
