//! Fault injection: the agent is crashed (SIGABRT, nothing flushed, like `kill -9`) at each named
//! crash point of the pipeline (`src/failpoints.rs`, armed with `FAILPOINTS`), restarted on the
//! same state directory, and the task must still end exactly once:
//! - the scheduler (the simulator's state machine on a real MQTT connection) finalizes it once and
//!   the agent's journal ends it `COMPLETED`;
//! - the scheduler never refused a contribution or reveal as conflicting
//!   (`SchedulerError::Conflict`) and never saw two different contributions from the worker;
//! - the outbox lost and reordered nothing: on the worker's outbox topic the sequence numbers
//!   never go back (a number seen again is the same message, re-sent after the crash), and
//!   together with the capacity topic's they leave no gap.
//!
//! Real processes and components: the agent binary (built with the `failpoints` feature through
//! the crate's self dev-dependency), the embedded rumqttd broker, a loopback HTTP server serving
//! the app and the input file and storing the uploaded result.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use edgepool_protocol::envelope::Envelope;
use edgepool_protocol::hash::sha256;
use edgepool_protocol::messages::{DealSummary, Message, TaskLimits};
use edgepool_protocol::poco;
use edgepool_protocol::primitives::{Address, Digest, TaskId};
use edgepool_protocol::signature::Signer;
use edgepool_simulator::scheduler::{Action, Scheduler, SchedulerError};
use rumqttc::Client;
use support::http::StoreServer as HttpServer;
use support::pool::{send_sealed, topic, Agent, SchedulerLink, Tmpfs};
use support::rumqttd::EmbeddedBroker;
use support::{bin, now_ms, repo};

/// The bound on each phase of a run (crash, then completion).
const PHASE: Duration = Duration::from_secs(60);

/// The scheduler side, recording everything the invariants are checked on.
struct Driver {
    scheduler: Scheduler,
    signer: Signer,
    client: Client,
    incoming: std::sync::mpsc::Receiver<(String, Vec<u8>)>,
    seq: u64,
    /// Outbox messages in arrival order: (sequence number, payload hash, message).
    outbox: Vec<(u64, [u8; 32], Message)>,
    /// Sequence numbers seen on the capacity topic.
    capacity_seqs: Vec<u64>,
    /// Refusals by the scheduler state machine.
    conflicts: usize,
    other_refusals: Vec<String>,
    finalized: usize,
}

impl Driver {
    fn connect(port: u16) -> Driver {
        let SchedulerLink {
            signer,
            client,
            incoming,
        } = SchedulerLink::connect(port, 64, None);
        Driver {
            scheduler: Scheduler::new(signer.clone()),
            signer,
            client,
            incoming,
            seq: 0,
            outbox: Vec::new(),
            capacity_seqs: Vec::new(),
            conflicts: 0,
            other_refusals: Vec::new(),
            finalized: 0,
        }
    }

    fn perform(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { worker, message } => {
                    self.seq += 1;
                    send_sealed(&self.signer, &self.client, worker, self.seq, &message);
                }
                Action::Finalized { .. } => self.finalized += 1,
                Action::Failed { task_id, reason } => self
                    .other_refusals
                    .push(format!("task {task_id} failed: {reason}")),
            }
        }
    }

    /// Handles what arrived within 100 ms, if anything.
    fn step(&mut self) {
        let Ok((t, payload)) = self.incoming.recv_timeout(Duration::from_millis(100)) else {
            return;
        };
        if t.ends_with("/capacity") {
            if let Ok(opened) = Envelope::open(&payload, &t) {
                self.capacity_seqs.push(opened.seq);
            }
            return;
        }
        if !t.ends_with("/outbox") {
            return;
        }
        let opened = Envelope::open(&payload, &t).unwrap();
        self.outbox
            .push((opened.seq, sha256(&payload).0, opened.message.clone()));
        match self
            .scheduler
            .handle(opened.sender, &opened.message, now_ms())
        {
            Ok(actions) => self.perform(actions),
            Err(SchedulerError::Conflict { .. }) => self.conflicts += 1,
            Err(e) => self.other_refusals.push(e.to_string()),
        }
    }

    fn wait_online(&mut self, worker: Address, agent: &Agent) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok((t, payload)) = self.incoming.recv_timeout(Duration::from_millis(100)) {
                if t == topic(worker, "capacity") {
                    self.capacity_seqs
                        .push(Envelope::open(&payload, &t).unwrap().seq);
                    return;
                }
            }
        }
        panic!("agent never advertised; logs:\n{}", agent.logs());
    }

    fn contributions(&self, task_id: TaskId) -> Vec<Digest> {
        self.outbox
            .iter()
            .filter_map(|(_, _, m)| match m {
                Message::Contribution(c) if c.task_id == task_id => Some(c.result_digest),
                _ => None,
            })
            .collect()
    }
}

