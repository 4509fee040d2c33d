//! `edgepool-tests`: end-to-end, fault-injection and adversarial tests that start real agent
//! processes against the simulator and against Mosquitto.
//!
//! Not built yet: the end-to-end tests arrive with the agent daemon and the simulator. The
//! per-crate tests (protocol vectors, CLI vectors) live beside their crates.
//!
//! # Layout
//!
//! (empty)
