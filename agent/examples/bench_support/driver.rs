//! The two ends of the pipeline benchmark: the agent process under test, and the scheduler side
//! (the simulator's state machine on a real MQTT connection) that times each task.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use edgepool_attestation::policy::Policy;
use edgepool_protocol::envelope::{Envelope, Opened};
use edgepool_protocol::messages::{DealSummary, Message, TaskLimits};
use edgepool_protocol::poco;
use edgepool_protocol::primitives::{Address, Digest, TaskId};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::status::ReplicateStatus;
use edgepool_simulator::scheduler::{Action, Scheduler};
use edgepool_simulator::sms::Sms;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::json;

use crate::stats::Summary;
use crate::{ms, nodelay, now_ms, Args, POOL, SCHEDULER_KEY, TASK_TIMEOUT};

/// A real agent process with its own state directory; killed when dropped.
pub struct Agent {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
    /// The agent's wallet address.
    pub address: Address,
}

impl Agent {
    /// Creates a wallet and config with `init`, then starts `run` (stderr to a log file).
    pub fn start(args: &Args, broker: &str, scheduler: Address) -> Result<Agent> {
        let dir = tempfile::tempdir()?;
        let password = dir.path().join("password");
        std::fs::write(&password, "pw\n")?;
        let config = dir.path().join("agent.toml");
        let out = Command::new(&args.agent)
            .args(["init", "--json", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--broker", broker, "--pool", POOL, "--scheduler"])
            .arg(scheduler.to_string())
            .arg("--password-file")
            .arg(&password)
            .output()
            .with_context(|| format!("running {}", args.agent.display()))?;
        if !out.status.success() {
            bail!("agent init: {}", String::from_utf8_lossy(&out.stderr));
        }
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let address = report["address"]
            .as_str()
            .ok_or_else(|| anyhow!("no address in the init report"))?
            .parse()?;
        let log = std::env::var_os("BENCH_AGENT_LOG")
            .map_or_else(|| dir.path().join("agent.log"), PathBuf::from);
        let mut run = Command::new(&args.agent);
        for pair in &args.agent_env {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| anyhow!("--agent-env {pair:?}: expected NAME=VALUE"))?;
            run.env(name, value);
        }
        let child = run
            .args(["run", "--config"])
            .arg(&config)
            .env("EDGEPOOL_IDENTITY_PASSWORD_FILE", &password)
            .env("EDGEPOOL_AGENT_MIN_FREE_DISK_MB", "1")
            .env("EDGEPOOL_FETCH_RETRIES", "0")
            // `auto` finds no TEE on a benchmark machine: tee only with --tee.
            .env(
                "EDGEPOOL_AGENT_ATTESTATION",
                if args.tee { "software" } else { "auto" },
            )
            .env("EDGEPOOL_LOG", &args.log)
            .env("EDGEPOOL_AGENT_SLOTS", args.slots.to_string())
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        Ok(Agent {
            child,
            log,
            _dir: dir,
            address,
        })
    }

    /// CPU time (user + system) the agent process used so far, in ms (10 ms resolution), from
    /// `/proc/PID/stat`; 0 where there is no procfs.
    pub fn cpu_ms(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at its closing ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        // utime and stime are fields 14 and 15 of the line: indices 11 and 12 after the `)`.
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        match (ticks(11), ticks(12)) {
            (Some(user), Some(system)) => (user + system) * 10.0,
            _ => 0.0,
        }
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn topic(worker: Address, channel: &str) -> String {
    format!(
        "edgepool/v1/{}/workers/{}/{channel}",
        POOL.to_lowercase(),
        worker.to_string().to_lowercase()
    )
}

/// When each step of one task was seen on the scheduler's side.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Assignment publish → contribution receipt.
    pub total_ms: f64,
    /// (step, ms since the assignment publish), in order of receipt.
    pub steps: Vec<(String, f64)>,
    /// The contributed result digest.
    pub digest: Digest,
}

impl Timing {
    /// The median time between consecutive steps, by step name.
    pub fn phase_medians(timings: &[Timing]) -> serde_json::Value {
        let mut phases: Vec<(String, Vec<f64>)> = Vec::new();
        for t in timings {
            let mut previous = ("assignment published".to_string(), 0.0);
            for (step, at) in &t.steps {
                let name = format!("{} -> {step}", previous.0);
                match phases.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, v)) => v.push(at - previous.1),
                    None => phases.push((name, vec![at - previous.1])),
                }
                previous = (step.clone(), *at);
            }
        }
        serde_json::Value::Array(
            phases
                .into_iter()
                .map(|(name, v)| json!({"phase": name, "median_ms": Summary::of(&v).median}))
                .collect(),
        )
    }
}