/// Which app a case runs.
#[derive(Clone, Copy)]
enum App {
    /// `hello`: arguments, an input file, quick.
    Hello,
    /// `mandelbrot 400 1000`: several fuel slices, so a crash can land mid-compute.
    Mandelbrot,
}

fn deal(server: &HttpServer, app: App, bytes: &[u8], seed: u8) -> DealSummary {
    let (file, inputs, args) = match app {
        App::Hello => ("hello.wasm", vec![server.url("greeting.txt")], "Alice Bob"),
        App::Mandelbrot => ("mandelbrot.wasm", Vec::new(), "400 1000"),
    };
    server.deal(file, bytes, inputs, args, seed)
}

/// Runs one task with the agent armed with `failpoints`, waits for the crash at `point`,
/// restarts the agent unarmed and checks the invariants.
/// The broker of a case.
#[derive(Clone, Copy)]
enum Broker {
    /// rumqttd, embedded.
    Rumqttd,
    /// Mosquitto 2 as a child process (the production broker).
    Mosquitto,
}

enum Running {
    Rumqttd(EmbeddedBroker),
    Mosquitto(support::mosquitto::Mosquitto),
}

impl Running {
    fn start(broker: Broker) -> Running {
        match broker {
            Broker::Rumqttd => Running::Rumqttd(EmbeddedBroker::start()),
            Broker::Mosquitto => Running::Mosquitto(support::mosquitto::Mosquitto::start(
                support::mosquitto::MosquittoOptions::default(),
            )),
        }
    }

    fn port(&self) -> u16 {
        match self {
            Running::Rumqttd(b) => b.port(),
            Running::Mosquitto(b) => b.port(),
        }
    }

    fn url(&self) -> String {
        match self {
            Running::Rumqttd(b) => b.url(),
            Running::Mosquitto(b) => b.url(),
        }
    }
}

fn crash_and_recover(point: &str, failpoints: &str, app: App) {
    crash_and_recover_on(Broker::Rumqttd, point, failpoints, app);
}

