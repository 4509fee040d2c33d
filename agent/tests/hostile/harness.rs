//! The hostile-input suite's world: a real agent process (`init` + `run` in a temp dir), the
//! embedded broker, a loopback HTTP server (apps, inputs, result store) and the simulator's
//! scheduler state machine on a real MQTT connection, plus a raw publisher for hostile payloads.
//! Same shape as `support/driver.rs` and `support::pool::Agent`; what is new here is
//! `status --json`, VmHWM, extra environment per agent and the record of sent envelopes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use edgepool_protocol::envelope::Envelope;
use edgepool_protocol::messages::{DealSummary, Message, TaskLimits};
use edgepool_protocol::primitives::{Address, Bytes32, Digest, TaskId};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::status::{ReplicateStatus, ReplicateStatusCause};
use edgepool_simulator::scheduler::{Action, Scheduler};
use rumqttc::{Client, QoS};

use crate::support::driver::assign_first_task;
pub use crate::support::pool::topic;
use crate::support::pool::{init_agent, run_agent, SchedulerLink};

/// How long a whole scenario may take before the test fails (CI: 2 loaded cores).
pub const SCENARIO: Duration = Duration::from_secs(120);

pub use crate::support::{bin, now_ms, repo};

/// The loopback app, data and result host.
pub use crate::support::http::StoreServer as HttpServer;

/// A real `edgepool-agent run` process.
pub struct Agent {
    pub child: Child,
    pub log: PathBuf,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub address: Address,
}

impl Agent {
    /// `init` then `run`, with `EDGEPOOL_*` overrides from `env`.
    pub fn start(broker: &str, scheduler: Address, env: &[(&str, String)]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let (config, address) = init_agent(dir.path(), broker, scheduler);
        let log = dir.path().join("agent.log");
        let defaults = [
            ("EDGEPOOL_AGENT_MIN_FREE_DISK_MB", "1"),
            ("EDGEPOOL_FETCH_RETRIES", "0"),
            ("EDGEPOOL_LOG", "debug"),
        ];
        let env = defaults
            .into_iter()
            .chain(env.iter().map(|(k, v)| (*k, v.as_str())));
        let child = run_agent(dir.path(), &config, &log, env);
        Agent {
            child,
            log,
            dir,
            config,
            address,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the agent exited ({status}); log:\n{}", self.log());
        }
    }