/// The scheduler side: the simulator's state machine on a real MQTT connection.
pub struct Driver {
    /// The scheduler state machine.
    pub scheduler: Scheduler,
    signer: Signer,
    client: Client,
    incoming: Receiver<(Instant, String, Vec<u8>)>,
    seq: u64,
}

impl Driver {
    /// Connects as the scheduler and subscribes to every worker's topics; with `tee`, the
    /// scheduler answers secret requests with the simulator's SMS (software evidence accepted).
    pub fn connect(port: u16, tee: bool) -> Result<Driver> {
        let signer = Signer::from_bytes(&SCHEDULER_KEY)?;
        let mut options = MqttOptions::new("scheduler", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut connection) = Client::new(options, 64);
        nodelay(&mut connection);
        client.subscribe(
            format!("edgepool/v1/{}/workers/+/+", POOL.to_lowercase()),
            QoS::AtLeastOnce,
        )?;
        let (tx, incoming) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let at = Instant::now();
                        if tx.send((at, p.topic.clone(), p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        let mut scheduler = Scheduler::new(signer.clone());
        if tee {
            let sms = Sms::new(signer.address(), Policy::simulator());
            scheduler = scheduler.with_sms(sms, POOL.parse()?);
        }
        Ok(Driver {
            scheduler,
            signer,
            client,
            incoming,
            seq: 0,
        })
    }

    /// Publishes the `Send` actions; returns the time of the last publish.
    fn perform(&mut self, actions: Vec<Action>) -> Result<Instant> {
        let mut at = Instant::now();
        for action in actions {
            if let Action::Send { worker, message } = action {
                self.seq += 1;
                let inbox = topic(worker, "inbox");
                let bytes = Envelope::seal(&self.signer, &inbox, self.seq, now_ms(), &message)?;
                at = Instant::now();
                self.client.publish(inbox, QoS::AtLeastOnce, false, bytes)?;
            }
        }
        Ok(at)
    }

    /// Waits for the agent's capacity advertisement.
    pub fn wait_online(&mut self, agent: &Agent) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((_, t, _)) = self.incoming.recv_timeout(Duration::from_millis(100)) {
                if t == topic(agent.address, "capacity") {
                    return Ok(());
                }
            }
        }
        bail!("the agent never advertised; log:\n{}", agent.log())
    }

    /// Assigns task 0 of `deal` to the agent: its id and the time of the publish.
    fn assign(&mut self, deal: &DealSummary, agent: &Agent) -> Result<(TaskId, Instant)> {
        let actions = self.scheduler.assign(
            deal,
            0,
            agent.address,
            TaskLimits::default(),
            Address::ZERO,
            now_ms(),
        )?;
        Ok((poco::task_id(&deal.deal_id, 0), self.perform(actions)?))
    }

    /// The next message the agent published on its outbox, opened, with its time of receipt;
    /// `None` after 100 ms without one (or for a message on another topic).
    fn next_from_agent(&mut self) -> Result<Option<(Instant, Opened)>> {
        let Ok((at, topic, payload)) = self.incoming.recv_timeout(Duration::from_millis(100))
        else {
            return Ok(None);
        };
        if !topic.ends_with("/outbox") {
            return Ok(None);
        }
        Ok(Some((at, Envelope::open(&payload, &topic)?)))
    }

