//! The `chaos` fault's schedule, sans-IO: given the time since the faults started, which agent to
//! kill, which to start again and when to restart the broker. The runner does the killing.
//!
//! Every interval and every victim comes from one ChaCha8 RNG seeded by the scenario, so a seed
//! names one sequence of faults (the instants drift with the runner's polling, the order and the
//! victims do not).

use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use crate::scenario::ChaosSpec;

/// What the runner must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChaosAction {
    /// `kill -9` agent `index`.
    KillAgent(usize),
    /// Start agent `index` again on its state.
    RestartAgent(usize),
    /// Kill the broker and start it again after `down_ms`.
    RestartBroker {
        /// How long it stays down.
        down_ms: u64,
    },
}

/// The schedule of one `chaos` fault.
#[derive(Debug)]
pub struct Chaos {
    spec: ChaosSpec,
    rng: ChaCha8Rng,
    /// Per agent: when it must be started again, while it is down.
    down: Vec<Option<Duration>>,
    next_kill: Option<Duration>,
    next_broker: Option<Duration>,
    kills: u32,
    broker_restarts: u32,
    stopped: bool,
}

impl Chaos {
    /// A schedule over `agents` real agents, starting at `now`.
    pub fn new(spec: ChaosSpec, agents: usize, now: Duration) -> Chaos {
        let mut chaos = Chaos {
            spec,
            rng: ChaCha8Rng::seed_from_u64(spec.seed),
            down: vec![None; agents],
            next_kill: None,
            next_broker: None,
            kills: 0,
            broker_restarts: 0,
            stopped: false,
        };
        chaos.next_kill = spec
            .kill_every_ms
            .map(|every| now + chaos.interval(every, spec.kill_jitter_ms));
        chaos.next_broker = spec
            .broker_every_ms
            .map(|every| now + chaos.interval(every, spec.broker_jitter_ms));
        chaos
    }

    /// `every` ± `jitter`, uniformly, at least 1 ms.
    fn interval(&mut self, every: u64, jitter: u64) -> Duration {
        let low = every.saturating_sub(jitter).max(1);
        let high = every.saturating_add(jitter).max(low);
        Duration::from_millis(self.rng.gen_range(low..=high))
    }

    /// What is due at `now` (restarts first, then at most one kill and one broker restart).
    pub fn poll(&mut self, now: Duration) -> Vec<ChaosAction> {
        let mut actions = Vec::new();
        for (index, due) in self.down.iter_mut().enumerate() {
            if due.is_some_and(|at| now >= at) {
                *due = None;
                actions.push(ChaosAction::RestartAgent(index));
            }
        }
        if self.stopped {
            return actions;
        }
        if let (Some(at), Some(every)) = (self.next_kill, self.spec.kill_every_ms) {
            if now >= at {
                let up: Vec<usize> = (0..self.down.len())
                    .filter(|i| self.down[*i].is_none())
                    .collect();
                let room = up.len() > self.spec.min_alive as usize;
                let allowed = self.spec.max_kills.is_none_or(|max| self.kills < max);
                if room && allowed {
                    let victim = up[self.rng.gen_range(0..up.len())];
                    self.down[victim] =
                        Some(now + Duration::from_millis(self.spec.restart_after_ms));
                    self.kills += 1;
                    actions.push(ChaosAction::KillAgent(victim));
                }
                self.next_kill =
                    allowed.then(|| now + self.interval(every, self.spec.kill_jitter_ms));
            }
        }
        if let (Some(at), Some(every)) = (self.next_broker, self.spec.broker_every_ms) {
            if now >= at {
                let allowed = self
                    .spec
                    .max_broker_restarts
                    .is_none_or(|max| self.broker_restarts < max);
                if allowed {
                    self.broker_restarts += 1;
                    actions.push(ChaosAction::RestartBroker {
                        down_ms: self.spec.broker_down_ms,
                    });
                }
                let more = self
                    .spec
                    .max_broker_restarts
                    .is_none_or(|max| self.broker_restarts < max);
                self.next_broker =
                    more.then(|| now + self.interval(every, self.spec.broker_jitter_ms));
            }
        }
        actions
    }

    /// No new fault from now on (the run's tasks are final); pending restarts still happen.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Whether a killed agent still waits for its restart.
    pub fn restarts_pending(&self) -> bool {
        self.down.iter().any(Option::is_some)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(seed: u64) -> ChaosSpec {
        ChaosSpec {
            seed,
            kill_every_ms: Some(1_000),
            kill_jitter_ms: 500,
            restart_after_ms: 300,
            min_alive: 2,
            max_kills: None,
            broker_every_ms: Some(2_500),
            broker_jitter_ms: 0,
            broker_down_ms: 100,
            max_broker_restarts: Some(2),
        }
    }

    fn run(seed: u64) -> Vec<(u64, ChaosAction)> {
        let mut chaos = Chaos::new(spec(seed), 4, Duration::ZERO);
        let mut log = Vec::new();
        for ms in (0..10_000).step_by(10) {
            for action in chaos.poll(Duration::from_millis(ms)) {
                log.push((ms, action));
            }
        }
        log
    }

    #[test]
    fn the_same_seed_gives_the_same_faults_and_another_seed_others() {
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn every_killed_agent_is_restarted_after_the_delay_and_broker_restarts_are_capped() {
        let log = run(3);
        let kills: Vec<_> = log
            .iter()
            .filter_map(|(t, a)| match a {
                ChaosAction::KillAgent(i) => Some((*t, *i)),
                _ => None,
            })
            .collect();
        // 10 s at 1 s ± 0.5 s: between 6 and 20 kills.
        assert!((6..=20).contains(&kills.len()), "{kills:?}");
        for (t, i) in &kills {
            let restarted = log
                .iter()
                .find(|(u, a)| u >= t && *a == ChaosAction::RestartAgent(*i))
                .unwrap();
            assert_eq!(restarted.0 - t, 300);
        }
        let brokers = log
            .iter()
            .filter(|(_, a)| matches!(a, ChaosAction::RestartBroker { .. }))
            .count();
        assert_eq!(brokers, 2);
    }

    #[test]
    fn it_never_kills_below_min_alive_and_stops_on_request() {
        let mut s = spec(1);
        s.kill_every_ms = Some(10);
        s.kill_jitter_ms = 0;
        s.restart_after_ms = 1_000_000;
        let mut chaos = Chaos::new(s, 3, Duration::ZERO);
        let mut kills = 0;
        for ms in 0..1_000 {
            kills += chaos
                .poll(Duration::from_millis(ms))
                .iter()
                .filter(|a| matches!(a, ChaosAction::KillAgent(_)))
                .count();
        }
        assert_eq!(kills, 1, "3 agents, 2 must stay up");
        assert!(chaos.restarts_pending());
        chaos.stop();
        let after = chaos.poll(Duration::from_secs(2_000));
        assert_eq!(after.len(), 1, "{after:?}");
        assert!(matches!(after[0], ChaosAction::RestartAgent(_)));
        assert!(!chaos.restarts_pending());
        assert!(chaos.poll(Duration::from_secs(4_000)).is_empty());
    }
}
