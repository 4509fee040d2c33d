//! The ledger against hand-computed PoCo cases, each refusal, persistence and money conservation.

#![allow(clippy::unwrap_used)]

use edgepool_protocol::hash::keccak256_concat;
use edgepool_protocol::poco::{self, ContributionHashes};
use edgepool_protocol::status::ChainTaskStatus;
use edgepool_protocol::{Address, Bytes32, DealId, Digest, Signature, Signer, Tag, TaskId};

use super::*;

const T0: u64 = 1_700_000_000_000;
/// The test category's timeref: 100 s.
const TIMEREF_MS: u64 = 100_000;
const WORKER_FUNDS: u64 = 10_000;
const REQUESTER_FUNDS: u64 = 1_000_000;
const SCHEDULER_FUNDS: u64 = 100_000;
/// Worker stake: 30% of the workerpool price 1000.
const STAKE: u64 = 300;

fn signer(n: u8) -> Signer {
    Signer::from_bytes(&[n; 32]).unwrap()
}

fn digest(n: u8) -> Digest {
    Digest(Bytes32([n; 32]))
}

struct World {
    ledger: Ledger,
    scheduler: Signer,
    requester: Address,
    app_owner: Address,
    dataset_owner: Address,
    app: Address,
    dataset: Address,
    pool: Address,
    category: u64,
    workers: Vec<Signer>,
}

fn world_in(mut ledger: Ledger) -> World {
    let scheduler = signer(1);
    let requester = signer(2).address();
    let app_owner = signer(3).address();
    let dataset_owner = signer(4).address();
    let workers: Vec<Signer> = (10..16).map(signer).collect();
    ledger.deposit(requester, REQUESTER_FUNDS).unwrap();
    ledger
        .deposit(scheduler.address(), SCHEDULER_FUNDS)
        .unwrap();
    for worker in &workers {
        ledger.deposit(worker.address(), WORKER_FUNDS).unwrap();
    }
    let app = ledger
        .register_app(
            app_owner,
            "hello",
            "http://127.0.0.1/hello.wasm",
            digest(0xaa),
            Some(1),
        )
        .unwrap();
    let dataset = ledger
        .register_dataset(
            dataset_owner,
            "data.csv",
            "http://127.0.0.1/data",
            digest(0xdd),
            None,
        )
        .unwrap();
    let pool = ledger
        .register_workerpool(scheduler.address(), "pool", 30, 10)
        .unwrap();
    let category = ledger.create_category("test", TIMEREF_MS / 1000).unwrap();
    World {
        ledger,
        scheduler,
        requester,
        app_owner,
        dataset_owner,
        app,
        dataset,
        pool,
        category,
        workers,
    }
}

fn world() -> World {
    world_in(Ledger::in_memory().unwrap())
}

struct Orders {
    app: AppOrder,
    dataset: DatasetOrder,
    pool: WorkerpoolOrder,
    request: RequestOrder,
}

fn orders(w: &World, trust: u64) -> Orders {
    Orders {
        app: AppOrder {
            app: w.app,
            price: 10,
            volume: 100,
            tag: Tag::NONE,
            dataset_restrict: Address::ZERO,
            workerpool_restrict: Address::ZERO,
            requester_restrict: Address::ZERO,
            salt: Bytes32::ZERO,
        },
        dataset: DatasetOrder {
            dataset: w.dataset,
            price: 20,
            volume: 100,
            tag: Tag::NONE,
            app_restrict: w.app,
            workerpool_restrict: Address::ZERO,
            requester_restrict: Address::ZERO,
            salt: Bytes32::ZERO,
        },
        pool: WorkerpoolOrder {
            workerpool: w.pool,
            price: 1_000,
            volume: 100,
            tag: Tag::TEE.union(Tag::GPU),
            category: w.category,
            trust: 5,
            app_restrict: Address::ZERO,
            dataset_restrict: Address::ZERO,
            requester_restrict: Address::ZERO,
            salt: Bytes32::ZERO,
        },
        request: RequestOrder {
            app: w.app,
            app_max_price: 10,
            dataset: w.dataset,
            dataset_max_price: 20,
            workerpool: Address::ZERO,
            workerpool_max_price: 1_000,
            requester: w.requester,
            volume: 2,
            tag: Tag::NONE,
            category: w.category,
            trust,
            beneficiary: w.requester,
            callback: Address::ZERO,
            params: RequestParams {
                args: "--rows 3".into(),
                input_files: vec!["http://127.0.0.1/in.txt".into()],
                result_encryption: false,
                result_storage_provider: "ipfs".into(),
                result_storage_proxy: None,
            },
            salt: Bytes32::ZERO,
        },
    }
}

