//! The end-of-run accounting of a scenario, what a soak is judged on: every submitted task is
//! completed or failed (none lost), no worker sent two different contributions for one task,
//! the ledger conserved money, and how many faults were injected.

use std::collections::BTreeMap;

use edgepool_protocol::primitives::Address;
use serde::Serialize;

use crate::report::Report;

/// Faults the runner injected, counted as they happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FaultCounts {
    /// Real agents killed (`kill -9`).
    pub agent_kills: u32,
    /// Killed agents started again on their state.
    pub agent_restarts: u32,
    /// Broker kills followed by a restart on the same port.
    pub broker_restarts: u32,
    /// Pool (scheduler, ledger, SMS) restarts.
    pub simulator_restarts: u32,
}

/// The accounting of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Accounting {
    /// Tasks the deals asked for (sum of the volumes).
    pub submitted: u64,
    /// Tasks the pool knows of.
    pub seen: u64,
    /// Tasks `COMPLETED`.
    pub completed: u64,
    /// Tasks `FAILED`.
    pub failed: u64,
    /// Submitted tasks neither completed nor failed at the end (must be 0).
    pub lost: u64,
    /// Completed tasks the ledger finalized (settlement `COMPLETED`).
    pub settled: u64,
    /// (task, worker) pairs with two contributions counted, or refused as conflicting or already
    /// contributed (must be 0).
    pub double_contributions: u64,
    /// Whether the ledger's balances and frozen amounts equal its supply.
    pub money_conserved: bool,
    /// Completed tasks on which the ledger slashed a liar.
    pub liar_slashed: u64,
    /// Contributions from liars the scheduler counted.
    pub liar_contributions: u64,
    /// Completed tasks on which a liar agreed with the consensus (must be 0).
    pub liar_agreed: u64,
    /// Messages the pool refused (any reason).
    pub refused: u64,
    /// Faults injected.
    pub faults: FaultCounts,
    /// Wall time of the run (s).
    pub elapsed_secs: f64,
    /// Final tasks per second of wall time.
    pub tasks_per_sec: f64,
}

impl Accounting {
    /// Counts `report` (labelled with worker kinds) against `submitted` tasks.
    pub fn of(
        report: &Report,
        submitted: u64,
        money_conserved: bool,
        faults: FaultCounts,
        elapsed_secs: f64,
    ) -> Accounting {
        let (_, _, completed, failed) = report.counts();
        let (completed, failed) = (completed as u64, failed as u64);
        let is_liar = |a: &Address| {
            report
                .workers
                .iter()
                .any(|w| w.address == *a && w.kind.as_deref() == Some("liar"))
        };
        let mut double = report
            .refused
            .iter()
            .filter(|r| {
                r.contains("conflicting")
                    || r.contains("AlreadyContributed")
                    || r.contains("already contributed")
            })
            .count() as u64;
        let mut liar_slashed = 0;
        let mut liar_contributions = 0;
        let mut liar_agreed = 0;
        let mut settled = 0;
        for task in &report.tasks {
            let mut per_worker: BTreeMap<Address, u32> = BTreeMap::new();
            for r in task.replicas.iter().filter(|r| r.result_hash.is_some()) {
                *per_worker.entry(r.worker).or_default() += 1;
                if r.kind.as_deref() == Some("liar") {
                    liar_contributions += 1;
                }
            }
            double += per_worker.values().filter(|n| **n > 1).count() as u64;
            if task.status != "COMPLETED" {
                continue;
            }
            if task.settlement.status == "COMPLETED" {
                settled += 1;
            }
            if task.settlement.slashed.iter().any(|(a, _)| is_liar(a)) {
                liar_slashed += 1;
            }
            if task.agreed.iter().any(is_liar) {
                liar_agreed += 1;
            }
        }
        Accounting {
            submitted,
            seen: report.tasks.len() as u64,
            completed,
            failed,
            lost: submitted.saturating_sub(completed + failed),
            settled,
            double_contributions: double,
            money_conserved,
            liar_slashed,
            liar_contributions,
            liar_agreed,
            refused: report.refused.len() as u64,
            faults,
            elapsed_secs,
            tasks_per_sec: if elapsed_secs > 0.0 {
                (completed + failed) as f64 / elapsed_secs
            } else {
                0.0
            },
        }
    }

    /// What must be zero (or true) and is not.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.lost > 0 {
            v.push(format!("{} of {} tasks lost", self.lost, self.submitted));
        }
        if self.double_contributions > 0 {
            v.push(format!(
                "{} double contributions from one worker for one task",
                self.double_contributions
            ));
        }
        if !self.money_conserved {
            v.push("the ledger did not conserve money".into());
        }
        if self.liar_agreed > 0 {
            v.push(format!("a liar agreed on {} tasks", self.liar_agreed));
        }
        v
    }

    /// Human-readable lines.
    pub fn lines(&self) -> Vec<String> {
        let f = &self.faults;
        vec![
            format!(
                "tasks: {} submitted, {} completed, {} failed, {} lost; {} settled by the ledger",
                self.submitted, self.completed, self.failed, self.lost, self.settled
            ),
            format!(
                "double contributions: {}; money conserved: {}; refused messages: {}",
                self.double_contributions,
                if self.money_conserved { "yes" } else { "NO" },
                self.refused
            ),
            format!(
                "liar: {} contributions, slashed on {} tasks, agreed on {}",
                self.liar_contributions, self.liar_slashed, self.liar_agreed
            ),
            format!(
                "faults: {} agent kills ({} restarts), {} broker restarts, {} simulator restarts",
                f.agent_kills, f.agent_restarts, f.broker_restarts, f.simulator_restarts
            ),
            format!(
                "elapsed {:.1} s, {:.1} tasks/s",
                self.elapsed_secs, self.tasks_per_sec
            ),
        ]
    }
}
