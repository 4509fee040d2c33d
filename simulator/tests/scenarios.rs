//! The committed scenarios as tests: real agent processes (the `edgepool-agent` binary, built by
//! the runner through cargo when missing), simulated adversaries, the embedded broker or
//! Mosquitto, the HTTP store; each must end as its `[expect]` says, and the uploaded result must
//! be the one the consensus was reached on (the runner checks both).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use edgepool_simulator::runner::{self, Outcome, RunOptions};
use edgepool_simulator::scenario::Scenario;

fn scenario(name: &str) -> Scenario {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name);
    Scenario::load(&path).unwrap()
}

fn run(name: &str) -> Outcome {
    let outcome = runner::run(
        &scenario(name),
        &RunOptions {
            broker_url: None,
            verbose: true,
        },
    )
    .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    assert!(
        outcome.failures.is_empty(),
        "{name}: {:#?}\nreport: {}",
        outcome.failures,
        serde_json::to_string_pretty(&outcome.report).unwrap()
    );
    outcome
}

fn kind_of(outcome: &Outcome, address: &edgepool_protocol::primitives::Address) -> String {
    outcome
        .report
        .workers
        .iter()
        .find(|w| w.address == *address)
        .and_then(|w| w.kind.clone())
        .unwrap_or_default()
}

#[test]
fn a_real_agent_completes_a_task_without_dataset_and_its_upload_is_the_consensus() {
    let outcome = run("basic.toml");
    let task = &outcome.report.tasks[0];
    assert_eq!(task.status, "COMPLETED");
    assert!(task
        .result_link
        .as_deref()
        .unwrap()
        .ends_with(&format!("/results/{}", task.task_id)));
    assert_eq!(task.revealers.len(), 1);
    assert!(
        outcome.report.refused.is_empty(),
        "{:?}",
        outcome.report.refused
    );
}

#[test]
fn a_lying_minority_is_slashed_by_the_ledger_while_the_honest_majority_is_rewarded() {
    let outcome = run("liar-minority.toml");
    let task = &outcome.report.tasks[0];
    let liar = task.disagreed.first().unwrap();
    assert_eq!(kind_of(&outcome, liar), "liar");
    let liar_replica = task.replicas.iter().find(|r| r.worker == *liar).unwrap();
    assert_ne!(liar_replica.result_hash, task.consensus_hash);
    assert!(task.agreed.iter().all(|a| kind_of(&outcome, a) == "honest"));
    assert_eq!(task.agreed.len(), 3);
    assert!(!task.revealers.contains(liar));
    // The ledger settled it: the liar's stake seized, every agreeing agent rewarded.
    let s = &task.settlement;
    assert_eq!(s.status, "COMPLETED", "{s:?}");
    assert_eq!(
        s.slashed.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        vec![*liar]
    );
    let mut rewarded: Vec<_> = s.rewarded.iter().map(|(a, _)| *a).collect();
    let mut agreed = task.agreed.clone();
    rewarded.sort();
    agreed.sort();
    assert_eq!(rewarded, agreed);
    // Scores: the liar's stays 0 (×2/3), the revealers' grew by one.
    let score = |a| {
        outcome
            .report
            .workers
            .iter()
            .find(|w| w.address == a)
            .and_then(|w| w.score)
            .unwrap()
    };
    assert_eq!(score(*liar), 0);
    assert!(task.agreed.iter().all(|a| score(*a) == 1));
}