fn match_deal(w: &mut World, o: &Orders, now: u64) -> Result<MatchedDeal, LedgerError> {
    w.ledger
        .match_orders(&o.app, Some(&o.dataset), &o.pool, &o.request, now)
}

/// A deal of `trust` at T0 and its task 0, initialized.
fn active_task(w: &mut World, trust: u64) -> (DealId, TaskId) {
    let o = orders(w, trust);
    let deal = match_deal(w, &o, T0).unwrap();
    let task = w.ledger.initialize(&deal.deal_id, 0, T0).unwrap();
    (deal.deal_id, task)
}

fn contribute(
    w: &mut World,
    worker: usize,
    task: TaskId,
    result: Digest,
    now: u64,
) -> Result<ContributeOutcome, LedgerError> {
    let worker = &w.workers[worker];
    let hashes = ContributionHashes::new(&worker.address(), &task, &result);
    let authorization = w.scheduler.sign_personal(
        poco::authorization_hash(&worker.address(), &task, &Address::ZERO).as_bytes(),
    );
    let call = ContributeCall {
        worker: worker.address(),
        task_id: task,
        result_hash: hashes.result_hash,
        result_seal: hashes.result_seal,
        enclave_challenge: Address::ZERO,
        enclave_signature: &poco::NON_TEE_ENCLAVE_SIGNATURE,
        authorization: &authorization,
    };
    w.ledger.contribute(&call, now)
}

fn reveal(
    w: &mut World,
    worker: usize,
    task: TaskId,
    result: Digest,
    now: u64,
) -> Result<RevealOutcome, LedgerError> {
    let address = w.workers[worker].address();
    w.ledger.reveal(address, &task, result, now)
}

fn set_score(w: &mut World, worker: usize, score: u64) {
    let address = w.workers[worker].address();
    w.ledger.state.accounts.entry(address).or_default().score = score;
}

fn assert_conserved(ledger: &Ledger) {
    assert_eq!(ledger.total_money(), u128::from(ledger.supply()));
}

// ----- matching ---------------------------------------------------------------------------------

