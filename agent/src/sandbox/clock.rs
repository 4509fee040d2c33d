//! The guest's clocks: fixed at the task's start time, advanced only virtually.
//!
//! Both WASI clocks read one shared virtual offset that starts at zero and only moves when the
//! guest sleeps ([`super::sched`]): the realtime clock reads `start_time + offset`, the monotonic
//! clock reads `offset` (wasi-common reports monotonic time relative to the clock's creation).
//! Two runs of one task therefore see the same times, whatever the host's clock says, and a
//! `sleep(5)` costs no real time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasi_common::clocks::{WasiMonotonicClock, WasiSystemClock};

/// The resolution both clocks report (`clock_res_get`).
pub const RESOLUTION: Duration = Duration::from_micros(1);

/// The furthest the virtual clock moves (about 100 years), so that no instant arithmetic can
/// overflow however long the guest asks to sleep.
pub const MAX_OFFSET: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

#[derive(Debug)]
struct State {
    /// Virtual time since the start, in nanoseconds.
    offset_ns: AtomicU64,
    /// The realtime clock at offset zero.
    start: SystemTime,
    /// An arbitrary host instant standing for offset zero: cap-std instants can only be made
    /// from real ones, but only differences between them ever reach the guest.
    base: std::time::Instant,
}

/// A shared virtual clock; clones see and move the same time.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    state: Arc<State>,
}

impl VirtualClock {
    /// A clock whose realtime reading starts at `start_time_ms` (unix milliseconds).
    pub fn new(start_time_ms: u64) -> Self {
        Self {
            state: Arc::new(State {
                offset_ns: AtomicU64::new(0),
                start: UNIX_EPOCH + Duration::from_millis(start_time_ms),
                base: std::time::Instant::now(),
            }),
        }
    }

    /// Virtual time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.state.offset_ns.load(Ordering::Relaxed))
    }

    /// Moves the clock forward by `by`, stopping at [`MAX_OFFSET`].
    pub fn advance(&self, by: Duration) {
        let max = u64::try_from(MAX_OFFSET.as_nanos()).unwrap_or(u64::MAX);
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .state
            .offset_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                Some(now.saturating_add(by).min(max))
            });
    }

    /// The realtime reading now.
    pub fn system_now(&self) -> SystemTime {
        self.state
            .start
            .checked_add(self.elapsed())
            .unwrap_or(self.state.start)
    }

    /// The realtime clock, for `WasiClocks::with_system`.
    pub fn system(&self) -> SystemClock {
        SystemClock(self.clone())
    }

    /// The monotonic clock, for `WasiClocks::with_monotonic`.
    pub fn monotonic(&self) -> MonotonicClock {
        MonotonicClock(self.clone())
    }

    fn instant_now(&self) -> cap_std::time::Instant {
        let now = self.state.base.checked_add(self.elapsed());
        cap_std::time::Instant::from_std(now.unwrap_or(self.state.base))
    }
}

/// The realtime view of a [`VirtualClock`].
#[derive(Debug)]
pub struct SystemClock(VirtualClock);

impl WasiSystemClock for SystemClock {
    fn resolution(&self) -> Duration {
        RESOLUTION
    }

    fn now(&self, _precision: Duration) -> cap_std::time::SystemTime {
        cap_std::time::SystemTime::from_std(self.0.system_now())
    }
}

/// The monotonic view of a [`VirtualClock`].
#[derive(Debug)]
pub struct MonotonicClock(VirtualClock);

impl WasiMonotonicClock for MonotonicClock {
    fn resolution(&self) -> Duration {
        RESOLUTION
    }

    fn now(&self, _precision: Duration) -> cap_std::time::Instant {
        self.0.instant_now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_stands_still_until_advanced() {
        let clock = VirtualClock::new(1_700_000_000_000);
        let system = clock.system();
        let first = system.now(RESOLUTION);
        std::thread::yield_now();
        assert_eq!(system.now(RESOLUTION), first);
        assert_eq!(
            first.into_std(),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_000)
        );
    }

    #[test]
    fn advancing_moves_both_views_by_the_same_amount() {
        let clock = VirtualClock::new(0);
        let monotonic = clock.monotonic();
        let before = monotonic.now(RESOLUTION);
        clock.clone().advance(Duration::from_secs(5));
        assert_eq!(
            monotonic.now(RESOLUTION).duration_since(before),
            Duration::from_secs(5)
        );
        assert_eq!(clock.system_now(), UNIX_EPOCH + Duration::from_secs(5));
    }

    #[test]
    fn advancing_stops_at_the_maximum_offset() {
        let clock = VirtualClock::new(0);
        clock.advance(Duration::MAX);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.elapsed(), MAX_OFFSET);
        let _ = clock.monotonic().now(RESOLUTION);
    }
}
