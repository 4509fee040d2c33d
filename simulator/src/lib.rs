//! `edgepool-simulator`: a local workerpool in one process (embedded MQTT broker, scheduler, PoCo
//! ledger, SMS, result and dataset store) that drives real agents in tests and demos.
//!
//! Not built yet: this crate holds only what the workspace needs to build, and the `edgepool-sim`
//! binary says so when run.
//!
//! # Layout
//!
//! (empty)
