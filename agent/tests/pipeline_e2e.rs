//! The task pipeline end to end: a real agent process, the embedded broker, a loopback HTTP server
//! serving the app and input files and acting as the result store, and the simulator's scheduler
//! state machine driving the PoCo flow (assign → accept → status updates → contribute → reveal →
//! upload → complete). Also: a failing app still gets a deterministic error contribution.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use edgepool_protocol::digest::result_digest;
use edgepool_protocol::envelope::Envelope;
use edgepool_protocol::hash::sha256;
use edgepool_protocol::messages::{DatasetRef, DealSummary, Message, TaskLimits};
use edgepool_protocol::poco;
use edgepool_protocol::primitives::{Address, Digest, TaskId};
use edgepool_protocol::result_archive::{unzip_to_tree, ExtractLimits};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::status::{ReplicateStatus, ReplicateStatusCause};
use edgepool_simulator::scheduler::{Action, Scheduler};
use rumqttc::Client;
use support::http::{StoreServer as HttpServer, Upload};
use support::pool::{init_agent, run_agent, send_sealed, topic, SchedulerLink};
use support::rumqttd::EmbeddedBroker;
use support::{bin, now_ms, repo};

/// A real `edgepool-agent run` process.
struct Agent {
    child: Child,
    log: PathBuf,
    dir: tempfile::TempDir,
    config: PathBuf,
    address: Address,
    slots: u32,
    runs: u32,
}

impl Agent {
    fn start(broker: &str, scheduler: Address) -> Agent {
        Agent::start_with_slots(broker, scheduler, 2)
    }

    fn start_with_slots(broker: &str, scheduler: Address, slots: u32) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let (config, address) = init_agent(dir.path(), broker, scheduler);
        let log = dir.path().join("agent-0.log");
        let child = Agent::spawn(dir.path(), &config, &log, slots);
        Agent {
            child,
            log,
            dir,
            config,
            address,
            slots,
            runs: 1,
        }
    }

    fn spawn(dir: &Path, config: &Path, log: &Path, slots: u32) -> Child {
        let slots = slots.to_string();
        let env = [
            ("EDGEPOOL_AGENT_MIN_FREE_DISK_MB", "1"),
            ("EDGEPOOL_AGENT_SLOTS", slots.as_str()),
            ("EDGEPOOL_FETCH_RETRIES", "0"),
            ("EDGEPOOL_LOG", "debug"),
        ];
        run_agent(dir, config, log, env)
    }

    /// `kill -9`, then a new process on the same state directory.
    fn kill9_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.log = self.dir.path().join(format!("agent-{}.log", self.runs));
        self.runs += 1;
        self.child = Agent::spawn(self.dir.path(), &self.config, &self.log, self.slots);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn tasks(&self) -> serde_json::Value {
        let out = bin()
            .args(["tasks", "--json", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The scheduler side: the simulator's state machine on a real MQTT connection.
struct Driver {
    scheduler: Scheduler,
    signer: Signer,
    client: Client,
    incoming: std::sync::mpsc::Receiver<(String, Vec<u8>)>,
    seq: u64,
    /// Every message received from workers, in order.
    seen: Vec<Message>,
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
            seen: Vec::new(),
        }
    }

    fn perform(&mut self, actions: Vec<Action>) -> Vec<Action> {
        let mut rest = Vec::new();
        for action in actions {
            match action {
                Action::Send { worker, message } => {
                    self.seq += 1;
                    send_sealed(&self.signer, &self.client, worker, self.seq, &message);
                }
                other => rest.push(other),
            }
        }
        rest
    }

    /// Waits until the worker's capacity is seen (the agent is up).
    fn wait_online(&mut self, worker: Address, agent: &Agent) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((t, _)) = self.incoming.recv_timeout(Duration::from_millis(100)) {
                if t == topic(worker, "capacity") {
                    return;
                }
            }
        }
        panic!("agent never advertised; log:\n{}", agent.log());
    }

    /// Waits up to 100 ms for the next outbox message; feeds it to the scheduler and performs
    /// the sends. Returns the message and the scheduler's other actions.
    fn step(&mut self) -> Option<(Message, Vec<Action>)> {
        let (t, payload) = self
            .incoming
            .recv_timeout(Duration::from_millis(100))
            .ok()?;
        if !t.ends_with("/outbox") {
            return None;
        }
        let opened = Envelope::open(&payload, &t).unwrap();
        self.seen.push(opened.message.clone());
        let actions = self
            .scheduler
            .handle(opened.sender, &opened.message, now_ms())
            .unwrap_or_else(|e| panic!("scheduler refused {:?}: {e}", opened.message));
        let rest = self.perform(actions);
        Some((opened.message, rest))
    }

    /// Drives the task until a worker's message matches `seen`.
    fn run_until_seen(&mut self, agent: &Agent, seen: impl Fn(&Message) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some((message, _)) = self.step() {
                if seen(&message) {
                    return;
                }
            }
        }
        panic!("the awaited message never came; log:\n{}", agent.log());
    }

    /// Drives the task until the scheduler produces an action `done` accepts.
    fn run_until(&mut self, agent: &Agent, mut done: impl FnMut(&Action) -> bool) -> Action {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some((_, actions)) = self.step() {
                if let Some(action) = actions.into_iter().find(|a| done(a)) {
                    return action;
                }
            }
        }
        panic!("the task did not finish; log:\n{}", agent.log());
    }
}