fn crash_and_recover_on(broker: Broker, point: &str, failpoints: &str, app: App) {
    let hello = std::fs::read(repo().join("apps/hello/hello.wasm")).unwrap();
    let mandelbrot = std::fs::read(repo().join("apps/mandelbrot/mandelbrot.wasm")).unwrap();
    let mut files = HashMap::new();
    files.insert("hello.wasm".to_string(), hello.clone());
    files.insert("mandelbrot.wasm".to_string(), mandelbrot.clone());
    files.insert("greeting.txt".to_string(), b"hi\n".to_vec());
    let server = HttpServer::start(files);
    let broker = Running::start(broker);
    let mut driver = Driver::connect(broker.port());
    let mut agent = Agent::start(&broker.url(), driver.scheduler.address(), &[]);
    driver.wait_online(agent.address, &agent);
    // The first run is unarmed up to here (init and connection); arm it from the start.
    agent.restart(Some(failpoints));
    driver.wait_online(agent.address, &agent);

    let bytes = match app {
        App::Hello => &hello,
        App::Mandelbrot => &mandelbrot,
    };
    let d = deal(&server, app, bytes, 0x40);
    let task_id = poco::task_id(&d.deal_id, 0);
    let actions = driver
        .scheduler
        .assign(
            &d,
            0,
            agent.address,
            TaskLimits::default(),
            Address::ZERO,
            now_ms(),
        )
        .unwrap();
    driver.perform(actions);

    // Phase 1: the agent crashes at the point.
    let deadline = Instant::now() + PHASE;
    let status = loop {
        driver.step();
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "never crashed at {point}; logs:\n{}",
            agent.logs()
        );
    };
    assert_eq!(
        status.signal(),
        Some(6),
        "{status:?}; logs:\n{}",
        agent.logs()
    );
    assert!(
        agent
            .logs()
            .contains(&format!("failpoint {point}: aborting")),
        "crashed elsewhere; logs:\n{}",
        agent.logs()
    );

    // Phase 2: restarted on the same state, the task completes.
    agent.restart(None);
    let deadline = Instant::now() + PHASE;
    while !(driver.finalized > 0 && agent.task_state(task_id).as_deref() == Some("COMPLETED")) {
        for _ in 0..5 {
            driver.step();
        }
        assert!(
            Instant::now() < deadline,
            "after a crash at {point} the task did not end (scheduler finalized {} times, \
             journal state {:?}); refusals {:?}; seen {:#?}\nlogs:\n{}",
            driver.finalized,
            agent.task_state(task_id),
            driver.other_refusals,
            driver
                .outbox
                .iter()
                .map(|(s, _, m)| (s, m.kind()))
                .collect::<Vec<_>>(),
            agent.logs()
        );
    }
    // The journal committed COMPLETED before some crashes: wait until the restarted agent has
    // delivered its whole outbox (rows are deleted on PUBACK), then let anything still in flight
    // arrive (a re-sent message must not conflict either).
    let deadline = Instant::now() + PHASE;
    while agent.outbox_len() > 0 {
        driver.step();
        assert!(
            Instant::now() < deadline,
            "{point}: the outbox never drained; logs:\n{}",
            agent.logs()
        );
    }
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        driver.step();
    }

    // Exactly once, never two different contributions.
    assert_eq!(driver.finalized, 1, "{point}");
    assert_eq!(driver.conflicts, 0, "{point}: conflicting messages");
    let contributions = driver.contributions(task_id);
    assert!(!contributions.is_empty(), "{point}");
    assert!(
        contributions.windows(2).all(|w| w[0] == w[1]),
        "{point}: two different contributions {contributions:?}"
    );
    // The outbox: numbers never go back; a repeated number is the same message re-sent.
    let mut by_seq: BTreeMap<u64, [u8; 32]> = BTreeMap::new();
    let mut highest = 0;
    for (seq, hash, message) in &driver.outbox {
        if let Some(previous) = by_seq.insert(*seq, *hash) {
            assert_eq!(
                &previous, hash,
                "{point}: seq {seq} reused for another message"
            );
        } else {
            assert!(
                *seq > highest,
                "{point}: seq {seq} ({}) arrived after {highest}",
                message.kind()
            );
            highest = *seq;
        }
    }
    // Nothing lost: every transition the journal committed was reported, by the message that
    // reports it. (Sequence numbers may skip: a capacity advertisement sealed just before the
    // crash and superseded at restart is never published, and need not be.)
    let db = rusqlite::Connection::open(agent.journal()).unwrap();
    let mut statement = db
        .prepare("SELECT state FROM task_transitions WHERE task_id = ?1 ORDER BY id")
        .unwrap();
    let journaled: Vec<String> = statement
        .query_map([task_id.to_string()], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let reported: Vec<String> = driver
        .outbox
        .iter()
        .filter_map(|(_, _, m)| match m {
            Message::Accept(a) if a.task_id == task_id => Some("STARTED".to_string()),
            Message::StatusUpdate(u) if u.task_id == task_id => Some(u.status.to_string()),
            Message::Contribution(c) if c.task_id == task_id => Some("CONTRIBUTED".into()),
            Message::Reveal(r) if r.task_id == task_id => Some("REVEALED".into()),
            Message::ResultUploaded(r) if r.task_id == task_id => Some("RESULT_UPLOADED".into()),
            _ => None,
        })
        .collect();
    assert!(journaled.len() >= 8, "{point}: {journaled:?}");
    for state in &journaled {
        assert!(
            reported.contains(state),
            "{point}: {state} journaled, never reported; journal {journaled:?}, reported {reported:?}"
        );
    }
    // The uploaded result is the same however many times it was sent.
    let sent = server.uploads(&format!("/results/{task_id}"));
    assert!(!sent.is_empty(), "{point}: no upload");
    assert!(
        sent.windows(2).all(|w| w[0] == w[1]),
        "{point}: different uploads"
    );
    // The journal is intact.
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    eprintln!(
        "{point}: ok ({} outbox messages, {} re-sent, {} uploads, refusals {:?})",
        driver.outbox.len(),
        driver.outbox.len() - by_seq.len(),
        sent.len(),
        driver.other_refusals
    );
}