    /// `edgepool-agent status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = bin()
            .args(["status", "--json", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// The refusal counts of `status --json`, by reason.
    pub fn refused(&self) -> HashMap<String, u64> {
        self.status()["inbox_refused"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits (bounded) until `status` shows at least `total` refusals, then returns the counts.
    pub fn wait_refused(&self, total: u64) -> HashMap<String, u64> {
        let mut counts = HashMap::new();
        let reached = super::support::poll_until(Duration::from_secs(30), || {
            counts = self.refused();
            counts.values().sum::<u64>() >= total
        });
        assert!(
            reached,
            "status shows {counts:?}, expected {total} refusals; log:\n{}",
            self.log()
        );
        counts
    }

    /// `edgepool-agent tasks --json`.
    pub fn tasks(&self) -> serde_json::Value {
        let out = bin()
            .args(["tasks", "--json", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Peak resident set (VmHWM) of the agent process, in KiB.
    pub fn vm_hwm_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The scheduler side: the simulator's state machine on a real MQTT connection, whose client
/// also publishes the hostile payloads (up to 2 MiB).
pub struct Driver {
    pub scheduler: Scheduler,
    pub signer: Signer,
    pub client: Client,
    incoming: std::sync::mpsc::Receiver<(String, Vec<u8>)>,
    pub seq: u64,
    /// Every message received from workers, with its sender, in order.
    pub seen: Vec<(Address, Message)>,
    /// Every envelope sent, by inbox topic, in order (for replays).
    pub sent: Vec<(String, Vec<u8>)>,
}

impl Driver {
    pub fn connect(port: u16) -> Driver {
        let SchedulerLink {
            signer,
            client,
            incoming,
        } = SchedulerLink::connect(port, 256, Some(2 << 20));
        Driver {
            scheduler: Scheduler::new(signer.clone()),
            signer,
            client,
            incoming,
            seq: 0,
            seen: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Publishes raw bytes on a topic (QoS 1, in order with everything else this client sends).
    pub fn publish_raw(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .unwrap();
    }

    /// Seals `message` for `worker`'s inbox with the next sequence number, without sending it.
    pub fn seal_next(&mut self, worker: Address, message: &Message) -> Vec<u8> {
        self.seq += 1;
        Envelope::seal(
            &self.signer,
            &topic(worker, "inbox"),
            self.seq,
            now_ms(),
            message,
        )
        .unwrap()
    }

    pub fn perform(&mut self, actions: Vec<Action>) -> Vec<Action> {
        let mut rest = Vec::new();
        for action in actions {
            match action {
                Action::Send { worker, message } => {
                    let bytes = self.seal_next(worker, &message);
                    let inbox = topic(worker, "inbox");
                    self.sent.push((inbox.clone(), bytes.clone()));
                    self.publish_raw(&inbox, bytes);
                }
                other => rest.push(other),
            }
        }
        rest
    }

    /// Waits until every worker's capacity is seen (the agents are up).
    pub fn wait_online(&mut self, workers: &[&Agent]) {
        let mut missing: Vec<Address> = workers.iter().map(|a| a.address).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !missing.is_empty() && Instant::now() < deadline {
            if let Ok((t, _)) = self.incoming.recv_timeout(Duration::from_millis(100)) {
                missing.retain(|w| t != topic(*w, "capacity"));
            }
        }
        if !missing.is_empty() {
            let logs: Vec<String> = workers.iter().map(|a| a.log()).collect();
            panic!("agents never advertised; logs:\n{}", logs.join("\n----\n"));
        }
    }

    /// Waits up to 100 ms for the next outbox message; feeds it to the scheduler and performs
    /// the sends. Returns the scheduler's other actions.
    pub fn step(&mut self) -> Vec<Action> {
        let Ok((t, payload)) = self.incoming.recv_timeout(Duration::from_millis(100)) else {
            return Vec::new();
        };
        if !t.ends_with("/outbox") {
            return Vec::new();
        }
        let opened = Envelope::open(&payload, &t).unwrap();
        self.seen.push((opened.sender, opened.message.clone()));
        let actions = self
            .scheduler
            .handle(opened.sender, &opened.message, now_ms())
            .unwrap_or_else(|e| panic!("scheduler refused {:?}: {e}", opened.message));
        self.perform(actions)
    }

    /// Drives the pool until every task of `tasks` was finalized or failed; returns the
    /// finalized ones' result hashes and the failed ones.
    pub fn run_until_settled(
        &mut self,
        tasks: &[TaskId],
        logs: &dyn Fn() -> String,
    ) -> (HashMap<TaskId, Bytes32>, Vec<TaskId>) {
        let mut finalized = HashMap::new();
        let mut failed = Vec::new();
        let deadline = Instant::now() + SCENARIO;
        while finalized.len() + failed.len() < tasks.len() {
            assert!(
                Instant::now() < deadline,
                "settled {finalized:?} / failed {failed:?} of {tasks:?}; logs:\n{}",
                logs()
            );
            for action in self.step() {
                match action {
                    Action::Finalized {
                        task_id,
                        result_hash,
                        ..
                    } => {
                        finalized.insert(task_id, result_hash);
                    }
                    Action::Failed { task_id, .. } => failed.push(task_id),
                    _ => {}
                }
            }
        }
        (finalized, failed)
    }

    /// The `COMPUTE_FAILED` (or other `*_FAILED`) cause a worker reported for a task.
    pub fn failure_cause(&self, task: TaskId) -> Option<(ReplicateStatus, ReplicateStatusCause)> {
        self.seen.iter().find_map(|(_, m)| match m {
            Message::StatusUpdate(u) if u.task_id == task && u.cause.is_some() => {
                u.cause.map(|c| (u.status, c))
            }
            _ => None,
        })
    }

    /// Drives the pool until a worker reports a failure cause for `task`.
    pub fn run_until_failure_reported(
        &mut self,
        task: TaskId,
        logs: &dyn Fn() -> String,
    ) -> (ReplicateStatus, ReplicateStatusCause) {
        let deadline = Instant::now() + SCENARIO;
        loop {
            if let Some(found) = self.failure_cause(task) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no failure reported for {task}; logs:\n{}",
                logs()
            );
            self.step();
        }
    }

    /// The result digests the workers contributed for a task.
    pub fn contributions(&self, task: TaskId) -> Vec<Digest> {
        self.seen
            .iter()
            .filter_map(|(_, m)| match m {
                Message::Contribution(c) if c.task_id == task => Some(c.result_digest),
                _ => None,
            })
            .collect()
    }

    /// Assigns task 0 of `deal` to `worker`; returns its id.
    pub fn assign(&mut self, deal: &DealSummary, worker: Address, limits: TaskLimits) -> TaskId {
        let (task_id, actions) = assign_first_task(&mut self.scheduler, deal, worker, limits);
        self.perform(actions);
        task_id
    }
}

/// A plain (non-TEE) deal for the app at `app` on `server`, trust 1.
pub fn deal(server: &HttpServer, app: &str, app_bytes: &[u8], args: &str, seed: u8) -> DealSummary {
    server.deal(app, app_bytes, Vec::new(), args, seed)
}
