//! `edgepool-sim bench`: many light agents (see [`agent`]) against the real pool service
//! ([`crate::service::Pool`]: scheduler, registry, placement, envelope checks), the real store
//! (signed uploads) and the embedded rumqttd broker, all in this process.
//!
//! A run: raise `RLIMIT_NOFILE` (two descriptors per agent: its socket and the broker's), start
//! the broker, the store and the pool, connect the agents on one multi-threaded tokio runtime
//! with `threads` workers, wait until the pool has seen every agent online, submit `tasks` tasks
//! in deals of `deal_size`, and wait until every task is COMPLETED or FAILED (or the timeout).
//! The figures come from the pool's own report (assignment, contribution, consensus and final
//! times per task) and from `/proc` (CPU per thread group). A run is successful only if every
//! task completed: a task missing or failed is a lost task.

pub mod agent;
pub mod stats;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgepool_protocol::hash::sha256;
use edgepool_protocol::messages::{AppRef, DealSummary, TaskLimits};
use edgepool_protocol::primitives::{Address, DealId, Digest};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::tags::Tag;
use edgepool_protocol::topics::TopicPrefix;
use serde::Serialize;

use self::agent::{AgentCounters, AgentSettings, LightAgent};
use self::stats::{cpu_by_thread_group, cpu_delta, process_cpu_seconds, CpuByGroup, Percentiles};
use crate::broker::{parse_mqtt_url, EmbeddedBroker};
use crate::hooks::NoLedger;
use crate::pool::{DealRequest, PoolSettings};
use crate::service::{now_ms, Pool, PoolOptions};
use crate::store::Store;

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchOptions {
    /// Connected light agents.
    pub agents: usize,
    /// Tasks in total.
    pub tasks: u64,
    /// The deals' trust (agreeing contributions per task).
    pub trust: u64,
    /// Tasks per deal.
    pub deal_size: u64,
    /// Slots each agent advertises.
    pub slots: u32,
    /// Simulated compute time per task, ms.
    pub compute_ms: u64,
    /// Worker threads of the agents' tokio runtime.
    pub threads: usize,
    /// Agents connected per batch while ramping up (a pause of `ramp_pause_ms` between batches).
    pub connect_batch: usize,
    /// Pause between connection batches, ms.
    pub ramp_pause_ms: u64,
    /// Heartbeat period of the agents, ms (the pool's limit is three periods).
    pub heartbeat_ms: u64,
    /// Also send a COMPUTING status update per task.
    pub status_updates: bool,
    /// An external broker instead of the embedded rumqttd.
    pub broker: Option<String>,
    /// Give up after this long (s); unfinished tasks count as lost.
    pub timeout_secs: u64,
    /// Keep the pool's journal in this directory (`pool.sqlite`, which must not exist yet), as
    /// `serve --state` does: measures what durability costs.
    pub state: Option<std::path::PathBuf>,
    /// Print a progress line every second.
    pub verbose: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            agents: 20,
            tasks: 100,
            trust: 1,
            deal_size: 100_000,
            slots: 4,
            compute_ms: 10,
            threads: 2,
            connect_batch: 500,
            state: None,
            ramp_pause_ms: 50,
            heartbeat_ms: 30_000,
            status_updates: false,
            broker: None,
            timeout_secs: 600,
            verbose: false,
        }
    }
}

