//! The worker registry: who is online, what each worker offers, how loaded it is, and who has
//! gone silent. Pure: time is an argument.
//!
//! A worker is *online* from its `online` presence (or any signed message) until its `offline`
//! presence (the last will included) or until nothing was heard from it for the heartbeat limit.

use std::collections::{BTreeMap, BTreeSet};

use edgepool_protocol::messages::{CapacityAdvertisement, Heartbeat};
use edgepool_protocol::primitives::Address;
use edgepool_protocol::tags::Tag;

/// What the registry knows of one worker.
#[derive(Debug, Clone, Default)]
pub struct WorkerEntry {
    /// Online (presence, and heard from within the heartbeat limit).
    pub online: bool,
    /// Its last capacity advertisement (the highest sequence seen).
    pub capacity: Option<CapacityAdvertisement>,
    /// The sequence number of that advertisement.
    pub capacity_seq: u64,
    /// Its last heartbeat.
    pub heartbeat: Option<Heartbeat>,
    /// When it was last heard from (unix ms).
    pub last_seen_ms: u64,
    /// Replicas assigned to it and not yet final.
    pub active: u32,
    /// Replicas ever assigned to it.
    pub assigned_total: u32,
    /// Times it was declared lost.
    pub lost_count: u32,
    /// Not placeable until this time (ms): the worker declined for lack of a free slot, so the
    /// pool's count of its load is behind its own (see [`Registry::full`]).
    pub full_until_ms: Option<u64>,
}

impl WorkerEntry {
    /// Slots it advertised (1 when unknown).
    pub fn slots(&self) -> u32 {
        self.capacity.as_ref().map_or(1, |c| c.slots.max(1))
    }

    /// Whether it can take one more replica of a deal tagged `tag`.
    pub fn can_take(&self, tag: Tag) -> bool {
        let tags_ok = self.capacity.as_ref().is_some_and(|c| c.tags.contains(tag));
        let accepting = self.heartbeat.as_ref().is_none_or(|h| h.accepting);
        self.online
            && tags_ok
            && accepting
            && self.full_until_ms.is_none()
            && self.active < self.slots()
    }
}

