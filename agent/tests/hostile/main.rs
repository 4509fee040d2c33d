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

use edgepool_protocol::digest::result_digest;
use edgepool_protocol::primitives::Digest;
use edgepool_protocol::tree::MemTree;

/// The result digest of a recorded sample output (`apps/<app>/samples/<case>/expected`).
pub fn expected_digest(dir: &Path) -> Digest {
    let mut tree = MemTree::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = pending.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if entry.file_type().unwrap().is_dir() {
                tree.insert_dir(&child).unwrap();
                pending.push((entry.path(), child));
            } else {
                tree.insert_file(&child, std::fs::read(entry.path()).unwrap())
                    .unwrap();
            }
        }
    }
    result_digest(&tree, "").unwrap()
}
