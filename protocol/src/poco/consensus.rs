//! The PoCo consensus, score and reward formulas, as pure integer arithmetic.
//!
//! Checked against iExec's contracts (repository `iExecBlockchainComputing/PoCo`,
//! `contracts/facets/IexecPoco2Facet.sol`: `contribute` (score policy 1/3), `checkConsensus`,
//! `distributeRewards` (score policies 2/3 and 3/3), `successWork` and `failedWork`). Integer
//! division truncates as Solidity's does.
//!
//! Differences from the contracts, on purpose:
//! - The contracts compute in `uint256`; the tally here is `u128` with saturating arithmetic. A
//!   saturated tally only ever makes consensus *harder* to reach (both sides of the comparison
//!   saturate), and reaching it needs more than ~120 agreeing contributions at the lowest weight.
//! - Amounts are `u64` (nRLC); callers check overflow with `checked_*` and refuse the operation.

use std::collections::BTreeMap;

use crate::primitives::Bytes32;

/// The share of the workerpool price the scheduler locks per task (`WORKERPOOL_STAKE_RATIO`).
pub const WORKERPOOL_STAKE_RATIO: u64 = 30;
/// The percentage of the kitty a successful task pays its scheduler (`KITTY_RATIO`).
pub const KITTY_RATIO: u64 = 10;
/// The least a successful task takes from a non-empty kitty (`KITTY_MIN`, 1 RLC in nRLC).
pub const KITTY_MIN: u64 = 1_000_000_000;

/// A worker's weight in the consensus: `max(score / 3, 3) − 1` (score policy 1/3, k = 3).
///
/// Always at least 2, so one contribution never reaches a consensus with `trust > 1` alone.
pub fn worker_weight(score: u64) -> u64 {
    (score / 3).max(3) - 1
}

/// The weight a revealer's reward share is proportional to: `log2(weight)` (floor), as the
/// contract stores in `contribution.weight`. At least 1 because a weight is at least 2.
pub fn reward_weight(weight: u64) -> u64 {
    u64::from(weight.max(1).ilog2())
}

/// The score after a correct, replicated contribution (score policy 2/3): `score + 1`.
pub fn rewarded_score(score: u64) -> u64 {
    score.saturating_add(1)
}

/// The score after a wrong or missing reveal (score policy 3/3): `score · 2 / 3`, truncated.
pub fn slashed_score(score: u64) -> u64 {
    // Widened so a large score cannot overflow the multiplication (Math.mulDiv in the contract).
    u64::try_from(u128::from(score) * 2 / 3).unwrap_or(u64::MAX)
}

/// The stake a worker locks to contribute: `workerpoolPrice · workerStakeRatio / 100`
/// (`deal.workerStake` set by `matchOrders` from the workerpool's policy). `None` on overflow.
pub fn worker_stake(workerpool_price: u64, worker_stake_ratio: u64) -> Option<u64> {
    workerpool_price
        .checked_mul(worker_stake_ratio)
        .map(|product| product / 100)
}

/// The stake the workerpool owner locks per task: `workerpoolPrice · 30 / 100`.
/// `None` on overflow.
pub fn workerpool_stake(workerpool_price: u64) -> Option<u64> {
    workerpool_price
        .checked_mul(WORKERPOOL_STAKE_RATIO)
        .map(|product| product / 100)
}

/// What a successful task takes from the kitty for its scheduler:
/// `min(max(kitty · 10 / 100, KITTY_MIN), kitty)`.
pub fn kitty_share(kitty: u64) -> u64 {
    let tenth = u64::try_from(u128::from(kitty) * u128::from(KITTY_RATIO) / 100).unwrap_or(kitty);
    tenth.max(KITTY_MIN).min(kitty)
}

/// Whether `group · trust > total · (trust − 1)`: the consensus condition. `trust` 0 counts as
/// 1 (the contract stores `max(trust, 1)` in the deal).
pub fn consensus_reached(group: u128, total: u128, trust: u64) -> bool {
    let trust = u128::from(trust.max(1));
    group.saturating_mul(trust) > total.saturating_mul(trust - 1)
}

/// How many agreeing contributions of workers with `score` reach consensus at `trust` with no
/// dissent: what a scheduler hands out at least. At most 64 for any `u64` trust (weights are at
/// least 2); `None` only as a guard should the tally saturate first.
///
/// With fresh workers (weight 2): trust 1 and 2 need 1, trust 3 and 4 need 2, trust 5 to 8
/// need 3.
pub fn agreeing_contributions_needed(trust: u64, score: u64) -> Option<u64> {
    let mut tally = Tally::new();
    (1..=256).find(|_| tally.contribute(Bytes32::ZERO, score, trust))
}