macro_rules! crash_points {
    ($($test:ident: $point:literal, $failpoints:literal, $app:expr;)*) => {$(
        #[test]
        fn $test() {
            crash_and_recover($point, $failpoints, $app);
        }
    )*};
}

crash_points! {
    after_accept_commit: "accept.after_commit", "accept.after_commit=return", App::Hello;
    after_app_downloaded_commit: "status.after_commit.APP_DOWNLOADED",
        "status.after_commit.APP_DOWNLOADED=return", App::Hello;
    after_fetch: "job.after_fetch", "job.after_fetch=return", App::Hello;
    after_computing_commit: "status.after_commit.COMPUTING",
        "status.after_commit.COMPUTING=return", App::Hello;
    mid_compute: "sandbox.between_slices", "sandbox.between_slices=2*off->return", App::Mandelbrot;
    after_compute: "job.after_compute", "job.after_compute=return", App::Hello;
    after_computed_commit: "status.after_commit.COMPUTED",
        "status.after_commit.COMPUTED=return", App::Hello;
    after_contribution_commit: "contribution.after_commit", "contribution.after_commit=return", App::Hello;
    mid_outbox_flush: "outbox.after_publish", "outbox.after_publish=3*off->return", App::Hello;
    after_contribution_puback: "outbox.acked.contribution", "outbox.acked.contribution=return", App::Hello;
    after_reveal_commit: "reveal.after_commit", "reveal.after_commit=return", App::Hello;
    after_reveal_puback: "outbox.acked.reveal", "outbox.acked.reveal=return", App::Hello;
    after_upload: "upload.after_put", "upload.after_put=return", App::Hello;
    after_uploaded_commit: "uploaded.after_commit", "uploaded.after_commit=return", App::Hello;
    after_uploaded_puback: "outbox.acked.result_uploaded",
        "outbox.acked.result_uploaded=return", App::Hello;
    after_complete_commit: "complete.after_commit.COMPLETED",
        "complete.after_commit.COMPLETED=return", App::Hello;
}

// The points where the scheduler's notification is sent while the agent is down, on Mosquitto:
// its persistent session must queue it as rumqttd's does.
#[test]
fn on_mosquitto_after_contribution_puback() {
    crash_and_recover_on(
        Broker::Mosquitto,
        "outbox.acked.contribution",
        "outbox.acked.contribution=return",
        App::Hello,
    );
}

#[test]
fn on_mosquitto_after_reveal_puback() {
    crash_and_recover_on(
        Broker::Mosquitto,
        "outbox.acked.reveal",
        "outbox.acked.reveal=return",
        App::Hello,
    );
}

#[test]
fn on_mosquitto_after_uploaded_puback() {
    crash_and_recover_on(
        Broker::Mosquitto,
        "outbox.acked.result_uploaded",
        "outbox.acked.result_uploaded=return",
        App::Hello,
    );
}

/// Free bytes of the filesystem holding `path` (`df`).
fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The declines the scheduler saw for `task_id`, with their detail.
fn declines(driver: &Driver, task_id: TaskId) -> Vec<String> {
    driver
        .outbox
        .iter()
        .filter_map(|(_, _, m)| match m {
            Message::Decline(d) if d.task_id == task_id => {
                Some(format!("{}: {}", d.cause, d.detail))
            }
            _ => None,
        })
        .collect()
}

