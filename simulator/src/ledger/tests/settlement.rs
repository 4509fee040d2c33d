//! Consensus, rewards, slashing, claims and the kitty.

use super::*;

#[test]
fn trust_three_with_three_honest_and_one_liar_rewards_the_honest_and_slashes_the_liar() {
    let mut w = world();
    set_score(&mut w, 3, 6); // the liar had some reputation: weight max(2,3)-1 = 2
    let (_, task) = active_task(&mut w, 3);
    let (good, bad) = (digest(1), digest(2));
    let good_hash = poco::result_hash(&task, &good);
    // Hand computed (poco::consensus tests): 2/3, liar 2/5, 4/7, 8/11 → consensus at the 4th.
    assert_eq!(
        contribute(&mut w, 0, task, good, T0 + 1).unwrap().consensus,
        None
    );
    assert_eq!(
        contribute(&mut w, 3, task, bad, T0 + 2).unwrap().consensus,
        None
    );
    assert_eq!(
        contribute(&mut w, 1, task, good, T0 + 3).unwrap().consensus,
        None
    );
    let outcome = contribute(&mut w, 2, task, good, T0 + 4).unwrap();
    assert_eq!(outcome.consensus, Some(good_hash));
    assert_eq!(outcome.reveal_deadline_ms, Some(T0 + 4 + 2 * TIMEREF_MS));
    assert_eq!(outcome.stake, STAKE);
    let t = w.ledger.task(&task).unwrap();
    assert_eq!(t.status, ChainTaskStatus::Revealing);
    assert_eq!((t.winner_counter, t.tally.total()), (3, 11));
    // Staked: each contributor has 300 frozen.
    assert_eq!(w.ledger.account(&w.workers[3].address()).frozen, STAKE);

    // The liar cannot reveal its own digest nor the consensus one.
    assert!(matches!(
        reveal(&mut w, 3, task, bad, T0 + 5),
        Err(LedgerError::NotInConsensus(_))
    ));
    assert!(matches!(
        reveal(&mut w, 3, task, good, T0 + 5),
        Err(LedgerError::NotInConsensus(_))
    ));
    assert!(matches!(
        reveal(&mut w, 0, task, bad, T0 + 5),
        Err(LedgerError::RevealMismatch("result hash"))
    ));
    assert!(matches!(
        reveal(&mut w, 4, task, good, T0 + 5),
        Err(LedgerError::NothingToReveal(_))
    ));
    assert_eq!(
        reveal(&mut w, 0, task, good, T0 + 5).unwrap(),
        RevealOutcome {
            revealed: 1,
            winners: 3
        }
    );
    assert!(matches!(
        reveal(&mut w, 0, task, good, T0 + 5),
        Err(LedgerError::NothingToReveal(_))
    ));
    assert!(matches!(
        w.ledger.finalize(&task, b"link", T0 + 6),
        Err(LedgerError::RevealsPending {
            revealed: 1,
            winners: 3
        })
    ));
    reveal(&mut w, 1, task, good, T0 + 6).unwrap();
    reveal(&mut w, 2, task, good, T0 + 6).unwrap();
    let settlement = w.ledger.finalize(&task, b"ipfs://result", T0 + 7).unwrap();

    // Pot = price 1000 + liar's stake 300 = 1300; workers 90% = 1170, log weights 1,1,1 →
    // 390 each; scheduler 1300 − 1170 = 130.
    assert_eq!(settlement.status, ChainTaskStatus::Completed);
    assert_eq!(settlement.consensus, Some(good_hash));
    assert_eq!(settlement.result_digest, Some(good));
    assert_eq!(settlement.requester_paid, 1_030);
    assert_eq!(settlement.scheduler_reward, 130);
    let outcomes: Vec<_> = settlement
        .workers
        .iter()
        .map(|s| (s.outcome, s.reward, s.score_before, s.score_after))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (WorkerOutcome::Rewarded, 390, 0, 1),
            (WorkerOutcome::Slashed, 0, 6, 4),
            (WorkerOutcome::Rewarded, 390, 0, 1),
            (WorkerOutcome::Rewarded, 390, 0, 1),
        ]
    );
    for honest in [0, 1, 2] {
        let account = w.ledger.account(&w.workers[honest].address());
        assert_eq!(
            (account.balance, account.frozen, account.score),
            (WORKER_FUNDS + 390, 0, 1)
        );
    }
    let liar = w.ledger.account(&w.workers[3].address());
    assert_eq!(
        (liar.balance, liar.frozen, liar.score),
        (WORKER_FUNDS - STAKE, 0, 4)
    );
    assert_eq!(w.ledger.account(&w.app_owner).balance, 10);
    assert_eq!(w.ledger.account(&w.dataset_owner).balance, 20);
    let requester = w.ledger.account(&w.requester);
    // Task 1 of the deal is still in escrow.
    assert_eq!(
        (requester.balance, requester.frozen),
        (REQUESTER_FUNDS - 2_060, 1_030)
    );
    let scheduler = w.ledger.account(&w.scheduler.address());
    assert_eq!(
        (scheduler.balance, scheduler.frozen),
        (SCHEDULER_FUNDS - 600 + 300 + 130, 300)
    );
    let t = w.ledger.task(&task).unwrap();
    assert_eq!(
        (t.status, t.results.as_slice()),
        (ChainTaskStatus::Completed, &b"ipfs://result"[..])
    );
    assert_eq!(w.ledger.settlement(&task), Some(&settlement));
    assert!(matches!(
        w.ledger.finalize(&task, b"", T0 + 8),
        Err(LedgerError::WrongTaskStatus {
            found: ChainTaskStatus::Completed,
            ..
        })
    ));
    assert_conserved(&w.ledger);
}

