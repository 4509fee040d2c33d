//! Test harness shared by the agent's MQTT integration tests: real brokers (Mosquitto as a child
//! process, rumqttd embedded on a thread), certificates made on the fly, and a test subscriber.
//!
//! Each integration test file includes it with `mod support;`; it is not a test target itself.
//!
//! # Layout
//! - [`certs`]: a CA, a server and a client certificate (and an unrelated CA) written as PEM files.
//! - [`tls`]: builds a rustls client config (ring provider) from PEM files.
//! - [`mosquitto`]: starts, stops, kills and restarts a Mosquitto 2 broker on a free loopback port.
//! - [`rumqttd`]: an embedded rumqttd 0.20 broker on a free loopback port (plain TCP, MQTT 3.1.1).
//! - [`client`]: client options, URL parsing, one-shot connect / publish, a client with a last will.
//! - [`subscriber`]: a subscriber thread collecting messages, with a bounded `wait_for`.
//! - [`http`]: a loopback HTTP server for apps, data and uploaded results (tiny_http).
//! - [`driver`]: the strict scheduler side (with its SMS for TEE tasks) of the single-task
//!   end-to-end tests, with hooks that tamper with, hold or lose messages on the way.
//! - [`pool`]: a scheduler (the simulator's state machine) driving real agent processes, a
//!   connection-cutting TCP proxy and tmpfs mounts, for the fault-injection tests; and what
//!   the single-test drivers share: the scheduler's MQTT link (`SchedulerLink`,
//!   `send_sealed`), `init_agent`, `run_agent`, the standard deal (`HttpServer::deal`).
//! - `bin`, `repo`, `now_ms`: the agent binary, the workspace root, the clock in ms.

// Every test file compiles its own copy of this module and uses only part of it.
#![allow(dead_code, clippy::unwrap_used)]

pub mod certs;
pub mod client;
pub mod driver;
pub mod http;
pub mod mosquitto;
pub mod pool;
pub mod rumqttd;
pub mod subscriber;
pub mod tls;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// The default bound on every wait of the harness (broker start, SUBACK, a message).
pub const WAIT: Duration = Duration::from_secs(10);

/// How often the harness polls for an event it waits on.
pub const POLL: Duration = Duration::from_millis(10);

/// How many times a broker start is retried when its probed port was taken in the meantime.
pub const BIND_ATTEMPTS: usize = 5;

/// Returns a loopback port that was free a moment ago (bound to `127.0.0.1:0`, then released).
///
/// # Panics
/// If the loopback interface cannot be bound at all.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to probe a free port");
    listener
        .local_addr()
        .expect("local address of a bound listener")
        .port()
}

/// Polls until `127.0.0.1:port` accepts a TCP connection or `timeout` passes; true if it did.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    poll_until(timeout, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    })
}

/// Calls `done` every [`POLL`] until it returns true (→ true) or `timeout` passes (→ false).
pub fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// The agent binary built with the tests.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_edgepool-agent"))
}

/// The workspace root.
pub fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
