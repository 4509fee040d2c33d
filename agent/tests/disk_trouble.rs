//! Disk trouble with a real agent process, a real SQLite journal and Mosquitto: the state
//! directory on a 16 MiB tmpfs filled to the last byte, then made read-only (a read-only bind
//! mount placed over it while the agent runs). In both cases the agent stays up, stops taking
//! tasks (declines with `INSUFFICIENT_RESOURCES` and the typed reason, heartbeats say not
//! accepting and no free slot), `doctor`, `status` and its log say why, the task it was running
//! still ends exactly once, the journal passes `PRAGMA integrity_check` throughout, and once
//! the trouble ends the next task runs to completion.
//!
//! Mounting needs root: without it each test prints `SKIPPED …` with the reason and passes.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use edgepool_protocol::messages::Message;
use edgepool_protocol::status::ReplicateStatusCause;
use support::mosquitto::{Mosquitto, MosquittoOptions};
use support::pool::{Agent, Driver, HttpServer, Tmpfs};

const WAIT: Duration = Duration::from_secs(60);

/// Writes `path` until the file system refuses one more byte.
fn fill_to_the_last_byte(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let mut written = 0u64;
    let mut chunk = 1usize << 20;
    let bytes = vec![0x5a_u8; chunk];
    loop {
        match file.write(&bytes[..chunk]) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(_) if chunk > 1 => chunk /= 2,
            Err(_) => break,
        }
    }
    let _ = file.sync_all();
    written
}

