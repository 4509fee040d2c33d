//! Durability against `kill -9`, and the cost of one durable transaction.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edgepool_protocol::status::ReplicateStatus;

use super::{new_task, task_id};
use crate::store::Store;

/// Tells the child test where the journal is; without it the child test does nothing.
const CHILD_DIR_ENV: &str = "EDGEPOOL_STORE_CRASH_CHILD_DIR";
const CHILD_TEST: &str = "store::tests::crash::crash_child_commits_until_killed";
/// The parent kills the child right after it reports this many commits.
const KILL_AFTER: u64 = 25;

/// One transaction as the daemon makes them: a state change, a sequence number, a message.
fn step(store: &mut Store, now_ms: u64) -> u64 {
    let state = if now_ms % 2 == 0 {
        ReplicateStatus::Computing
    } else {
        ReplicateStatus::Computed
    };
    store
        .transaction(|tx| {
            tx.set_task_state(task_id(1), state, None, now_ms)?;
            let seq = tx.next_own_seq()?;
            tx.enqueue("edgepool/v1/status", &seq.to_be_bytes(), false, now_ms)?;
            Ok(seq)
        })
        .unwrap()
}

#[test]
#[ignore = "child process of a_commit_survives_sigkill_right_after_it_returns"]
fn crash_child_commits_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let mut store = Store::open(Path::new(&dir)).unwrap();
    store.insert_task(&new_task(1, b"assignment", 1)).unwrap();
    for now_ms in 2.. {
        let seq = step(&mut store, now_ms);
        // Reported only once the commit returned: the parent may kill us any time after.
        println!("COMMITTED {seq}");
    }
}

#[test]
fn a_commit_survives_sigkill_right_after_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_TEST, "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, committed) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(seq) = line.strip_prefix("COMMITTED ") {
                if sender.send(seq.parse::<u64>().unwrap()).is_err() {
                    return;
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reported = 0;
    while reported < KILL_AFTER {
        let left = deadline.saturating_duration_since(Instant::now());
        match committed.recv_timeout(left) {
            Ok(seq) => reported = seq,
            Err(e) => {
                let _ = child.kill();
                panic!("child reported {reported} commits, then {e}");
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status}");
    }
    #[cfg(not(unix))]
    assert!(!status.success());

    let store = Store::open(dir.path()).unwrap();
    let last = store.last_own_seq().unwrap();
    assert!(last >= KILL_AFTER, "lost commits: {last} < {KILL_AFTER}");
    // Every transaction is whole or absent, even the one the kill interrupted.
    let outbox = store.pending_outbox(usize::MAX).unwrap();
    let payloads: Vec<u64> = outbox
        .iter()
        .map(|e| u64::from_be_bytes(e.payload.as_slice().try_into().unwrap()))
        .collect();
    assert_eq!(payloads, (1..=last).collect::<Vec<_>>());
    let transitions = store.transitions(task_id(1)).unwrap();
    assert_eq!(transitions.len() as u64, last + 1);
    let task = store.task(task_id(1)).unwrap().unwrap();
    assert_eq!(task.updated_at_ms, last + 1);
}

#[test]
#[ignore = "measurement, not a check: cargo test -p edgepool-agent --lib durable_transaction -- --ignored --nocapture"]
fn measure_the_cost_of_one_durable_transaction() {
    // EDGEPOOL_BENCH_DIR picks the filesystem to measure (the temp dir may be tmpfs).
    let base = std::env::var_os("EDGEPOOL_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&base).unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.insert_task(&new_task(1, b"assignment", 1)).unwrap();
    let mut samples = Vec::new();
    for now_ms in 2..502 {
        let start = Instant::now();
        step(&mut store, now_ms);
        samples.push(start.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "durable transaction (state + seq + enqueue, synchronous=FULL) in {}: \
         n={} median={:?} p90={:?} p99={:?} max={:?}",
        base.display(),
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}