/// Why a run could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Options out of range.
    #[error("invalid options: {0}")]
    Options(String),
    /// The file descriptor limit could not be raised far enough.
    #[error("RLIMIT_NOFILE: need {needed} descriptors, could raise it only to {got}: {why}")]
    FileLimit {
        /// Needed.
        needed: u64,
        /// Reached.
        got: u64,
        /// The system's answer.
        why: String,
    },
    /// Broker, store, pool or runtime did not start.
    #[error("setting up: {0}")]
    Setup(String),
    /// Not every agent came online in time.
    #[error("only {online} of {agents} agents were online at the pool after {secs} s")]
    NotOnline {
        /// Online at the pool.
        online: u64,
        /// Started.
        agents: usize,
        /// Waited.
        secs: u64,
    },
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// What ran.
    pub options: BenchOptions,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    /// Unix time (ms) of the start.
    pub started_at_ms: u64,
    /// Time to connect every agent until the pool saw them online, s.
    pub connect_secs: f64,
    /// From the first submission to the last task final, s.
    pub run_secs: f64,
    /// Tasks completed per second over `run_secs`.
    pub tasks_per_sec: f64,
    /// Tasks COMPLETED.
    pub completed: u64,
    /// Tasks FAILED.
    pub failed: u64,
    /// Tasks neither completed nor failed at the end (timeout).
    pub unfinished: u64,
    /// Submission → first assignment (queueing in the pool), ms.
    pub queue_ms: Percentiles,
    /// Assignment → contribution received by the pool (includes `compute_ms`), ms.
    pub assign_to_contribution_ms: Percentiles,
    /// Assignment → consensus (PLEASE_REVEAL sent), ms.
    pub assign_to_consensus_ms: Percentiles,
    /// Assignment → final (result uploaded, task COMPLETED), ms.
    pub assign_to_final_ms: Percentiles,
    /// Messages the pool refused (should be 0).
    pub pool_refused: usize,
    /// The first ten of them, why.
    pub pool_refused_samples: Vec<String>,
    /// Up to ten tasks that did not complete: id, status and each replica's state.
    pub lost_samples: Vec<String>,
    /// Light agents' counters.
    pub agents_published: u64,
    /// Publications an agent's client could not queue (lost messages; should be 0).
    pub agents_publish_errors: u64,
    /// Inbox envelopes the agents refused (should be 0).
    pub agents_refused: u64,
    /// Connection errors seen by agents (should be 0).
    pub agents_connection_errors: u64,
    /// Failed uploads (should be 0).
    pub agents_upload_errors: u64,
    /// CPU seconds of the process during the task phase.
    pub cpu_secs: f64,
    /// CPU seconds per thread group during the task phase.
    pub cpu_by_thread: CpuByGroup,
}

impl BenchReport {
    /// Every task completed, nothing refused or dropped.
    pub fn nothing_lost(&self) -> bool {
        self.completed == self.options.tasks && self.failed == 0 && self.unfinished == 0
    }

    /// A human table.
    pub fn table(&self) -> String {
        let o = &self.options;
        let mut s = String::new();
        let row = |s: &mut String, k: &str, v: String| s.push_str(&format!("{k:<34} {v}\n"));
        row(
            &mut s,
            "agents × tasks (trust)",
            format!("{} × {} ({})", o.agents, o.tasks, o.trust),
        );
        row(
            &mut s,
            "connect (all online)",
            format!("{:.2} s", self.connect_secs),
        );
        row(&mut s, "run", format!("{:.2} s", self.run_secs));
        row(&mut s, "tasks/s", format!("{:.1}", self.tasks_per_sec));
        row(
            &mut s,
            "completed / failed / unfinished",
            format!("{} / {} / {}", self.completed, self.failed, self.unfinished),
        );
        for (name, p) in [
            ("submission → assignment ms", &self.queue_ms),
            (
                "assignment → contribution ms",
                &self.assign_to_contribution_ms,
            ),
            ("assignment → consensus ms", &self.assign_to_consensus_ms),
            ("assignment → final ms", &self.assign_to_final_ms),
        ] {
            row(
                &mut s,
                name,
                format!(
                    "p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}",
                    p.p50, p.p90, p.p99, p.max
                ),
            );
        }
        row(
            &mut s,
            "refused (pool/agents), pub errors",
            format!(
                "{} / {}, {}",
                self.pool_refused, self.agents_refused, self.agents_publish_errors
            ),
        );
        row(
            &mut s,
            "CPU during the run",
            format!(
                "{:.1} s ({:.0}% of {} CPUs)",
                self.cpu_secs,
                100.0 * self.cpu_secs / self.run_secs.max(1e-9) / self.cpus.max(1) as f64,
                self.cpus
            ),
        );
        for why in &self.pool_refused_samples {
            row(&mut s, "  refused", why.clone());
        }
        for task in &self.lost_samples {
            row(&mut s, "  not completed", task.clone());
        }
        row(
            &mut s,
            "agents' connection errors",
            self.agents_connection_errors.to_string(),
        );
        let mut groups: Vec<_> = self.cpu_by_thread.iter().collect();
        groups.sort_by(|a, b| b.1.total_cmp(a.1));
        for (name, secs) in groups.into_iter().take(8) {
            row(&mut s, &format!("  thread {name}"), format!("{secs:.1} s"));
        }
        s
    }
}