/// The common part: a running agent on a tmpfs state directory, a task running when the
/// trouble starts, what must hold while it lasts, and the recovery.
fn trouble_and_recovery(label: &str, start: impl FnOnce(&Path) -> Box<dyn FnOnce()>, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _tmpfs = match Tmpfs::mount(&state, "16m") {
        Ok(mounted) => mounted,
        Err(why) => {
            eprintln!("SKIPPED {label}: cannot mount a tmpfs ({why})");
            return;
        }
    };
    let broker = Mosquitto::start(MosquittoOptions::default());
    let server = HttpServer::hello();
    let mut driver = Driver::connect(broker.port(), "scheduler-disk");
    let mut agent = Agent::start_in(
        dir,
        &broker.url(),
        driver.scheduler.address(),
        &[("EDGEPOOL_AGENT_HEARTBEAT_SECS", "1")],
    );
    driver.wait_online(&agent);
    let first = driver.assign(&server.hello_deal(0x81), 0, agent.address);
    assert!(
        driver.step_until(WAIT, |d| d.finalized.contains_key(&first)),
        "{label}: the first task did not end; logs:\n{}",
        agent.logs()
    );

    // A task is assigned, then the trouble starts while it runs.
    let running = driver.assign(&server.mandelbrot_deal(0x82), 0, agent.address);
    let worker = agent.address;
    assert!(driver
        .step_until(WAIT, |d| d.outbox.iter().any(
            |(_, _, _, m)| matches!(m, Message::Accept(a) if a.task_id == running)
        )));
    let end_trouble = start(&state);
    assert!(
        support::poll_until(WAIT, || agent
            .logs()
            .contains("the journal cannot be written")),
        "{label}: the trouble was never noticed; logs:\n{}",
        agent.logs()
    );
    assert_eq!(agent.integrity(), "ok", "{label}: during the trouble");

    // New work is declined with the typed reason; the heartbeat says not accepting.
    let seen = driver.outbox.len();
    let refused = driver.assign(&server.hello_deal(0x83), 0, worker);
    assert!(
        driver.step_until(WAIT, |d| !d.declines(refused).is_empty()),
        "{label}: no decline; logs:\n{}",
        agent.logs()
    );
    let decline = driver.declines(refused).remove(0);
    assert!(
        decline.starts_with(&format!("{}:", ReplicateStatusCause::InsufficientResources))
            && (decline.contains(reason) || decline.contains("below the reserve")),
        "{label}: {decline}"
    );
    assert!(
        driver.step_until(Duration::from_secs(10), |d| d
            .last_heartbeat(worker, seen)
            .is_some_and(|h| !h.accepting && h.free_slots == 0)),
        "{label}: the heartbeat still says accepting; logs:\n{}",
        agent.logs()
    );
    let (code, doctor) = agent.cli("doctor", &[]);
    assert_eq!(code, Some(6), "{label}: {doctor}");
    assert!(
        doctor.lines().any(|l| l.starts_with("FAIL disk")),
        "{label}: {doctor}"
    );
    let (code, status) = agent.cli("status", &[]);
    assert_eq!(code, Some(0), "{label}: {status}");
    assert!(status.contains("NOT ACCEPTING TASKS"), "{label}: {status}");
    assert!(
        agent.alive(),
        "{label}: the agent stopped; logs:\n{}",
        agent.logs()
    );
    assert_eq!(agent.integrity(), "ok", "{label}: during the trouble");

    // The trouble ends: the running task ends once, and new tasks run again.
    end_trouble();
    assert!(
        support::poll_until(WAIT, || agent
            .logs()
            .contains("the journal can be written again")),
        "{label}: never recovered; logs:\n{}",
        agent.logs()
    );
    assert!(
        driver.step_until(WAIT, |d| d.finalized.contains_key(&running)),
        "{label}: the task running during the trouble never ended; logs:\n{}",
        agent.logs()
    );
    let after = driver.assign(&server.hello_deal(0x84), 0, worker);
    assert!(
        driver.step_until(WAIT, |d| d.finalized.contains_key(&after)),
        "{label}: no task after the recovery; logs:\n{}",
        agent.logs()
    );
    for task in [first, running, after] {
        let ok = support::poll_until(WAIT, || {
            agent.task_state(task).as_deref() == Some("COMPLETED")
        });
        assert!(ok, "{label}: {task} is {:?}", agent.task_state(task));
    }
    assert!(
        agent.logs().contains(reason) || agent.logs().contains("No space"),
        "{label}"
    );
    assert!(agent.alive());
    assert!(driver.step_until(WAIT, |_| agent.outbox_len() == 0));
    driver.check_invariants(label);
    assert_eq!(driver.distinct_contributions(running), 1);
    // Our own disk's trouble is not the task's failure: no error result was contributed.
    let failed = driver.outbox.iter().any(|(_, _, _, m)| {
        matches!(m, Message::StatusUpdate(u) if u.task_id == running && u.cause.is_some())
    });
    assert!(
        !failed,
        "{label}: the running task reported a failure; logs:\n{}",
        agent.logs()
    );
    assert_eq!(agent.integrity(), "ok", "{label}: after");
    let logs = agent.logs();
    eprintln!(
        "{label}: ok ({} outbox messages, {} sent without a journal row, {} declines, \
         the running task's archive waited for the disk: {})",
        driver.outbox.len(),
        logs.matches("sent without a journal row").count(),
        driver.declines(refused).len(),
        logs.contains("waiting for the disk"),
    );
    if std::env::var_os("EDGEPOOL_TEST_SHOW_LOGS").is_some() {
        eprintln!("{logs}");
    }
}

#[test]
fn a_state_disk_full_to_the_last_byte_pauses_the_agent_until_space_returns() {
    trouble_and_recovery(
        "disk full to the last byte",
        |state| {
            let filler = state.join("filler");
            let written = fill_to_the_last_byte(&filler);
            assert!(written > 0);
            Box::new(move || std::fs::remove_file(&filler).unwrap())
        },
        "full",
    );
}

#[test]
fn a_read_only_state_directory_pauses_the_agent_until_it_is_writable() {
    trouble_and_recovery(
        "read-only state directory",
        |state| {
            // The kernel refuses to remount a file system read-only while the agent holds its
            // journal open for writing; a read-only bind mount over the directory is what the
            // agent sees from then on (new files fail with EROFS, statvfs says read-only).
            let run = |args: &[&str]| {
                let out = Command::new("mount")
                    .args(args)
                    .arg(state)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            run(&["--bind", state.to_str().unwrap()]);
            run(&["-o", "remount,ro,bind"]);
            assert!(std::fs::File::create(state.join("probe")).is_err());
            let state = state.to_path_buf();
            Box::new(move || {
                let out = Command::new("umount").arg(&state).output().unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            })
        },
        "read-only",
    );
}