/// The state directory on a 16 MiB tmpfs, filled to below the 4 MiB reserve: the agent declines
/// new tasks with a typed cause, `doctor` says why, nothing is corrupted, and once space returns
/// the next task runs to completion.
#[test]
fn a_full_state_disk_stops_admissions_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _tmpfs = match Tmpfs::mount(&state, "16m") {
        Ok(mounted) => mounted,
        Err(why) => {
            eprintln!("SKIPPED a_full_state_disk_stops_admissions_until_space_returns: cannot mount a tmpfs ({why})");
            return;
        }
    };
    let hello = std::fs::read(repo().join("apps/hello/hello.wasm")).unwrap();
    let mut files = HashMap::new();
    files.insert("hello.wasm".to_string(), hello.clone());
    files.insert("greeting.txt".to_string(), b"hi\n".to_vec());
    let server = HttpServer::start(files);
    let broker = EmbeddedBroker::start();
    let mut driver = Driver::connect(broker.port());
    let mut agent = Agent::start_in(dir, &broker.url(), driver.scheduler.address(), &[]);
    driver.wait_online(agent.address, &agent);

    // Fill the disk until 2 MiB are left (below the 4 MiB reserve), in one step: a disk filled
    // to the last byte makes the journal unwritable, which is another matter (RELIABILITY.md).
    let filler = state.join("filler");
    let free = free_bytes(&state);
    assert!(free > 8 << 20, "{free}");
    let file = std::fs::File::create(&filler).unwrap();
    let mut left = free - (2 << 20);
    let chunk = vec![0x5a_u8; 1 << 16];
    let mut writer = std::io::BufWriter::new(file);
    while left > 0 {
        let n = chunk.len().min(usize::try_from(left).unwrap());
        std::io::Write::write_all(&mut writer, &chunk[..n]).unwrap();
        left -= n as u64;
    }
    drop(writer);
    let now_free = free_bytes(&state);
    assert!(now_free < 4 << 20, "{now_free}");
    let full_deal = deal(&server, App::Hello, &hello, 0x51);
    let refused = poco::task_id(&full_deal.deal_id, 0);
    let actions = driver
        .scheduler
        .assign(
            &full_deal,
            0,
            agent.address,
            TaskLimits::default(),
            Address::ZERO,
            now_ms(),
        )
        .unwrap();
    driver.perform(actions);
    let deadline = Instant::now() + PHASE;
    while declines(&driver, refused).is_empty() {
        driver.step();
        assert!(
            Instant::now() < deadline,
            "no decline; logs:\n{}",
            agent.logs()
        );
    }
    let decline = declines(&driver, refused).remove(0);
    assert!(
        decline.starts_with(&format!(
            "{}:",
            edgepool_protocol::status::ReplicateStatusCause::InsufficientResources
        )) && decline.contains("below the reserve"),
        "{decline}"
    );
    assert!(
        agent.logs().contains("below the reserve"),
        "{}",
        agent.logs()
    );
    // `doctor` says why.
    let doctor = bin()
        .args(["doctor", "--config"])
        .arg(&agent.config)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&doctor.stdout).to_string();
    assert_eq!(doctor.status.code(), Some(6), "{report}");
    assert!(report.contains("agent.min_free_disk_mb"), "{report}");
    assert!(agent.alive(), "the agent stopped; logs:\n{}", agent.logs());

    // Space returns: the next task runs.
    std::fs::remove_file(&filler).unwrap();
    let d = deal(&server, App::Hello, &hello, 0x52);
    let task_id = poco::task_id(&d.deal_id, 0);
    let actions = driver
        .scheduler
        .assign(
            &d,
            0,
            agent.address,
            TaskLimits::default(),
            Address::ZERO,
            now_ms(),
        )
        .unwrap();
    driver.perform(actions);
    let deadline = Instant::now() + PHASE;
    while !(driver.finalized > 0 && agent.task_state(task_id).as_deref() == Some("COMPLETED")) {
        driver.step();
        assert!(
            Instant::now() < deadline,
            "task after recovery did not end; logs:\n{}",
            agent.logs()
        );
    }
    assert_eq!(driver.conflicts, 0);
    let db = rusqlite::Connection::open(agent.journal()).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