/// Raises the soft (and if needed, with CAP_SYS_RESOURCE, the hard) descriptor limit to `needed`.
fn raise_file_limit(needed: u64) -> Result<(), BenchError> {
    let fail = |got: u64, why: String| BenchError::FileLimit { needed, got, why };
    let (soft, hard) =
        rlimit::getrlimit(rlimit::Resource::NOFILE).map_err(|e| fail(0, e.to_string()))?;
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        rlimit::setrlimit(rlimit::Resource::NOFILE, needed, needed)
            .map_err(|e| fail(soft, format!("raising the hard limit {hard}: {e}")))?;
        return Ok(());
    }
    rlimit::setrlimit(rlimit::Resource::NOFILE, needed, hard).map_err(|e| fail(soft, e.to_string()))
}

#[derive(Debug, Default)]
struct Progress {
    online: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
}

/// Runs the benchmark.
///
/// # Errors
/// [`BenchError`] when the run cannot be set up; lost tasks are reported, not an error.
pub fn run(options: &BenchOptions) -> Result<BenchReport, BenchError> {
    if options.agents == 0 || options.tasks == 0 || options.threads == 0 {
        return Err(BenchError::Options(
            "agents, tasks and threads must be at least 1".into(),
        ));
    }
    if usize::try_from(options.trust).unwrap_or(usize::MAX) > options.agents {
        return Err(BenchError::Options(format!(
            "trust {} needs at least as many agents, found {}",
            options.trust, options.agents
        )));
    }
    let started_at_ms = now_ms();
    // Each agent's socket, and the broker's end of it when the broker runs in this process.
    let per_agent = if options.broker.is_some() { 1 } else { 2 };
    raise_file_limit(options.agents as u64 * per_agent + 512)?;
    let embedded = match &options.broker {
        Some(_) => None,
        None => Some(EmbeddedBroker::start().map_err(|e| BenchError::Setup(e.to_string()))?),
    };
    let broker_url = match (&options.broker, &embedded) {
        (Some(url), _) => url.clone(),
        (None, Some(b)) => b.url(),
        (None, None) => return Err(BenchError::Setup("no broker".into())),
    };
    let (host, port) = parse_mqtt_url(&broker_url).map_err(BenchError::Setup)?;
    let store = Store::start().map_err(BenchError::Setup)?;
    let pool_address = Address(rand::random());
    let scheduler = Signer::random(&mut rand::thread_rng());
    let (progress_tx, progress_rx) = mpsc::channel::<String>();
    let settings = PoolSettings {
        heartbeat_limit_ms: options.heartbeat_ms.saturating_mul(3).max(5_000),
    };
    let journal = options.state.as_ref().map(|dir| dir.join("pool.sqlite"));
    if let Some(dir) = &options.state {
        std::fs::create_dir_all(dir)
            .map_err(|e| BenchError::Setup(format!("{}: {e}", dir.display())))?;
    }
    let pool_options = PoolOptions {
        // Restart-safe only when the bench was given a state directory.
        journal,
        ..PoolOptions::new(pool_address, scheduler, Box::new(NoLedger), store.handle())
            .with_settings(settings)
            .with_progress(progress_tx)
    };
    let pool =
        Pool::start(&broker_url, pool_options).map_err(|e| BenchError::Setup(e.to_string()))?;

    // Count what the pool says as it happens (its progress lines), without polling its report.
    let progress = Arc::new(Progress::default());
    let counter = Arc::clone(&progress);
    std::thread::Builder::new()
        .name("bench-progress".into())
        .spawn(move || {
            for line in progress_rx {
                if line.contains(" COMPLETED: ") {
                    counter.completed.fetch_add(1, Ordering::Relaxed);
                } else if line.contains(" FAILED: ") {
                    counter.failed.fetch_add(1, Ordering::Relaxed);
                } else if line.starts_with("worker ") && line.ends_with(" online") {
                    counter.online.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .map_err(|e| BenchError::Setup(e.to_string()))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .thread_name("bench-agent")
        .enable_all()
        .build()
        .map_err(|e| BenchError::Setup(format!("tokio runtime: {e}")))?;
    let agent_settings = Arc::new(AgentSettings {
        host,
        port,
        prefix: TopicPrefix::with_default_base(pool_address),
        scheduler: pool.scheduler(),
        compute: Duration::from_millis(options.compute_ms),
        heartbeat: Duration::from_millis(options.heartbeat_ms.max(100)),
        slots: options.slots.max(1),
        keep_alive: Duration::from_secs(60),
        status_updates: options.status_updates,
    });
    let counters = Arc::new(AgentCounters::default());
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let connect_start = Instant::now();
    let mut handles = Vec::with_capacity(options.agents);
    for i in 0..options.agents {
        let agent = LightAgent::new(Arc::clone(&agent_settings), Arc::clone(&counters));
        handles.push(runtime.spawn(agent.run(shutdown_rx.clone())));
        if (i + 1) % options.connect_batch.max(1) == 0 {
            std::thread::sleep(Duration::from_millis(options.ramp_pause_ms));
        }
    }
    let agents = options.agents as u64;
    let online_deadline = Instant::now() + Duration::from_secs(120 + agents / 100);
    while progress.online.load(Ordering::Relaxed) < agents {
        if Instant::now() > online_deadline {
            let _ = shutdown_tx.send(true);
            return Err(BenchError::NotOnline {
                online: progress.online.load(Ordering::Relaxed),
                agents: options.agents,
                secs: connect_start.elapsed().as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let connect_secs = connect_start.elapsed().as_secs_f64();
    if options.verbose {
        println!(
            "{} agents online at the pool in {connect_secs:.2} s",
            options.agents
        );
    }

    let cpu_before = cpu_by_thread_group();
    let process_before = process_cpu_seconds();
    let run_start = Instant::now();
    let mut submitted_at = Vec::new();
    let mut remaining = options.tasks;
    let deal_size = options.deal_size.max(1);
    while remaining > 0 {
        let volume = remaining.min(deal_size);
        let at = now_ms();
        let ids = pool
            .submit(DealRequest {
                deal: bench_deal(&store, options.trust, volume),
                limits: TaskLimits::default(),
                replicas: 0,
                replica_timeout_ms: None,
                dataset_restrictions: None,
            })
            .map_err(|e| BenchError::Setup(format!("submitting a deal: {e}")))?;
        submitted_at.extend(ids.into_iter().map(|id| (id, at)));
        remaining -= volume;
    }
    let deadline = run_start + Duration::from_secs(options.timeout_secs);
    let mut last_line = Instant::now();
    loop {
        let done =
            progress.completed.load(Ordering::Relaxed) + progress.failed.load(Ordering::Relaxed);
        if done >= options.tasks || Instant::now() > deadline {
            break;
        }
        if options.verbose && last_line.elapsed() >= Duration::from_secs(1) {
            last_line = Instant::now();
            println!(
                "[{:>6.1}s] completed {} / {}",
                run_start.elapsed().as_secs_f64(),
                progress.completed.load(Ordering::Relaxed),
                options.tasks
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let run_secs = run_start.elapsed().as_secs_f64();
    let cpu_after = cpu_by_thread_group();
    let cpu_secs = process_cpu_seconds() - process_before;

    let report = pool
        .report()
        .ok_or_else(|| BenchError::Setup("the pool did not report".into()))?;
    let _ = shutdown_tx.send(true);
    runtime.block_on(async {
        for h in handles {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    pool.stop();

    let submitted: std::collections::HashMap<_, _> = submitted_at.into_iter().collect();
    let (mut completed, mut failed, mut unfinished) = (0, 0, 0);
    let (mut queue, mut contribution, mut consensus, mut finals) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut lost_samples = Vec::new();
    for task in &report.tasks {
        if task.status != "COMPLETED" && lost_samples.len() < 10 {
            let replicas: Vec<String> = task
                .replicas
                .iter()
                .map(|r| format!("{} {} {:?}", r.worker, r.state, r.last_status))
                .collect();
            lost_samples.push(format!(
                "{} {}: {}",
                task.task_id,
                task.status,
                replicas.join("; ")
            ));
        }
        match task.status.as_str() {
            "COMPLETED" => completed += 1,
            "FAILED" => failed += 1,
            _ => unfinished += 1,
        }
        if let Some(at) = submitted.get(&task.task_id) {
            if !task.replicas.is_empty() {
                queue.push(task.timings.assigned_at_ms.saturating_sub(*at));
            }
        }
        contribution.extend(task.replicas.iter().filter_map(|r| r.contributed_after_ms));
        consensus.extend(task.timings.consensus_after_ms);
        finals.extend(task.timings.final_after_ms);
    }
    // Tasks the pool does not know at all would be lost too.
    unfinished += options.tasks.saturating_sub(report.tasks.len() as u64);
    Ok(BenchReport {
        options: options.clone(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        started_at_ms,
        connect_secs,
        run_secs,
        tasks_per_sec: completed as f64 / run_secs.max(1e-9),
        completed,
        failed,
        unfinished,
        queue_ms: Percentiles::of(queue),
        assign_to_contribution_ms: Percentiles::of(contribution),
        assign_to_consensus_ms: Percentiles::of(consensus),
        assign_to_final_ms: Percentiles::of(finals),
        pool_refused: report.refused.len(),
        pool_refused_samples: report.refused.iter().take(10).cloned().collect(),
        lost_samples,
        agents_published: counters.published.load(Ordering::Relaxed),
        agents_publish_errors: counters.publish_errors.load(Ordering::Relaxed),
        agents_refused: counters.refused.load(Ordering::Relaxed),
        agents_connection_errors: counters.connection_errors.load(Ordering::Relaxed),
        agents_upload_errors: counters.upload_errors.load(Ordering::Relaxed),
        cpu_secs,
        cpu_by_thread: cpu_delta(&cpu_before, &cpu_after),
    })
}

/// A deal of `volume` tasks whose deadlines lie far beyond any run (time ref one hour), its
/// results stored on `store`.
fn bench_deal(store: &Store, trust: u64, volume: u64) -> DealSummary {
    let app = b"edgepool bench: simulated compute";
    DealSummary {
        deal_id: DealId::from(rand::random::<[u8; 32]>()),
        app: AppRef {
            address: Address([0xbe; 20]),
            url: format!("{}/apps/bench.wasm", store.base_url()),
            checksum: Digest(sha256(app)),
            size_bytes: Some(app.len() as u64),
        },
        dataset: None,
        input_files: Vec::new(),
        args: String::new(),
        tag: Tag::NONE,
        trust,
        category: 0,
        time_ref_seconds: 3600,
        start_time_ms: now_ms(),
        requester: Address([0x51; 20]),
        beneficiary: Address([0x52; 20]),
        callback: Address::ZERO,
        result_encryption: false,
        result_storage_provider: "http".into(),
        result_storage_proxy: Some(store.base_url()),
        bot_first: 0,
        bot_size: volume,
    }
}
