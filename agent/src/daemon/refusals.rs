//! Counts of refused inbox messages by typed reason, kept in the journal so that
//! `edgepool-agent status` (another process) can show them and they survive restarts.
//!
//! A hostile publisher decides how many refusals happen, so a refusal never costs a journal
//! write of its own: counts are kept in memory and written at most once per
//! [`FLUSH_EVERY`] (the loop arms a timer when the first unwritten refusal arrives), and at
//! shutdown. A crash loses at most the last interval's counts, never a task.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::store::{Store, StoreError};

/// The journal's `meta` key holding the counts (JSON object: reason → count).
pub const META_KEY: &str = "inbox_refusals";

/// How long unwritten counts may wait before they are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Refusal counts by reason ([`super::inbox::InboxError::reason`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefusalCounts {
    counts: BTreeMap<String, u64>,
    unwritten: bool,
}

impl RefusalCounts {
    /// The counts the journal holds (empty for a journal that has none, or an unreadable value:
    /// counters are diagnostics, never a reason not to start).
    ///
    /// # Errors
    /// An SQLite error reading the journal.
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        let counts = store
            .meta_get(META_KEY)?
            .and_then(|bytes| serde_json::from_slice::<BTreeMap<String, u64>>(&bytes).ok())
            .unwrap_or_default();
        Ok(Self {
            counts,
            unwritten: false,
        })
    }

    /// Counts one refusal (in memory until [`RefusalCounts::flush`]).
    pub fn record(&mut self, reason: &str) {
        let count = self.counts.entry(reason.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        self.unwritten = true;
    }

    /// The count for `reason`.
    pub fn get(&self, reason: &str) -> u64 {
        self.counts.get(reason).copied().unwrap_or(0)
    }

    /// Every refusal counted.
    pub fn total(&self) -> u64 {
        self.counts.values().fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Writes the counts if some are unwritten.
    ///
    /// # Errors
    /// An SQLite error; the counts stay unwritten and are tried again later.
    pub fn flush(&mut self, store: &Store) -> Result<(), StoreError> {
        if !self.unwritten {
            return Ok(());
        }
        let json = serde_json::to_vec(&self.counts).map_err(|e| StoreError::Corrupt {
            what: META_KEY.into(),
            reason: e.to_string(),
        })?;
        store.meta_set(META_KEY, &json)?;
        self.unwritten = false;
        Ok(())
    }

    /// The counts as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        self.counts
            .iter()
            .map(|(reason, n)| (reason.clone(), serde_json::Value::from(*n)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counts_survive_a_flush_and_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut counts = RefusalCounts::load(&store).unwrap();
        assert_eq!(counts.total(), 0);
        counts.record("replay");
        counts.record("replay");
        counts.record("bad_signature");
        counts.flush(&store).unwrap();
        counts.record("decode");
        counts.flush(&store).unwrap();
        let reloaded = RefusalCounts::load(&store).unwrap();
        assert_eq!(reloaded.get("replay"), 2);
        assert_eq!(reloaded.get("bad_signature"), 1);
        assert_eq!(reloaded.get("decode"), 1);
        assert_eq!(reloaded.total(), 4);
    }

    #[test]
    fn an_unreadable_stored_value_starts_the_counts_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.meta_set(META_KEY, b"\xff not json").unwrap();
        assert_eq!(RefusalCounts::load(&store).unwrap().total(), 0);
    }
}