#[test]
fn matching_makes_a_deal_locks_the_escrow_and_consumes_volume() {
    let mut w = world();
    let o = orders(&w, 3);
    let deal = match_deal(&mut w, &o, T0).unwrap();
    let expected_id =
        keccak256_concat(&[o.request.hash().as_bytes(), Bytes32::from_u64(0).as_bytes()]);
    assert_eq!(deal.deal_id, DealId(expected_id));
    assert_eq!(deal.volume, 2);
    let s = &deal.summary;
    assert_eq!(
        (s.bot_first, s.bot_size, s.trust, s.category),
        (0, 2, 3, w.category)
    );
    assert_eq!(s.time_ref_seconds, 100);
    assert_eq!(s.start_time_ms, T0);
    assert_eq!(s.app.address, w.app);
    assert_eq!(s.dataset.as_ref().unwrap().filename, "data.csv");
    assert_eq!(s.args, "--rows 3");
    assert_eq!(w.ledger.deal_summary(&deal.deal_id), Some(s));
    // Requester: 2 tasks × (10 + 20 + 1000); scheduler: 2 × 30% of 1000.
    let requester = w.ledger.account(&w.requester);
    assert_eq!(
        (requester.balance, requester.frozen),
        (REQUESTER_FUNDS - 2_060, 2_060)
    );
    let scheduler = w.ledger.account(&w.scheduler.address());
    assert_eq!(scheduler.frozen, 600);
    assert_eq!(w.ledger.consumed(&o.request.hash()), 2);
    assert_eq!(w.ledger.consumed(&o.app.hash()), 2);
    // The request is used up; a new salt is a new request, continuing nothing.
    assert!(matches!(
        match_deal(&mut w, &o, T0),
        Err(LedgerError::Match(MatchError::VolumeExhausted {
            order: "request"
        }))
    ));
    let mut o2 = orders(&w, 3);
    o2.request.salt = Bytes32([1; 32]);
    o2.request.volume = 500;
    let second = match_deal(&mut w, &o2, T0).unwrap();
    // The app order had 100, 2 consumed: the deal is limited to 98.
    assert_eq!(second.volume, 98);
    assert_ne!(second.deal_id, deal.deal_id);
    assert_conserved(&w.ledger);
}

#[test]
fn a_trust_of_zero_is_stored_as_one() {
    let mut w = world();
    let o = orders(&w, 0);
    assert_eq!(match_deal(&mut w, &o, T0).unwrap().summary.trust, 1);
}

