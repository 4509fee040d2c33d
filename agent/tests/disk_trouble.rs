//! Disk trouble with a real agent process, a real SQLite journal and Mosquitto: the state
//! directory on a 16 MiB tmpfs filled to the last byte, then made read-only (a read-only bind
//! mount placed over it while the agent runs). In both cases the agent stays up, stops taking
//! tasks (declines with `INSUFFICIENT_RESOURCES` and the typed reason, heartbeats say not
//! accepting and no free slot), `doctor`, `status` and its log say why, the task it was running
//! still ends exactly once, the journal passes `PRAGMA integrity_check` throughout, and once
//! the trouble ends the next task runs to completion.
//!
//! The same, for an agent *started* on a full or read-only state directory (a real
//! `mount -o remount,ro` of the tmpfs, possible while no process holds a file open for
//! writing), after a clean stop and after `kill -9`: it comes up paused and resumes in the
//! same process. With no journal at all on a read-only disk it exits with code 8.
//!
//! Mounting needs root: without it each test prints `SKIPPED …` with the reason and passes.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use edgepool_protocol::messages::Message;
use edgepool_protocol::primitives::{Address, TaskId};
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

/// A running agent on a 16 MiB tmpfs state directory (heartbeat every second) that completed
/// a first task.
struct Setup {
    state: std::path::PathBuf,
    tmpfs: Tmpfs,
    broker: Mosquitto,
    server: HttpServer,
    driver: Driver,
    agent: Agent,
    first: edgepool_protocol::primitives::TaskId,
}

/// [`Setup`], or `None` (with a `SKIPPED` line) where no tmpfs can be mounted.
fn set_up(label: &str, seed: u8) -> Option<Setup> {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let tmpfs = match Tmpfs::mount(&state, "16m") {
        Ok(mounted) => mounted,
        Err(why) => {
            eprintln!("SKIPPED {label}: cannot mount a tmpfs ({why})");
            return None;
        }
    };
    let broker = Mosquitto::start(MosquittoOptions::default());
    let server = HttpServer::hello();
    let mut driver = Driver::connect(broker.port(), &format!("scheduler-disk-{seed:x}"));
    let agent = Agent::start_in(
        dir,
        &broker.url(),
        driver.scheduler.address(),
        &[("EDGEPOOL_AGENT_HEARTBEAT_SECS", "1")],
    );
    driver.wait_online(&agent);
    let first = driver.assign(&server.hello_deal(seed), 0, agent.address);
    assert!(
        driver.step_until(WAIT, |d| d.finalized.contains_key(&first)),
        "{label}: the first task did not end; logs:\n{}",
        agent.logs()
    );
    Some(Setup {
        state,
        tmpfs,
        broker,
        server,
        driver,
        agent,
        first,
    })
}

