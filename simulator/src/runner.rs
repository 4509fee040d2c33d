//! Runs a [`Scenario`]: broker, store, pool, real agents and simulated workers, deals, faults;
//! prints progress; returns the report and what did not go as expected.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use edgepool_protocol::digest::result_digest;
use edgepool_protocol::hash::sha256;
use edgepool_protocol::messages::{AppRef, DatasetRef, DealSummary, TaskLimits};
use edgepool_protocol::poco;
use edgepool_protocol::primitives::{Address, DealId, Digest};
use edgepool_protocol::result_archive::{unzip_to_tree, ExtractLimits};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::tags::Tag;

use crate::agents::AgentProcess;
use crate::broker::{EmbeddedBroker, MosquittoBroker};
use crate::hooks::NoLedger;
use crate::pool::{DealRequest, PoolSettings};
use crate::report::Report;
use crate::scenario::{BrokerKind, FaultSpec, Scenario};
use crate::service::{now_ms, Pool};
use crate::store::Store;
use crate::workers::{Behaviour, SimWorker, Timing};

/// How a run went.
#[derive(Debug)]
pub struct Outcome {
    /// The final report, workers labelled with their kinds.
    pub report: Report,
    /// Every expectation that did not hold (empty: the scenario passed).
    pub failures: Vec<String>,
    /// The text of each completed task's uploaded result files, by task.
    pub results: Vec<(String, String)>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// Options of a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// An external broker instead of the scenario's.
    pub broker_url: Option<String>,
    /// Print progress lines.
    pub verbose: bool,
}

/// A fault, the agent to restart and when, and whether it has fired.
type FaultState = (FaultSpec, Option<(usize, Instant)>, bool);

enum BrokerGuard {
    Embedded(EmbeddedBroker),
    Mosquitto(MosquittoBroker),
    External(String),
}

impl BrokerGuard {
    fn url(&self) -> String {
        match self {
            BrokerGuard::Embedded(b) => b.url(),
            BrokerGuard::Mosquitto(b) => b.url(),
            BrokerGuard::External(u) => u.clone(),
        }
    }
}

struct Printer {
    start: Instant,
    verbose: bool,
}

impl Printer {
    fn line(&self, text: &str) {
        if self.verbose {
            println!("[{:>5.1}s] {text}", self.start.elapsed().as_secs_f64());
        }
    }
}

