//! Ledger throughput:
//! `cargo run --release -p edgepool-simulator --example bench_ledger [TASKS] [memory]`.
//!
//! One deal of TASKS tasks at trust 1 on a ledger file in a temporary directory; each task is
//! initialized, contributed (signature checks included), revealed and finalized: four SQLite
//! transactions. Prints tasks/s and the per-call mean.

use std::time::Instant;

use edgepool_protocol::poco::{self, ContributionHashes};
use edgepool_protocol::{Address, Bytes32, Digest, Signer, Tag};
use edgepool_simulator::ledger::{
    AppOrder, ContributeCall, Ledger, RequestOrder, RequestParams, WorkerpoolOrder,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tasks: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10_000);
    // `memory` as second argument: an in-memory SQLite database, to tell disk from CPU.
    let in_memory = std::env::args().nth(2).as_deref() == Some("memory");
    let dir = tempfile::tempdir()?;
    let mut ledger = if in_memory {
        Ledger::in_memory()?
    } else {
        Ledger::open(&dir.path().join("ledger.sqlite"))?
    };
    let scheduler = Signer::from_bytes(&[1; 32])?;
    let requester = Signer::from_bytes(&[2; 32])?.address();
    let worker = Signer::from_bytes(&[3; 32])?;
    ledger.deposit(requester, u64::MAX / 4)?;
    ledger.deposit(scheduler.address(), u64::MAX / 4)?;
    ledger.deposit(worker.address(), u64::MAX / 4)?;
    let digest = Digest(Bytes32([7; 32]));
    let app = ledger.register_app(requester, "app", "http://127.0.0.1/app", digest, None)?;
    let pool = ledger.register_workerpool(scheduler.address(), "pool", 30, 10)?;
    let category = ledger.create_category("XS", 300)?;
    let app_order = AppOrder {
        app,
        price: 1,
        volume: tasks,
        tag: Tag::NONE,
        dataset_restrict: Address::ZERO,
        workerpool_restrict: Address::ZERO,
        requester_restrict: Address::ZERO,
        salt: Bytes32::ZERO,
    };
    let pool_order = WorkerpoolOrder {
        workerpool: pool,
        price: 100,
        volume: tasks,
        tag: Tag::NONE,
        category,
        trust: 1,
        app_restrict: Address::ZERO,
        dataset_restrict: Address::ZERO,
        requester_restrict: Address::ZERO,
        salt: Bytes32::ZERO,
    };
    let request = RequestOrder {
        app,
        app_max_price: 1,
        dataset: Address::ZERO,
        dataset_max_price: 0,
        workerpool: Address::ZERO,
        workerpool_max_price: 100,
        requester,
        volume: tasks,
        tag: Tag::NONE,
        category,
        trust: 1,
        beneficiary: requester,
        callback: Address::ZERO,
        params: RequestParams::default(),
        salt: Bytes32::ZERO,
    };
    let now = 1_700_000_000_000;
    let deal = ledger.match_orders(&app_order, None, &pool_order, &request, now)?;
    let started = Instant::now();
    // Time spent in each call, the scheduler's signing excluded.
    let mut spent = [std::time::Duration::ZERO; 4];
    for index in 0..tasks {
        let at = Instant::now();
        let task = ledger.initialize(&deal.deal_id, index)?;
        spent[0] += at.elapsed();
        let hashes = ContributionHashes::new(&worker.address(), &task, &digest);
        let authorization = scheduler.sign_personal(
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
        let at = Instant::now();
        ledger.contribute(&call, now + 1)?;
        spent[1] += at.elapsed();
        let at = Instant::now();
        ledger.reveal(worker.address(), &task, digest, now + 2)?;
        spent[2] += at.elapsed();
        let at = Instant::now();
        ledger.finalize(&task, b"", now + 3)?;
        spent[3] += at.elapsed();
    }
    let elapsed = started.elapsed();
    println!(
        "{tasks} tasks in {:.2} s: {:.0} tasks/s, {:.1} µs per ledger call (signing the authorization included)",
        elapsed.as_secs_f64(),
        tasks as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / (tasks as f64 * 4.0)
    );
    let names = ["initialize", "contribute", "reveal", "finalize"];
    for (name, total) in names.iter().zip(spent) {
        println!(
            "  {name}: {:.1} µs mean",
            total.as_secs_f64() * 1e6 / tasks as f64
        );
    }
    Ok(())
}
