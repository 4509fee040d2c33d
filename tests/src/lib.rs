//! `edgepool-tests`: end-to-end, fault-injection and adversarial tests that start real agent
//! processes against the simulator and against Mosquitto, and the entry functions of the fuzz
//! targets.
//!
//! The per-crate tests (protocol vectors, CLI vectors) live beside their crates.
//!
//! # Layout
//!
//! - [`fuzz_entry`]: one function per cargo-fuzz target (`fuzz/`), shared with the corpus
//!   replay test `tests/fuzz_corpus.rs`.
//! - [`fuzz_seeds`]: the seeds written from the real vectors and from valid encodings.

pub mod fuzz_entry;
pub mod fuzz_seeds;
