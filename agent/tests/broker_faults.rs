//! Broker faults with real processes: Mosquitto 2 restarted (with persistence) and killed (without)
//! during a run of 40 tasks over 3 agents, a connection cut while a contribution is in flight (a
//! TCP proxy between agent and broker), and an agent started while the broker is down.
//!
//! What the agent guarantees, checked in every case: it reconnects with a bounded backoff, its
//! outbox loses nothing it did not get a PUBACK for and re-sends in order (sequence numbers
//! never go back; a repeated number is the same message), it never sends two different
//! contributions for a task, no task ends twice, and its journal stays intact.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use edgepool_protocol::messages::{Message, MessageKind};
use edgepool_protocol::primitives::TaskId;
use support::mosquitto::{Mosquitto, MosquittoOptions};
use support::pool::{Agent, Cut, CuttingProxy, Driver, HttpServer};

/// The bound on a whole run.
const RUN: Duration = Duration::from_secs(120);
const TASKS: u8 = 40;
const AGENTS: usize = 3;
/// `broker.reconnect_max_secs` of the agents in these tests.
const RECONNECT_MAX_MS: u64 = 2000;

/// Every `retry_in_ms` the agent logged is within its configured bound.
fn assert_bounded_backoff(agent: &Agent) {
    let logs = agent.logs();
    let delays: Vec<u64> = logs
        .split("retry_in_ms=")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .collect();
    assert!(
        delays.iter().all(|d| *d <= RECONNECT_MAX_MS),
        "unbounded backoff {delays:?}"
    );
}

/// Starts `AGENTS` agents, assigns `TASKS` tasks round robin, and calls `fault` once `at`
/// tasks are finalized. Returns the driver, the agents and the task ids.
fn run_with_fault(
    broker: &mut Mosquitto,
    client_id: &str,
    at: usize,
    fault: impl FnOnce(&mut Mosquitto),
    pool_resends: bool,
) -> (Driver, Vec<Agent>, Vec<TaskId>, HttpServer) {
    let server = HttpServer::hello();
    let mut driver = Driver::connect(broker.port(), client_id);
    let agents: Vec<Agent> = (0..AGENTS)
        .map(|_| {
            Agent::start(
                &broker.url(),
                driver.scheduler.address(),
                &[("EDGEPOOL_AGENT_SLOTS", "16")],
            )
        })
        .collect();
    for agent in &agents {
        driver.wait_online(agent);
    }
    let tasks: Vec<TaskId> = (0..TASKS)
        .map(|i| {
            let deal = server.hello_deal(0x10 + i);
            driver.assign(&deal, 0, agents[usize::from(i) % AGENTS].address)
        })
        .collect();
    let reached = driver.step_until(RUN, |d| d.finalized.len() >= at);
    assert!(
        reached,
        "only {} finalized before the fault",
        driver.finalized.len()
    );
    let before = driver.connacks.load(Ordering::SeqCst);
    fault(broker);
    let deadline = Instant::now() + RUN;
    let mut next_resend = Instant::now() + Duration::from_secs(3);
    while driver.finalized.len() < tasks.len() && Instant::now() < deadline {
        driver.step();
        // A pool re-sends to its workers what a broker that lost its sessions dropped
        // (the simulator's pool does it on another branch); the driver does it here.
        if pool_resends
            && Instant::now() >= next_resend
            && driver.connacks.load(Ordering::SeqCst) > before
        {
            driver.resend_unfinished();
            next_resend = Instant::now() + Duration::from_secs(3);
        }
    }
    (driver, agents, tasks, server)
}

/// The checks after a run: invariants, every agent alive, reconnected with bounded backoff,
/// outbox drained, journal intact.
fn check_after(label: &str, driver: &mut Driver, agents: &mut [Agent]) {
    for agent in agents.iter_mut() {
        let ok = driver.step_until(Duration::from_secs(30), |_| agent.outbox_len() == 0);
        assert!(
            ok,
            "{label}: the outbox never drained; logs:\n{}",
            agent.logs()
        );
        assert!(
            agent.alive(),
            "{label}: an agent stopped; logs:\n{}",
            agent.logs()
        );
        assert!(
            agent.connections() >= 2,
            "{label}: never reconnected; logs:\n{}",
            agent.logs()
        );
        assert_bounded_backoff(agent);
        assert_eq!(agent.integrity(), "ok", "{label}");
    }
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        driver.step();
    }
    driver.check_invariants(label);
}