#[test]
fn a_silent_worker_is_slashed_when_the_task_is_finalized_after_the_reveal_deadline() {
    let mut w = world();
    set_score(&mut w, 1, 9);
    let (_, task) = active_task(&mut w, 3);
    let result = digest(1);
    contribute(&mut w, 0, task, result, T0 + 1).unwrap();
    // Two fresh workers of weight 2: 4·3 > 5·2 → consensus at trust 3.
    let consensus = contribute(&mut w, 1, task, result, T0 + 2).unwrap();
    let reveal_deadline = consensus.reveal_deadline_ms.unwrap();
    // Consensus closes the task to contributions.
    assert!(matches!(
        contribute(&mut w, 2, task, result, T0 + 3),
        Err(LedgerError::WrongTaskStatus {
            found: ChainTaskStatus::Revealing,
            ..
        })
    ));
    reveal(&mut w, 0, task, result, T0 + 3).unwrap();
    assert!(matches!(
        w.ledger.finalize(&task, b"", reveal_deadline - 1),
        Err(LedgerError::RevealsPending {
            revealed: 1,
            winners: 2
        })
    ));
    // Worker 1 stays silent; after the reveal deadline it cannot reveal and finalize proceeds.
    assert!(matches!(
        reveal(&mut w, 1, task, result, reveal_deadline),
        Err(LedgerError::DeadlinePassed {
            deadline: "reveal",
            ..
        })
    ));
    let settlement = w.ledger.finalize(&task, b"", reveal_deadline).unwrap();
    // Pot 1000 + 300; the only revealer gets 1170; scheduler 130.
    assert_eq!(settlement.workers[0].reward, 1_170);
    assert_eq!(settlement.workers[1].outcome, WorkerOutcome::Slashed);
    assert_eq!(settlement.scheduler_reward, 130);
    let silent = w.ledger.account(&w.workers[1].address());
    assert_eq!(
        (silent.balance, silent.frozen, silent.score),
        (WORKER_FUNDS - STAKE, 0, 6)
    );
    let revealer = w.ledger.account(&w.workers[0].address());
    assert_eq!(
        (revealer.balance, revealer.score),
        (WORKER_FUNDS + 1_170, 1)
    );
    assert_conserved(&w.ledger);
}