#[test]
fn matching_refuses_every_broken_rule_and_changes_nothing() {
    type Mutation = fn(&World, &mut Orders);
    type Check = fn(&MatchError) -> bool;
    let stranger = signer(99).address();
    let cases: &[(&str, Mutation, Check)] = &[
        (
            "category",
            |_, o| o.request.category = 7,
            |e| matches!(e, MatchError::CategoryMismatch { .. }),
        ),
        (
            "unknown category",
            |_, o| {
                o.request.category = 7;
                o.pool.category = 7;
            },
            |e| matches!(e, MatchError::UnknownCategory(7)),
        ),
        (
            "trust",
            |_, o| o.request.trust = 6,
            |e| {
                matches!(
                    e,
                    MatchError::TrustTooHigh {
                        requested: 6,
                        offered: 5
                    }
                )
            },
        ),
        (
            "app price",
            |_, o| o.app.price = 11,
            |e| matches!(e, MatchError::PriceTooHigh { what: "app", .. }),
        ),
        (
            "dataset price",
            |_, o| o.dataset.price = 21,
            |e| {
                matches!(
                    e,
                    MatchError::PriceTooHigh {
                        what: "dataset",
                        ..
                    }
                )
            },
        ),
        (
            "pool price",
            |_, o| o.pool.price = 1_001,
            |e| {
                matches!(
                    e,
                    MatchError::PriceTooHigh {
                        what: "workerpool",
                        ..
                    }
                )
            },
        ),
        (
            "tag",
            |_, o| o.request.tag = Tag::TDX,
            |e| matches!(e, MatchError::TagNotOffered { .. }),
        ),
        (
            "tag from dataset",
            |_, o| o.dataset.tag = Tag::SCONE,
            |e| matches!(e, MatchError::TagNotOffered { .. }),
        ),
        (
            "tee without app",
            |_, o| o.request.tag = Tag::TEE,
            |e| matches!(e, MatchError::TeeAppOrderMissing),
        ),
        (
            "app",
            |_, o| o.request.app = Address([7; 20]),
            |e| matches!(e, MatchError::WrongApp { .. }),
        ),
        (
            "dataset",
            |_, o| o.request.dataset = Address([7; 20]),
            |e| matches!(e, MatchError::WrongDataset { .. }),
        ),
        (
            "no dataset requested",
            |_, o| o.request.dataset = Address::ZERO,
            |e| matches!(e, MatchError::WrongDataset { .. }),
        ),
        (
            "request pool",
            |_, o| o.request.workerpool = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "request",
                        field: "workerpool",
                        ..
                    }
                )
            },
        ),
        (
            "app requester",
            |_, o| o.app.requester_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "app",
                        field: "requester",
                        ..
                    }
                )
            },
        ),
        (
            "app dataset",
            |_, o| o.app.dataset_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "app",
                        field: "dataset",
                        ..
                    }
                )
            },
        ),
        (
            "app pool",
            |_, o| o.app.workerpool_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "app",
                        field: "workerpool",
                        ..
                    }
                )
            },
        ),
        (
            "dataset app",
            |_, o| o.dataset.app_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "dataset",
                        field: "app",
                        ..
                    }
                )
            },
        ),
        (
            "dataset pool",
            |_, o| o.dataset.workerpool_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "dataset",
                        field: "workerpool",
                        ..
                    }
                )
            },
        ),
        (
            "dataset requester",
            |_, o| o.dataset.requester_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "dataset",
                        field: "requester",
                        ..
                    }
                )
            },
        ),
        (
            "pool app",
            |_, o| o.pool.app_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "workerpool",
                        field: "app",
                        ..
                    }
                )
            },
        ),
        (
            "pool dataset",
            |_, o| o.pool.dataset_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "workerpool",
                        field: "dataset",
                        ..
                    }
                )
            },
        ),
        (
            "pool requester",
            |_, o| o.pool.requester_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "workerpool",
                        field: "requester",
                        ..
                    }
                )
            },
        ),
        (
            "app volume",
            |_, o| o.app.volume = 0,
            |e| matches!(e, MatchError::VolumeExhausted { order: "app" }),
        ),
        (
            "dataset volume",
            |_, o| o.dataset.volume = 0,
            |e| matches!(e, MatchError::VolumeExhausted { order: "dataset" }),
        ),
        (
            "pool volume",
            |_, o| o.pool.volume = 0,
            |e| {
                matches!(
                    e,
                    MatchError::VolumeExhausted {
                        order: "workerpool"
                    }
                )
            },
        ),
    ];
    for &(name, mutate, expected) in cases {
        let mut w = world();
        let before = w.ledger.state.clone();
        let mut o = orders(&w, 3);
        mutate(&w, &mut o);
        match match_deal(&mut w, &o, T0) {
            Err(LedgerError::Match(error)) => assert!(expected(&error), "{name}: {error}"),
            other => panic!("{name}: expected a match error, got {other:?}"),
        }
        assert_eq!(w.ledger.state, before, "{name} changed the ledger");
    }

    // Registries and balances.
    let mut w = world();
    let mut o = orders(&w, 3);
    o.app.app = stranger;
    o.request.app = stranger;
    o.dataset.app_restrict = Address::ZERO;
    assert!(matches!(match_deal(&mut w, &o, T0), Err(LedgerError::UnknownApp(a)) if a == stranger));
    let mut o = orders(&w, 3);
    o.pool.workerpool = stranger;
    assert!(matches!(
        match_deal(&mut w, &o, T0),
        Err(LedgerError::UnknownWorkerpool(_))
    ));
    let mut o = orders(&w, 3);
    o.request.volume = 100;
    o.request.requester = stranger;
    o.request.beneficiary = stranger;
    assert!(matches!(
        match_deal(&mut w, &o, T0),
        Err(LedgerError::InsufficientBalance { account, needed: 103_000, available: 0 }) if account == stranger
    ));
    // A request without dataset matches without a dataset order.
    let mut o = orders(&w, 3);
    o.request.dataset = Address::ZERO;
    let deal = w
        .ledger
        .match_orders(&o.app, None, &o.pool, &o.request, T0)
        .unwrap();
    assert!(deal.summary.dataset.is_none());
    assert_eq!(w.ledger.deal(&deal.deal_id).unwrap().task_price, 1_010);
}