/// What must hold while the journal cannot be written: a new assignment (`seed`) is declined
/// `INSUFFICIENT_RESOURCES` with the reason (`reason`, or the reserve), a heartbeat after the
/// `seen`-th outbox message says not accepting and no free slot, `doctor` exits 6 with
/// `FAIL disk`, `status` says `NOT ACCEPTING TASKS`, the agent runs, the journal is intact.
/// Returns the declined task.
fn assert_paused(
    label: &str,
    driver: &mut Driver,
    agent: &mut Agent,
    server: &HttpServer,
    seed: u8,
    reason: &str,
    seen: usize,
) -> edgepool_protocol::primitives::TaskId {
    let worker = agent.address;
    let refused = driver.assign(&server.hello_deal(seed), 0, worker);
    assert!(
        driver.step_until(WAIT, |d| !d.declines(refused).is_empty()),
        "{label}: no decline; logs:\n{}",
        agent.logs()
    );
    let decline = driver.declines(refused).remove(0);
    assert!(
        decline.starts_with(&format!("{}:", ReplicateStatusCause::InsufficientResources))
            && (decline.to_lowercase().contains(reason) || decline.contains("below the reserve")),
        "{label}: {decline}"
    );
    assert!(
        driver.step_until(WAIT, |d| d
            .last_heartbeat(worker, seen)
            .is_some_and(|h| !h.accepting && h.free_slots == 0)),
        "{label}: no heartbeat saying not accepting; logs:\n{}",
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
    refused
}

/// The agent serves again after a trouble: a new task finalizes, and it and the tasks `earlier`
/// all end COMPLETED in the agent's journal. Returns the new task.
fn serves_again(
    driver: &mut Driver,
    agent: &Agent,
    server: &HttpServer,
    worker: Address,
    seed: u8,
    earlier: &[TaskId],
    label: &str,
) -> TaskId {
    let after = driver.assign(&server.hello_deal(seed), 0, worker);
    assert!(
        driver.step_until(WAIT, |d| d.finalized.contains_key(&after)),
        "{label}: no task after the trouble; logs:\n{}",
        agent.logs()
    );
    for task in earlier.iter().copied().chain([after]) {
        let ok = support::poll_until(WAIT, || {
            agent.task_state(task).as_deref() == Some("COMPLETED")
        });
        assert!(ok, "{label}: {task} is {:?}", agent.task_state(task));
    }
    after
}

/// The common part: a running agent on a tmpfs state directory, a task running when the
/// trouble starts, what must hold while it lasts, and the recovery.
fn trouble_and_recovery(label: &str, start: impl FnOnce(&Path) -> Box<dyn FnOnce()>, reason: &str) {
    let Some(Setup {
        state,
        tmpfs: _tmpfs,
        broker: _broker,
        server,
        mut driver,
        mut agent,
        first,
    }) = set_up(label, 0x81)
    else {
        return;
    };

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
    let refused = assert_paused(label, &mut driver, &mut agent, &server, 0x83, reason, seen);

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
    serves_again(
        &mut driver,
        &agent,
        &server,
        worker,
        0x84,
        &[first, running],
        label,
    );
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

/// How the agent is stopped before the trouble starts.
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    /// SIGTERM: a clean stop (SQLite removes the `-wal` and `-shm` files).
    Clean,
    /// `kill -9`: the `-wal` (with commits) and `-shm` files stay.
    Kill,
}

/// An agent that ran a task is stopped, the trouble starts while it is down, and it is started
/// again on it: it must come up (no exit), say why in its log, `doctor` and `status`, decline
/// with the typed reason, heartbeat not accepting, keep the journal intact, and take tasks
/// again once the trouble ends, without a restart.
fn start_in_trouble_and_recovery(
    label: &str,
    stop: Stop,
    start: impl FnOnce(&Path, &Tmpfs) -> Box<dyn FnOnce(&Tmpfs)>,
    reason: &str,
) {
    let Some(Setup {
        state,
        tmpfs,
        broker: _broker,
        server,
        mut driver,
        mut agent,
        first,
    }) = set_up(label, 0x91)
    else {
        return;
    };
    let worker = agent.address;
    assert!(driver.step_until(WAIT, |_| agent.outbox_len() == 0
        && agent.task_state(first).as_deref() == Some("COMPLETED")));
    match stop {
        Stop::Clean => assert_eq!(agent.stop(WAIT), Some(0), "{label}: {}", agent.logs()),
        Stop::Kill => {
            agent.child.kill().unwrap();
            agent.child.wait().unwrap();
        }
    }
    let wal = state.join("journal.sqlite-wal");
    let wal_len = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(
        wal_len > 0,
        stop == Stop::Kill,
        "{label}: WAL of {wal_len} bytes"
    );

    // The trouble starts while the agent is down; it is started on it.
    let end_trouble = start(&state, &tmpfs);
    let seen = driver.outbox.len();
    agent.restart(None);
    assert!(
        support::poll_until(WAIT, || agent
            .last_log()
            .contains("started with a journal that cannot be written")),
        "{label}: the agent did not start in trouble; logs:\n{}",
        agent.logs()
    );
    let refused = assert_paused(label, &mut driver, &mut agent, &server, 0x92, reason, seen);
    assert_eq!(
        agent.task_state(first).as_deref(),
        Some("COMPLETED"),
        "{label}: the journal does not read during the trouble"
    );

    // The trouble ends: the same process takes tasks again.
    end_trouble(&tmpfs);
    assert!(
        support::poll_until(WAIT, || agent
            .last_log()
            .contains("the journal can be written again")),
        "{label}: never recovered; logs:\n{}",
        agent.logs()
    );
    serves_again(&mut driver, &agent, &server, worker, 0x93, &[first], label);
    assert!(agent.alive());
    assert_eq!(agent.runs, 2, "{label}: restarted");
    assert!(driver.step_until(WAIT, |_| agent.outbox_len() == 0));
    driver.check_invariants(label);
    assert_eq!(agent.integrity(), "ok", "{label}: after");
    let logs = agent.last_log();
    eprintln!(
        "{label}: ok ({} outbox messages, {} sent without a journal row, {} declines)",
        driver.outbox.len(),
        logs.matches("sent without a journal row").count(),
        driver.declines(refused).len(),
    );
    if std::env::var_os("EDGEPOOL_TEST_SHOW_LOGS").is_some() {
        eprintln!("{}", agent.logs());
    }
}

fn fill_state_disk(state: &Path, _: &Tmpfs) -> Box<dyn FnOnce(&Tmpfs)> {
    let filler = state.join("filler");
    assert!(fill_to_the_last_byte(&filler) > 0);
    Box::new(move |_| std::fs::remove_file(&filler).unwrap())
}

/// A real file-system remount: with the agent down nothing holds a file open for writing, so
/// the kernel lets the tmpfs go read-only; back to read-write while the agent runs.
fn remount_state_disk_read_only(_: &Path, tmpfs: &Tmpfs) -> Box<dyn FnOnce(&Tmpfs)> {
    tmpfs.remount(true).unwrap();
    assert!(std::fs::File::create(tmpfs.0.join("probe")).is_err());
    Box::new(|tmpfs| tmpfs.remount(false).unwrap())
}

#[test]
fn an_agent_started_on_a_full_state_disk_serves_without_tasks_until_space_returns() {
    start_in_trouble_and_recovery(
        "started on a full disk",
        Stop::Clean,
        fill_state_disk,
        "full",
    );
}

#[test]
fn an_agent_killed_then_started_on_a_full_state_disk_resumes_when_space_returns() {
    start_in_trouble_and_recovery(
        "killed, started on a full disk",
        Stop::Kill,
        fill_state_disk,
        "full",
    );
}

#[test]
fn an_agent_started_on_a_read_only_remounted_state_disk_resumes_when_it_is_writable() {
    start_in_trouble_and_recovery(
        "started on a read-only remount",
        Stop::Clean,
        remount_state_disk_read_only,
        "read-only",
    );
}

#[test]
fn an_agent_killed_then_started_on_a_read_only_state_disk_resumes_when_it_is_writable() {
    start_in_trouble_and_recovery(
        "killed, started on a read-only remount",
        Stop::Kill,
        remount_state_disk_read_only,
        "read-only",
    );
}

/// With no journal to read (first start) on a read-only state directory there is nothing to
/// serve from: the agent exits at once with code 8 and says why.
#[test]
fn an_agent_without_a_journal_on_a_read_only_state_disk_exits_with_code_8() {
    let label = "no journal, read-only";
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let tmpfs = match Tmpfs::mount(&state, "16m") {
        Ok(mounted) => mounted,
        Err(why) => {
            eprintln!("SKIPPED {label}: cannot mount a tmpfs ({why})");
            return;
        }
    };
    let broker = Mosquitto::start(MosquittoOptions::default());
    let mut driver = Driver::connect(broker.port(), "scheduler-disk-none");
    let mut agent = Agent::start_in(dir, &broker.url(), driver.scheduler.address(), &[]);
    driver.wait_online(&agent);
    assert_eq!(agent.stop(WAIT), Some(0), "{label}: {}", agent.logs());
    for name in ["journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"] {
        let _ = std::fs::remove_file(state.join(name));
    }
    tmpfs.remount(true).unwrap();
    agent.restart(None);
    let code = agent.wait_exit(WAIT);
    let log = agent.last_log();
    assert_eq!(code, Some(8), "{label}: {log}");
    assert!(
        log.contains("is unusable: the journal cannot be written") && log.contains("no journal at"),
        "{label}: {log}"
    );
    tmpfs.remount(false).unwrap();
}

/// A 32 MiB ext4 file system on a loop device, mounted `errors=remount-ro`; detached when
/// dropped.
struct Ext4Loop {
    image: std::path::PathBuf,
    device: String,
    at: std::path::PathBuf,
}

impl Ext4Loop {
    /// Makes and mounts it on `at`, or says why it cannot (not root, no loop device, no ext4).
    fn mount(image: &Path, at: &Path) -> Result<Ext4Loop, String> {
        let run = |program: &str, args: &[&str]| -> Result<String, String> {
            let out = Command::new(program)
                .args(args)
                .output()
                .map_err(|e| format!("{program}: {e}"))?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
            } else {
                Err(format!(
                    "{program} {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        let file = std::fs::File::create(image).map_err(|e| e.to_string())?;
        file.set_len(32 << 20).map_err(|e| e.to_string())?;
        let image_arg = image.to_str().unwrap();
        let device = run("losetup", &["-f", "--show", image_arg])?;
        let mounted = Ext4Loop {
            image: image.to_path_buf(),
            device: device.clone(),
            at: at.to_path_buf(),
        };
        run("mkfs.ext4", &["-q", &device])?;
        std::fs::create_dir_all(at).unwrap();
        mounted.mount_again()?;
        Ok(mounted)
    }

    fn mount_again(&self) -> Result<(), String> {
        let out = Command::new("mount")
            .args(["-o", "errors=remount-ro", &self.device])
            .arg(&self.at)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// `/sys/fs/ext4/<device>/trigger_fs_error`: the kernel records an error and, with
    /// `errors=remount-ro`, forces the file system read-only under every open file.
    fn trigger_error(&self) -> Result<(), String> {
        let name = Path::new(&self.device).file_name().unwrap().to_owned();
        let knob = Path::new("/sys/fs/ext4")
            .join(name)
            .join("trigger_fs_error");
        std::fs::write(&knob, "1").map_err(|e| format!("{}: {e}", knob.display()))
    }

    /// Unmounts, repairs (`e2fsck -fy`) and mounts read-write again: the only way back from an
    /// error-forced read-only ext4.
    fn repair(&self) {
        let out = Command::new("umount").arg(&self.at).output().unwrap();
        assert!(
            out.status.success(),
            "umount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let fsck = Command::new("e2fsck")
            .args(["-fy", &self.device])
            .output()
            .unwrap();
        // 0: clean, 1: errors corrected.
        assert!(
            matches!(fsck.status.code(), Some(0 | 1)),
            "e2fsck: {}",
            String::from_utf8_lossy(&fsck.stdout)
        );
        self.mount_again().unwrap();
    }
}

impl Drop for Ext4Loop {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

/// A running agent whose ext4 state file system the kernel forces read-only on an error (what
/// a failing disk does): it pauses as for a read-only bind mount (the journal's writes now fail
/// under its open files). The file system cannot be made writable again while mounted, so the
/// agent is stopped, the file system repaired and mounted again, and the agent started: the
/// journal is intact and it takes tasks.
#[test]
fn an_ext4_state_disk_forced_read_only_by_the_kernel_pauses_the_agent() {
    let label = "ext4 forced read-only";
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let image = std::env::temp_dir().join(format!("edgepool-ext4-{}.img", std::process::id()));
    let disk = match Ext4Loop::mount(&image, &state) {
        Ok(mounted) => mounted,
        Err(why) => {
            eprintln!("SKIPPED {label}: cannot make a loop-mounted ext4 ({why})");
            return;
        }
    };
    let broker = Mosquitto::start(MosquittoOptions::default());
    let server = HttpServer::hello();
    let mut driver = Driver::connect(broker.port(), "scheduler-disk-ext4");
    let mut agent = Agent::start_in(
        dir,
        &broker.url(),
        driver.scheduler.address(),
        &[("EDGEPOOL_AGENT_HEARTBEAT_SECS", "1")],
    );
    let worker = agent.address;
    driver.wait_online(&agent);
    let first = driver.assign(&server.hello_deal(0xa1), 0, worker);
    assert!(
        driver.step_until(WAIT, |d| d.finalized.contains_key(&first)),
        "{label}: the first task did not end; logs:\n{}",
        agent.logs()
    );
    assert!(driver.step_until(WAIT, |_| agent.outbox_len() == 0
        && agent.task_state(first).as_deref() == Some("COMPLETED")));

    if let Err(why) = disk.trigger_error() {
        eprintln!("SKIPPED {label}: {why}");
        return;
    }
    assert!(std::fs::File::create(state.join("probe")).is_err());
    let seen = driver.outbox.len();
    assert!(
        support::poll_until(WAIT, || agent
            .logs()
            .contains("the journal cannot be written")),
        "{label}: the trouble was never noticed; logs:\n{}",
        agent.logs()
    );
    assert_paused(
        label,
        &mut driver,
        &mut agent,
        &server,
        0xa2,
        "read-only",
        seen,
    );

    // Back: stop, repair, mount, start.
    assert_eq!(agent.stop(WAIT), Some(0), "{label}: {}", agent.logs());
    disk.repair();
    assert_eq!(agent.integrity(), "ok", "{label}: after the repair");
    agent.restart(None);
    serves_again(&mut driver, &agent, &server, worker, 0xa3, &[first], label);
    assert!(driver.step_until(WAIT, |_| agent.outbox_len() == 0));
    driver.check_invariants(label);
    assert_eq!(agent.integrity(), "ok", "{label}: after");
    drop(agent);
    drop(disk);
}
