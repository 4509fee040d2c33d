//! `edgepool-simulator`: a local workerpool in one process (embedded MQTT broker, scheduler, PoCo
//! ledger, SMS, result and dataset store) that drives real agents in tests and demos.
//!
//! Built so far: the scheduler's pure state machine, which the agent's task-pipeline tests drive.
//! The broker, SMS, store, scenarios and the `edgepool-sim` demo come with the simulator
//! issue; the binary says so when run.
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

pub mod ledger;
pub mod scheduler;
pub mod sms;
