//! The task pipeline end to end: a real agent process, the embedded broker, a loopback HTTP server
//! serving the app and input files and acting as the result store, and the simulator's scheduler
//! state machine driving the PoCo flow (assign → accept → status updates → contribute → reveal →
//! upload → complete). Also: a failing app still gets a deterministic error contribution.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use edgepool_protocol::digest::result_digest;
use edgepool_protocol::hash::sha256;
use edgepool_protocol::messages::{DatasetRef, Message, TaskLimits};
use edgepool_protocol::poco;
use edgepool_protocol::primitives::{Address, Digest, TaskId};
use edgepool_protocol::result_archive::{unzip_to_tree, ExtractLimits};
use edgepool_protocol::status::{ReplicateStatus, ReplicateStatusCause};
use edgepool_simulator::scheduler::Action;
use support::driver::Driver;
use support::http::{StoreServer as HttpServer, Upload};
use support::pool::Agent;
use support::repo;
use support::rumqttd::EmbeddedBroker;

/// Serves `files`, starts the embedded broker, the scheduler and an agent with `slots` slots,
/// and waits until the agent is online.
fn setup(
    files: HashMap<String, Vec<u8>>,
    slots: u32,
) -> (HttpServer, EmbeddedBroker, Driver, Agent) {
    let server = HttpServer::start(files);
    let broker = EmbeddedBroker::start();
    let mut driver = Driver::connect(broker.port());
    let slots = slots.to_string();
    let env = [
        ("EDGEPOOL_AGENT_MIN_FREE_DISK_MB", "1"),
        ("EDGEPOOL_AGENT_SLOTS", slots.as_str()),
    ];
    let agent = Agent::start(&broker.url(), driver.scheduler.address(), &env);
    driver.wait_online(&agent);
    (server, broker, driver, agent)
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
    let (server, _broker, mut driver, agent) = setup(files, 2);

    let mut d = server.deal(
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
    let task_id = driver.assign(&d, agent.address);
    let finalized = driver.run_until_action(&agent, |a| matches!(a, Action::Finalized { .. }));
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
        agent.task_state(task_id).as_deref() == Some("COMPLETED")
    });
    assert!(
        ok,
        "{}\n{}",
        agent.cli("tasks", &["--json"]).1,
        agent.last_log()
    );
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
    let (server, _broker, mut driver, agent) = setup(files, 2);

    let d = server.deal("loop.wasm", &looping, Vec::new(), "", 9);
    let limits = TaskLimits {
        fuel: 2_000_000,
        ..TaskLimits::default()
    };
    let task_id: TaskId = driver.assign_with_limits(&d, agent.address, limits);
    driver.run_until_action(&agent, |a| matches!(a, Action::Finalized { .. }));
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
    let contribution = driver.contributions(task_id)[0].clone();
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
    let greedy = server.deal("loop.wasm", &looping, Vec::new(), "", 10);
    let too_much = TaskLimits {
        fuel: u64::MAX,
        ..TaskLimits::default()
    };
    let greedy_id = driver.assign_with_limits(&greedy, agent.address, too_much);
    // Recorded only: the scheduler is not asked, whatever else the agent still reports.
    driver.watch_until(
        Duration::from_secs(20),
        |m| matches!(m, Message::Decline(x) if x.task_id == greedy_id),
    );
    let decline = driver.seen.iter().find_map(|m| match m {
        Message::Decline(x) if x.task_id == greedy_id => Some(x.cause),
        _ => None,
    });
    assert_eq!(
        decline,
        Some(ReplicateStatusCause::InsufficientResources),
        "{}",
        agent.last_log()
    );
}

#[test]
fn a_task_killed_mid_compute_is_computed_again_after_restart_and_never_contributed_twice_differently(
) {
    let app = std::fs::read(repo().join("apps/mandelbrot/mandelbrot.wasm")).unwrap();
    let mut files = HashMap::new();
    files.insert("mandelbrot.wasm".to_string(), app.clone());
    let (server, _broker, mut driver, mut agent) = setup(files, 2);

    let d = server.mandelbrot_deal(21);
    let task_id = driver.assign(&d, agent.address);
    // Kill the agent as soon as it reports COMPUTING.
    driver.run_until(&agent, |m, _| {
        matches!(m, Message::StatusUpdate(u) if u.task_id == task_id && u.status == ReplicateStatus::Computing)
    });
    let computing = driver.seen.iter().any(|m| {
        matches!(m, Message::StatusUpdate(u) if u.task_id == task_id && u.status == ReplicateStatus::Computing)
    });
    assert!(computing, "{:?}", driver.seen);
    assert!(
        driver.contributed_digests(task_id).is_empty(),
        "killed too late for this test"
    );
    agent.restart(None);
    driver.run_until_action(&agent, |a| matches!(a, Action::Finalized { .. }));
    let contributions = driver.contributed_digests(task_id);
    assert!(!contributions.is_empty());
    assert!(
        contributions.windows(2).all(|w| w[0] == w[1]),
        "two different contributions: {contributions:?}"
    );
    assert!(
        agent.last_log().contains("resuming task"),
        "{}",
        agent.last_log()
    );
}

#[test]
fn with_every_slot_busy_a_new_assignment_is_declined() {
    let app = std::fs::read(repo().join("apps/mandelbrot/mandelbrot.wasm")).unwrap();
    let mut files = HashMap::new();
    files.insert("mandelbrot.wasm".to_string(), app.clone());
    let (server, _broker, mut driver, agent) = setup(files, 1);
    let first = server.mandelbrot_deal(31);
    let second = server.mandelbrot_deal(32);
    driver.assign(&first, agent.address);
    let second_id = driver.assign(&second, agent.address);
    let declined = driver.run_until_action(
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
    driver.run_until_action(&agent, |a| matches!(a, Action::Finalized { .. }));
}