/// Mosquitto stopped and started again on the same port with persistence: the sessions
/// survive, so every one of the 40 tasks ends exactly once.
#[test]
fn a_mosquitto_restart_with_persistence_mid_run_loses_no_task() {
    let mut broker = Mosquitto::start(MosquittoOptions {
        persistence: true,
        ..MosquittoOptions::default()
    });
    let (mut driver, mut agents, tasks, _server) = run_with_fault(
        &mut broker,
        "scheduler-persistent",
        10,
        |b| b.restart(),
        false,
    );
    let unfinished: Vec<&TaskId> = tasks
        .iter()
        .filter(|t| !driver.finalized.contains_key(t))
        .collect();
    assert!(
        unfinished.is_empty(),
        "{} tasks never ended: {unfinished:?}; declines of the first {:?}; refusals {:?}; broker log:\n{}\nagent 0:\n{}",
        unfinished.len(),
        unfinished.first().map(|t| driver.declines(**t)),
        driver.other_refusals,
        broker.log(),
        agents[0].logs()
    );
    check_after("restart with persistence", &mut driver, &mut agents);
    for agent in &agents {
        for task in &tasks {
            if let Some(state) = agent.task_state(*task) {
                assert_eq!(state, "COMPLETED", "{task}");
            }
        }
    }
    eprintln!(
        "restart with persistence: {} tasks finalized once, {} outbox messages, {} contributions",
        driver.finalized.len(),
        driver.outbox.len(),
        driver.count(MessageKind::Contribution)
    );
}

/// Mosquitto killed (SIGKILL) and started again without persistence: every session and every
/// queued message on the broker is gone. The agents reconnect, subscribe again and re-send
/// their unacknowledged outbox; with the pool re-sending its last notification of each
/// unfinished task (the driver does it here), every task ends exactly once.
#[test]
fn a_mosquitto_kill_without_persistence_mid_run_loses_no_task_the_pool_resends() {
    let mut broker = Mosquitto::start(MosquittoOptions::default());
    let (mut driver, mut agents, tasks, _server) = run_with_fault(
        &mut broker,
        "scheduler-volatile",
        10,
        |b| {
            b.kill();
            b.restart();
        },
        true,
    );
    let unfinished: Vec<&TaskId> = tasks
        .iter()
        .filter(|t| !driver.finalized.contains_key(t))
        .collect();
    check_after("kill without persistence", &mut driver, &mut agents);
    // A message the broker acknowledged and then lost with its memory (it had not reached the
    // scheduler yet) cannot be re-sent by the agent, which already deleted it: such a task
    // would stay unfinished. Report it precisely rather than hide it.
    assert!(
        unfinished.is_empty(),
        "{} tasks never ended after the kill: {unfinished:?}; refusals {:?}",
        unfinished.len(),
        driver.other_refusals
    );
    eprintln!(
        "kill without persistence: {} tasks finalized once, {} outbox messages, {} contributions",
        driver.finalized.len(),
        driver.outbox.len(),
        driver.count(MessageKind::Contribution)
    );
}

/// The connection is cut right after the agent's CONTRIBUTION publish leaves: `before` the
/// broker gets it, or after (then only its PUBACK is lost). The agent reconnects through the
/// proxy, re-sends it from the journal, and the scheduler sees one contribution.
fn contribution_cut(cut: Cut) {
    let broker = Mosquitto::start(MosquittoOptions::default());
    let proxy = CuttingProxy::start(broker.port(), MessageKind::Contribution, cut);
    let server = HttpServer::hello();
    let mut driver = Driver::connect(broker.port(), "scheduler-cut");
    let url = format!("mqtt://127.0.0.1:{}", proxy.port);
    let mut agent = Agent::start(&url, driver.scheduler.address(), &[]);
    driver.wait_online(&agent);
    let task = driver.assign(&server.hello_deal(0x61), 0, agent.address);
    let ended = driver.step_until(Duration::from_secs(60), |d| d.finalized.contains_key(&task));
    assert!(
        ended,
        "{cut:?}: the task never ended (cuts {}); logs:\n{}",
        proxy.cuts.load(Ordering::SeqCst),
        agent.logs()
    );
    assert_eq!(proxy.cuts.load(Ordering::SeqCst), 1, "{cut:?}");
    assert!(
        proxy.accepted.load(Ordering::SeqCst) >= 2,
        "{cut:?}: no reconnect"
    );
    let mut agents = [agent];
    check_after(&format!("{cut:?}"), &mut driver, &mut agents);
    agent = agents.into_iter().next().unwrap();
    let sent = driver.contributions(agent.address, task);
    match cut {
        // The first copy never reached the broker: exactly one arrives.
        Cut::BeforeBroker => assert_eq!(sent.len(), 1, "{sent:?}"),
        // The broker had it: it may arrive twice, byte for byte the same.
        Cut::AfterBroker => assert!((1..=2).contains(&sent.len()), "{sent:?}"),
    }
    assert_eq!(driver.distinct_contributions(task), 1);
    assert_eq!(agent.task_state(task).as_deref(), Some("COMPLETED"));
    eprintln!(
        "{cut:?}: contribution copies {}, connections {}",
        sent.len(),
        agent.connections()
    );
}

#[test]
fn a_cut_before_the_broker_gets_the_contribution_is_resent_once() {
    contribution_cut(Cut::BeforeBroker);
}

#[test]
fn a_cut_before_the_contributions_puback_gives_one_contribution() {
    contribution_cut(Cut::AfterBroker);
}

