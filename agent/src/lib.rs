//! `edgepool-agent`: the edgepool worker agent (a daemon run by systemd) and its command line,
//! including the iExec-compatible tools (`dataset`, `result`, `tag`, `poco`).
//!
//! The daemon is a shell of adapters around one event loop: it advertises the machine's capacity
//! over MQTT, accepts tasks from the configured scheduler, fetches and runs them in a wasm
//! sandbox, and reports every step through a journal-backed outbox.
//!
//! # Layout
//!
//! - [`cli`]: clap definitions of every command; [`ops`]: the daemon commands (`run`, `init`,
//!   `doctor`, `capacity`, `status`, `tasks`); [`tools`]: the iExec tools, with exit codes.
//! - [`config`]: the TOML configuration and its `EDGEPOOL_*` overrides.
//! - [`identity`]: the encrypted keystore and the password sources.
//! - [`attest`]: the configured attester and the self-attestation that gates `tee`.
//! - [`capacity`]: CPU, memory, disk, cgroup limits, GPUs, TEE devices, tags, the fuel benchmark.
//! - [`store`]: the SQLite journal (the only module with SQL).
//! - [`link`]: MQTT options, TLS, publish tracking, error classification, backoff.
//! - [`daemon`]: the event loop (connection, heartbeat, inbox, tasks, drain).
//! - [`pipeline`]: admission, the per-task job (fetch → sandbox → digest), the upload.
//! - [`fetch`]: http(s)/file/IPFS downloads into a content-addressed cache.
//! - [`sandbox`]: wasmi with an in-memory, deterministic WASI (the iExec app contract).
//! - [`systemd`], [`logging`], [`dir_tree`] (the protocol's `FileTree` over a real directory).
//! - [`footprint`]: gives the kernel back the binary's pages that start-up touched once.
//! - [`wipe`]: zeroizes large secret buffers by words.
//! - [`failpoints`]: crash points for the fault-injection tests (feature `failpoints` only).

pub mod attest;
pub mod capacity;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dir_tree;
pub mod failpoints;
pub mod fetch;
pub mod footprint;
pub mod identity;
pub mod link;
pub mod logging;
pub mod ops;
pub mod pipeline;
pub mod sandbox;
pub mod store;
pub mod systemd;
pub mod tools;
pub mod wipe;