fn deal(
    server: &HttpServer,
    app: &str,
    app_bytes: &[u8],
    inputs: Vec<String>,
    args: &str,
    seed: u8,
) -> DealSummary {
    server.deal(app, app_bytes, inputs, args, seed)
}

#[test]
fn a_task_runs_from_assignment_to_completion_and_its_uploaded_result_matches_the_consensus() {
    let hello = std::fs::read(repo().join("apps/hello/hello.wasm")).unwrap();
    let mut files = HashMap::new();
    files.insert("hello.wasm".to_string(), hello.clone());
    files.insert(
        "greeting.txt".to_string(),
        b"hello from the input file\n".to_vec(),
    );
    let dataset = b"city,temp\nParis,11.5\nLyon,12\n".to_vec();
    files.insert("weather.csv".to_string(), dataset.clone());
    let server = HttpServer::start(files);
    let broker = EmbeddedBroker::start();
    let mut driver = Driver::connect(broker.port());
    let agent = Agent::start(&broker.url(), driver.scheduler.address());
    driver.wait_online(agent.address, &agent);

    let mut d = deal(
        &server,
        "hello.wasm",
        &hello,
        vec![server.url("greeting.txt")],
        "Alice \"Bob the builder\"",
        7,
    );
    // A standard task's dataset is given to the app as it is, after its checksum is verified.
    d.dataset = Some(DatasetRef {
        address: Address([0xd1; 20]),
        url: server.url("weather.csv"),
        checksum: Digest(sha256(&dataset)),
        filename: "weather.csv".into(),
        size_bytes: Some(dataset.len() as u64),
        encrypted: false,
    });
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
    let finalized = driver.run_until(&agent, |a| matches!(a, Action::Finalized { .. }));
    let Action::Finalized {
        result_hash,
        result_link,
        ..
    } = finalized
    else {
        unreachable!()
    };

    // The uploaded archive is the result: its digest is the one the consensus was reached on.
    let path = format!("/results/{task_id}");
    let Upload {
        body: zip,
        signature,
    } = server
        .last_upload(&path)
        .unwrap_or_else(|| panic!("no upload at {path}"));
    let (zip, signature) = (&zip, &signature);
    assert!(result_link.ends_with(&path));
    // The upload token is the worker's signature over the task and the archive's hash.
    let signed =
        edgepool_protocol::hash::keccak256_concat(&[task_id.as_bytes(), sha256(zip).as_bytes()]);
    let signature: edgepool_protocol::signature::Signature = signature.parse().unwrap();
    assert_eq!(
        signature.recover_personal(signed.as_bytes()).unwrap(),
        agent.address
    );
    let tree = unzip_to_tree(zip, &ExtractLimits::default()).unwrap();
    let digest = result_digest(&tree, "").unwrap();
    assert_eq!(poco::result_hash(&task_id, &digest), result_hash);
    let result = String::from_utf8(tree.read("result.txt").unwrap().to_vec()).unwrap();
    assert!(result.contains("Bob the builder"), "{result}");
    assert!(result.contains("greeting.txt"), "{result}");
    assert!(result.contains("weather.csv"), "{result}");

    // Every step was reported, in order.
    let statuses: Vec<ReplicateStatus> = driver
        .seen
        .iter()
        .filter_map(|m| match m {
            Message::StatusUpdate(u) if u.task_id == task_id => Some(u.status),
            _ => None,
        })
        .collect();
    for step in [
        ReplicateStatus::AppDownloading,
        ReplicateStatus::AppDownloaded,
        ReplicateStatus::DataDownloading,
        ReplicateStatus::DataDownloaded,
        ReplicateStatus::Computing,
        ReplicateStatus::Computed,
    ] {
        assert!(statuses.contains(&step), "{step} missing from {statuses:?}");
    }
    assert!(driver
        .seen
        .iter()
        .any(|m| matches!(m, Message::Accept(a) if a.task_id == task_id)));

    // The journal ends the task as COMPLETED.
    let ok = support::poll_until(Duration::from_secs(10), || {
        agent.tasks().as_array().is_some_and(|tasks| {
            tasks
                .iter()
                .any(|t| t["task_id"] == task_id.to_string() && t["state"] == "COMPLETED")
        })
    });
    assert!(ok, "{}\n{}", agent.tasks(), agent.log());
}

