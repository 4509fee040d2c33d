//! Hostile input against a real agent process (issue 7, "Hostile input"): messages that are
//! random, truncated, oversized, replayed, reordered, wrongly signed, signed by another worker or
//! by a scheduler that is not the configured one, or moved to another worker's topic; adversarial
//! modules run in parallel with honest tasks. Every refusal is typed and counted (asserted through
//! `edgepool-agent status --json`), and the agent keeps serving: an honest task still completes
//! with the right digest. Figures and what each case covers: RELIABILITY.md, "Hostile input".
//!
//! Layout: `harness` (agent process, broker, HTTP server, scheduler driver), `messages`,
//! `modules`.

#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod archives;
mod files;
mod harness;
mod messages;
mod modules;

use std::path::Path;

use edgepool_agent::dir_tree::DirTree;
use edgepool_protocol::digest::result_digest;
use edgepool_protocol::primitives::Digest;

/// The result digest of a recorded sample output (`apps/<app>/samples/<case>/expected`), read
/// through the agent's own `FileTree` over a directory.
pub fn expected_digest(dir: &Path) -> Digest {
    result_digest(&DirTree::new(dir), "").unwrap()
}