#[test]
fn a_lone_contributor_at_trust_one_is_paid_without_a_score_bonus() {
    let mut w = world();
    let (_, task) = active_task(&mut w, 1);
    let outcome = contribute(&mut w, 0, task, digest(1), T0 + 1).unwrap();
    assert!(outcome.consensus.is_some());
    reveal(&mut w, 0, task, digest(1), T0 + 2).unwrap();
    let settlement = w.ledger.finalize(&task, b"", T0 + 3).unwrap();
    assert_eq!(settlement.workers[0].reward, 900);
    assert_eq!(settlement.workers[0].score_after, 0);
    assert_eq!(settlement.scheduler_reward, 100);
    assert_conserved(&w.ledger);
}

#[test]
fn nobody_revealing_leaves_the_task_to_claim() {
    let mut w = world();
    let (_, task) = active_task(&mut w, 1);
    contribute(&mut w, 0, task, digest(1), T0 + 1).unwrap();
    let after_reveal = T0 + 1 + 2 * TIMEREF_MS;
    assert!(matches!(
        w.ledger.finalize(&task, b"", after_reveal),
        Err(LedgerError::NoReveal)
    ));
    let settlement = w.ledger.claim(&task, T0 + 10 * TIMEREF_MS).unwrap();
    assert_eq!(settlement.workers[0].outcome, WorkerOutcome::Refunded);
}

#[test]
fn a_claim_after_the_final_deadline_refunds_everyone_and_feeds_the_kitty() {
    let mut w = world();
    let (deal, task) = active_task(&mut w, 3);
    contribute(&mut w, 0, task, digest(1), T0 + 1).unwrap();
    let final_deadline = T0 + 10 * TIMEREF_MS;
    assert_eq!(
        w.ledger.task(&task).unwrap().final_deadline_ms,
        final_deadline
    );
    assert!(matches!(
        w.ledger.claim(&task, final_deadline - 1),
        Err(LedgerError::FinalDeadlineNotReached { .. })
    ));
    let settlement = w.ledger.claim(&task, final_deadline).unwrap();
    assert_eq!(settlement.status, ChainTaskStatus::Failed);
    assert_eq!(settlement.requester_refunded, 1_030);
    assert_eq!(
        w.ledger.task(&task).unwrap().status,
        ChainTaskStatus::Failed
    );
    let worker = w.ledger.account(&w.workers[0].address());
    assert_eq!(
        (worker.balance, worker.frozen, worker.score),
        (WORKER_FUNDS, 0, 0)
    );
    let requester = w.ledger.account(&w.requester);
    assert_eq!(
        (requester.balance, requester.frozen),
        (REQUESTER_FUNDS - 1_030, 1_030)
    );
    assert_eq!(w.ledger.account(&KITTY).frozen, 300);
    assert!(matches!(
        w.ledger.claim(&task, final_deadline),
        Err(LedgerError::WrongTaskStatus { .. })
    ));

    // The next successful task pays the kitty (below KITTY_MIN: all of it) to its scheduler.
    let second = w.ledger.initialize(&deal, 1).unwrap();
    contribute(&mut w, 0, second, digest(1), T0 + 1).unwrap();
    contribute(&mut w, 1, second, digest(1), T0 + 2).unwrap();
    reveal(&mut w, 0, second, digest(1), T0 + 3).unwrap();
    reveal(&mut w, 1, second, digest(1), T0 + 3).unwrap();
    let settlement = w.ledger.finalize(&second, b"", T0 + 4).unwrap();
    assert_eq!(settlement.scheduler_reward, 100 + 300);
    assert_eq!(w.ledger.account(&KITTY).frozen, 0);
    assert_conserved(&w.ledger);
}