/// Every worker of the pool.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    workers: BTreeMap<Address, WorkerEntry>,
    /// Workers with a free slot (online, advertised, accepting), by (load, address): placement
    /// order, so that a placement costs O(log n) instead of a sort of every worker (10,000
    /// workers and 100,000 tasks in `edgepool-sim bench`).
    free: BTreeSet<(u64, Address)>,
    /// Each indexed worker's key in `free`.
    free_key: BTreeMap<Address, u64>,
    /// Workers marked full ([`Registry::full`]).
    full: BTreeSet<Address>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A worker, if known.
    pub fn get(&self, worker: &Address) -> Option<&WorkerEntry> {
        self.workers.get(worker)
    }

    /// Every worker.
    pub fn iter(&self) -> impl Iterator<Item = (&Address, &WorkerEntry)> {
        self.workers.iter()
    }

    /// Workers online.
    pub fn online_count(&self) -> usize {
        self.workers.values().filter(|w| w.online).count()
    }

    fn entry(&mut self, worker: Address) -> &mut WorkerEntry {
        self.workers.entry(worker).or_default()
    }

    /// Puts `worker` where it belongs in the free-slot index after a change.
    fn reindex(&mut self, worker: Address) {
        let key = self.workers.get(&worker).and_then(|w| {
            let accepting = w.heartbeat.as_ref().is_none_or(|h| h.accepting);
            (w.online
                && w.capacity.is_some()
                && accepting
                && w.full_until_ms.is_none()
                && w.active < w.slots())
            // Load in thousandths, so that 1 of 2 slots ranks before 1 of 1.
            .then(|| u64::from(w.active) * 1000 / u64::from(w.slots()))
        });
        if let Some(old) = self.free_key.remove(&worker) {
            self.free.remove(&(old, worker));
        }
        if let Some(key) = key {
            self.free.insert((key, worker));
            self.free_key.insert(worker, key);
        }
    }

    /// Whether any worker has a free slot at all.
    pub fn has_free_slot(&self) -> bool {
        !self.free.is_empty()
    }

    /// Presence `online` (true) or `offline` (false). Returns true when the worker went offline.
    pub fn presence(&mut self, worker: Address, online: bool, now_ms: u64) -> bool {
        let entry = self.entry(worker);
        let was = entry.online;
        entry.online = online;
        if online {
            entry.last_seen_ms = now_ms;
        }
        self.reindex(worker);
        was && !online
    }

    /// A capacity advertisement with sequence `seq` (older ones than the kept one are ignored).
    pub fn capacity(
        &mut self,
        worker: Address,
        seq: u64,
        capacity: CapacityAdvertisement,
        now_ms: u64,
    ) {
        let entry = self.entry(worker);
        if entry.capacity.is_none() || seq >= entry.capacity_seq {
            entry.capacity = Some(capacity);
            entry.capacity_seq = seq;
        }
        entry.last_seen_ms = now_ms;
        self.reindex(worker);
    }

    /// Any signed outbox message: the worker is alive.
    pub fn seen(&mut self, worker: Address, now_ms: u64) {
        let entry = self.entry(worker);
        entry.last_seen_ms = now_ms;
        if !entry.online {
            entry.online = true;
            self.reindex(worker);
        }
    }

    /// A heartbeat.
    pub fn heartbeat(&mut self, worker: Address, heartbeat: Heartbeat, now_ms: u64) {
        self.seen(worker, now_ms);
        let free = heartbeat.free_slots > 0;
        let entry = self.entry(worker);
        entry.heartbeat = Some(heartbeat);
        if free {
            entry.full_until_ms = None;
            self.full.remove(&worker);
        }
        self.reindex(worker);
    }

    /// The worker declined a task for lack of a free slot: it is busier than the pool counted
    /// (a task the pool released, e.g. by `PLEASE_ABORT_CONSENSUS_REACHED`, may still be
    /// running there). No replica goes to it until `until_ms` ([`Registry::resume`]) or a
    /// heartbeat that reports a free slot, whichever comes first: without this the pool would
    /// hand it one task after another, each declined at once.
    pub fn full(&mut self, worker: Address, until_ms: u64) {
        self.entry(worker).full_until_ms = Some(until_ms);
        self.full.insert(worker);
        self.reindex(worker);
    }

    /// Workers marked [`Registry::full`] whose time is up become placeable again.
    pub fn resume(&mut self, now_ms: u64) {
        let due: Vec<Address> = self
            .full
            .iter()
            .filter(|w| {
                self.workers
                    .get(w)
                    .is_none_or(|e| e.full_until_ms.is_none_or(|until| now_ms >= until))
            })
            .copied()
            .collect();
        for worker in due {
            self.full.remove(&worker);
            if let Some(e) = self.workers.get_mut(&worker) {
                e.full_until_ms = None;
            }
            self.reindex(worker);
        }
    }

    /// Marks online workers not heard from for more than `limit_ms` as offline; returns them.
    pub fn expire(&mut self, now_ms: u64, limit_ms: u64) -> Vec<Address> {
        let mut lost = Vec::new();
        for (address, entry) in &mut self.workers {
            if entry.online && now_ms.saturating_sub(entry.last_seen_ms) > limit_ms {
                entry.online = false;
                lost.push(*address);
            }
        }
        for worker in &lost {
            self.reindex(*worker);
        }
        lost
    }

    /// One more replica on `worker`.
    pub fn assigned(&mut self, worker: Address) {
        let entry = self.entry(worker);
        entry.active += 1;
        entry.assigned_total += 1;
        self.reindex(worker);
    }

    /// One replica of `worker` is final (completed, aborted, declined or lost).
    pub fn released(&mut self, worker: Address) {
        let entry = self.entry(worker);
        entry.active = entry.active.saturating_sub(1);
        self.reindex(worker);
    }

    /// `worker` was declared lost once more.
    pub fn count_lost(&mut self, worker: Address) {
        self.entry(worker).lost_count += 1;
    }

    /// Workers that can take a replica of a deal tagged `tag`, excluding `exclude`, least loaded
    /// first (active replicas over slots), then by address so that placement is reproducible.
    pub fn candidates(&self, tag: Tag, exclude: &[Address]) -> Vec<Address> {
        self.free_in_order(tag, exclude).collect()
    }

    /// The first of [`Registry::candidates`], without building the list.
    pub fn best_candidate(&self, tag: Tag, exclude: &[Address]) -> Option<Address> {
        self.free_in_order(tag, exclude).next()
    }

    fn free_in_order<'a>(
        &'a self,
        tag: Tag,
        exclude: &'a [Address],
    ) -> impl Iterator<Item = Address> + 'a {
        self.free.iter().map(|(_, a)| *a).filter(move |a| {
            !exclude.contains(a) && self.workers.get(a).is_some_and(|w| w.can_take(tag))
        })
    }

    /// [`Registry::candidates`], ties in load broken by the ledger `score` (highest first: its
    /// contributions weigh more in the consensus), then by address.
    pub fn candidates_scored(
        &self,
        tag: Tag,
        exclude: &[Address],
        score: impl Fn(&Address) -> u64,
    ) -> Vec<Address> {
        let mut found: Vec<(u64, std::cmp::Reverse<u64>, Address)> = self
            .workers
            .iter()
            .filter(|(a, w)| w.can_take(tag) && !exclude.contains(a))
            .map(|(a, w)| {
                // Load in thousandths, so that 1 of 2 slots ranks before 1 of 1.
                let load = u64::from(w.active) * 1000 / u64::from(w.slots());
                (load, std::cmp::Reverse(score(a)), *a)
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, _, a)| a).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use edgepool_protocol::messages::{CpuInfo, TaskLimits};

    fn capacity(worker: Address, slots: u32, tags: Tag) -> CapacityAdvertisement {
        CapacityAdvertisement {
            worker,
            agent_version: "test".into(),
            cpu: CpuInfo {
                model: "cpu".into(),
                cores: 1,
                threads: 1,
                arch: "x86_64".into(),
            },
            ram_bytes: 1 << 30,
            disk_free_bytes: 1 << 30,
            gpus: Vec::new(),
            tee: None,
            tee_measurement: Vec::new(),
            tags,
            slots,
            limits: TaskLimits::default(),
            fuel_per_second: 1,
        }
    }

    #[test]
    fn the_free_slot_index_follows_every_change_of_a_worker() {
        let (a, b) = (Address([1; 20]), Address([2; 20]));
        let mut registry = Registry::new();
        // Online without a capacity: not placeable yet.
        registry.presence(a, true, 0);
        assert!(!registry.has_free_slot());
        registry.capacity(a, 1, capacity(a, 1, Tag::NONE), 0);
        assert_eq!(registry.best_candidate(Tag::NONE, &[]), Some(a));
        // Full, then free again.
        registry.assigned(a);
        assert!(!registry.has_free_slot());
        registry.released(a);
        assert_eq!(registry.best_candidate(Tag::NONE, &[]), Some(a));
        // A heartbeat that stops accepting, then one that accepts again.
        let heartbeat = |accepting| Heartbeat {
            running_tasks: 0,
            free_slots: 1,
            free_memory_bytes: 1,
            free_disk_bytes: 1,
            accepting,
        };
        registry.heartbeat(a, heartbeat(false), 1);
        assert!(!registry.has_free_slot());
        registry.heartbeat(a, heartbeat(true), 2);
        assert!(registry.has_free_slot());
        // Expired, then back through any signed message.
        assert_eq!(registry.expire(10_000, 1_000), vec![a]);
        assert!(!registry.has_free_slot());
        registry.seen(a, 10_001);
        assert_eq!(registry.best_candidate(Tag::NONE, &[]), Some(a));
        // Tags are checked on the index too; exclusions skip to the next.
        registry.presence(b, true, 0);
        registry.capacity(b, 1, capacity(b, 1, Tag::encode(&["gpu"]).unwrap()), 0);
        assert_eq!(
            registry.best_candidate(Tag::encode(&["gpu"]).unwrap(), &[]),
            Some(b)
        );
        assert_eq!(registry.best_candidate(Tag::NONE, &[a]), Some(b));
        registry.presence(b, false, 0);
        assert_eq!(registry.best_candidate(Tag::NONE, &[a]), None);
    }

    #[test]
    fn placement_prefers_the_least_loaded_worker_and_skips_full_excluded_and_offline_ones() {
        let (a, b, c, d) = (
            Address([1; 20]),
            Address([2; 20]),
            Address([3; 20]),
            Address([4; 20]),
        );
        let mut registry = Registry::new();
        for (w, slots) in [(a, 1), (b, 2), (c, 1), (d, 1)] {
            registry.presence(w, true, 0);
            registry.capacity(w, 1, capacity(w, slots, Tag::NONE), 0);
        }
        registry.assigned(b);
        registry.presence(d, false, 0);
        assert_eq!(registry.candidates(Tag::NONE, &[]), vec![a, c, b]);
        registry.assigned(a);
        assert_eq!(registry.candidates(Tag::NONE, &[c]), vec![b]);
        registry.released(a);
        assert_eq!(registry.candidates(Tag::NONE, &[]), vec![a, c, b]);
    }

    #[test]
    fn a_worker_that_declined_for_lack_of_a_slot_is_skipped_until_its_time_or_a_free_heartbeat() {
        let (a, b) = (Address([1; 20]), Address([2; 20]));
        let mut registry = Registry::new();
        for w in [a, b] {
            registry.presence(w, true, 0);
            registry.capacity(w, 1, capacity(w, 4, Tag::NONE), 0);
        }
        registry.full(a, 1_000);
        assert_eq!(registry.candidates(Tag::NONE, &[]), vec![b]);
        assert_eq!(registry.best_candidate(Tag::NONE, &[b]), None);
        registry.resume(999);
        assert_eq!(registry.candidates(Tag::NONE, &[]), vec![b]);
        registry.resume(1_000);
        assert_eq!(registry.candidates(Tag::NONE, &[]), vec![a, b]);
        // A heartbeat with a free slot ends it early; one without does not.
        let heartbeat = |free_slots| Heartbeat {
            running_tasks: 4 - free_slots,
            free_slots,
            free_memory_bytes: 1,
            free_disk_bytes: 1,
            accepting: true,
        };
        registry.full(a, 5_000);
        registry.heartbeat(a, heartbeat(0), 10);
        assert_eq!(registry.candidates(Tag::NONE, &[]), vec![b]);
        registry.heartbeat(a, heartbeat(1), 20);
        assert_eq!(registry.candidates(Tag::NONE, &[]), vec![a, b]);
    }

    #[test]
    fn a_worker_silent_beyond_the_limit_expires_once() {
        let a = Address([1; 20]);
        let mut registry = Registry::new();
        registry.presence(a, true, 1_000);
        assert!(registry.expire(3_000, 5_000).is_empty());
        assert_eq!(registry.expire(6_001, 5_000), vec![a]);
        assert!(registry.expire(9_000, 5_000).is_empty());
        assert!(!registry.get(&a).unwrap().online);
    }

    #[test]
    fn a_worker_without_the_deals_tags_is_not_a_candidate() {
        let a = Address([1; 20]);
        let mut registry = Registry::new();
        registry.presence(a, true, 0);
        registry.capacity(a, 1, capacity(a, 1, Tag::NONE), 0);
        let tee: Tag = "tee".parse().unwrap();
        assert!(registry.candidates(tee, &[]).is_empty());
    }
}
