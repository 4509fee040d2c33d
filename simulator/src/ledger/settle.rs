//! `finalize` and `claim`: how a task's money and scores settle.

use edgepool_protocol::poco::consensus::{
    self, distribute_rewards, kitty_share, rewarded_score, slashed_score,
};
use edgepool_protocol::status::ChainTaskStatus;
use edgepool_protocol::TaskId;

use super::batch::Batch;
use super::error::LedgerError;
use super::model::{ContributionStatus, Settlement, WorkerOutcome, WorkerSettlement, KITTY};
use super::Ledger;

impl Ledger {
    /// Finalizes a task (`finalize` with `successWork` and `distributeRewards`), at `now_ms`.
    ///
    /// Needs: REVEALING; `now < final deadline`; every consensus contributor revealed, or at
    /// least one did and the reveal deadline passed. Then the requester pays the task price; the
    /// app and dataset owners get their prices; the workerpool stake returns to its owner (who
    /// also takes a share of the kitty when it holds anything); the reward pot (workerpool price
    /// plus the seized stakes of wrong and silent contributors) goes to the revealers by log
    /// weight and the rest to the scheduler. Revealers get their stake back and, if the task had
    /// more than one contributor, score + 1; the others lose their stake and their score drops
    /// to ×2/3. The task becomes COMPLETED with `results` (the result link) recorded.
    ///
    /// # Errors
    /// [`LedgerError::UnknownTask`], [`LedgerError::WrongTaskStatus`],
    /// [`LedgerError::DeadlinePassed`], [`LedgerError::RevealsPending`],
    /// [`LedgerError::NoReveal`], [`LedgerError::Store`].
    pub fn finalize(
        &mut self,
        task_id: &TaskId,
        results: &[u8],
        now_ms: u64,
    ) -> Result<Settlement, LedgerError> {
        let task = self
            .state
            .tasks
            .get(task_id)
            .ok_or(LedgerError::UnknownTask(*task_id))?;
        let deal = self
            .state
            .deals
            .get(&task.deal_id)
            .ok_or(LedgerError::UnknownDeal(task.deal_id))?;
        if task.status != ChainTaskStatus::Revealing {
            return Err(LedgerError::WrongTaskStatus {
                task: *task_id,
                expected: ChainTaskStatus::Revealing.as_str(),
                found: task.status,
            });
        }
        if now_ms >= task.final_deadline_ms {
            return Err(LedgerError::DeadlinePassed {
                deadline: "final",
                deadline_ms: task.final_deadline_ms,
                now_ms,
            });
        }
        let reveal_deadline_passed = now_ms >= task.reveal_deadline_ms.unwrap_or(0);
        if task.reveal_counter != task.winner_counter {
            if !reveal_deadline_passed {
                return Err(LedgerError::RevealsPending {
                    revealed: task.reveal_counter,
                    winners: task.winner_counter,
                });
            }
            if task.reveal_counter == 0 {
                return Err(LedgerError::NoReveal);
            }
        }

        let mut batch = Batch::new(&self.state);
        let requester = deal.summary.requester;
        // successWork
        batch.seize(requester, deal.task_price)?;
        if deal.app_price > 0 {
            batch.reward(deal.app_owner, deal.app_price)?;
        }
        let mut dataset_owner_reward = 0;
        if let Some(owner) = deal.dataset_owner.filter(|_| deal.dataset_price > 0) {
            batch.reward(owner, deal.dataset_price)?;
            dataset_owner_reward = deal.dataset_price;
        }
        batch.unlock(deal.workerpool_owner, deal.workerpool_stake)?;
        let kitty = kitty_share(batch.account(&KITTY).frozen);
        if kitty > 0 {
            batch.seize(KITTY, kitty)?;
            batch.reward(deal.workerpool_owner, kitty)?;
        }

        // distributeRewards
        let contributors: Vec<consensus::Contributor> = task
            .contributions
            .iter()
            .map(|c| consensus::Contributor {
                weight: c.weight,
                proved: c.status == ContributionStatus::Proved,
            })
            .collect();
        let split = distribute_rewards(
            deal.workerpool_price,
            deal.worker_stake,
            deal.scheduler_reward_ratio,
            &contributors,
        )
        .ok_or(LedgerError::Overflow("reward distribution"))?;
        let replicated = task.contributions.len() > 1;
        let mut workers = Vec::with_capacity(task.contributions.len());
        // Seize first: the losers' stakes are part of what the winners are paid.
        for contribution in &task.contributions {
            if contribution.status != ContributionStatus::Proved {
                batch.seize(contribution.worker, deal.worker_stake)?;
            }
        }
        for (contribution, reward) in task.contributions.iter().zip(&split.worker_rewards) {
            let score_before = batch.account(&contribution.worker).score;
            let (outcome, score_after) = if contribution.status == ContributionStatus::Proved {
                batch.unlock(contribution.worker, deal.worker_stake)?;
                batch.reward(contribution.worker, *reward)?;
                let score = if replicated {
                    rewarded_score(score_before)
                } else {
                    score_before
                };
                (WorkerOutcome::Rewarded, score)
            } else {
                (WorkerOutcome::Slashed, slashed_score(score_before))
            };
            batch.account_mut(contribution.worker).score = score_after;
            workers.push(WorkerSettlement {
                worker: contribution.worker,
                result_hash: contribution.result_hash,
                outcome,
                stake: deal.worker_stake,
                reward: *reward,
                score_before,
                score_after,
            });
        }
        batch.reward(deal.workerpool_owner, split.scheduler_reward)?;

        let mut task = task.clone();
        task.status = ChainTaskStatus::Completed;
        task.results = results.to_vec();
        let settlement = Settlement {
            task_id: *task_id,
            deal_id: task.deal_id,
            status: ChainTaskStatus::Completed,
            at_ms: now_ms,
            consensus: task.consensus,
            result_digest: task.result_digest,
            requester,
            requester_paid: deal.task_price,
            requester_refunded: 0,
            app_owner_reward: deal.app_price,
            dataset_owner_reward,
            scheduler_reward: split.scheduler_reward.saturating_add(kitty),
            workerpool_stake: deal.workerpool_stake,
            workers,
        };
        batch.changes.tasks.push(task);
        batch.changes.settlements.push(settlement.clone());
        let changes = batch.finish()?;
        self.commit(changes)?;
        Ok(settlement)
    }