#[test]
fn registries_refuse_duplicates_and_bad_arguments() {
    let mut w = world();
    let owner = w.app_owner;
    assert!(matches!(
        w.ledger.register_app(owner, "hello", "http://127.0.0.1/hello.wasm", digest(0xaa), Some(1)),
        Err(LedgerError::AlreadyRegistered(a)) if a == w.app
    ));
    assert!(matches!(
        w.ledger.register_app(owner, "x", "", digest(1), None),
        Err(LedgerError::InvalidArgument { field: "url", .. })
    ));
    assert!(matches!(
        w.ledger
            .register_dataset(owner, "../x", "http://x", digest(1), None),
        Err(LedgerError::InvalidArgument { .. })
    ));
    assert!(matches!(
        w.ledger.register_workerpool(owner, "p", 101, 0),
        Err(LedgerError::InvalidArgument {
            field: "worker_stake_ratio",
            ..
        })
    ));
    assert!(matches!(
        w.ledger.create_category("zero", 0),
        Err(LedgerError::InvalidArgument { .. })
    ));
    let mut fresh = Ledger::in_memory().unwrap();
    fresh.create_default_categories().unwrap();
    fresh.create_default_categories().unwrap();
    assert_eq!(fresh.category(4).unwrap().time_ref_seconds, 36_000);
    assert!(fresh.category(5).is_none());
}

// ----- consensus, rewards, slashing ---------------------------------------------------------------

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
    let second = w.ledger.initialize(&deal, 1, T0).unwrap();
    contribute(&mut w, 0, second, digest(1), T0 + 1).unwrap();
    contribute(&mut w, 1, second, digest(1), T0 + 2).unwrap();
    reveal(&mut w, 0, second, digest(1), T0 + 3).unwrap();
    reveal(&mut w, 1, second, digest(1), T0 + 3).unwrap();
    let settlement = w.ledger.finalize(&second, b"", T0 + 4).unwrap();
    assert_eq!(settlement.scheduler_reward, 100 + 300);
    assert_eq!(w.ledger.account(&KITTY).frozen, 0);
    assert_conserved(&w.ledger);
}

// ----- contribute checks ----------------------------------------------------------------------------

#[test]
fn a_second_contribution_by_the_same_worker_is_refused() {
    let mut w = world();
    let (_, task) = active_task(&mut w, 3);
    contribute(&mut w, 0, task, digest(1), T0 + 1).unwrap();
    let before = w.ledger.state.clone();
    for result in [digest(1), digest(2)] {
        assert!(matches!(
            contribute(&mut w, 0, task, result, T0 + 2),
            Err(LedgerError::AlreadyContributed(a)) if a == w.workers[0].address()
        ));
    }
    assert_eq!(w.ledger.state, before);
}