/// Runs `scenario`.
///
/// # Errors
/// When the run cannot be set up (broker, store, agents, files); an outcome with failures when it
/// ran but did not end as expected.
pub fn run(scenario: &Scenario, options: &RunOptions) -> anyhow::Result<Outcome> {
    if scenario.workers.agents > 0 {
        // Before the clock starts: the first run on a fresh clone builds the agent.
        crate::agents::agent_binary()?;
    }
    let start = Instant::now();
    let out = Printer {
        start,
        verbose: options.verbose,
    };
    let deadline = start + Duration::from_secs(scenario.timeout_secs);
    out.line(&format!(
        "scenario {}: {}",
        scenario.name, scenario.description
    ));

    let broker = match (&options.broker_url, scenario.broker.kind) {
        (Some(url), _) => BrokerGuard::External(url.clone()),
        (None, BrokerKind::Embedded) => BrokerGuard::Embedded(EmbeddedBroker::start()?),
        (None, BrokerKind::Mosquitto) => BrokerGuard::Mosquitto(MosquittoBroker::start()?),
    };
    let broker_url = broker.url();
    let store = Store::start().map_err(anyhow::Error::msg)?;
    out.line(&format!("broker {broker_url}, store {}", store.base_url()));

    let mut apps = Vec::new();
    for app in &scenario.apps {
        let bytes = std::fs::read(&app.path)
            .with_context(|| format!("reading app {}", app.path.display()))?;
        let url = store.publish(&format!("apps/{}", app.name), bytes.clone());
        apps.push((app.name.clone(), url, bytes));
    }
    let mut datasets = Vec::new();
    for d in &scenario.datasets {
        if d.encrypt {
            bail!(
                "dataset {}: encrypt = true needs the SMS, which is not built yet",
                d.name
            );
        }
        let bytes = std::fs::read(&d.path)
            .with_context(|| format!("reading dataset {}", d.path.display()))?;
        let url = store.publish(&format!("datasets/{}", d.name), bytes.clone());
        datasets.push((d.name.clone(), url, bytes));
    }
    let mut files = Vec::new();
    for f in &scenario.files {
        let bytes =
            std::fs::read(&f.path).with_context(|| format!("reading file {}", f.path.display()))?;
        files.push((
            f.name.clone(),
            store.publish(&format!("files/{}", f.name), bytes),
        ));
    }

    let signer = Signer::random(&mut rand::thread_rng());
    let pool_address = Address(rand::random());
    let (progress_tx, progress) = mpsc::channel();
    let settings = PoolSettings {
        heartbeat_limit_ms: scenario.pool.heartbeat_limit_ms,
    };
    let pool = Pool::start(
        &broker_url,
        pool_address,
        signer,
        settings,
        Box::new(NoLedger),
        store.handle(),
        Some(progress_tx),
    )?;
    out.line(&format!(
        "pool {pool_address}, scheduler {}",
        pool.scheduler()
    ));

    let mut kinds: Vec<(Address, String)> = Vec::new();
    let mut agents = Vec::new();
    for _ in 0..scenario.workers.agents {
        let agent = AgentProcess::start(
            &broker_url,
            pool_address,
            pool.scheduler(),
            scenario.workers.agent_slots,
        )?;
        kinds.push((agent.address(), "agent".into()));
        agents.push(agent);
    }
    let timing = Timing {
        compute_ms: scenario.workers.compute_ms,
        slow_ms: scenario.workers.slow_ms,
        ..Timing::default()
    };
    let w = &scenario.workers;
    let mut sims = Vec::new();
    let start_sim =
        |behaviour: Behaviour, kinds: &mut Vec<(Address, String)>, sims: &mut Vec<SimWorker>| {
            let sim = SimWorker::start(
                behaviour,
                &broker_url,
                pool_address,
                pool.scheduler(),
                timing,
            )
            .map_err(anyhow::Error::msg)?;
            kinds.push((sim.address(), behaviour.as_str().into()));
            sims.push(sim);
            anyhow::Ok(())
        };
    for (behaviour, count) in [
        (Behaviour::Honest, if w.late_honest { 0 } else { w.honest }),
        (Behaviour::Liar, w.liar),
        (Behaviour::Silent, w.silent),
        (Behaviour::Slow, w.slow),
        (Behaviour::Crashing, w.crashing),
    ] {
        for _ in 0..count {
            start_sim(behaviour, &mut kinds, &mut sims)?;
        }
    }

    // Wait until every worker has advertised its capacity.
    let expected = usize::try_from(scenario.worker_count()).unwrap_or(usize::MAX);
    loop {
        let ready = pool.report().map_or(0, |r| {
            r.workers
                .iter()
                .filter(|w| w.online && w.agent_version.is_some())
                .count()
        });
        if ready >= expected {
            break;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = agents.iter().map(AgentProcess::logs).collect();
            bail!(
                "only {ready} of {expected} workers came online; agent logs:\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    out.line(&format!(
        "{expected} workers online ({} real agents)",
        agents.len()
    ));

    for (i, spec) in scenario.deals.iter().enumerate() {
        let (_, app_url, app_bytes) = apps.iter().find(|(n, ..)| *n == spec.app).context("app")?;
        let dataset = match &spec.dataset {
            Some(name) => {
                let (_, url, bytes) = datasets
                    .iter()
                    .find(|(n, ..)| n == name)
                    .context("dataset")?;
                Some(DatasetRef {
                    address: Address(
                        sha256(name.as_bytes()).as_bytes()[..20]
                            .try_into()
                            .unwrap_or([0; 20]),
                    ),
                    url: url.clone(),
                    checksum: Digest(sha256(bytes)),
                    filename: name.clone(),
                    size_bytes: Some(bytes.len() as u64),
                    // encrypt = true is refused above until the SMS is wired in.
                    encrypted: false,
                })
            }
            None => None,
        };
        let input_files = spec
            .input_files
            .iter()
            .filter_map(|n| files.iter().find(|(f, _)| f == n).map(|(_, u)| u.clone()))
            .collect();
        let tag: Tag = if spec.tag.is_empty() {
            Tag::NONE
        } else {
            spec.tag
                .join(",")
                .parse()
                .map_err(|e| anyhow::anyhow!("deal {i} tag: {e}"))?
        };
        let deal = DealSummary {
            deal_id: DealId::from(rand::random::<[u8; 32]>()),
            app: AppRef {
                address: Address(
                    sha256(spec.app.as_bytes()).as_bytes()[..20]
                        .try_into()
                        .unwrap_or([0; 20]),
                ),
                url: app_url.clone(),
                checksum: Digest(sha256(app_bytes)),
                size_bytes: Some(app_bytes.len() as u64),
            },
            dataset,
            input_files,
            args: spec.args.clone(),
            tag,
            trust: spec.trust,
            category: spec.category,
            time_ref_seconds: spec.time_ref_secs.max(1),
            start_time_ms: now_ms(),
            requester: Address([0x51; 20]),
            beneficiary: Address([0x52; 20]),
            callback: Address::ZERO,
            result_encryption: false,
            result_storage_provider: "http".into(),
            result_storage_proxy: Some(store.base_url()),
            bot_first: 0,
            bot_size: spec.volume,
        };
        let limits = TaskLimits {
            fuel: spec.fuel.unwrap_or(TaskLimits::default().fuel),
            ..TaskLimits::default()
        };
        pool.submit(DealRequest {
            deal,
            limits,
            replicas: spec.replicas,
            replica_timeout_ms: spec.replica_timeout_ms,
        })
        .map_err(anyhow::Error::msg)?;
    }

    if w.late_honest {
        for _ in 0..w.honest {
            start_sim(Behaviour::Honest, &mut kinds, &mut sims)?;
        }
        out.line(&format!(
            "{} honest simulated workers joined late",
            w.honest
        ));
    }

    let mut faults: Vec<FaultState> = scenario
        .faults
        .iter()
        .map(|f| (f.clone(), None, false))
        .collect();
    let mut last_status = String::new();
    let mut report;
    loop {
        for line in progress.try_iter() {
            out.line(&line);
        }
        report = pool.report().context("the pool stopped")?;
        let (contributing, revealing, completed, failed) = report.counts();
        let status = format!(
            "tasks: {contributing} contributing, {revealing} revealing, {completed} completed, {failed} failed | workers online: {}",
            report.workers.iter().filter(|w| w.online).count()
        );
        if status != last_status {
            out.line(&status);
            last_status = status;
        }
        for (fault, pending, done) in &mut faults {
            let FaultSpec::KillAgent {
                when_status,
                restart_after_ms,
            } = fault;
            if let Some((index, at)) = *pending {
                if Instant::now() >= at {
                    if let Some(agent) = agents.get_mut(index) {
                        agent.restart()?;
                        out.line(&format!("fault: agent {} restarted", agent.address()));
                    }
                    *pending = None;
                }
                continue;
            }
            if *done {
                continue;
            }
            let victim = report.tasks.iter().flat_map(|t| &t.replicas).find_map(|r| {
                let hit =
                    r.last_status.as_deref() == Some(when_status.as_str()) && r.lost.is_none();
                hit.then(|| agents.iter().position(|a| a.address() == r.worker))
                    .flatten()
            });
            if let Some(index) = victim {
                if let Some(agent) = agents.get_mut(index) {
                    agent.kill();
                    out.line(&format!(
                        "fault: agent {} killed (kill -9) at {when_status}",
                        agent.address()
                    ));
                }
                *done = true;
                *pending =
                    restart_after_ms.map(|ms| (index, Instant::now() + Duration::from_millis(ms)));
            }
        }
        let restarts_pending = faults.iter().any(|(_, p, _)| p.is_some());
        if report.all_final() && !restarts_pending {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for line in progress.try_iter() {
        out.line(&line);
    }
    report.label(&kinds);
    let mut results = Vec::new();
    let mut mismatches = Vec::new();
    for task in &report.tasks {
        if let Some(upload) = store.handle().result(&task.task_id) {
            let text = match unzip_to_tree(&upload.archive, &ExtractLimits::default()) {
                Ok(tree) => {
                    // The stored result must be the one the consensus was reached on.
                    let hash = result_digest(&tree, "")
                        .ok()
                        .map(|d| poco::result_hash(&task.task_id, &d));
                    if task.status == "COMPLETED" && hash != task.consensus_hash {
                        mismatches.push(format!(
                            "task {}: the uploaded archive hashes to {hash:?}, the consensus is {:?}",
                            task.task_id, task.consensus_hash
                        ));
                    }
                    tree.files()
                        .filter(|(name, _)| *name != "computed.json")
                        .map(|(name, bytes)| format!("{name}:\n{}", String::from_utf8_lossy(bytes)))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
                Err(e) => format!("(unreadable archive: {e})"),
            };
            results.push((task.task_id.to_string(), text));
        }
    }
    let mut failures = check(scenario, &report, &results, Instant::now() > deadline);
    failures.extend(mismatches);
    if !failures.is_empty() && options.verbose {
        for agent in &agents {
            eprintln!(
                "--- agent {} log ---\n{}",
                agent.address(),
                tail(&agent.logs(), 40)
            );
        }
    }
    drop(sims);
    drop(agents);
    pool.stop();
    drop(broker);
    Ok(Outcome {
        report,
        failures,
        results,
        elapsed: start.elapsed(),
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Every expectation of `scenario` that `report` breaks.
pub fn check(
    scenario: &Scenario,
    report: &Report,
    results: &[(String, String)],
    timed_out: bool,
) -> Vec<String> {
    let expect = &scenario.expect;
    let mut failures = Vec::new();
    if timed_out {
        failures.push(format!(
            "the run did not end within {} s",
            scenario.timeout_secs
        ));
    }
    let wanted: u64 = scenario.deals.iter().map(|d| d.volume).sum();
    if report.tasks.len() as u64 != wanted {
        failures.push(format!(
            "expected {wanted} tasks, found {}",
            report.tasks.len()
        ));
    }
    let kind_of = |a: &Address| {
        report
            .workers
            .iter()
            .find(|w| w.address == *a)
            .and_then(|w| w.kind.clone())
            .unwrap_or_default()
    };
    for task in &report.tasks {
        let id = task.task_id;
        if task.status != expect.status {
            failures.push(format!(
                "task {id}: expected {}, found {} ({:?})",
                expect.status, task.status, task.failure
            ));
        }
        if task.status != "COMPLETED" {
            continue;
        }
        if task.agreed.len() < expect.min_agreed {
            failures.push(format!(
                "task {id}: expected at least {} agreeing contributors, found {}",
                expect.min_agreed,
                task.agreed.len()
            ));
        }
        for kind in &expect.disagreed_kinds {
            if !task.disagreed.iter().any(|a| kind_of(a) == *kind) {
                failures.push(format!(
                    "task {id}: expected a disagreeing {kind}, found {:?}",
                    task.disagreed
                ));
            }
        }
        for kind in &expect.never_agreed_kinds {
            if task.agreed.iter().any(|a| kind_of(a) == *kind) {
                failures.push(format!("task {id}: a {kind} agreed with the consensus"));
            }
        }
        if !expect.uploader_kinds.is_empty() {
            let uploader = task.uploader.as_ref().map(kind_of).unwrap_or_default();
            if !expect.uploader_kinds.contains(&uploader) {
                failures.push(format!(
                    "task {id}: uploaded by a {uploader:?}, expected one of {:?}",
                    expect.uploader_kinds
                ));
            }
        }
        if let Some(text) = &expect.result_contains {
            match results.iter().find(|(t, _)| *t == id.to_string()) {
                Some((_, result)) if result.contains(text.as_str()) => {}
                Some((_, result)) => {
                    failures.push(format!("task {id}: result lacks {text:?}: {result}"))
                }
                None => failures.push(format!("task {id}: no result on the store")),
            }
        }
    }
    for kind in &expect.lost_kinds {
        let lost = report
            .tasks
            .iter()
            .flat_map(|t| &t.replicas)
            .any(|r| r.lost.is_some() && r.kind.as_deref() == Some(kind.as_str()));
        if !lost {
            failures.push(format!(
                "expected a {kind} replica to be given up on; none was"
            ));
        }
    }
    failures
}
