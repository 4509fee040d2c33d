//! Which QoS 1 publish each packet id stands for, until its PUBACK.
//!
//! rumqttc assigns packet ids inside its event loop and reports them, in the order the publishes
//! were requested, as `Outgoing::Publish(pkid)`. Every publish the agent makes is QoS 1, so a FIFO
//! of requested publishes pairs each reported id with what was published.

use std::collections::{HashMap, VecDeque};

/// The most outbox messages published and not yet acknowledged.
pub const MAX_IN_FLIGHT: usize = 32;

/// What a publish carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracked {
    /// The retained presence (`online` or `offline`).
    Presence,
    /// The retained capacity advertisement.
    Capacity,
    /// An outbox row, deleted from the journal on its PUBACK.
    Outbox(i64),
    /// A message sent without a journal row (the journal could not be written): a decline or
    /// a heartbeat, nothing to do on its PUBACK.
    Unjournaled,
}

/// Pairs packet ids with publishes (sans-IO: the daemon feeds it events).
#[derive(Debug, Default)]
pub struct PublishTracker {
    requested: VecDeque<Tracked>,
    by_pkid: HashMap<u16, Tracked>,
    /// The highest outbox id published on this connection.
    sent_upto: i64,
    outbox_in_flight: usize,
}

impl PublishTracker {
    /// A tracker for a new connection (clean session: nothing carries over).
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything: called when a connection is lost, since the clean session drops what
    /// was in flight and the journal still holds every unacknowledged outbox row.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// A publish was handed to the client.
    pub fn requested(&mut self, what: Tracked) {
        if let Tracked::Outbox(id) = what {
            self.sent_upto = self.sent_upto.max(id);
            self.outbox_in_flight += 1;
        }
        self.requested.push_back(what);
    }

    /// The event loop assigned `pkid` to the oldest requested publish.
    pub fn assigned(&mut self, pkid: u16) {
        if let Some(what) = self.requested.pop_front() {
            self.by_pkid.insert(pkid, what);
        }
    }

    /// The broker acknowledged `pkid`; returns what it was, once.
    pub fn acknowledged(&mut self, pkid: u16) -> Option<Tracked> {
        let what = self.by_pkid.remove(&pkid)?;
        if matches!(what, Tracked::Outbox(_)) {
            self.outbox_in_flight = self.outbox_in_flight.saturating_sub(1);
        }
        Some(what)
    }

    /// Whether an outbox row with this id still needs publishing on this connection.
    pub fn needs_sending(&self, outbox_id: i64) -> bool {
        outbox_id > self.sent_upto
    }

    /// How many more outbox rows may be published now.
    pub fn outbox_room(&self) -> usize {
        MAX_IN_FLIGHT.saturating_sub(self.outbox_in_flight)
    }

    /// Whether anything is still waiting for its acknowledgement.
    pub fn is_idle(&self) -> bool {
        self.requested.is_empty() && self.by_pkid.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_pair_with_publishes_in_request_order() {
        let mut t = PublishTracker::new();
        t.requested(Tracked::Presence);
        t.requested(Tracked::Outbox(7));
        t.requested(Tracked::Outbox(8));
        t.assigned(1);
        t.assigned(2);
        t.assigned(3);
        assert_eq!(t.outbox_room(), MAX_IN_FLIGHT - 2);
        assert_eq!(t.acknowledged(3), Some(Tracked::Outbox(8)));
        assert_eq!(t.acknowledged(3), None, "a duplicate ack changes nothing");
        assert_eq!(t.acknowledged(1), Some(Tracked::Presence));
        assert!(!t.needs_sending(8));
        assert!(t.needs_sending(9));
        assert!(!t.is_idle());
        assert_eq!(t.acknowledged(2), Some(Tracked::Outbox(7)));
        assert!(t.is_idle());
        assert_eq!(t.outbox_room(), MAX_IN_FLIGHT);
    }

    #[test]
    fn a_reset_forgets_what_was_in_flight() {
        let mut t = PublishTracker::new();
        t.requested(Tracked::Outbox(3));
        t.assigned(1);
        t.reset();
        assert!(t.needs_sending(3));
        assert_eq!(t.acknowledged(1), None);
        assert!(t.is_idle());
    }
}