#[test]
fn authorizations_must_be_the_workerpool_owners_for_this_worker_task_and_challenge() {
    let mut w = world();
    let (_, task) = active_task(&mut w, 1);
    let worker = w.workers[0].address();
    let hashes = ContributionHashes::new(&worker, &task, &digest(1));
    let try_with = |w: &mut World, authorization: Signature| {
        let call = ContributeCall {
            worker,
            task_id: task,
            result_hash: hashes.result_hash,
            result_seal: hashes.result_seal,
            enclave_challenge: Address::ZERO,
            enclave_signature: &poco::NON_TEE_ENCLAVE_SIGNATURE,
            authorization: &authorization,
        };
        w.ledger.contribute(&call, T0 + 1)
    };
    let by_stranger = signer(99)
        .sign_personal(poco::authorization_hash(&worker, &task, &Address::ZERO).as_bytes());
    let for_other_worker = w.scheduler.sign_personal(
        poco::authorization_hash(&w.workers[1].address(), &task, &Address::ZERO).as_bytes(),
    );
    for bad in [by_stranger, for_other_worker, Signature::ZERO] {
        assert!(matches!(
            try_with(&mut w, bad),
            Err(LedgerError::Unauthorized { .. })
        ));
    }
    // A worker without funds for the stake is refused too.
    let poor = signer(50);
    let authorization = w
        .scheduler
        .sign_personal(poco::authorization_hash(&poor.address(), &task, &Address::ZERO).as_bytes());
    let poor_hashes = ContributionHashes::new(&poor.address(), &task, &digest(1));
    let call = ContributeCall {
        worker: poor.address(),
        task_id: task,
        result_hash: poor_hashes.result_hash,
        result_seal: poor_hashes.result_seal,
        enclave_challenge: Address::ZERO,
        enclave_signature: &[],
        authorization: &authorization,
    };
    assert!(matches!(
        w.ledger.contribute(&call, T0 + 1),
        Err(LedgerError::InsufficientBalance {
            needed: STAKE,
            available: 0,
            ..
        })
    ));
    let unknown = TaskId(Bytes32([5; 32]));
    assert!(matches!(
        contribute(&mut w, 0, unknown, digest(1), T0),
        Err(LedgerError::UnknownTask(_))
    ));
}

fn tee_call<'a>(
    worker: Address,
    task: TaskId,
    hashes: &ContributionHashes,
    enclave_challenge: Address,
    enclave_signature: &'a [u8],
    authorization: &'a Signature,
) -> ContributeCall<'a> {
    ContributeCall {
        worker,
        task_id: task,
        result_hash: hashes.result_hash,
        result_seal: hashes.result_seal,
        enclave_challenge,
        enclave_signature,
        authorization,
    }
}

#[test]
fn tee_tasks_need_a_challenge_and_an_enclave_signature_by_it() {
    let mut w = world();
    let mut o = orders(&w, 1);
    o.app.tag = Tag::TEE;
    o.request.tag = Tag::TEE;
    let deal = match_deal(&mut w, &o, T0).unwrap();
    assert!(deal.summary.tag.is_tee());
    let task = w.ledger.initialize(&deal.deal_id, 0, T0).unwrap();
    let worker = w.workers[0].address();
    let enclave = signer(77);
    let challenge = enclave.address();
    let hashes = ContributionHashes::new(&worker, &task, &digest(1));
    let good_enclave_sig = hashes.enclave_signature(&enclave);
    let bad_enclave_sig = hashes.enclave_signature(&signer(78));
    let authorize = |challenge: Address| {
        w.scheduler
            .sign_personal(poco::authorization_hash(&worker, &task, &challenge).as_bytes())
    };
    let (auth_zero, auth_challenge) = (authorize(Address::ZERO), authorize(challenge));
    let call = |challenge, sig, auth| tee_call(worker, task, &hashes, challenge, sig, auth);
    let zero_sig = &poco::NON_TEE_ENCLAVE_SIGNATURE[..];
    assert!(matches!(
        w.ledger
            .contribute(&call(Address::ZERO, zero_sig, &auth_zero), T0 + 1),
        Err(LedgerError::EnclaveChallengeRequired)
    ));
    // An authorization for the zero challenge does not cover the real one.
    assert!(matches!(
        w.ledger.contribute(
            &call(challenge, good_enclave_sig.as_bytes(), &auth_zero),
            T0 + 1
        ),
        Err(LedgerError::Unauthorized { .. })
    ));
    for bad in [&bad_enclave_sig.as_bytes()[..], zero_sig, &[0u8; 65][..]] {
        assert!(matches!(
            w.ledger
                .contribute(&call(challenge, bad, &auth_challenge), T0 + 1),
            Err(LedgerError::BadEnclaveSignature { .. })
        ));
    }
    let outcome = w
        .ledger
        .contribute(
            &call(challenge, good_enclave_sig.as_bytes(), &auth_challenge),
            T0 + 1,
        )
        .unwrap();
    assert!(outcome.consensus.is_some());
    assert_eq!(
        w.ledger.task(&task).unwrap().contributions[0].enclave_challenge,
        challenge
    );
}