#[test]
fn a_failing_app_contributes_a_deterministic_error_result_and_a_bad_assignment_is_declined() {
    let looping = wat::parse_str(
        r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $forever (br $forever))))"#,
    )
    .unwrap();
    let mut files = HashMap::new();
    files.insert("loop.wasm".to_string(), looping.clone());
    let server = HttpServer::start(files);
    let broker = EmbeddedBroker::start();
    let mut driver = Driver::connect(broker.port());
    let agent = Agent::start(&broker.url(), driver.scheduler.address());
    driver.wait_online(agent.address, &agent);

    let d = deal(&server, "loop.wasm", &looping, Vec::new(), "", 9);
    let task_id: TaskId = poco::task_id(&d.deal_id, 0);
    let limits = TaskLimits {
        fuel: 2_000_000,
        ..TaskLimits::default()
    };
    let actions = driver
        .scheduler
        .assign(&d, 0, agent.address, limits, Address::ZERO, now_ms())
        .unwrap();
    driver.perform(actions);
    driver.run_until(&agent, |a| matches!(a, Action::Finalized { .. }));
    let failed = driver.seen.iter().find_map(|m| match m {
        Message::StatusUpdate(u)
            if u.task_id == task_id && u.status == ReplicateStatus::ComputeFailed =>
        {
            u.cause
        }
        _ => None,
    });
    assert_eq!(
        failed,
        Some(ReplicateStatusCause::OutOfFuel),
        "{:?}",
        driver.seen
    );
    let contribution = driver
        .seen
        .iter()
        .find_map(|m| match m {
            Message::Contribution(c) if c.task_id == task_id => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    // Out of fuel: all but the last instruction's cost of the budget was used.
    assert!(
        contribution.fuel_used > 1_900_000 && contribution.fuel_used <= 2_000_000,
        "{}",
        contribution.fuel_used
    );
    // The error result is deterministic: it names only the cause.
    let expected = result_digest(
        &edgepool_agent::pipeline::job::error_tree(ReplicateStatusCause::OutOfFuel),
        "",
    )
    .unwrap();
    assert_eq!(contribution.result_digest, expected);

    // An assignment asking for more than the worker allows is declined with its cause.
    let greedy = deal(&server, "loop.wasm", &looping, Vec::new(), "", 10);
    let too_much = TaskLimits {
        fuel: u64::MAX,
        ..TaskLimits::default()
    };
    let actions = driver
        .scheduler
        .assign(&greedy, 0, agent.address, too_much, Address::ZERO, now_ms())
        .unwrap();
    driver.perform(actions);
    let deadline = Instant::now() + Duration::from_secs(20);
    let greedy_id = poco::task_id(&greedy.deal_id, 0);
    while Instant::now() < deadline
        && !driver
            .seen
            .iter()
            .any(|m| matches!(m, Message::Decline(x) if x.task_id == greedy_id))
    {
        if let Ok((t, payload)) = driver.incoming.recv_timeout(Duration::from_millis(100)) {
            if t.ends_with("/outbox") {
                driver
                    .seen
                    .push(Envelope::open(&payload, &t).unwrap().message);
            }
        }
    }
    let decline = driver.seen.iter().find_map(|m| match m {
        Message::Decline(x) if x.task_id == greedy_id => Some(x.cause),
        _ => None,
    });
    assert_eq!(
        decline,
        Some(ReplicateStatusCause::InsufficientResources),
        "{}",
        agent.log()
    );
}

fn mandelbrot_deal(server: &HttpServer, app: &[u8], seed: u8) -> DealSummary {
    deal(server, "mandelbrot.wasm", app, Vec::new(), "400 1000", seed)
}

fn contributions_of(seen: &[Message], task_id: TaskId) -> Vec<Digest> {
    seen.iter()
        .filter_map(|m| match m {
            Message::Contribution(c) if c.task_id == task_id => Some(c.result_digest),
            _ => None,
        })
        .collect()
}

#[test]
fn a_task_killed_mid_compute_is_computed_again_after_restart_and_never_contributed_twice_differently(
) {
    let app = std::fs::read(repo().join("apps/mandelbrot/mandelbrot.wasm")).unwrap();
    let mut files = HashMap::new();
    files.insert("mandelbrot.wasm".to_string(), app.clone());
    let server = HttpServer::start(files);
    let broker = EmbeddedBroker::start();
    let mut driver = Driver::connect(broker.port());
    let mut agent = Agent::start(&broker.url(), driver.scheduler.address());
    driver.wait_online(agent.address, &agent);

    let d = mandelbrot_deal(&server, &app, 21);
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
    // Kill the agent as soon as it reports COMPUTING.
    driver.run_until_seen(&agent, |m| {
        matches!(m, Message::StatusUpdate(u) if u.task_id == task_id && u.status == ReplicateStatus::Computing)
    });
    let computing = driver.seen.iter().any(|m| {
        matches!(m, Message::StatusUpdate(u) if u.task_id == task_id && u.status == ReplicateStatus::Computing)
    });
    assert!(computing, "{:?}", driver.seen);
    assert!(
        contributions_of(&driver.seen, task_id).is_empty(),
        "killed too late for this test"
    );
    agent.kill9_and_restart();
    driver.run_until(&agent, |a| matches!(a, Action::Finalized { .. }));
    let contributions = contributions_of(&driver.seen, task_id);
    assert!(!contributions.is_empty());
    assert!(
        contributions.windows(2).all(|w| w[0] == w[1]),
        "two different contributions: {contributions:?}"
    );
    assert!(agent.log().contains("resuming task"), "{}", agent.log());
}

#[test]
fn with_every_slot_busy_a_new_assignment_is_declined() {
    let app = std::fs::read(repo().join("apps/mandelbrot/mandelbrot.wasm")).unwrap();
    let mut files = HashMap::new();
    files.insert("mandelbrot.wasm".to_string(), app.clone());
    let server = HttpServer::start(files);
    let broker = EmbeddedBroker::start();
    let mut driver = Driver::connect(broker.port());
    let agent = Agent::start_with_slots(&broker.url(), driver.scheduler.address(), 1);
    driver.wait_online(agent.address, &agent);
    let first = mandelbrot_deal(&server, &app, 31);
    let second = mandelbrot_deal(&server, &app, 32);
    for d in [&first, &second] {
        let actions = driver
            .scheduler
            .assign(
                d,
                0,
                agent.address,
                TaskLimits::default(),
                Address::ZERO,
                now_ms(),
            )
            .unwrap();
        driver.perform(actions);
    }
    let second_id = poco::task_id(&second.deal_id, 0);
    let declined = driver.run_until(
        &agent,
        |a| matches!(a, Action::Failed { task_id, .. } if *task_id == second_id),
    );
    assert!(matches!(declined, Action::Failed { .. }));
    let cause = driver.seen.iter().find_map(|m| match m {
        Message::Decline(x) if x.task_id == second_id => Some(x.cause),
        _ => None,
    });
    assert_eq!(cause, Some(ReplicateStatusCause::NoFreeSlot));
    // The first task still completes.
    driver.run_until(&agent, |a| matches!(a, Action::Finalized { .. }));
}
