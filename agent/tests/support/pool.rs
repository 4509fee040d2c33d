//! A scheduler driving real agent processes: the simulator's scheduler state machine on a real
//! MQTT connection ([`Driver`]), agent processes on their own state directories ([`Agent`]), a
//! loopback HTTP server for apps, inputs and results ([`HttpServer`]), and a TCP proxy that can
//! cut a connection right after a chosen publish ([`CuttingProxy`]).
//!
//! The driver records what the invariants are checked on: every outbox message in arrival
//! order, finalizations per task, refusals of the state machine. Its MQTT session is persistent
//! and it subscribes again after every CONNACK, so it survives a broker restart.
//! (`crash_points.rs` has its own copy of the first three, older than this module.)

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgepool_protocol::envelope::Envelope;
use edgepool_protocol::hash::sha256;
use edgepool_protocol::messages::{AppRef, DealSummary, Message, MessageKind, TaskLimits};
use edgepool_protocol::poco;
use edgepool_protocol::primitives::{Address, DealId, Digest, TaskId};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::tags::Tag;
use edgepool_simulator::scheduler::{Action, Scheduler, SchedulerError};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

pub const POOL: &str = "0x1111111111111111111111111111111111111111";
pub const SCHEDULER_KEY: [u8; 32] = [0x5c; 32];

pub use super::{bin, now_ms, repo};

pub fn hello() -> Vec<u8> {
    std::fs::read(repo().join("apps/hello/hello.wasm")).unwrap()
}