#[test]
fn the_contribution_message_and_authorization_make_a_valid_call() {
    let mut w = world();
    let (_, task) = active_task(&mut w, 1);
    let worker = w.workers[0].address();
    let message = edgepool_protocol::messages::Contribution::standard(worker, task, digest(1), 42);
    let authorization =
        poco::WorkerpoolAuthorization::sign(&w.scheduler, worker, task, Address::ZERO);
    let call = ContributeCall::from_message(worker, &message, &authorization);
    assert!(w
        .ledger
        .contribute(&call, T0 + 1)
        .unwrap()
        .consensus
        .is_some());
}

// ----- deadlines ---------------------------------------------------------------------------------

#[test]
fn deadlines_follow_the_category_timeref_and_refuse_late_calls() {
    let mut w = world();
    let (deal, task) = active_task(&mut w, 3);
    let t = w.ledger.task(&task).unwrap();
    assert_eq!(t.contribution_deadline_ms, T0 + 7 * TIMEREF_MS);
    assert_eq!(t.final_deadline_ms, T0 + 10 * TIMEREF_MS);
    assert!(matches!(
        contribute(&mut w, 0, task, digest(1), T0 + 7 * TIMEREF_MS),
        Err(LedgerError::DeadlinePassed {
            deadline: "contribution",
            ..
        })
    ));
    contribute(&mut w, 0, task, digest(1), T0 + 7 * TIMEREF_MS - 1).unwrap();
    let reached = contribute(&mut w, 1, task, digest(1), T0 + 7 * TIMEREF_MS - 1).unwrap();
    assert_eq!(reached.reveal_deadline_ms, Some(T0 + 9 * TIMEREF_MS - 1));
    reveal(&mut w, 0, task, digest(1), T0 + 9 * TIMEREF_MS - 2).unwrap();
    assert!(matches!(
        w.ledger.finalize(&task, b"", T0 + 10 * TIMEREF_MS),
        Err(LedgerError::DeadlinePassed {
            deadline: "final",
            ..
        })
    ));
    // Task indexes outside the deal, and twice the same task.
    assert!(matches!(
        w.ledger.initialize(&deal, 2, T0),
        Err(LedgerError::TaskIndexOutOfRange {
            index: 2,
            first: 0,
            size: 2
        })
    ));
    assert!(matches!(
        w.ledger.initialize(&deal, 0, T0),
        Err(LedgerError::AlreadyInitialized(_))
    ));
    assert!(matches!(
        w.ledger.initialize(&DealId(Bytes32([9; 32])), 0, T0),
        Err(LedgerError::UnknownDeal(_))
    ));
}

// ----- accounts ------------------------------------------------------------------------------------

#[test]
fn withdrawals_take_only_free_money() {
    let mut w = world();
    let (_, _task) = active_task(&mut w, 1);
    let free = w.ledger.account(&w.requester).balance;
    assert!(matches!(
        w.ledger.withdraw(w.requester, free + 1),
        Err(LedgerError::InsufficientBalance { .. })
    ));
    w.ledger.withdraw(w.requester, free).unwrap();
    assert_eq!(w.ledger.account(&w.requester).balance, 0);
    assert!(matches!(
        w.ledger.deposit(w.requester, u64::MAX),
        Err(LedgerError::Overflow(_))
    ));
    assert_conserved(&w.ledger);
}

// ----- persistence -------------------------------------------------------------------------------

