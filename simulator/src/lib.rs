//! `edgepool-simulator`: a local workerpool in one process (MQTT broker, scheduler, PoCo ledger,
//! SMS, store, simulated workers) that drives real agents in tests, scenarios and the demo.
//!
//! # Layout
//!
//! - [`ledger`]: the PoCo contracts (escrow, registries, categories, order matching, initialize,
//!   contribute, reveal, finalize, claim) as an in-memory ledger persisted to SQLite; sans-IO
//!   apart from SQLite (time is an argument).
//! - [`scheduler`]: assignment, contributions, consensus, reveal, upload, completion and deadlines,
//!   as a sans-IO state machine (time is an argument; calls return the messages to send).
//! - [`sms`]: the secret management service, sans-IO: pushed secrets, per-task enclave keys,
//!   attested and bound secret release under an attestation policy.
//! - [`registry`]: workers from presence, capacity and heartbeats; placement candidates.
//! - [`pool`]: the pool core: scheduler + registry + placement + lost workers + ledger hooks +
//!   report, sans-IO (raw publications in, sealed publications out).
//! - [`economy`]: the ledger wired into the pool ([`economy::LedgerHooks`]) and the deals
//!   opened on it ([`economy::Market`]).
//! - [`hooks`]: [`hooks::PocoHooks`], the one place where the ledger sees contributions, reveals
//!   and finalizations.
//! - [`service`]: the pool core's shell: one event loop thread on a real MQTT connection,
//!   started by [`service::Pool::start`] with a [`service::PoolOptions`].
//! - [`broker`]: embedded rumqttd, a Mosquitto child process, MQTT URLs.
//! - [`store`]: the HTTP store (apps, datasets, signed result uploads, result links, control API).
//! - [`workers`]: simulated workers (honest, liar, silent, slow, crashing) on real connections.
//! - [`agents`]: real `edgepool-agent` child processes.
//! - [`scenario`], [`runner`]: scenario files and their execution; [`report`]: the JSON report;
//!   [`chaos`]: the seeded schedule of the `chaos` fault (soak); [`accounting`]: the end-of-run
//!   accounting (submitted, completed, lost, double contributions, money, faults done).
//! - [`demo`], [`serve`], [`cli`]: the commands of `edgepool-sim`.
//! - [`bench`]: `edgepool-sim bench`, many light agents on real connections against the real
//!   pool, store and broker; tasks/s, latency and CPU per thread.

pub mod accounting;
pub mod agents;
pub mod bench;
pub mod broker;
pub mod chaos;
pub mod cli;
pub mod demo;
pub mod economy;
pub mod hooks;
pub mod ledger;
pub mod pool;
pub mod registry;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod scheduler;
pub mod serve;
pub mod service;
pub mod sms;
pub mod store;
pub mod workers;
