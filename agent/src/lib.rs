//! `edgepool-agent`: the edgepool worker agent and its command line.
//!
//! For now the crate holds the iExec-compatible tools (`dataset`, `result`, `tag`, `poco`) that
//! operators, app developers and scripts use; the daemon (MQTT link, journal, task pipeline) grows
//! here next, as adapters around a task state machine.
//!
//! # Layout
//!
//! - [`cli`]: clap definitions of every command.
//! - [`tools`]: the tools behind `dataset|result|tag|poco`, with exit codes.
//! - [`dir_tree`]: the protocol's `FileTree` over a real directory.

pub mod capacity;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dir_tree;
pub mod fetch;
pub mod identity;
pub mod link;
pub mod logging;
pub mod ops;
pub mod pipeline;
pub mod sandbox;
pub mod store;
pub mod systemd;
pub mod tools;
