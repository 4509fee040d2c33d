//! `poll_oneoff`, `sched_yield` and sleeps on the virtual clock: nothing ever really waits.
//!
//! wasmi_wasi polls each host call exactly once, so a scheduler must never suspend. Every file
//! the guest can poll is in memory and always ready, so read and write subscriptions complete at
//! once; when only clock subscriptions are left, the virtual clock jumps to the earliest deadline.

use std::time::Duration;

use wasi_common::sched::subscription::{RwEventFlags, Subscription};
use wasi_common::sched::{Poll, WasiSched};
use wasi_common::Error;

use super::clock::VirtualClock;

/// A scheduler over a [`VirtualClock`].
#[derive(Debug)]
pub struct VirtualSched {
    clock: VirtualClock,
}

impl VirtualSched {
    /// A scheduler that moves `clock`.
    pub fn new(clock: VirtualClock) -> Self {
        Self { clock }
    }
}

#[async_trait::async_trait]
impl WasiSched for VirtualSched {
    async fn poll_oneoff<'a>(&self, poll: &mut Poll<'a>) -> Result<(), Error> {
        let mut any_ready = false;
        for subscription in poll.rw_subscriptions() {
            match subscription {
                Subscription::Read(read) => {
                    let ready = read.file.num_ready_bytes()?;
                    read.complete(ready, RwEventFlags::empty());
                    any_ready = true;
                }
                Subscription::Write(write) => {
                    write.complete(0, RwEventFlags::empty());
                    any_ready = true;
                }
                Subscription::MonotonicClock(_) => {}
            }
        }
        if !any_ready {
            if let Some(earliest) = poll.earliest_clock_deadline() {
                if let Some(wait) = earliest.duration_until() {
                    self.clock.advance(wait);
                }
            }
        }
        Ok(())
    }

    async fn sched_yield(&self) -> Result<(), Error> {
        Ok(())
    }

    async fn sleep(&self, duration: Duration) -> Result<(), Error> {
        self.clock.advance(duration);
        Ok(())
    }
}
