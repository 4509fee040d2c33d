//! A property test: random call sequences never create or destroy money.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Deposit(usize, u64),
    Withdraw(usize, u64),
    Match {
        trust: u64,
        volume: u64,
    },
    Initialize(usize, u64),
    Contribute {
        worker: usize,
        task: usize,
        honest: bool,
    },
    Reveal {
        worker: usize,
        task: usize,
        honest: bool,
    },
    Finalize(usize),
    Claim(usize),
    Wait(u64),
    /// The honest next step of a task: contribute, reveal or finalize.
    Progress(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..8usize, 0..5_000u64).prop_map(|(w, a)| Op::Deposit(w, a)),
        1 => (0..8usize, 0..5_000u64).prop_map(|(w, a)| Op::Withdraw(w, a)),
        2 => (0..4u64, 1..4u64).prop_map(|(trust, volume)| Op::Match { trust, volume }),
        3 => (0..8usize, 0..4u64).prop_map(|(d, i)| Op::Initialize(d, i)),
        8 => (0..6usize, 0..8usize, proptest::bool::weighted(0.8))
            .prop_map(|(worker, task, honest)| Op::Contribute { worker, task, honest }),
        6 => (0..6usize, 0..8usize, proptest::bool::weighted(0.9))
            .prop_map(|(worker, task, honest)| Op::Reveal { worker, task, honest }),
        3 => (0..8usize).prop_map(Op::Finalize),
        8 => (0..8usize).prop_map(Op::Progress),
        2 => (0..8usize).prop_map(Op::Claim),
        2 => prop_oneof![7 => 0..20_000u64, 3 => 0..1_500_000u64].prop_map(Op::Wait),
    ]
}

fn progress(w: &mut World, task: TaskId, now: u64) -> Result<(), LedgerError> {
    let Some(t) = w.ledger.task(&task).cloned() else {
        return Ok(());
    };
    match t.status {
        ChainTaskStatus::Active => {
            let next =
                (0..w.workers.len()).find(|&n| t.contribution(&w.workers[n].address()).is_none());
            match next {
                Some(n) => contribute(w, n, task, digest(1), now).map(|_| ()),
                None => Ok(()),
            }
        }
        ChainTaskStatus::Revealing => {
            let next = t.contributions.iter().find(|c| {
                c.status == ContributionStatus::Contributed && Some(c.result_hash) == t.consensus
            });
            match next {
                Some(c) => w.ledger.reveal(c.worker, &task, digest(1), now).map(|_| ()),
                None => w.ledger.finalize(&task, b"", now).map(|_| ()),
            }
        }
        _ => Ok(()),
    }
}

/// The `n`-th known item, counting round: most operations then hit something that exists.
fn pick<T: Copy>(items: &[T], n: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[n % items.len()])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn money_is_conserved_and_contributions_stay_unique(ops in proptest::collection::vec(op(), 20..150)) {
        let mut w = world();
        let mut now = T0;
        let mut deals: Vec<DealId> = Vec::new();
        let mut tasks: Vec<TaskId> = Vec::new();
        let mut salt = 0u64;
        let parties = |w: &World, n: usize| -> Address {
            match n {
                6 => w.requester,
                7 => w.scheduler.address(),
                n => w.workers[n].address(),
            }
        };
        for op in ops {
            let _ = match op {
                Op::Deposit(n, amount) => { let a = parties(&w, n); w.ledger.deposit(a, amount).map(|_| ()) }
                Op::Withdraw(n, amount) => { let a = parties(&w, n); w.ledger.withdraw(a, amount).map(|_| ()) }
                Op::Match { trust, volume } => {
                    salt += 1;
                    let mut o = orders(&w, trust);
                    o.request.volume = volume;
                    o.request.salt = Bytes32::from_u64(salt);
                    match_deal(&mut w, &o, now).map(|d| deals.push(d.deal_id))
                }
                Op::Initialize(d, index) => match pick(&deals, d) {
                    Some(deal) => w.ledger.initialize(&deal, index).map(|t| tasks.push(t)),
                    None => Ok(()),
                },
                Op::Contribute { worker, task, honest } => match pick(&tasks, task) {
                    Some(t) => {
                        let result = if honest { digest(1) } else { digest(2 + worker as u8) };
                        contribute(&mut w, worker, t, result, now).map(|_| ())
                    }
                    None => Ok(()),
                },
                // Mostly a contributor of the task reveals (any worker otherwise).
                Op::Reveal { worker, task, honest } => match pick(&tasks, task) {
                    Some(t) => {
                        let contributors: Vec<Address> = w.ledger.task(&t).map(|t| t.contributions.iter().map(|c| c.worker).collect()).unwrap_or_default();
                        let address = pick(&contributors, worker).unwrap_or(w.workers[worker].address());
                        let result = if honest { digest(1) } else { digest(9) };
                        w.ledger.reveal(address, &t, result, now).map(|_| ())
                    }
                    None => Ok(()),
                },
                Op::Finalize(task) => match pick(&tasks, task) {
                    Some(t) => w.ledger.finalize(&t, b"", now).map(|_| ()),
                    None => Ok(()),
                },
                Op::Claim(task) => match pick(&tasks, task) {
                    Some(t) => w.ledger.claim(&t, now).map(|_| ()),
                    None => Ok(()),
                },
                Op::Wait(ms) => { now += ms; Ok(()) }
                Op::Progress(task) => match pick(&tasks, task) {
                    Some(t) => progress(&mut w, t, now),
                    None => Ok(()),
                },
            };
            prop_assert_eq!(w.ledger.total_money(), u128::from(w.ledger.supply()));
            for task in w.ledger.tasks() {
                let mut workers: Vec<_> = task.contributions.iter().map(|c| c.worker).collect();
                workers.sort();
                workers.dedup();
                prop_assert_eq!(workers.len(), task.contributions.len());
            }
        }
        // Settled tasks left no stake behind: frozen money is exactly what open tasks,
        // unstarted tasks and the kitty hold.
        let mut expected_frozen: u128 = u128::from(w.ledger.account(&KITTY).frozen);
        for deal in w.ledger.deals() {
            let s = &deal.summary;
            for index in s.bot_first..s.bot_first + s.bot_size {
                let id = poco::task_id(&s.deal_id, index);
                let open = w.ledger.task(&id).is_none_or(|t| matches!(t.status, ChainTaskStatus::Active | ChainTaskStatus::Revealing));
                if open {
                    expected_frozen += u128::from(deal.task_price + deal.workerpool_stake);
                    if let Some(t) = w.ledger.task(&id) {
                        expected_frozen += u128::from(deal.worker_stake) * t.contributions.len() as u128;
                    }
                }
            }
        }
        let frozen: u128 = w.ledger.accounts().map(|(_, a)| u128::from(a.frozen)).sum();
        prop_assert_eq!(frozen, expected_frozen);
    }
}
