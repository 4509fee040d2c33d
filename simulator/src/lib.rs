//! `edgepool-simulator`: a local workerpool in one process (MQTT broker, scheduler, store,
//! simulated workers) that drives real agents in tests, scenarios and the demo. The PoCo ledger
//! and the SMS plug into [`hooks`] and the scheduler as they land.
//!
//! # Layout
//!
//! - [`scheduler`]: assignment, contributions, consensus, reveal, upload, completion and deadlines,
//!   as a sans-IO state machine (time is an argument; calls return the messages to send).
//! - [`registry`]: workers from presence, capacity and heartbeats; placement candidates.
//! - [`pool`]: the pool core: scheduler + registry + placement + lost workers + ledger hooks +
//!   report, sans-IO (raw publications in, sealed publications out).
//! - [`hooks`]: [`hooks::PocoHooks`], the one place where the ledger sees contributions, reveals
//!   and finalizations.
//! - [`service`]: the pool core's shell: one event loop thread on a real MQTT connection.
//! - [`broker`]: embedded rumqttd, a Mosquitto child process, MQTT URLs.
//! - [`store`]: the HTTP store (apps, datasets, signed result uploads, result links, control API).
//! - [`workers`]: simulated workers (honest, liar, silent, slow, crashing) on real connections.
//! - [`agents`]: real `edgepool-agent` child processes.
//! - [`scenario`], [`runner`]: scenario files and their execution; [`report`]: the JSON report.
//! - [`demo`], [`serve`], [`cli`]: the commands of `edgepool-sim`.

pub mod agents;
pub mod broker;
pub mod cli;
pub mod demo;
pub mod hooks;
pub mod pool;
pub mod registry;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod scheduler;
pub mod serve;
pub mod service;
pub mod store;
pub mod workers;
