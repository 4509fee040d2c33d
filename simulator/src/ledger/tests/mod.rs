//! The ledger against hand-computed PoCo cases, each refusal, persistence and money conservation.

#![allow(clippy::unwrap_used)]

use edgepool_protocol::hash::keccak256_concat;
use edgepool_protocol::poco::{self, ContributionHashes};
use edgepool_protocol::status::ChainTaskStatus;
use edgepool_protocol::{Address, Bytes32, DealId, Digest, Signature, Signer, Tag, TaskId};

use super::*;

mod conservation;
mod contribute;
mod matching;
mod persistence;
mod settlement;

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
    let task = w.ledger.initialize(&deal.deal_id, 0).unwrap();
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
