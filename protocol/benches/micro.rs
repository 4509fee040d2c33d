//! Micro benchmarks of the protocol crate's hot paths (criterion): what every message, task and
//! dataset costs the agent in CPU, independent of I/O.
//!
//! Run: `cargo bench -p edgepool-protocol --bench micro` (figures in BENCHMARKS.md, "Micro
//! benchmarks"). Quick check that they still run: `cargo bench -p edgepool-protocol --bench micro
//! -- --test`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgepool_protocol::dataset::{self, DatasetKey};
use edgepool_protocol::digest::result_digest;
use edgepool_protocol::envelope::Envelope;
use edgepool_protocol::hash::{keccak256, sha256};
use edgepool_protocol::messages::{Heartbeat, Message};
use edgepool_protocol::poco;
use edgepool_protocol::primitives::{Address, DealId, Digest, TaskId};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::tree::MemTree;

const TOPIC: &str = "edgepool/v1/0x1111111111111111111111111111111111111111/workers/w/outbox";

fn signer() -> Signer {
    Signer::from_bytes(&[7u8; 32]).expect("a valid secp256k1 key")
}

fn heartbeat() -> Message {
    Message::Heartbeat(Heartbeat {
        running_tasks: 1,
        free_slots: 3,
        free_memory_bytes: 1 << 30,
        free_disk_bytes: 1 << 34,
        accepting: true,
    })
}

fn envelopes(c: &mut Criterion) {
    let signer = signer();
    let message = heartbeat();
    let sealed = Envelope::seal(&signer, TOPIC, 1, 1_700_000_000_000, &message).expect("seal");
    let mut g = c.benchmark_group("envelope");
    g.bench_function("seal (postcard + keccak + secp256k1 sign)", |b| {
        b.iter(|| Envelope::seal(&signer, TOPIC, 1, 1_700_000_000_000, black_box(&message)))
    });
    g.bench_function("open (decode + recover + validate)", |b| {
        b.iter(|| Envelope::open(black_box(&sealed), TOPIC))
    });
    g.finish();
}

fn poco_hashes(c: &mut Criterion) {
    let worker = Address([0x22; 20]);
    let task = poco::task_id(&DealId::from([0x33; 32]), 7);
    let digest = Digest::from([0x44; 32]);
    let mut g = c.benchmark_group("poco");
    g.bench_function("task id + result hash + result seal", |b| {
        b.iter(|| {
            let t: TaskId = poco::task_id(&DealId::from([0x33; 32]), black_box(7));
            (
                poco::result_hash(&t, &digest),
                poco::result_seal(&worker, &t, &digest),
            )
        })
    });
    g.bench_function("authorization sign", |b| {
        let scheduler = signer();
        b.iter(|| {
            poco::WorkerpoolAuthorization::sign(&scheduler, worker, black_box(task), Address::ZERO)
        })
    });
    g.finish();
}

fn hashes_and_dataset(c: &mut Criterion) {
    let mut g = c.benchmark_group("dataset");
    for size in [64 * 1024usize, 1 << 20] {
        let plain: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let key = DatasetKey::from_bytes([0x5a; 32]);
        let encrypted = dataset::encrypt(&key, [0x11; 16], &plain);
        let sum = dataset::checksum(&encrypted);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("sha256", size), &plain, |b, p| {
            b.iter(|| sha256(black_box(p)))
        });
        g.bench_with_input(BenchmarkId::new("keccak256", size), &plain, |b, p| {
            b.iter(|| keccak256(black_box(p)))
        });
        g.bench_with_input(
            BenchmarkId::new("decrypt_checked (sha256 + AES-256-CBC)", size),
            &encrypted,
            |b, e| b.iter(|| dataset::decrypt_checked(&key, &sum, black_box(e))),
        );
    }
    g.finish();
}

fn digests(c: &mut Criterion) {
    let mut tree = MemTree::new();
    tree.insert_file(
        "iexec_out/computed.json",
        br#"{"deterministic-output-path":"/iexec_out/out"}"#.to_vec(),
    )
    .expect("insert");
    for i in 0..32 {
        tree.insert_file(&format!("iexec_out/out/{i}.txt"), vec![i as u8; 4096])
            .expect("insert");
    }
    c.bench_function("result digest, 32 files of 4 KiB", |b| {
        b.iter(|| result_digest(black_box(&tree), "iexec_out"))
    });
}

criterion_group!(benches, envelopes, poco_hashes, hashes_and_dataset, digests);
criterion_main!(benches);