/// The running consensus of one task: the weight gathered by each result hash and the total.
///
/// ```
/// use edgepool_protocol::poco::consensus::Tally;
/// use edgepool_protocol::Bytes32;
///
/// let honest = Bytes32([1; 32]);
/// let mut tally = Tally::new();
/// assert!(!tally.contribute(honest, 0, 3)); // group 2, total 3: 6 > 6 is false
/// assert!(tally.contribute(honest, 0, 3)); // group 4, total 5: 12 > 10
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    groups: BTreeMap<Bytes32, u128>,
    total: u128,
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

impl Tally {
    /// An empty tally: no group, `total = 1` (the contract's `initialize` sets the denominator).
    pub fn new() -> Self {
        Self {
            groups: BTreeMap::new(),
            total: 1,
        }
    }

    /// Adds a contribution of a worker with `score` to `hash`:
    /// `delta = max(group, 1) · w − group`, `group += delta`, `total += delta`.
    /// Returns whether `hash` now holds the consensus at `trust`.
    pub fn contribute(&mut self, hash: Bytes32, score: u64, trust: u64) -> bool {
        let weight = u128::from(worker_weight(score));
        let group = self.group(&hash);
        let delta = group.max(1).saturating_mul(weight).saturating_sub(group);
        let group = group.saturating_add(delta);
        self.groups.insert(hash, group);
        self.total = self.total.saturating_add(delta);
        consensus_reached(group, self.total, trust)
    }

    /// The weight gathered by `hash` (0 when nobody contributed it).
    pub fn group(&self, hash: &Bytes32) -> u128 {
        self.groups.get(hash).copied().unwrap_or(0)
    }

    /// The total weight (1 + every delta).
    pub fn total(&self) -> u128 {
        self.total
    }
}

/// One contributor as [`distribute_rewards`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contributor {
    /// The consensus weight it contributed with ([`worker_weight`] of its score then).
    pub weight: u64,
    /// Whether it revealed the consensus result (`PROVED`).
    pub proved: bool,
}

/// How `distributeRewards` splits a successful task's pot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardSplit {
    /// Per contributor, in the order given: the reward (on top of its returned stake) for a
    /// revealer, 0 for the others (whose stake is seized into the pot).
    pub worker_rewards: Vec<u64>,
    /// What the scheduler (workerpool owner) receives: its ratio plus every rounding remainder.
    pub scheduler_reward: u64,
}