#[test]
fn a_reopened_ledger_has_the_same_state_and_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let (task, state) = {
        let mut w = world_in(Ledger::open(&path).unwrap());
        let (_, task) = active_task(&mut w, 3);
        contribute(&mut w, 0, task, digest(1), T0 + 1).unwrap();
        contribute(&mut w, 3, task, digest(2), T0 + 1).unwrap();
        contribute(&mut w, 1, task, digest(1), T0 + 2).unwrap();
        contribute(&mut w, 2, task, digest(1), T0 + 2).unwrap();
        reveal(&mut w, 0, task, digest(1), T0 + 3).unwrap();
        (task, w.ledger.state.clone())
    };
    let mut reopened = Ledger::open(&path).unwrap();
    assert_eq!(reopened.state, state);
    // It carries on where it stopped: the remaining reveals, then finalize.
    for n in [11u8, 12] {
        reopened
            .reveal(signer(n).address(), &task, digest(1), T0 + 4)
            .unwrap();
    }
    let settlement = reopened.finalize(&task, b"done", T0 + 5).unwrap();
    drop(reopened);
    let again = Ledger::open(&path).unwrap();
    assert_eq!(again.settlement(&task), Some(&settlement));
    assert_eq!(
        again.task(&task).unwrap().status,
        ChainTaskStatus::Completed
    );
    assert_conserved(&again);
}

#[test]
fn a_corrupt_record_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    drop(world_in(Ledger::open(&path).unwrap()));
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE record SET value = '{' WHERE kind = 'app'", [])
        .unwrap();
    drop(conn);
    assert!(matches!(Ledger::open(&path), Err(LedgerError::Corrupt { kind, .. }) if kind == "app"));
}

// ----- conservation ------------------------------------------------------------------------------

mod conservation {
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
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..8usize, 0..5_000u64).prop_map(|(w, a)| Op::Deposit(w, a)),
            (0..8usize, 0..5_000u64).prop_map(|(w, a)| Op::Withdraw(w, a)),
            (0..4u64, 1..4u64).prop_map(|(trust, volume)| Op::Match { trust, volume }),
            (0..4usize, 0..4u64).prop_map(|(d, i)| Op::Initialize(d, i)),
            (0..6usize, 0..6usize, proptest::bool::weighted(0.8)).prop_map(
                |(worker, task, honest)| Op::Contribute {
                    worker,
                    task,
                    honest
                }
            ),
            (0..6usize, 0..6usize, proptest::bool::weighted(0.9)).prop_map(
                |(worker, task, honest)| Op::Reveal {
                    worker,
                    task,
                    honest
                }
            ),
            (0..6usize).prop_map(Op::Finalize),
            (0..6usize).prop_map(Op::Claim),
            (0..400_000u64).prop_map(Op::Wait),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn money_is_conserved_and_contributions_stay_unique(ops in proptest::collection::vec(op(), 1..60)) {
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
                    Op::Initialize(d, index) => match deals.get(d) {
                        Some(deal) => w.ledger.initialize(deal, index, now).map(|t| tasks.push(t)),
                        None => Ok(()),
                    },
                    Op::Contribute { worker, task, honest } => match tasks.get(task).copied() {
                        Some(t) => {
                            let result = if honest { digest(1) } else { digest(2 + worker as u8) };
                            contribute(&mut w, worker, t, result, now).map(|_| ())
                        }
                        None => Ok(()),
                    },
                    Op::Reveal { worker, task, honest } => match tasks.get(task).copied() {
                        Some(t) => reveal(&mut w, worker, t, if honest { digest(1) } else { digest(9) }, now).map(|_| ()),
                        None => Ok(()),
                    },
                    Op::Finalize(task) => match tasks.get(task) {
                        Some(t) => w.ledger.finalize(t, b"", now).map(|_| ()),
                        None => Ok(()),
                    },
                    Op::Claim(task) => match tasks.get(task) {
                        Some(t) => w.ledger.claim(t, now).map(|_| ()),
                        None => Ok(()),
                    },
                    Op::Wait(ms) => { now += ms; Ok(()) }
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
                    let open = w.ledger.task(&id).map_or(true, |t| matches!(t.status, ChainTaskStatus::Active | ChainTaskStatus::Revealing));
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
}
