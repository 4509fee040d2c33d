//! Runs a [`Scenario`]: broker, store, pool, real agents and simulated workers, deals, faults;
//! prints progress; returns the report and what did not go as expected.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use edgepool_attestation::policy::Policy;
use edgepool_protocol::dataset::{self as dataset_crypto, DatasetKey};
use edgepool_protocol::digest::result_digest;
use edgepool_protocol::hash::sha256;
use edgepool_protocol::messages::TaskLimits;
use edgepool_protocol::poco;
use edgepool_protocol::primitives::DealId;
use edgepool_protocol::primitives::{Address, Digest};
use edgepool_protocol::result_archive::{
    decrypt_result, unzip_to_tree, BeneficiaryPrivateKey, ExtractLimits, AES_KEY_ENTRY,
    PAYLOAD_ENTRY,
};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::sms::{
    web2_secret_challenge, web3_secret_challenge, RESULT_ENCRYPTION_KEY_NAME,
};
use edgepool_protocol::tags::Tag;

use crate::accounting::{Accounting, FaultCounts};
use crate::agents::AgentProcess;
use crate::broker::{EmbeddedBroker, MosquittoBroker};
use crate::chaos::{Chaos, ChaosAction};
use crate::economy::{DatasetOffer, DealOffer, Market};
use crate::ledger::Ledger;
use crate::pool::{DealRequest, PoolSettings};
use crate::report::Report;
use crate::scenario::{BrokerKind, FaultSpec, Scenario};
use crate::service::{now_ms, Pool, PoolOptions};
use crate::sms::Sms;
use crate::store::Store;
use crate::workers::{Behaviour, SimWorker, Timing};

/// How a run went.
#[derive(Debug)]
pub struct Outcome {
    /// The final report, workers labelled with their kinds.
    pub report: Report,
    /// Every expectation that did not hold (empty: the scenario passed).
    pub failures: Vec<String>,
    /// The text of each completed task's uploaded result files, by task (decrypted with the
    /// beneficiary's private key when the deal encrypts its result).
    pub results: Vec<(String, String)>,
    /// The beneficiary's private key (PKCS#8 PEM), when a deal encrypts its result: what
    /// `edgepool-agent result decrypt --key` takes.
    pub beneficiary_key_pem: Option<String>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Tasks submitted, completed, failed and lost, double contributions, money, faults done.
    pub accounting: Accounting,
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

