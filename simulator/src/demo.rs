//! `edgepool-sim demo`: the built-in scenario `simulator/scenarios/demo.toml` (real agents plus
//! one lying simulated worker on a deal whose trust needs several agreeing contributions), run
//! with live progress, then a summary.
//!
//! The deal is a TEE deal on an encrypted dataset (see the scenario file): the runner encrypts
//! the dataset, pushes its key to the SMS and opens the deal on the ledger; the agents attest
//! (software attester) and decrypt in memory; the result is encrypted for the beneficiary, whose
//! key the runner made and pushed to the SMS; the summary prints their csv-stats output
//! (decrypted with the beneficiary's private key), the consensus, the ledger's settlement
//! (rewards, slashes) and the contributions it refused.

use std::path::{Path, PathBuf};

use crate::runner::{self, Outcome, RunOptions};
use crate::scenario::Scenario;

/// The demo scenario, compiled in; its paths are relative to the crate's `scenarios/` folder.
pub const DEMO_SCENARIO: &str = include_str!("../scenarios/demo.toml");

/// Where the scenarios of this checkout are.
pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// Runs the demo; true when it ended as expected.
///
/// # Errors
/// When it cannot be set up.
pub fn run(json: Option<&Path>) -> anyhow::Result<bool> {
    let scenario = Scenario::parse(DEMO_SCENARIO, "demo.toml", &scenarios_dir())?;
    let outcome = runner::run(
        &scenario,
        &RunOptions {
            broker_url: None,
            verbose: true,
        },
    )?;
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_vec_pretty(&outcome.report)?)?;
    }
    print_summary(&outcome);
    Ok(outcome.failures.is_empty())
}

fn short(text: &str) -> &str {
    text.get(..10).unwrap_or(text)
}

/// Prints what happened to each task and worker, and the verdict.
pub fn print_summary(outcome: &Outcome) {
    let report = &outcome.report;
    let kind = |a: &edgepool_protocol::primitives::Address| {
        report
            .workers
            .iter()
            .find(|w| w.address == *a)
            .and_then(|w| w.kind.clone())
            .unwrap_or_else(|| "?".into())
    };
    let names = |list: &[edgepool_protocol::primitives::Address]| {
        list.iter()
            .map(|a| format!("{} ({})", short(&a.to_string()), kind(a)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!();
    println!("== summary");
    for task in &report.tasks {
        println!("task {} [{}] {}", task.task_id, task.index, task.status);
        if let Some(why) = &task.failure {
            println!("  failure:   {why}");
        }
        if let Some(hash) = &task.consensus_hash {
            println!(
                "  consensus: {hash} ({} agreeing contributions, trust {}: the ledger's weighted consensus)",
                task.agreed.len(),
                task.required
            );
        }
        if let Some(link) = &task.result_link {
            println!("  result:    {link}");
        }
        println!("  agreed:    {}", names(&task.agreed));
        if !task.disagreed.is_empty() {
            println!("  disagreed: {}", names(&task.disagreed));
        }
        for r in task.replicas.iter().filter(|r| r.lost.is_some()) {
            println!(
                "  given up:  {} ({}): {} {}",
                short(&r.worker.to_string()),
                r.kind.as_deref().unwrap_or("?"),
                r.state,
                r.lost.as_deref().unwrap_or("")
            );
        }
        let s = &task.settlement;
        println!(
            "  ledger:    {}",
            if s.status.is_empty() {
                "no settlement"
            } else {
                s.status.as_str()
            }
        );
        for (a, amount) in &s.rewarded {
            println!(
                "  rewarded:  {} ({}) {amount}",
                short(&a.to_string()),
                kind(a)
            );
        }
        for (a, amount) in &s.slashed {
            println!(
                "  slashed:   {} ({}) {amount}",
                short(&a.to_string()),
                kind(a)
            );
        }
        for (a, amount) in &s.refunded {
            println!(
                "  refunded:  {} ({}) {amount}",
                short(&a.to_string()),
                kind(a)
            );
        }
        for r in &task.replicas {
            let prefix = format!(
                "ledger refused contribution from {} for {}",
                r.worker, task.task_id
            );
            if let Some(why) = report.refused.iter().find(|x| x.starts_with(&prefix)) {
                println!(
                    "  refused:   {} ({}): {}",
                    short(&r.worker.to_string()),
                    r.kind.as_deref().unwrap_or("?"),
                    why.get(prefix.len()..)
                        .unwrap_or("")
                        .trim_start_matches(": ")
                );
            }
        }
        let t = &task.timings;
        println!(
            "  timings:   consensus after {} ms, final after {} ms",
            t.consensus_after_ms.map_or("-".into(), |v| v.to_string()),
            t.final_after_ms.map_or("-".into(), |v| v.to_string())
        );
        if let Some((_, text)) = outcome
            .results
            .iter()
            .find(|(id, _)| *id == task.task_id.to_string())
        {
            for line in text.lines().take(12) {
                println!("  | {line}");
            }
        }
    }
    println!("workers:");
    for w in &report.workers {
        println!(
            "  {} {:<8} tasks {} contributions {} agreed {} disagreed {} lost {} | score {} stake {}",
            short(&w.address.to_string()),
            w.kind.as_deref().unwrap_or("?"),
            w.tasks,
            w.contributions,
            w.agreed,
            w.disagreed,
            w.lost,
            w.score.map_or("-".into(), |s| s.to_string()),
            w.stake.as_deref().unwrap_or("-")
        );
    }
    println!("elapsed {:.1} s", outcome.elapsed.as_secs_f64());
    if outcome.failures.is_empty() {
        println!("== OK: every task ended as expected");
    } else {
        println!("== FAILED:");
        for f in &outcome.failures {
            println!("  - {f}");
        }
    }
}