    /// Claims a task that missed its final deadline (`claim` with `failedWork`), at `now_ms`.
    ///
    /// Needs: ACTIVE or REVEALING, and `now ≥ final deadline`. The requester gets the task price
    /// back, every contributor its stake (scores unchanged), and the workerpool stake goes to the
    /// kitty. The task becomes FAILED.
    ///
    /// # Errors
    /// [`LedgerError::UnknownTask`], [`LedgerError::WrongTaskStatus`],
    /// [`LedgerError::FinalDeadlineNotReached`], [`LedgerError::Store`].
    pub fn claim(&mut self, task_id: &TaskId, now_ms: u64) -> Result<Settlement, LedgerError> {
        let task = self
            .state
            .tasks
            .get(task_id)
            .ok_or(LedgerError::UnknownTask(*task_id))?;
        let deal = self
            .state
            .deals
            .get(&task.deal_id)
            .ok_or(LedgerError::UnknownDeal(task.deal_id))?;
        if !matches!(
            task.status,
            ChainTaskStatus::Active | ChainTaskStatus::Revealing
        ) {
            return Err(LedgerError::WrongTaskStatus {
                task: *task_id,
                expected: "ACTIVE or REVEALING",
                found: task.status,
            });
        }
        if now_ms < task.final_deadline_ms {
            return Err(LedgerError::FinalDeadlineNotReached {
                deadline_ms: task.final_deadline_ms,
                now_ms,
            });
        }
        let mut batch = Batch::new(&self.state);
        let requester = deal.summary.requester;
        batch.unlock(requester, deal.task_price)?;
        batch.seize(deal.workerpool_owner, deal.workerpool_stake)?;
        batch.reward_and_lock(KITTY, deal.workerpool_stake)?;
        let mut workers = Vec::with_capacity(task.contributions.len());
        for contribution in &task.contributions {
            batch.unlock(contribution.worker, deal.worker_stake)?;
            let score = batch.account(&contribution.worker).score;
            workers.push(WorkerSettlement {
                worker: contribution.worker,
                result_hash: contribution.result_hash,
                outcome: WorkerOutcome::Refunded,
                stake: deal.worker_stake,
                reward: 0,
                score_before: score,
                score_after: score,
            });
        }
        let mut task = task.clone();
        task.status = ChainTaskStatus::Failed;
        let settlement = Settlement {
            task_id: *task_id,
            deal_id: task.deal_id,
            status: ChainTaskStatus::Failed,
            at_ms: now_ms,
            consensus: task.consensus,
            result_digest: task.result_digest,
            requester,
            requester_paid: 0,
            requester_refunded: deal.task_price,
            app_owner_reward: 0,
            dataset_owner_reward: 0,
            scheduler_reward: 0,
            workerpool_stake: deal.workerpool_stake,
            workers,
        };
        batch.changes.tasks.push(task);
        batch.changes.settlements.push(settlement.clone());
        let changes = batch.finish()?;
        self.commit(changes)?;
        Ok(settlement)
    }
}
