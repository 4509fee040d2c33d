//! The pool's JSON report, built from the scheduler's task runs and the pool's own books.

use std::collections::BTreeMap;

use edgepool_protocol::primitives::Address;

use super::PoolCore;
use crate::report::{ReplicaReport, Report, TaskReport, TaskTimings, WorkerReport};
use crate::scheduler::Phase;

impl PoolCore {
    /// The report as of now.
    pub fn report(&self) -> Report {
        let mut per_worker: BTreeMap<Address, (u32, u32, u32)> = BTreeMap::new();
        let mut tasks = Vec::new();
        for task_id in &self.order {
            let Some(book) = self.tasks.get(task_id) else {
                continue;
            };
            let run = self.scheduler.task(task_id);
            let (status, failure, consensus_hash, link) = match run.map(|r| &r.phase) {
                None | Some(Phase::Contributing) => ("CONTRIBUTING", None, None, None),
                Some(Phase::Revealing { result_hash, .. }) => {
                    ("REVEALING", None, Some(*result_hash), None)
                }
                Some(Phase::Finalized {
                    result_hash,
                    result_link,
                }) => (
                    "COMPLETED",
                    None,
                    Some(*result_hash),
                    Some(result_link.clone()),
                ),
                Some(Phase::Failed(why)) => ("FAILED", Some(why.clone()), None, None),
            };
            let mut replicas = Vec::new();
            let (mut agreed, mut disagreed) = (Vec::new(), Vec::new());
            let mut result_digest = None;
            for (worker, r) in &book.replicas {
                let state = run.and_then(|run| run.replicas.get(worker));
                let contribution = state.and_then(|s| s.contribution.as_ref());
                if let Some(c) = contribution {
                    let entry = per_worker.entry(*worker).or_default();
                    entry.0 += 1;
                    if let Some(h) = consensus_hash {
                        if c.result_hash == h {
                            agreed.push(*worker);
                            result_digest = Some(c.result_digest);
                            entry.1 += 1;
                        } else {
                            disagreed.push(*worker);
                            entry.2 += 1;
                        }
                    }
                }
                replicas.push(ReplicaReport {
                    worker: *worker,
                    kind: None,
                    state: match &r.lost {
                        Some((_, s)) => s.clone(),
                        None => state.map_or("?".into(), |s| format!("{:?}", s.state)),
                    },
                    lost: r.lost.as_ref().map(|(why, _)| why.clone()),
                    last_status: state.and_then(|s| s.last_status).map(|s| s.to_string()),
                    result_hash: contribution.map(|c| c.result_hash),
                    result_digest: contribution.map(|c| c.result_digest),
                    contributed_after_ms: r.contributed_ms.map(|t| t.saturating_sub(r.assigned_ms)),
                });
            }
            tasks.push(TaskReport {
                task_id: *task_id,
                deal_id: book.deal.deal_id,
                index: book.task_index,
                status: status.to_string(),
                failure,
                required: usize::try_from(book.deal.trust.max(1)).unwrap_or(usize::MAX),
                consensus_hash,
                result_digest,
                result_link: link,
                uploader: book.uploader,
                replicas,
                revealers: book.revealers.iter().copied().collect(),
                agreed,
                disagreed,
                settlement: self
                    .hooks
                    .settlement(task_id)
                    .unwrap_or_else(|| book.settlement.clone()),
                timings: TaskTimings {
                    assigned_at_ms: book.created_ms,
                    consensus_after_ms: book
                        .consensus_ms
                        .map(|t| t.saturating_sub(book.created_ms)),
                    final_after_ms: book.final_ms.map(|t| t.saturating_sub(book.created_ms)),
                },
            });
        }
        let workers = self
            .registry
            .iter()
            .map(|(address, w)| {
                let (contributions, agreed, disagreed) =
                    per_worker.get(address).copied().unwrap_or_default();
                let standing = self.hooks.standing(*address);
                WorkerReport {
                    address: *address,
                    kind: None,
                    online: w.online,
                    agent_version: w.capacity.as_ref().map(|c| c.agent_version.clone()),
                    tasks: w.assigned_total,
                    contributions,
                    agreed,
                    disagreed,
                    lost: w.lost_count,
                    score: standing.score,
                    stake: standing.stake,
                }
            })
            .collect();
        Report {
            pool: Some(self.prefix.pool()),
            scheduler: Some(self.signer.address()),
            tasks,
            workers,
            refused: self.refused.clone(),
        }
    }
}