#[test]
fn a_tee_task_on_an_encrypted_dataset_completes_and_the_keyless_liar_is_refused() {
    let outcome = run("encrypted-tee.toml");
    let task = &outcome.report.tasks[0];
    assert_eq!(task.status, "COMPLETED");
    // Every contribution the scheduler counted carries the enclave challenge: the agents got
    // the enclave key from the SMS after attesting.
    assert!(task.agreed.iter().all(|a| kind_of(&outcome, a) == "agent"));
    assert!(task.disagreed.is_empty(), "{:?}", task.disagreed);
    let liar = outcome
        .report
        .workers
        .iter()
        .find(|w| w.kind.as_deref() == Some("liar"))
        .unwrap();
    assert!(
        outcome
            .report
            .refused
            .iter()
            .any(|r| r.starts_with(&format!(
                "ledger refused contribution from {}",
                liar.address
            )) && r.contains("enclave")),
        "{:?}",
        outcome.report.refused
    );
    assert_eq!(liar.contributions, 0);
    assert_eq!(task.settlement.status, "COMPLETED");
    assert!(task.settlement.slashed.is_empty());
    assert_eq!(task.settlement.rewarded.len(), task.agreed.len());
}

#[test]
fn a_tee_task_with_an_encrypted_result_uploads_it_encrypted_and_it_decrypts_to_the_consensus() {
    // The runner refuses an upload that is not iExec's encrypted form or does not decrypt with
    // the beneficiary's key, and checks the decrypted files against the consensus.
    let outcome = run("encrypted-result.toml");
    let task = &outcome.report.tasks[0];
    assert_eq!(task.status, "COMPLETED");
    assert!(task.agreed.iter().all(|a| kind_of(&outcome, a) == "agent"));
    let key = outcome.beneficiary_key_pem.as_deref().unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    let (_, text) = &outcome.results[0];
    assert!(
        text.starts_with("(uploaded encrypted; decrypted with the beneficiary's private key)"),
        "{text}"
    );
    assert!(text.contains("\"name\": \"temp_c\""), "{text}");
}

#[test]
fn silent_and_crashing_workers_are_replaced_and_the_task_completes() {
    let outcome = run("silent-replaced.toml");
    let task = &outcome.report.tasks[0];
    let states: Vec<(String, String)> = task
        .replicas
        .iter()
        .map(|r| (r.kind.clone().unwrap_or_default(), r.state.clone()))
        .collect();
    assert!(
        states.contains(&("silent".into(), "TIMEOUT".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("crashing".into(), "WORKER_LOST".into())),
        "{states:?}"
    );
}

#[test]
fn an_agent_killed_mid_task_is_lost_the_task_placed_on_another_and_it_completes_once() {
    let outcome = run("agent-killed.toml");
    let task = &outcome.report.tasks[0];
    // The killed agent was declared lost (its last will) and the task placed on the other one.
    let killed: Vec<_> = outcome
        .report
        .workers
        .iter()
        .filter(|w| w.lost > 0)
        .collect();
    assert_eq!(killed.len(), 1, "{:?}", outcome.report.workers);
    assert_eq!(task.replicas.len(), 2, "{:?}", task.replicas);
    // Restarted 1 s later it resumed the task from its journal: its replica was either taken
    // back (the task still took contributions) or given up for good; never both counted.
    let mine = task
        .replicas
        .iter()
        .find(|r| r.worker == killed[0].address)
        .unwrap();
    assert!(
        mine.lost.is_none() || mine.state == "WORKER_LOST",
        "{mine:?}"
    );
    assert_exactly_once(&outcome);
}

#[test]
fn a_task_runs_through_an_external_mosquitto_broker() {
    let outcome = run("mosquitto.toml");
    assert_eq!(outcome.report.tasks[0].status, "COMPLETED");
}

#[test]
fn every_committed_scenario_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            count += 1;
        }
    }
    assert!(count >= 8, "{count} scenarios");
}

