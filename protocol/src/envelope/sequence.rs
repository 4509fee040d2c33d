//! [`SequenceTracker`]: per-sender replay and reordering protection.

use std::collections::BTreeMap;

use super::EnvelopeError;
use crate::primitives::Address;

/// The last sequence number accepted from each sender. Pure state: the caller persists it
/// ([`SequenceTracker::snapshot`], [`SequenceTracker::restore`]) so that replays stay refused
/// across restarts.
///
/// [`SequenceTracker::check`] and [`SequenceTracker::accept`] are separate so that a receiver
/// accepts a sequence number only once it has handled (and journaled) the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SequenceTracker {
    last: BTreeMap<Address, u64>,
}

impl SequenceTracker {
    /// An empty tracker: the first message of every sender is accepted.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tracker holding `entries` (from [`SequenceTracker::snapshot`]); for a sender listed twice
    /// the highest number wins.
    pub fn restore<I: IntoIterator<Item = (Address, u64)>>(entries: I) -> Self {
        let mut tracker = Self::new();
        for (sender, seq) in entries {
            tracker.accept(sender, seq);
        }
        tracker
    }

    /// Every sender with its last accepted number, sorted by sender.
    pub fn snapshot(&self) -> Vec<(Address, u64)> {
        self.last.iter().map(|(a, s)| (*a, *s)).collect()
    }

    /// The last number accepted from `sender`.
    pub fn last(&self, sender: Address) -> Option<u64> {
        self.last.get(&sender).copied()
    }

    /// Refuses a `seq` not above the last one accepted from `sender` (a replay or a reordering).
    ///
    /// # Errors
    /// [`EnvelopeError::Replay`].
    pub fn check(&self, sender: Address, seq: u64) -> Result<(), EnvelopeError> {
        match self.last(sender) {
            Some(last) if seq <= last => Err(EnvelopeError::Replay { sender, seq, last }),
            _ => Ok(()),
        }
    }

    /// Records `seq` as accepted from `sender` (never moves backwards).
    pub fn accept(&mut self, sender: Address, seq: u64) {
        let last = self.last.entry(sender).or_insert(seq);
        *last = (*last).max(seq);
    }

    /// [`SequenceTracker::check`] then [`SequenceTracker::accept`].
    ///
    /// # Errors
    /// [`EnvelopeError::Replay`], and then nothing is recorded.
    pub fn check_and_accept(&mut self, sender: Address, seq: u64) -> Result<(), EnvelopeError> {
        self.check(sender, seq)?;
        self.accept(sender, seq);
        Ok(())
    }

    /// How many senders are tracked.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether no sender is tracked.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn alice() -> Address {
        Address([0xa1; 20])
    }

    fn bob() -> Address {
        Address([0xb0; 20])
    }

    #[test]
    fn the_first_message_of_a_sender_is_accepted_whatever_its_number() {
        let tracker = SequenceTracker::new();
        tracker.check(alice(), 0).unwrap();
        tracker.check(alice(), u64::MAX).unwrap();
        assert_eq!(tracker.last(alice()), None);
    }

    #[test]
    fn a_replayed_sequence_number_is_refused() {
        let mut tracker = SequenceTracker::new();
        tracker.check_and_accept(alice(), 5).unwrap();
        assert_eq!(
            tracker.check(alice(), 5),
            Err(EnvelopeError::Replay {
                sender: alice(),
                seq: 5,
                last: 5
            })
        );
    }

    #[test]
    fn an_older_sequence_number_is_refused_as_reordered() {
        let mut tracker = SequenceTracker::new();
        tracker.check_and_accept(alice(), 7).unwrap();
        let err = tracker.check_and_accept(alice(), 6).unwrap_err();
        assert_eq!(err.reason(), "replay");
        assert_eq!(tracker.last(alice()), Some(7));
        tracker.check_and_accept(alice(), 9).unwrap();
        assert_eq!(tracker.last(alice()), Some(9));
    }

    #[test]
    fn senders_are_tracked_independently() {
        let mut tracker = SequenceTracker::new();
        tracker.check_and_accept(alice(), 10).unwrap();
        tracker.check_and_accept(bob(), 1).unwrap();
        assert!(tracker.check(bob(), 2).is_ok());
        assert!(tracker.check(alice(), 2).is_err());
        assert_eq!(tracker.len(), 2);
    }

    #[test]
    fn accept_never_moves_backwards() {
        let mut tracker = SequenceTracker::new();
        tracker.accept(alice(), 10);
        tracker.accept(alice(), 3);
        assert_eq!(tracker.last(alice()), Some(10));
    }

    #[test]
    fn a_restored_snapshot_keeps_refusing_replays_after_a_restart() {
        let mut tracker = SequenceTracker::new();
        tracker.accept(bob(), 4);
        tracker.accept(alice(), 8);
        let snapshot = tracker.snapshot();
        assert_eq!(snapshot, vec![(alice(), 8), (bob(), 4)]);
        let restored = SequenceTracker::restore(snapshot);
        assert_eq!(restored, tracker);
        assert!(restored.check(alice(), 8).is_err());
        assert!(restored.check(alice(), 9).is_ok());
        let duplicated = SequenceTracker::restore([(alice(), 2), (alice(), 8), (alice(), 5)]);
        assert_eq!(duplicated.last(alice()), Some(8));
        assert!(SequenceTracker::new().is_empty());
    }
}