    let mut broker = match (&options.broker_url, scenario.broker.kind) {
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
    // The run's state directory: the ledger's SQLite file and the pool's journal, which a
    // `restart_simulator` fault reopens.
    let state = tempfile::tempdir().context("creating the run's state directory")?;
    // The ledger with this run's workerpool, owned by the scheduler; the SMS.
    let signer = Signer::random(&mut rand::thread_rng());
    let description = format!(
        "edgepool-sim run {} {}",
        scenario.name,
        rand::random::<u64>()
    );
    let mut market = open_market(state.path(), &signer, &description)?;
    let pool_address = market.workerpool();
    let mut sms = Sms::new(signer.address(), Policy::simulator());
    let dataset_owner = Signer::random(&mut rand::thread_rng());
    // Dataset keys pushed to the SMS (registry address, value): pushed again to the SMS of a
    // restarted pool.
    let mut dataset_keys: Vec<(Address, zeroize::Zeroizing<String>)> = Vec::new();
    // The requester, who is also the beneficiary of the results (as the ledger's orders say).
    let requester = Signer::random(&mut rand::thread_rng());
    let beneficiary_key = if scenario.deals.iter().any(|d| d.result_encryption) {
        let key = push_beneficiary_key(&mut sms, &requester)?;
        out.line(&format!(
            "beneficiary {}: RSA-{BENEFICIARY_KEY_BITS} result key pushed to the SMS",
            requester.address()
        ));
        Some(key)
    } else {
        None
    };

    let mut datasets: Vec<(String, DatasetOffer)> = Vec::new();
    for d in &scenario.datasets {
        let plain = std::fs::read(&d.path)
            .with_context(|| format!("reading dataset {}", d.path.display()))?;
        // An encrypted dataset: a random key, the file encrypted with it (iExec's
        // IV ‖ AES-256-CBC), only the encrypted file published, the key pushed to the SMS by
        // the dataset's owner.
        let key = d
            .encrypt
            .then(|| DatasetKey::generate(&mut rand::thread_rng()));
        let bytes = match &key {
            Some(key) => dataset_crypto::encrypt(key, rand::random(), &plain),
            None => plain,
        };
        let url = store.publish(&format!("datasets/{}", d.name), bytes.clone());
        let offer = DatasetOffer {
            owner: dataset_owner.address(),
            name: d.name.clone(),
            url,
            checksum: Digest(sha256(&bytes)),
            size_bytes: bytes.len() as u64,
            encrypted: d.encrypt,
            restricted: d.encrypt,
        };
        if let Some(key) = key {
            let address = market
                .register_dataset(&offer)
                .map_err(anyhow::Error::msg)?;
            let value = key.to_base64();
            let signature =
                dataset_owner.sign_personal(web3_secret_challenge(&address, &value).as_bytes());
            sms.secrets_mut()
                .push_dataset_secret(address, dataset_owner.address(), &value, &signature)
                .map_err(|e| anyhow::anyhow!("pushing the key of {}: {e}", d.name))?;
            dataset_keys.push((address, value));
            out.line(&format!(
                "dataset {} encrypted ({} bytes), its key pushed to the SMS",
                d.name,
                bytes.len()
            ));
        }
        datasets.push((d.name.clone(), offer));
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

    let (progress_tx, progress) = mpsc::channel();
    let settings = PoolSettings {
        heartbeat_limit_ms: scenario.pool.heartbeat_limit_ms,
    };
    let journal = state.path().join("pool.sqlite");
    // The pool as first started and as a `restart_simulator` fault starts it again: the same
    // scheduler, settings, store and journal, with the market and SMS reopened.
    let start_pool = |market: &Market, sms: Sms| {
        let options = PoolOptions::new(
            pool_address,
            signer.clone(),
            Box::new(market.hooks()),
            store.handle(),
        )
        .with_settings(settings)
        .with_progress(progress_tx.clone())
        .with_sms(sms, pool_address)
        .with_journal(&journal);
        Pool::start(&broker_url, options)
    };
    let mut pool = start_pool(&market, sms)?;
    let scheduler = pool.scheduler();
    out.line(&format!(
        "pool {pool_address}, scheduler {}",
        pool.scheduler()
    ));

    // TEE deals: agents attest with the software attester (which the simulator's SMS policy
    // accepts) and so advertise `tee`; simulated workers advertise it too.
    let tee = scenario
        .deals
        .iter()
        .any(|d| d.tag.iter().any(|t| t == "tee"));
    let agent_env: &[(&str, &str)] = if tee {
        &[("EDGEPOOL_AGENT_ATTESTATION", "software")]
    } else {
        &[]
    };
    let mut kinds: Vec<(Address, String)> = Vec::new();
    let mut agents = Vec::new();
    for _ in 0..scenario.workers.agents {
        let agent = AgentProcess::start_with_env(
            &broker_url,
            pool_address,
            scheduler,
            scenario.workers.agent_slots,
            agent_env,
        )?;
        kinds.push((agent.address(), "agent".into()));
        agents.push(agent);
    }
    let timing = Timing {
        compute_ms: scenario.workers.compute_ms,
        slow_ms: scenario.workers.slow_ms,
        liar_ms: scenario.workers.liar_ms,
        tee,
        ..Timing::default()
    };
    let w = &scenario.workers;
    let mut sims = Vec::new();
    let start_sim =
        |behaviour: Behaviour, kinds: &mut Vec<(Address, String)>, sims: &mut Vec<SimWorker>| {
            let sim = SimWorker::start(behaviour, &broker_url, pool_address, scheduler, timing)
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
        if let Some(dead) = agents
            .iter_mut()
            .position(|a| !a.is_running())
            .and_then(|i| agents.get(i))
        {
            bail!(
                "agent {} exited before coming online; its log:\n{}",
                dead.address(),
                tail(&dead.logs(), 20)
            );
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

    let mut encrypted_deals: Vec<DealId> = Vec::new();
    for (i, spec) in scenario.deals.iter().enumerate() {
        let (_, app_url, app_bytes) = apps.iter().find(|(n, ..)| *n == spec.app).context("app")?;
        let dataset = match &spec.dataset {
            Some(name) => Some(
                datasets
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, offer)| offer.clone())
                    .context("dataset")?,
            ),
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
        let opened = market
            .open_deal(
                &DealOffer {
                    app_name: spec.app.clone(),
                    app_url: app_url.clone(),
                    app_checksum: Digest(sha256(app_bytes)),
                    app_size: app_bytes.len() as u64,
                    dataset,
                    requester: requester.address(),
                    args: spec.args.clone(),
                    input_files,
                    tag,
                    trust: spec.trust,
                    time_ref_secs: spec.time_ref_secs,
                    volume: spec.volume,
                    result_storage_proxy: Some(store.base_url()),
                    result_encryption: spec.result_encryption,
                },
                now_ms(),
            )
            .map_err(|e| anyhow::anyhow!("deal {i}: the ledger refused it: {e}"))?;
        if spec.result_encryption {
            encrypted_deals.push(opened.summary.deal_id);
        }
        let limits = TaskLimits {
            fuel: spec.fuel.unwrap_or(TaskLimits::default().fuel),
            ..TaskLimits::default()
        };
        pool.submit(DealRequest {
            deal: opened.summary,
            limits,
            replicas: spec.replicas,
            replica_timeout_ms: spec.replica_timeout_ms,
            dataset_restrictions: opened.dataset_restrictions,
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
    let faults_start = Instant::now();
    let mut chaos: Vec<Chaos> = scenario
        .faults
        .iter()
        .filter_map(|f| match f {
            FaultSpec::Chaos(spec) => Some(Chaos::new(*spec, agents.len(), Duration::ZERO)),
            _ => None,
        })
        .collect();
    let mut done_faults = FaultCounts::default();
    let submitted: u64 = scenario.deals.iter().map(|d| d.volume).sum();
    // A large run's report costs the pool thread time: poll it less often.
    let poll_every = Duration::from_millis(if submitted > 1_000 { 500 } else { 100 });
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
        if report.all_final() {
            chaos.iter_mut().for_each(Chaos::stop);
        }
        let since = faults_start.elapsed();
        for action in chaos.iter_mut().flat_map(|c| c.poll(since)) {
            match action {
                ChaosAction::KillAgent(index) => {
                    if let Some(agent) = agents.get_mut(index) {
                        agent.kill();
                        done_faults.agent_kills += 1;
                        out.line(&format!(
                            "chaos: agent {} killed (kill -9), kill {}",
                            agent.address(),
                            done_faults.agent_kills
                        ));
                    }
                }
                ChaosAction::RestartAgent(index) => {
                    if let Some(agent) = agents.get_mut(index) {
                        agent.restart()?;
                        done_faults.agent_restarts += 1;
                        out.line(&format!("chaos: agent {} restarted", agent.address()));
                    }
                }
                ChaosAction::RestartBroker { down_ms } => {
                    let BrokerGuard::Mosquitto(mosquitto) = &mut broker else {
                        bail!("a chaos fault with broker_every_ms needs [broker] kind = \"mosquitto\"");
                    };
                    mosquitto.kill();
                    out.line("chaos: broker killed (SIGKILL)");
                    std::thread::sleep(Duration::from_millis(down_ms));
                    mosquitto.restart()?;
                    done_faults.broker_restarts += 1;
                    out.line(&format!(
                        "chaos: broker restarted on {}, restart {}",
                        mosquitto.url(),
                        done_faults.broker_restarts
                    ));
                }
            }
        }
        for (fault, pending, done) in &mut faults {
            let (when_status, restart_after_ms) = match fault {
                FaultSpec::Chaos(_) => continue,
                FaultSpec::KillAgent {
                    when_status,
                    restart_after_ms,
                } => (when_status.clone(), *restart_after_ms),
                FaultSpec::RestartSimulator {
                    when_completed,
                    when_status,
                    down_ms,
                } => {
                    if *done || !due(&report, &agents, *when_completed, when_status.as_deref()) {
                        continue;
                    }
                    *done = true;
                    for line in progress.try_iter() {
                        out.line(&line);
                    }
                    pool.stop();
                    drop(market);
                    done_faults.simulator_restarts += 1;
                    out.line("fault: simulator stopped (pool, scheduler, ledger, SMS)");
                    std::thread::sleep(Duration::from_millis(*down_ms));
                    market = open_market(state.path(), &signer, &description)?;
                    let mut sms = Sms::new(signer.address(), Policy::simulator());
                    for (address, value) in &dataset_keys {
                        let signature = dataset_owner
                            .sign_personal(web3_secret_challenge(address, value).as_bytes());
                        sms.secrets_mut()
                            .push_dataset_secret(
                                *address,
                                dataset_owner.address(),
                                value,
                                &signature,
                            )
                            .map_err(|e| anyhow::anyhow!("pushing a dataset key again: {e}"))?;
                    }
                    if let Some(key) = &beneficiary_key {
                        push_beneficiary_public_key(&mut sms, &requester, key)?;
                    }
                    pool = start_pool(&market, sms)?;
                    out.line("fault: simulator restarted on the same state, broker and store");
                    continue;
                }
                FaultSpec::RestartBroker {
                    when_completed,
                    when_status,
                    down_ms,
                } => {
                    if *done || !due(&report, &agents, *when_completed, when_status.as_deref()) {
                        continue;
                    }
                    *done = true;
                    let BrokerGuard::Mosquitto(mosquitto) = &mut broker else {
                        bail!("restart_broker needs [broker] kind = \"mosquitto\"");
                    };
                    mosquitto.kill();
                    out.line("fault: broker killed (SIGKILL)");
                    std::thread::sleep(Duration::from_millis(*down_ms));
                    mosquitto.restart()?;
                    done_faults.broker_restarts += 1;
                    out.line(&format!("fault: broker restarted on {}", mosquitto.url()));
                    continue;
                }
            };
            if let Some((index, at)) = *pending {
                if Instant::now() >= at {
                    if let Some(agent) = agents.get_mut(index) {
                        agent.restart()?;
                        done_faults.agent_restarts += 1;
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
                    done_faults.agent_kills += 1;
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
        let restarts_pending =
            faults.iter().any(|(_, p, _)| p.is_some()) || chaos.iter().any(Chaos::restarts_pending);
        // A completed task whose ledger finalize waits for a reveal is not settled yet.
        let settling = report
            .tasks
            .iter()
            .any(|t| t.status == "COMPLETED" && t.settlement.status.starts_with("pending"));
        if report.all_final() && !restarts_pending && !settling {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(poll_every);
    }
    for line in progress.try_iter() {
        out.line(&line);
    }
    report.label(&kinds);
    let mut results = Vec::new();
    let mut mismatches = Vec::new();
    for task in &report.tasks {
        if let Some(upload) = store.handle().result(&task.task_id) {
            let encrypted = encrypted_deals.contains(&task.deal_id);
            let archive = match (encrypted, &beneficiary_key) {
                (true, Some(key)) => match open_encrypted(&upload.archive, key) {
                    Ok(clear) => clear,
                    Err(e) => {
                        mismatches.push(format!("task {}: {e}", task.task_id));
                        results.push((task.task_id.to_string(), format!("({e})")));
                        continue;
                    }
                },
                _ => upload.archive.clone(),
            };
            let text = match unzip_to_tree(&archive, &ExtractLimits::default()) {
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
                    let files = tree
                        .files()
                        .filter(|(name, _)| *name != "computed.json")
                        .map(|(name, bytes)| format!("{name}:\n{}", String::from_utf8_lossy(bytes)))
                        .collect::<Vec<_>>()
                        .join("\n");
                    if encrypted {
                        format!("(uploaded encrypted; decrypted with the beneficiary's private key)\n{files}")
                    } else {
                        files
                    }
                }
                Err(e) => format!("(unreadable archive: {e})"),
            };
            results.push((task.task_id.to_string(), text));
        }
    }
    let mut failures = check(scenario, &report, &results, Instant::now() > deadline);
    failures.extend(mismatches);
    // The ledger conserves money whatever happened (restarts included).
    let money_conserved = match market.ledger().lock() {
        Ok(l) if u128::from(l.supply()) != l.total_money() => {
            failures.push(format!(
                "the ledger lost money: supply {}, balances and frozen amounts {}",
                l.supply(),
                l.total_money()
            ));
            false
        }
        Ok(_) => true,
        Err(_) => {
            failures.push("the ledger's lock is poisoned".into());
            false
        }
    };
    let accounting = Accounting::of(
        &report,
        submitted,
        money_conserved,
        done_faults,
        start.elapsed().as_secs_f64(),
    );
    failures.extend(accounting.violations());
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
    drop(state);
    let beneficiary_key_pem = match &beneficiary_key {
        Some(key) => Some(
            key.to_pem()
                .map_err(|e| anyhow::anyhow!("the beneficiary key: {e}"))?
                .to_string(),
        ),
        None => None,
    };
    Ok(Outcome {
        report,
        failures,
        results,
        beneficiary_key_pem,
        elapsed: start.elapsed(),
        accounting,
    })
}

/// The ledger in `state` (created or reopened) and this run's workerpool on it.
fn open_market(
    state: &std::path::Path,
    signer: &Signer,
    description: &str,
) -> anyhow::Result<Market> {
    let path = state.join("ledger.sqlite");
    let ledger =
        Ledger::open(&path).map_err(|e| anyhow::anyhow!("ledger {}: {e}", path.display()))?;
    Market::new(
        std::sync::Arc::new(std::sync::Mutex::new(ledger)),
        signer.address(),
        description,
    )
    .map_err(anyhow::Error::msg)
}

/// Whether a restart fault is due: at least `completed` tasks completed and, when `status` is
/// given, a real agent's live replica last reported it.
fn due(report: &Report, agents: &[AgentProcess], completed: usize, status: Option<&str>) -> bool {
    let done = report
        .tasks
        .iter()
        .filter(|t| t.status == "COMPLETED")
        .count();
    if done < completed {
        return false;
    }
    let Some(status) = status else {
        return true;
    };
    report.tasks.iter().flat_map(|t| &t.replicas).any(|r| {
        r.last_status.as_deref() == Some(status)
            && r.lost.is_none()
            && agents.iter().any(|a| a.address() == r.worker)
    })
}

/// Size of the beneficiary keys the runner makes. The iExec SDK makes 4096-bit keys; 2048 bits
/// keep the key generation of a run short and use the same code paths.
pub const BENEFICIARY_KEY_BITS: usize = 2048;

/// Makes the beneficiary's RSA key pair and pushes the public key to the SMS as
/// `iexec result push-encryption-key` does: base64 of the SPKI PEM, signed by the beneficiary
/// over iExec's web2 secret challenge for `iexec-result-encryption-public-key`.
fn push_beneficiary_key(
    sms: &mut Sms,
    beneficiary: &Signer,
) -> anyhow::Result<BeneficiaryPrivateKey> {
    let key = BeneficiaryPrivateKey::generate(&mut rand::rngs::OsRng, BENEFICIARY_KEY_BITS)
        .map_err(|e| anyhow::anyhow!("making the beneficiary key: {e}"))?;
    push_beneficiary_public_key(sms, beneficiary, &key)?;
    Ok(key)
}

/// Pushes the public half of `key` to the SMS for `beneficiary` (also what a restarted pool's
/// new SMS is given again).
fn push_beneficiary_public_key(
    sms: &mut Sms,
    beneficiary: &Signer,
    key: &BeneficiaryPrivateKey,
) -> anyhow::Result<()> {
    use base64::Engine as _;
    let pem = key
        .public_key()
        .to_pem()
        .map_err(|e| anyhow::anyhow!("the beneficiary key: {e}"))?;
    let value = base64::engine::general_purpose::STANDARD.encode(pem);
    let challenge =
        web2_secret_challenge(&beneficiary.address(), RESULT_ENCRYPTION_KEY_NAME, &value);
    let signature = beneficiary.sign_personal(challenge.as_bytes());
    sms.secrets_mut()
        .push_result_encryption_key(beneficiary.address(), &value, &signature)
        .map_err(|e| anyhow::anyhow!("pushing the beneficiary key: {e}"))?;
    Ok(())
}

/// The clear `iexec_out.zip` of an uploaded encrypted result; an error says why the upload is
/// not iExec's encrypted form or does not decrypt.
fn open_encrypted(upload: &[u8], key: &BeneficiaryPrivateKey) -> Result<Vec<u8>, String> {
    let tree = unzip_to_tree(upload, &ExtractLimits::default())
        .map_err(|e| format!("the uploaded archive is unreadable: {e}"))?;
    let mut names: Vec<&str> = tree.files().map(|(name, _)| name).collect();
    names.sort_unstable();
    if names != [AES_KEY_ENTRY, PAYLOAD_ENTRY] {
        return Err(format!(
            "the deal encrypts its result but the upload holds {names:?}, not {AES_KEY_ENTRY} and {PAYLOAD_ENTRY}"
        ));
    }
    decrypt_result(upload, key, &ExtractLimits::default()).map_err(|e| {
        format!("the uploaded result does not decrypt with the beneficiary's key: {e}")
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
        let s = &task.settlement;
        if !expect.rewarded_kinds.is_empty() {
            if s.rewarded.is_empty() {
                failures.push(format!(
                    "task {id}: the ledger rewarded nobody ({})",
                    s.status
                ));
            }
            for (a, _) in &s.rewarded {
                if !expect.rewarded_kinds.contains(&kind_of(a)) {
                    failures.push(format!("task {id}: the ledger rewarded a {}", kind_of(a)));
                }
            }
        }
        for kind in &expect.slashed_kinds {
            if !s.slashed.iter().any(|(a, _)| kind_of(a) == *kind) {
                failures.push(format!(
                    "task {id}: expected a slashed {kind}, the ledger slashed {:?}",
                    s.slashed
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
    for kind in &expect.refused_kinds {
        let refused = report.workers.iter().any(|w| {
            w.kind.as_deref() == Some(kind.as_str())
                && report.refused.iter().any(|r| {
                    r.starts_with(&format!("ledger refused contribution from {}", w.address))
                })
        });
        if !refused {
            failures.push(format!(
                "expected the ledger to refuse a contribution from a {kind}; refused: {:?}",
                report.refused
            ));
        }
    }
    for kind in &expect.lost_kinds {
        let lost = report
            .tasks
            .iter()
            .flat_map(|t| &t.replicas)
            .any(|r| r.lost.is_some() && r.kind.as_deref() == Some(kind.as_str()))
            // A WORKER_LOST replica whose worker came back in time was taken back: the worker
            // still counts the loss.
            || report
                .workers
                .iter()
                .any(|w| w.lost > 0 && w.kind.as_deref() == Some(kind.as_str()));
        if !lost {
            failures.push(format!(
                "expected a {kind} replica to be given up on; none was"
            ));
        }
    }
    failures
}