/// The contract's reward distribution: the pot is the workerpool price plus the stakes of the
/// contributors that did not reveal; workers share `pot · (100 − schedulerRewardRatio) / 100`
/// in proportion to [`reward_weight`]; the scheduler gets what remains.
///
/// Returns `None` on overflow or when `scheduler_reward_ratio > 100`.
pub fn distribute_rewards(
    workerpool_price: u64,
    worker_stake: u64,
    scheduler_reward_ratio: u64,
    contributors: &[Contributor],
) -> Option<RewardSplit> {
    if scheduler_reward_ratio > 100 {
        return None;
    }
    let mut pot = u128::from(workerpool_price);
    let mut total_log_weight = 0u128;
    for contributor in contributors {
        if contributor.proved {
            total_log_weight += u128::from(reward_weight(contributor.weight));
        } else {
            pot += u128::from(worker_stake);
        }
    }
    let workers_reward = pot * u128::from(100 - scheduler_reward_ratio) / 100;
    let mut remaining = pot;
    let mut worker_rewards = Vec::with_capacity(contributors.len());
    for contributor in contributors {
        let share = if contributor.proved && total_log_weight > 0 {
            workers_reward * u128::from(reward_weight(contributor.weight)) / total_log_weight
        } else {
            0
        };
        remaining -= share;
        worker_rewards.push(u64::try_from(share).ok()?);
    }
    Some(RewardSplit {
        worker_rewards,
        scheduler_reward: u64::try_from(remaining).ok()?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hash(byte: u8) -> Bytes32 {
        Bytes32([byte; 32])
    }

    #[test]
    fn weight_is_score_over_three_floored_at_three_minus_one() {
        // Hand computed: max(s/3, 3) - 1.
        for (score, weight) in [(0, 2), (1, 2), (8, 2), (9, 2), (11, 2), (12, 3), (30, 9)] {
            assert_eq!(worker_weight(score), weight, "score {score}");
        }
    }

    #[test]
    fn reward_weight_is_floor_log2_of_weight() {
        for (weight, log) in [(2, 1), (3, 1), (4, 2), (7, 2), (8, 3), (9, 3)] {
            assert_eq!(reward_weight(weight), log, "weight {weight}");
        }
    }

    #[test]
    fn scores_move_by_plus_one_and_two_thirds_truncated() {
        assert_eq!(rewarded_score(4), 5);
        assert_eq!(slashed_score(0), 0);
        assert_eq!(slashed_score(1), 0);
        assert_eq!(slashed_score(5), 3);
        assert_eq!(slashed_score(9), 6);
        assert_eq!(slashed_score(u64::MAX), u64::MAX / 3 * 2);
    }

    #[test]
    fn trust_one_reaches_consensus_with_one_contribution() {
        let mut tally = Tally::new();
        // group 2, total 3: 2·1 > 3·0.
        assert!(tally.contribute(hash(1), 0, 1));
        assert_eq!((tally.group(&hash(1)), tally.total()), (2, 3));
    }

    #[test]
    fn trust_three_with_a_liar_needs_three_agreeing_fresh_workers() {
        // Hand computed with weight 2 for every worker (score 0):
        // honest #1: delta 2 → group A 2, total 3; 6 > 6 no.
        // liar:      delta 2 → group B 2, total 5; 6 > 10 no.
        // honest #2: delta max(2,1)·2−2 = 2 → group A 4, total 7; 12 > 14 no.
        // honest #3: delta 4·2−4 = 4 → group A 8, total 11; 24 > 22 yes.
        let (a, b) = (hash(0xa), hash(0xb));
        let mut tally = Tally::new();
        assert!(!tally.contribute(a, 0, 3));
        assert!(!tally.contribute(b, 0, 3));
        assert!(!tally.contribute(a, 0, 3));
        assert_eq!((tally.group(&a), tally.total()), (4, 7));
        assert!(tally.contribute(a, 0, 3));
        assert_eq!(
            (tally.group(&a), tally.group(&b), tally.total()),
            (8, 2, 11)
        );
    }

    #[test]
    fn agreeing_contributions_needed_follow_the_tally() {
        // Weight 2: after n agreeing contributions group = 2^n, total = 2^n + 1.
        // Consensus when 2^n·t > (2^n + 1)(t − 1), i.e. 2^n > t − 1.
        for (trust, needed) in [
            (0, 1),
            (1, 1),
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 3),
            (8, 3),
            (9, 4),
        ] {
            assert_eq!(
                agreeing_contributions_needed(trust, 0),
                Some(needed),
                "trust {trust}"
            );
        }
        // Weight 9 (score 30): 9 > t − 1 up to trust 9.
        assert_eq!(agreeing_contributions_needed(9, 30), Some(1));
        assert_eq!(agreeing_contributions_needed(10, 30), Some(2));
        // The largest trust needs 2^n > 2^64 − 2: 64 contributions, computed without overflow.
        assert_eq!(agreeing_contributions_needed(u64::MAX, 0), Some(64));
    }

    #[test]
    fn trusted_workers_weigh_more() {
        // Score 30 → weight 9: group 9, total 10; trust 5: 45 > 40.
        let mut tally = Tally::new();
        assert!(tally.contribute(hash(1), 30, 5));
        // Score 0 at trust 5: group 2, total 3; 10 > 12 no.
        assert!(!Tally::new().contribute(hash(1), 0, 5));
    }

    #[test]
    fn trust_zero_counts_as_one_and_huge_tallies_saturate_without_consensus() {
        assert!(consensus_reached(1, 1, 0));
        assert!(!consensus_reached(u128::MAX, u128::MAX, 3));
    }

    #[test]
    fn stakes_are_percentages_truncated() {
        assert_eq!(worker_stake(1_000, 30), Some(300));
        assert_eq!(worker_stake(99, 30), Some(29));
        assert_eq!(worker_stake(u64::MAX, 2), None);
        assert_eq!(workerpool_stake(10), Some(3));
    }

    #[test]
    fn kitty_share_is_a_tenth_at_least_the_minimum_at_most_the_kitty() {
        assert_eq!(kitty_share(0), 0);
        assert_eq!(kitty_share(500), 500);
        assert_eq!(kitty_share(5 * KITTY_MIN), KITTY_MIN);
        assert_eq!(kitty_share(100 * KITTY_MIN), 10 * KITTY_MIN);
    }

    #[test]
    fn rewards_split_the_price_and_the_seized_stakes_by_log_weight() {
        // Price 1000, stake 300, scheduler ratio 10. Three revealers (weights 2, 2, 4 →
        // log weights 1, 1, 2) and one liar whose stake joins the pot.
        // pot = 1000 + 300 = 1300; workers get 1300·90/100 = 1170.
        // shares: 1170·1/4 = 292, 292, 1170·2/4 = 585; scheduler 1300 − 1169 = 131.
        let contributors = [
            Contributor {
                weight: 2,
                proved: true,
            },
            Contributor {
                weight: 2,
                proved: true,
            },
            Contributor {
                weight: 2,
                proved: false,
            },
            Contributor {
                weight: 4,
                proved: true,
            },
        ];
        let split = distribute_rewards(1_000, 300, 10, &contributors).unwrap();
        assert_eq!(split.worker_rewards, vec![292, 292, 0, 585]);
        assert_eq!(split.scheduler_reward, 131);
        let paid: u64 = split.worker_rewards.iter().sum::<u64>() + split.scheduler_reward;
        assert_eq!(paid, 1_300);
    }

    #[test]
    fn a_ratio_above_a_hundred_is_refused() {
        assert_eq!(distribute_rewards(1, 1, 101, &[]), None);
    }
}