/// `edgepool-agent init` in `dir` (password `pw` in `dir/password`, state in `dir/state`,
/// configuration `dir/agent.toml`) for `broker` and `scheduler`: the configuration path and the
/// worker address.
pub fn init_agent(dir: &Path, broker: &str, scheduler: Address) -> (PathBuf, Address) {
    let password = dir.join("password");
    std::fs::write(&password, "pw\n").unwrap();
    let config = dir.join("agent.toml");
    let out = bin()
        .args(["init", "--json", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--broker", broker, "--pool", POOL, "--scheduler"])
        .arg(scheduler.to_string())
        .arg("--password-file")
        .arg(&password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let address = report["address"].as_str().unwrap().parse().unwrap();
    (config, address)
}

/// `edgepool-agent run` on the configuration `config` of [`init_agent`]'s `dir`, its stderr
/// (the log) to `log`, with the environment `env` (`EDGEPOOL_*` overrides, applied in order);
/// `NOTIFY_SOCKET` and `FAILPOINTS` are not inherited.
pub fn run_agent<K, V>(
    dir: &Path,
    config: &Path,
    log: &Path,
    env: impl IntoIterator<Item = (K, V)>,
) -> Child
where
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    let mut command = bin();
    command
        .args(["run", "--config"])
        .arg(config)
        .env("EDGEPOOL_IDENTITY_PASSWORD_FILE", dir.join("password"))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("FAILPOINTS")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

/// The loopback app, data and result host ([`super::http::StoreServer`]), with the deals of
/// the pool tests.
pub use super::http::StoreServer as HttpServer;

impl HttpServer {
    /// Serves the hello app and its input file.
    pub fn hello() -> HttpServer {
        let mut files = HashMap::new();
        files.insert("hello.wasm".to_string(), hello());
        files.insert("greeting.txt".to_string(), b"hi\n".to_vec());
        files.insert(
            "mandelbrot.wasm".to_string(),
            std::fs::read(repo().join("apps/mandelbrot/mandelbrot.wasm")).unwrap(),
        );
        HttpServer::start(files)
    }

    /// A one-replica deal of `mandelbrot 400 1000` (several fuel slices: it runs a while).
    pub fn mandelbrot_deal(&self, seed: u8) -> DealSummary {
        let bytes = std::fs::read(repo().join("apps/mandelbrot/mandelbrot.wasm")).unwrap();
        let mut deal = self.hello_deal(seed);
        deal.app.url = self.url("mandelbrot.wasm");
        deal.app.checksum = Digest(sha256(&bytes));
        deal.app.size_bytes = Some(bytes.len() as u64);
        deal.input_files = Vec::new();
        deal.args = "400 1000".into();
        deal
    }

    /// A one-replica deal of the hello app; `seed` makes its id.
    pub fn hello_deal(&self, seed: u8) -> DealSummary {
        self.deal(
            "hello.wasm",
            &hello(),
            vec![self.url("greeting.txt")],
            "Alice Bob",
            seed,
        )
    }

    /// A one-replica standard deal (trust 1, time reference 60 s, results PUT to this server)
    /// of the app served at `app` with the bytes `app_bytes`; `seed` makes its id.
    pub fn deal(
        &self,
        app: &str,
        app_bytes: &[u8],
        inputs: Vec<String>,
        args: &str,
        seed: u8,
    ) -> DealSummary {
        DealSummary {
            deal_id: DealId::from([seed; 32]),
            app: AppRef {
                address: Address([0xa1; 20]),
                url: self.url(app),
                checksum: Digest(sha256(app_bytes)),
                size_bytes: Some(app_bytes.len() as u64),
            },
            dataset: None,
            input_files: inputs,
            args: args.into(),
            tag: Tag::NONE,
            trust: 1,
            category: 0,
            time_ref_seconds: 60,
            start_time_ms: now_ms(),
            requester: Address([0x51; 20]),
            beneficiary: Address([0x52; 20]),
            callback: Address::ZERO,
            result_encryption: false,
            result_storage_provider: "http".into(),
            result_storage_proxy: Some(format!("http://127.0.0.1:{}", self.port)),
            bot_first: 0,
            bot_size: 1,
        }
    }
}

/// A real agent process on its own state directory; killed when dropped.
pub struct Agent {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub address: Address,
    pub runs: u32,
    env: Vec<(String, String)>,
}

impl Agent {
    /// `init` in a new temp dir, then `run` with `env` added to the environment.
    pub fn start(broker: &str, scheduler: Address, env: &[(&str, &str)]) -> Agent {
        Agent::start_in(tempfile::tempdir().unwrap(), broker, scheduler, env)
    }

    /// As [`Agent::start`], in `dir` (whose `state` may be prepared, e.g. a mount point).
    pub fn start_in(
        dir: tempfile::TempDir,
        broker: &str,
        scheduler: Address,
        env: &[(&str, &str)],
    ) -> Agent {
        let (config, address) = init_agent(dir.path(), broker, scheduler);
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let child = Agent::spawn(dir.path(), &config, 0, &env);
        Agent {
            child,
            dir,
            config,
            address,
            runs: 1,
            env,
        }
    }

    /// Stops the current process (`kill -9`) and starts a new one on the same state, armed with
    /// `failpoints` (`FAILPOINTS`, the agent's `failpoints` feature) when given.
    pub fn restart(&mut self, failpoints: Option<&str>) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut env = self.env.clone();
        if let Some(failpoints) = failpoints {
            env.push(("FAILPOINTS".into(), failpoints.into()));
        }
        self.child = Agent::spawn(self.dir.path(), &self.config, self.runs, &env);
        self.runs += 1;
    }

    fn spawn(dir: &Path, config: &Path, run: u32, env: &[(String, String)]) -> Child {
        let defaults = [
            ("EDGEPOOL_AGENT_MIN_FREE_DISK_MB", "4"),
            ("EDGEPOOL_FETCH_RETRIES", "0"),
            ("EDGEPOOL_BROKER_RECONNECT_MAX_SECS", "2"),
            ("EDGEPOOL_LOG", "debug"),
        ];
        let log = dir.join(format!("agent-{run}.log"));
        let env = defaults
            .into_iter()
            .chain(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        run_agent(dir, config, &log, env)
    }

    /// Stops the current process with SIGTERM (a clean stop: drain, journal closed) and waits
    /// for it, at most `timeout`; its exit code (`None`: killed by a signal or still running).
    pub fn stop(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait_exit(timeout)
    }

    /// Waits at most `timeout` for the current process to exit; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut code = None;
        super::poll_until(timeout, || match self.child.try_wait() {
            Ok(Some(status)) => {
                code = status.code();
                true
            }
            _ => false,
        });
        code
    }

    /// The log file of the current run.
    pub fn log_path(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("agent-{}.log", self.runs.saturating_sub(1)))
    }

    /// The log of the current run.
    pub fn last_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Every run's log, in order.
    pub fn logs(&self) -> String {
        (0..self.runs)
            .map(|i| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("agent-{i}.log")))
                    .unwrap_or_default();
                format!("--- run {i} ---\n{log}")
            })
            .collect()
    }

    /// `edgepool-agent <command> --config …` (+ `args`): (exit code, stdout).
    pub fn cli(&self, command: &str, args: &[&str]) -> (Option<i32>, String) {
        let out = bin()
            .arg(command)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env(
                "EDGEPOOL_IDENTITY_PASSWORD_FILE",
                self.dir.path().join("password"),
            )
            .env("EDGEPOOL_AGENT_MIN_FREE_DISK_MB", "4")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    pub fn task_state(&self, task_id: TaskId) -> Option<String> {
        let (_, out) = self.cli("tasks", &["--json"]);
        let tasks: serde_json::Value = serde_json::from_str(&out).ok()?;
        tasks.as_array()?.iter().find_map(|t| {
            (t["task_id"] == task_id.to_string()).then(|| t["state"].as_str().unwrap_or("").into())
        })
    }

    pub fn journal(&self) -> PathBuf {
        self.dir.path().join("state").join("journal.sqlite")
    }

    /// Rows in the journal's outbox (1 if it cannot be read).
    pub fn outbox_len(&self) -> i64 {
        rusqlite::Connection::open(self.journal())
            .and_then(|db| db.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0)))
            .unwrap_or(1)
    }

    /// `PRAGMA integrity_check` of the journal (read-only open; on a read-only or full file
    /// system where SQLite cannot make the `-shm` file and no WAL content is left, of the main
    /// file alone, as `status` reads it).
    pub fn integrity(&self) -> String {
        let check = |db: rusqlite::Connection| {
            db.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        };
        let read_only = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        match rusqlite::Connection::open_with_flags(self.journal(), read_only).and_then(check) {
            Ok(result) => result,
            Err(first) => {
                let wal = self.dir.path().join("state").join("journal.sqlite-wal");
                assert!(
                    std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
                    "integrity: {first}, and the WAL holds commits"
                );
                let uri = format!("file:{}?immutable=1", self.journal().display());
                rusqlite::Connection::open_with_flags(
                    uri,
                    read_only | rusqlite::OpenFlags::SQLITE_OPEN_URI,
                )
                .and_then(check)
                .unwrap_or_else(|e| panic!("integrity: {first}, then immutable: {e}"))
            }
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How many times the log says the agent connected.
    pub fn connections(&self) -> usize {
        self.logs().matches("connected broker=").count()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn topic(worker: Address, channel: &str) -> String {
    format!(
        "edgepool/v1/{}/workers/{}/{channel}",
        POOL.to_lowercase(),
        worker.to_string().to_lowercase()
    )
}

/// The scheduler's MQTT connection as the single-test drivers use it: the configured scheduler
/// key, a clean session as client `scheduler`, subscribed to every worker topic of the pool;
/// publications arrive on the receiver as (topic, payload).
pub struct SchedulerLink {
    pub signer: Signer,
    pub client: Client,
    pub incoming: std::sync::mpsc::Receiver<(String, Vec<u8>)>,
}

impl SchedulerLink {
    /// Connects to the broker on `port`; `queue` is the client's request capacity and
    /// `max_packet` the largest packet both ways (rumqttc's default when `None`).
    pub fn connect(port: u16, queue: usize, max_packet: Option<usize>) -> SchedulerLink {
        let signer = Signer::from_bytes(&SCHEDULER_KEY).unwrap();
        let mut options = MqttOptions::new("scheduler", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        if let Some(max) = max_packet {
            options.set_max_packet_size(max, max);
        }
        let (client, mut connection) = Client::new(options, queue);
        client
            .subscribe(
                format!("edgepool/v1/{}/workers/+/+", POOL.to_lowercase()),
                QoS::AtLeastOnce,
            )
            .unwrap();
        let (tx, incoming) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        SchedulerLink {
            signer,
            client,
            incoming,
        }
    }

    /// [`send_sealed`] on this link.
    pub fn send(&self, worker: Address, seq: u64, message: &Message) {
        send_sealed(&self.signer, &self.client, worker, seq, message);
    }
}

/// Seals `message` for `worker`'s inbox with sequence number `seq` and publishes it (QoS 1).
pub fn send_sealed(signer: &Signer, client: &Client, worker: Address, seq: u64, message: &Message) {
    let inbox = topic(worker, "inbox");
    let bytes = Envelope::seal(signer, &inbox, seq, now_ms(), message).unwrap();
    client
        .publish(inbox, QoS::AtLeastOnce, false, bytes)
        .unwrap();
}

/// The scheduler side, recording everything the invariants are checked on.
pub struct Driver {
    pub scheduler: Scheduler,
    signer: Signer,
    client: Client,
    incoming: std::sync::mpsc::Receiver<(String, Vec<u8>)>,
    seq: u64,
    /// Outbox messages in arrival order: (sender, sequence number, payload hash, message).
    pub outbox: Vec<(Address, u64, [u8; 32], Message)>,
    pub conflicts: usize,
    pub other_refusals: Vec<String>,
    /// Finalizations per task.
    pub finalized: BTreeMap<TaskId, usize>,
    /// Tasks the state machine gave up.
    pub failed: Vec<TaskId>,
    /// Workers whose capacity advertisement arrived.
    pub online: Vec<Address>,
    /// The last message sent to each (worker, task): what a pool re-sends after a broker
    /// that lost its sessions comes back.
    last_sent: BTreeMap<(Address, TaskId), Message>,
    /// CONNACKs the driver's own connection received.
    pub connacks: Arc<AtomicUsize>,
    /// Kinds of agent message to lose once each, as a broker that acknowledged a publication and
    /// died before delivering it: recorded in `outbox`, not handled.
    pub lose_once: Vec<MessageKind>,
    /// How many messages were lost that way.
    pub lost: usize,
}

impl Driver {
    /// Connects with a persistent session (`client_id` is its name on the broker).
    pub fn connect(port: u16, client_id: &str) -> Driver {
        let signer = Signer::from_bytes(&SCHEDULER_KEY).unwrap();
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_clean_session(false);
        let (client, mut connection) = Client::new(options, 256);
        let (tx, incoming) = std::sync::mpsc::channel();
        let resubscribe = client.clone();
        let connacks = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connacks);
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        counted.fetch_add(1, Ordering::SeqCst);
                        // A broker that lost its sessions lost our subscription too.
                        let _ = resubscribe.try_subscribe(
                            format!("edgepool/v1/{}/workers/+/+", POOL.to_lowercase()),
                            QoS::AtLeastOnce,
                        );
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        Driver {
            scheduler: Scheduler::new(signer.clone()),
            signer,
            client,
            incoming,
            seq: 0,
            outbox: Vec::new(),
            conflicts: 0,
            other_refusals: Vec::new(),
            finalized: BTreeMap::new(),
            failed: Vec::new(),
            online: Vec::new(),
            last_sent: BTreeMap::new(),
            connacks,
            lose_once: Vec::new(),
            lost: 0,
        }
    }

    fn send(&mut self, worker: Address, message: &Message) {
        self.seq += 1;
        let inbox = topic(worker, "inbox");
        let bytes = Envelope::seal(&self.signer, &inbox, self.seq, now_ms(), message).unwrap();
        // The request queue is large; a full one (broker down for long) drops the message,
        // which a pool re-sends like a lost one.
        let _ = self
            .client
            .try_publish(inbox, QoS::AtLeastOnce, false, bytes);
    }

    pub fn perform(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { worker, message } => {
                    if let Some(task_id) = message.task_id() {
                        self.last_sent.insert((worker, task_id), message.clone());
                    }
                    self.send(worker, &message);
                }
                Action::Finalized { task_id, .. } => {
                    *self.finalized.entry(task_id).or_default() += 1
                }
                Action::Failed { task_id, reason } => {
                    self.failed.push(task_id);
                    self.other_refusals
                        .push(format!("task {task_id} failed: {reason}"))
                }
            }
        }
    }

    /// Assigns one task of `deal` to `worker`.
    pub fn assign(&mut self, deal: &DealSummary, index: u64, worker: Address) -> TaskId {
        let actions = self
            .scheduler
            .assign(
                deal,
                index,
                worker,
                TaskLimits::default(),
                Address::ZERO,
                now_ms(),
            )
            .unwrap();
        self.perform(actions);
        poco::task_id(&deal.deal_id, index)
    }

    /// Re-sends the last message of every task not yet finalized (what a pool does when a
    /// broker that lost its sessions comes back; the agent's handlers are idempotent).
    pub fn resend_unfinished(&mut self) -> usize {
        let pending: Vec<(Address, Message)> = self
            .last_sent
            .iter()
            .filter(|((_, task), _)| {
                !self.finalized.contains_key(task) && !self.failed.contains(task)
            })
            .map(|((worker, _), m)| (*worker, m.clone()))
            .collect();
        for (worker, message) in &pending {
            self.send(*worker, message);
        }
        pending.len()
    }

    /// Handles what arrived within 100 ms, if anything.
    pub fn step(&mut self) {
        let Ok((t, payload)) = self.incoming.recv_timeout(Duration::from_millis(100)) else {
            return;
        };
        if t.ends_with("/capacity") {
            if let Ok(opened) = Envelope::open(&payload, &t) {
                if !self.online.contains(&opened.sender) {
                    self.online.push(opened.sender);
                }
            }
            return;
        }
        if !t.ends_with("/outbox") {
            return;
        }
        let Ok(opened) = Envelope::open(&payload, &t) else {
            self.other_refusals.push(format!("unopenable on {t}"));
            return;
        };
        self.outbox.push((
            opened.sender,
            opened.seq,
            sha256(&payload).0,
            opened.message.clone(),
        ));
        let kind = opened.message.kind();
        if let Some(i) = self.lose_once.iter().position(|k| *k == kind) {
            self.lose_once.remove(i);
            self.lost += 1;
            return;
        }
        match self
            .scheduler
            .handle(opened.sender, &opened.message, now_ms())
        {
            Ok(actions) => self.perform(actions),
            Err(SchedulerError::Conflict { .. }) => self.conflicts += 1,
            Err(e) => self.other_refusals.push(e.to_string()),
        }
    }

    /// Steps until `done` or `within` passes (→ false).
    pub fn step_until(&mut self, within: Duration, mut done: impl FnMut(&Driver) -> bool) -> bool {
        let deadline = Instant::now() + within;
        while !done(self) {
            if Instant::now() >= deadline {
                return false;
            }
            self.step();
        }
        true
    }

    pub fn wait_online(&mut self, agent: &Agent) {
        let worker = agent.address;
        assert!(
            self.step_until(Duration::from_secs(30), |d| d.online.contains(&worker)),
            "agent never advertised; logs:\n{}",
            agent.logs()
        );
    }

    /// The contributions (result digests) a worker sent for a task, duplicates included.
    pub fn contributions(&self, worker: Address, task_id: TaskId) -> Vec<([u8; 32], Digest)> {
        self.outbox
            .iter()
            .filter_map(|(sender, _, hash, m)| match m {
                Message::Contribution(c) if *sender == worker && c.task_id == task_id => {
                    Some((*hash, c.result_digest))
                }
                _ => None,
            })
            .collect()
    }

    /// The declines the scheduler saw for `task_id`, as `CAUSE: detail`.
    pub fn declines(&self, task_id: TaskId) -> Vec<String> {
        self.outbox
            .iter()
            .filter_map(|(_, _, _, m)| match m {
                Message::Decline(d) if d.task_id == task_id => {
                    Some(format!("{}: {}", d.cause, d.detail))
                }
                _ => None,
            })
            .collect()
    }

    /// The last heartbeat of `worker` since message number `from` of the outbox list.
    pub fn last_heartbeat(
        &self,
        worker: Address,
        from: usize,
    ) -> Option<edgepool_protocol::messages::Heartbeat> {
        self.outbox[from.min(self.outbox.len())..]
            .iter()
            .rev()
            .find_map(|(sender, _, _, m)| match m {
                Message::Heartbeat(h) if *sender == worker => Some(h.clone()),
                _ => None,
            })
    }

    /// The invariants every fault test ends with, per worker: sequence numbers never go back (a
    /// number seen again is the same message re-sent), no conflicting message, and never two
    /// different contributions for a task.
    pub fn check_invariants(&self, label: &str) {
        assert_eq!(self.conflicts, 0, "{label}: conflicting messages");
        let mut per_worker: HashMap<Address, (BTreeMap<u64, [u8; 32]>, u64)> = HashMap::new();
        for (sender, seq, hash, message) in &self.outbox {
            let (by_seq, highest) = per_worker.entry(*sender).or_default();
            if let Some(previous) = by_seq.insert(*seq, *hash) {
                assert_eq!(
                    &previous, hash,
                    "{label}: seq {seq} reused for another message"
                );
            } else {
                assert!(
                    *seq > *highest,
                    "{label}: {sender} seq {seq} ({}) arrived after {highest}",
                    message.kind()
                );
                *highest = *seq;
            }
        }
        let mut digests: HashMap<(Address, TaskId), Digest> = HashMap::new();
        for (sender, _, _, message) in &self.outbox {
            if let Message::Contribution(c) = message {
                let first = digests
                    .entry((*sender, c.task_id))
                    .or_insert(c.result_digest);
                assert_eq!(
                    *first, c.result_digest,
                    "{label}: two different contributions from {sender} for {}",
                    c.task_id
                );
            }
        }
        for (task, n) in &self.finalized {
            assert_eq!(*n, 1, "{label}: task {task} finalized {n} times");
        }
    }

    /// How many distinct contribution messages (by payload) arrived for `task_id`.
    pub fn distinct_contributions(&self, task_id: TaskId) -> usize {
        let mut seen: Vec<[u8; 32]> = self
            .outbox
            .iter()
            .filter(|(_, _, _, m)| matches!(m, Message::Contribution(c) if c.task_id == task_id))
            .map(|(_, _, h, _)| *h)
            .collect();
        seen.sort();
        seen.dedup();
        seen.len()
    }

    /// Messages of `kind` seen (duplicates included).
    pub fn count(&self, kind: MessageKind) -> usize {
        self.outbox
            .iter()
            .filter(|(_, _, _, m)| m.kind() == kind)
            .count()
    }
}

/// A TCP proxy on 127.0.0.1 in front of the broker. When armed with a message kind, the first
/// outbox PUBLISH of that kind from the agent is handled as chosen and the connection is cut
/// before the broker's PUBACK can reach the agent; later connections pass everything.
pub struct CuttingProxy {
    pub port: u16,
    /// How many connections were cut.
    pub cuts: Arc<AtomicUsize>,
    /// How many connections were accepted.
    pub accepted: Arc<AtomicUsize>,
}

/// What the proxy does with the publish it cuts on.
#[derive(Clone, Copy, Debug)]
pub enum Cut {
    /// The publish never reaches the broker.
    BeforeBroker,
    /// The publish reaches the broker; its PUBACK never reaches the agent.
    AfterBroker,
}

impl CuttingProxy {
    pub fn start(upstream: u16, kind: MessageKind, cut: Cut) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cuts = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (cuts2, accepted2) = (Arc::clone(&cuts), Arc::clone(&accepted));
        let armed = Arc::new(AtomicBool::new(true));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                accepted2.fetch_add(1, Ordering::SeqCst);
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                // broker → agent: copied while `relay` holds.
                let relay = Arc::new(AtomicBool::new(true));
                {
                    let (mut from, mut to) =
                        (server.try_clone().unwrap(), client.try_clone().unwrap());
                    let relay = Arc::clone(&relay);
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0
                                || !relay.load(Ordering::SeqCst)
                                || to.write_all(&buf[..n]).is_err()
                            {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
                // agent → broker: parsed packet by packet.
                let (armed, cuts) = (Arc::clone(&armed), Arc::clone(&cuts2));
                std::thread::spawn(move || {
                    let (mut from, mut to) = (client, server);
                    while let Some(packet) = read_packet(&mut from) {
                        let hit = armed.load(Ordering::SeqCst)
                            && packet[0] >> 4 == 3
                            && publish_kind(&packet) == Some(kind);
                        if hit {
                            armed.store(false, Ordering::SeqCst);
                            relay.store(false, Ordering::SeqCst);
                            if matches!(cut, Cut::AfterBroker) {
                                let _ = to.write_all(&packet);
                                // Let the broker take it before the connection goes.
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            cuts.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        if to.write_all(&packet).is_err() {
                            break;
                        }
                    }
                    let _ = from.shutdown(Shutdown::Both);
                    let _ = to.shutdown(Shutdown::Both);
                });
            }
        });
        CuttingProxy {
            port,
            cuts,
            accepted,
        }
    }
}

/// One MQTT control packet (fixed header included), or `None` at the end of the stream.
fn read_packet(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut packet = vec![0u8; 1];
    stream.read_exact(&mut packet).ok()?;
    let mut length = 0usize;
    for shift in 0..4 {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).ok()?;
        packet.push(byte[0]);
        length |= usize::from(byte[0] & 0x7f) << (7 * shift);
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let start = packet.len();
    packet.resize(start + length, 0);
    stream.read_exact(&mut packet[start..]).ok()?;
    Some(packet)
}

/// The kind of the envelope a PUBLISH packet carries on an outbox topic (MQTT 3.1.1).
fn publish_kind(packet: &[u8]) -> Option<MessageKind> {
    let qos = (packet[0] >> 1) & 0x03;
    let mut at = 1;
    while packet.get(at)? & 0x80 != 0 {
        at += 1;
    }
    at += 1;
    let topic_len = usize::from(u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]));
    let topic = std::str::from_utf8(packet.get(at + 2..at + 2 + topic_len)?).ok()?;
    at += 2 + topic_len;
    if qos > 0 {
        at += 2;
    }
    if !topic.ends_with("/outbox") {
        return None;
    }
    Envelope::open(packet.get(at..)?, topic)
        .ok()
        .map(|o| o.message.kind())
}

/// A tmpfs mounted for a test, unmounted when dropped.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mounts a `size` tmpfs on `at`, or says why it cannot (not root, no mount).
    pub fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(at.to_path_buf()))
    }

    /// `mount -o remount,ro|rw`.
    pub fn remount(&self, read_only: bool) -> Result<(), String> {
        let option = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        let out = Command::new("mount")
            .args(["-o", option])
            .arg(&self.0)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