    /// Plays the scheduler's part for one of the agent's messages.
    fn answer(&mut self, opened: &Opened) -> Result<()> {
        let actions = self
            .scheduler
            .handle(opened.sender, &opened.message, now_ms())
            .map_err(|e| anyhow!("scheduler refused {:?}: {e}", opened.message))?;
        self.perform(actions)?;
        Ok(())
    }

    /// Assigns task 0 of `deal` and plays the scheduler until the agent reports COMPLETED.
    pub fn run_task(&mut self, deal: &DealSummary, agent: &Agent) -> Result<Timing> {
        let (task_id, published) = self.assign(deal, agent)?;
        let mut steps = Vec::new();
        let mut contribution = None;
        let deadline = Instant::now() + TASK_TIMEOUT;
        while Instant::now() < deadline {
            let Some((at, opened)) = self.next_from_agent()? else {
                continue;
            };
            let since = ms(at.saturating_duration_since(published));
            let mut completed = false;
            match &opened.message {
                Message::Accept(a) if a.task_id == task_id => {
                    steps.push(("accept".to_string(), since));
                }
                Message::StatusUpdate(u) if u.task_id == task_id => {
                    if u.cause.is_some() {
                        bail!("the task failed: {u:?}\n{}", agent.log());
                    }
                    completed = u.status == ReplicateStatus::Completed;
                    if contribution.is_none() {
                        steps.push((u.status.to_string(), since));
                    }
                }
                Message::SecretRequest(r) if r.task_id == task_id => {
                    steps.push(("secret request".to_string(), since));
                }
                Message::Contribution(c) if c.task_id == task_id => {
                    steps.push(("contribution".to_string(), since));
                    contribution = Some((since, c.result_digest));
                }
                _ => {}
            }
            self.answer(&opened)?;
            if completed {
                let (total_ms, digest) =
                    contribution.ok_or_else(|| anyhow!("completed without a contribution"))?;
                return Ok(Timing {
                    total_ms,
                    steps,
                    digest,
                });
            }
        }
        bail!("task {task_id} did not complete; log:\n{}", agent.log())
    }

    /// Plays the scheduler for `deals` (task 0 of each) on one agent, keeping `window` tasks
    /// assigned and not yet contributed (the agent's slots), until every task is COMPLETED.
    /// Returns the time from the first assignment to the last COMPLETED.
    pub fn run_window(
        &mut self,
        deals: &[DealSummary],
        window: usize,
        agent: &Agent,
    ) -> Result<Duration> {
        let window = window.max(1);
        let mut next = 0;
        // Assigned, contribution not seen yet (holding a slot) / not COMPLETED yet.
        let mut computing: Vec<TaskId> = Vec::new();
        let mut unfinished = deals.len();
        let started = Instant::now();
        let deadline = started + TASK_TIMEOUT + Duration::from_millis(50 * deals.len() as u64);
        while unfinished > 0 {
            while computing.len() < window && next < deals.len() {
                let (task_id, _) = self.assign(&deals[next], agent)?;
                next += 1;
                computing.push(task_id);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{unfinished} of {} tasks did not complete; log:\n{}",
                    deals.len(),
                    agent.log()
                );
            }
            let Some((_, opened)) = self.next_from_agent()? else {
                continue;
            };
            match &opened.message {
                Message::StatusUpdate(u) if u.cause.is_some() => {
                    bail!("a task failed: {u:?}\n{}", agent.log());
                }
                Message::StatusUpdate(u) if u.status == ReplicateStatus::Completed => {
                    unfinished -= 1;
                }
                Message::Contribution(c) => computing.retain(|id| *id != c.task_id),
                Message::Decline(d) => bail!("the agent declined: {d:?}"),
                _ => {}
            }
            self.answer(&opened)?;
        }
        Ok(started.elapsed())
    }
}