#[test]
fn the_tee_demo_refuses_the_liar_on_every_task_and_its_results_are_the_csv_statistics() {
    let scenario = Scenario::parse(
        edgepool_simulator::demo::DEMO_SCENARIO,
        "demo.toml",
        &edgepool_simulator::demo::scenarios_dir(),
    )
    .unwrap();
    let outcome = runner::run(
        &scenario,
        &RunOptions {
            broker_url: None,
            verbose: true,
        },
    )
    .unwrap();
    assert!(outcome.failures.is_empty(), "{:#?}", outcome.failures);
    assert_eq!(outcome.report.tasks.len(), 2);
    for task in &outcome.report.tasks {
        assert_eq!(task.agreed.len(), 3);
        assert!(task.disagreed.is_empty());
        assert_eq!(task.settlement.rewarded.len(), 3);
    }
    // Its results were uploaded encrypted and are shown decrypted.
    assert!(outcome.beneficiary_key_pem.is_some());
    assert!(outcome
        .results
        .iter()
        .all(|(_, text)| text.starts_with("(uploaded encrypted") && text.contains("temp_c")));
    assert!(outcome.elapsed.as_secs() < 60, "{:?}", outcome.elapsed);
}

/// What a restart must never break: every task settled once by the ledger, no worker with two
/// different contributions to one task (the pool and the ledger would refuse the second as a
/// conflict), every task's upload the consensus (checked by the runner).
fn assert_exactly_once(outcome: &Outcome) {
    let conflicts: Vec<&String> = outcome
        .report
        .refused
        .iter()
        .filter(|r| r.contains("conflicting") || r.contains("AlreadyContributed"))
        .collect();
    assert!(conflicts.is_empty(), "{conflicts:#?}");
    for task in &outcome.report.tasks {
        assert_eq!(task.status, "COMPLETED", "{task:?}");
        assert_eq!(task.settlement.status, "COMPLETED", "{:?}", task.settlement);
        let mut contributors: Vec<_> = task
            .replicas
            .iter()
            .filter(|r| r.result_hash.is_some())
            .map(|r| r.worker)
            .collect();
        let all = contributors.len();
        contributors.sort();
        contributors.dedup();
        assert_eq!(
            all,
            contributors.len(),
            "a worker contributed twice: {task:?}"
        );
    }
}

#[test]
fn the_simulator_restarted_mid_deal_recovers_its_tasks_and_the_agents_finish_them() {
    let outcome = run("simulator-restarted.toml");
    assert_eq!(outcome.report.tasks.len(), 6);
    assert_exactly_once(&outcome);
    // The restart happened mid-deal: some tasks ended after it, on the recovered state.
    assert!(
        outcome.report.tasks.iter().any(|t| t.status == "COMPLETED"),
        "{:?}",
        outcome.report.tasks
    );
}

#[test]
fn mosquitto_killed_and_restarted_mid_deal_loses_no_task() {
    let outcome = run("broker-restarted.toml");
    assert_eq!(outcome.report.tasks.len(), 6);
    assert_exactly_once(&outcome);
}

// Agents killed at random (after contributing, mid-reveal, mid-upload) and the broker restarted:
// a returning agent is asked to reveal what the ledger holds of it (or takes back a replica lost
// before it contributed), so every task completes and no honest agent is ever slashed.
#[test]
fn a_short_soak_with_random_kills_and_a_broker_restart_accounts_for_every_task() {
    let outcome = run("soak-short.toml");
    let a = &outcome.accounting;
    assert_eq!(a.submitted, 120, "{a:?}");
    assert_eq!(a.completed, 120, "{a:?}");
    assert_eq!(a.lost, 0, "{a:?}");
    assert_eq!(a.double_contributions, 0, "{a:?}");
    assert!(a.money_conserved, "{a:?}");
    assert_eq!(a.liar_agreed, 0, "{a:?}");
    assert!(a.liar_slashed > 0, "the liar was never slashed: {a:?}");
    assert_eq!(a.faults.agent_kills, 2, "{a:?}");
    assert_eq!(a.faults.agent_restarts, 2, "{a:?}");
    assert_eq!(a.faults.broker_restarts, 1, "{a:?}");
    assert_exactly_once(&outcome);
    // Only the liar is ever slashed: an agent killed after it contributed revealed on return.
    for task in &outcome.report.tasks {
        for (worker, why) in &task.settlement.slashed {
            assert_eq!(
                kind_of(&outcome, worker),
                "liar",
                "task {}: honest {worker} slashed ({why})",
                task.task_id
            );
        }
    }
}