/// Started with no broker on its port: the agent keeps retrying with a bounded backoff,
/// `doctor` and `status` say it cannot connect, and once Mosquitto comes up on that port it
/// connects, advertises and runs a task.
#[test]
fn an_agent_started_while_the_broker_is_down_connects_when_it_appears() {
    let port = support::free_port();
    let server = HttpServer::hello();
    let scheduler = edgepool_protocol::signature::Signer::from_bytes(&[0x5c; 32])
        .unwrap()
        .address();
    let url = format!("mqtt://127.0.0.1:{port}");
    let mut agent = Agent::start(&url, scheduler, &[]);
    assert!(
        support::poll_until(Duration::from_secs(20), || agent
            .logs()
            .matches("cannot connect")
            .count()
            >= 3),
        "no retries; logs:\n{}",
        agent.logs()
    );
    assert!(agent.alive(), "{}", agent.logs());
    let (code, doctor) = agent.cli("doctor", &[]);
    assert_eq!(code, Some(6), "{doctor}");
    assert!(
        doctor.lines().any(|l| l.starts_with("FAIL broker")),
        "{doctor}"
    );
    let (code, status) = agent.cli("status", &[]);
    assert_eq!(code, Some(0), "{status}");
    assert!(
        status.contains(&format!("cannot connect to {url}")),
        "{status}"
    );

    let broker = Mosquitto::start(MosquittoOptions {
        port: Some(port),
        ..MosquittoOptions::default()
    });
    let appeared = Instant::now();
    let mut driver = Driver::connect(broker.port(), "scheduler-late");
    driver.wait_online(&agent);
    let waited = appeared.elapsed();
    // The next attempt comes within the backoff bound (plus the driver's own start).
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    let task = driver.assign(&server.hello_deal(0x71), 0, agent.address);
    assert!(
        driver.step_until(Duration::from_secs(60), |d| d.finalized.contains_key(&task)),
        "the task never ended; logs:\n{}",
        agent.logs()
    );
    let (_, status) = agent.cli("status", &[]);
    assert!(status.contains(&format!("connected to {url}")), "{status}");
    assert_bounded_backoff(&agent);
    let mut agents = [agent];
    check_after_single(&mut driver, &mut agents);
    eprintln!("broker appeared: agent online after {waited:?}");
}

/// As [`check_after`], for a run without reconnection.
fn check_after_single(driver: &mut Driver, agents: &mut [Agent]) {
    for agent in agents.iter_mut() {
        assert!(agent.alive());
        assert_eq!(agent.integrity(), "ok");
    }
    driver.check_invariants("late broker");
}

/// A broker that acknowledged the agent's contribution, REVEAL or RESULT_UPLOADED and lost it
/// before delivering it: the pool asks again (the assignment / PLEASE_REVEAL / PLEASE_UPLOAD), and
/// the agent, already past that step, answers with its journaled contribution / reveal / result
/// link instead of ignoring the repeat. The task completes with one contribution.
#[test]
fn a_lost_contribution_reveal_or_result_link_is_sent_again_when_the_pool_asks_again() {
    for (i, kind) in [
        MessageKind::Contribution,
        MessageKind::Reveal,
        MessageKind::ResultUploaded,
    ]
    .into_iter()
    .enumerate()
    {
        let broker = Mosquitto::start(MosquittoOptions::default());
        let server = HttpServer::hello();
        let mut driver = Driver::connect(broker.port(), "scheduler-lost");
        driver.lose_once.push(kind);
        let agent = Agent::start(&broker.url(), driver.scheduler.address(), &[]);
        driver.wait_online(&agent);
        let task = driver.assign(&server.hello_deal(0x81 + i as u8), 0, agent.address);
        assert!(
            driver.step_until(Duration::from_secs(60), |d| d.lost == 1),
            "{kind:?} never sent; logs:\n{}",
            agent.logs()
        );
        assert!(!driver.finalized.contains_key(&task), "{kind:?}");
        assert_eq!(driver.resend_unfinished(), 1, "{kind:?}");
        assert!(
            driver.step_until(Duration::from_secs(30), |d| d.finalized.contains_key(&task)),
            "{kind:?}: the repeated request was not answered; logs:\n{}",
            agent.logs()
        );
        assert_eq!(driver.count(kind), 2, "{kind:?}");
        // A contribution sent again is a new envelope with the same contribution in it.
        let mut contributions: Vec<&Message> = driver
            .outbox
            .iter()
            .map(|(_, _, _, m)| m)
            .filter(|m| matches!(m, Message::Contribution(c) if c.task_id == task))
            .collect();
        contributions.dedup();
        assert_eq!(contributions.len(), 1, "{kind:?}: {contributions:?}");
        assert!(
            driver.step_until(Duration::from_secs(30), |_| agent
                .task_state(task)
                .as_deref()
                == Some("COMPLETED")),
            "{kind:?}: {:?}",
            agent.task_state(task)
        );
    }
}
