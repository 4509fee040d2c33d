//! Scenario files (TOML, documented in `simulator/scenarios/README.md`): what to publish, which
//! workers to start, which deals to run, which faults to inject and what outcome to expect.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// The whole run must end within this many seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// The broker.
    #[serde(default)]
    pub broker: BrokerSpec,
    /// Pool settings.
    #[serde(default)]
    pub pool: PoolSpec,
    /// The workers.
    #[serde(default)]
    pub workers: WorkersSpec,
    /// Apps to publish on the store.
    #[serde(default)]
    pub apps: Vec<FileSpec>,
    /// Datasets to publish.
    #[serde(default)]
    pub datasets: Vec<DatasetSpec>,
    /// Input files to publish.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// The deals, submitted in order once the workers are online.
    pub deals: Vec<DealSpec>,
    /// Faults to inject.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// The expected outcome.
    #[serde(default)]
    pub expect: Expect,
}

fn default_timeout() -> u64 {
    60
}

/// Which broker the run uses (`--broker URL` overrides it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// rumqttd in the simulator's process.
    #[default]
    Embedded,
    /// A Mosquitto child process (`/usr/sbin/mosquitto`).
    Mosquitto,
}

/// `[broker]`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSpec {
    /// `embedded` (default) or `mosquitto`.
    #[serde(default)]
    pub kind: BrokerKind,
}

/// `[pool]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// A worker not heard from for this long is lost (ms). Default 5,000.
    #[serde(default = "default_heartbeat_limit")]
    pub heartbeat_limit_ms: u64,
}

impl Default for PoolSpec {
    fn default() -> Self {
        Self {
            heartbeat_limit_ms: default_heartbeat_limit(),
        }
    }
}

fn default_heartbeat_limit() -> u64 {
    5_000
}

/// `[workers]`: how many of each kind.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersSpec {
    /// Real `edgepool-agent` processes.
    #[serde(default)]
    pub agents: u32,
    /// Slots of each real agent. Default 2.
    #[serde(default = "default_slots")]
    pub agent_slots: u32,
    /// Simulated honest workers.
    #[serde(default)]
    pub honest: u32,
    /// Simulated liars.
    #[serde(default)]
    pub liar: u32,
    /// Simulated silent workers.
    #[serde(default)]
    pub silent: u32,
    /// Simulated slow workers.
    #[serde(default)]
    pub slow: u32,
    /// Simulated crashing workers.
    #[serde(default)]
    pub crashing: u32,
    /// Simulated compute time (ms). Default 300.
    #[serde(default = "default_compute")]
    pub compute_ms: u64,
    /// A liar's compute time (default: `compute_ms`), e.g. 0 so that it contributes before
    /// the honest workers and its dissent counts in the consensus.
    #[serde(default)]
    pub liar_ms: Option<u64>,
    /// A slow worker's compute time (ms). Default 60,000.
    #[serde(default = "default_slow")]
    pub slow_ms: u64,
    /// The honest simulated workers join only after the deals are submitted, so that the first
    /// replicas go to the others.
    #[serde(default)]
    pub late_honest: bool,
}

impl Default for WorkersSpec {
    fn default() -> Self {
        Self {
            agents: 0,
            agent_slots: default_slots(),
            honest: 0,
            liar: 0,
            silent: 0,
            slow: 0,
            crashing: 0,
            compute_ms: default_compute(),
            liar_ms: None,
            slow_ms: default_slow(),
            late_honest: false,
        }
    }
}

fn default_slots() -> u32 {
    2
}
fn default_compute() -> u64 {
    300
}
fn default_slow() -> u64 {
    60_000
}

/// An app or input file: a name on the store and a local path (relative to the scenario file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Its name on the store (`/apps/NAME`, `/files/NAME`).
    pub name: String,
    /// The local file.
    pub path: PathBuf,
}

/// A dataset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Its name on the store (`/datasets/NAME`), also the file name the app sees.
    pub name: String,
    /// The local file.
    pub path: PathBuf,
    /// Encrypt it and push its key to the SMS (TEE deals): comes with the SMS; refused today.
    #[serde(default)]
    pub encrypt: bool,
}

/// A deal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealSpec {
    /// The app's name (from `[[apps]]`).
    pub app: String,
    /// The dataset's name (from `[[datasets]]`).
    #[serde(default)]
    pub dataset: Option<String>,
    /// Input files' names (from `[[files]]`).
    #[serde(default)]
    pub input_files: Vec<String>,
    /// `iexec_args`.
    #[serde(default)]
    pub args: String,
    /// Tag names (`tee`, `gpu`, …).
    #[serde(default)]
    pub tag: Vec<String>,
    /// Agreeing contributions needed. Default 1.
    #[serde(default = "one")]
    pub trust: u64,
    /// The category.
    #[serde(default)]
    pub category: u64,
    /// The category's reference time (s): contribution deadline 7×, reveal 2×. Default 10.
    #[serde(default = "default_time_ref")]
    pub time_ref_secs: u64,
    /// Tasks in the deal. Default 1.
    #[serde(default = "one")]
    pub volume: u64,
    /// Replicas assigned when a task starts (at least the trust).
    #[serde(default)]
    pub replicas: usize,
    /// A replica without a contribution this long after its assignment is replaced (ms).
    #[serde(default)]
    pub replica_timeout_ms: Option<u64>,
    /// Fuel per task. Default 10,000,000,000.
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Encrypt the result for the beneficiary (`iexec_result_encryption`): the runner makes the
    /// beneficiary's RSA key pair, pushes the public key to the SMS signed by the beneficiary,
    /// and decrypts each uploaded result with the private key before checking it. As in iExec,
    /// only TEE deals can use it (agents decline a standard one). Default false.
    #[serde(default)]
    pub result_encryption: bool,
}

fn one() -> u64 {
    1
}
fn default_time_ref() -> u64 {
    10
}

/// What goes wrong on purpose.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum FaultSpec {
    /// `kill -9` the first real agent that reports `status` (e.g. `COMPUTING`) for a task, and
    /// start it again on the same state after `restart_after_ms` (never, when absent).
    KillAgent {
        /// The replicate status that triggers it.
        #[serde(default = "computing")]
        when_status: String,
        /// Restart delay.
        #[serde(default)]
        restart_after_ms: Option<u64>,
    },
    /// Stop the pool (scheduler, ledger, SMS) mid-deal, once `when_completed` tasks completed
    /// and a real agent reports `when_status`, keep the agents running, and start a new pool on
    /// the same state (its journal and the ledger's SQLite file), broker and store after
    /// `down_ms`.
    RestartSimulator {
        /// Completed tasks before it fires.
        #[serde(default)]
        when_completed: usize,
        /// The replicate status that triggers it (any, when absent).
        #[serde(default)]
        when_status: Option<String>,
        /// How long the pool stays down.
        #[serde(default = "one_second")]
        down_ms: u64,
    },
    /// Kill the broker (Mosquitto only: `[broker] kind = "mosquitto"`) with SIGKILL, once
    /// `when_completed` tasks completed and a real agent reports `when_status`, and start it
    /// again on the same port after `down_ms`.
    RestartBroker {
        /// Completed tasks before it fires.
        #[serde(default)]
        when_completed: usize,
        /// The replicate status that triggers it (any, when absent).
        #[serde(default)]
        when_status: Option<String>,
        /// How long the broker stays down.
        #[serde(default = "one_second")]
        down_ms: u64,
    },
}

fn one_second() -> u64 {
    1_000
}

fn computing() -> String {
    "COMPUTING".into()
}

/// `[expect]`: checked on the final report.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Every task's final status. Default `COMPLETED`.
    #[serde(default = "completed")]
    pub status: String,
    /// Each completed task has at least this many contributors that agreed.
    #[serde(default)]
    pub min_agreed: usize,
    /// Each completed task has a disagreeing contributor of each of these kinds.
    #[serde(default)]
    pub disagreed_kinds: Vec<String>,
    /// Some task had a replica of each of these kinds given up on (lost or timed out).
    #[serde(default)]
    pub lost_kinds: Vec<String>,
    /// No contributor of these kinds is among those that agreed.
    #[serde(default)]
    pub never_agreed_kinds: Vec<String>,
    /// The uploaded result of every completed task contains this text.
    #[serde(default)]
    pub result_contains: Option<String>,
    /// The uploaded result was made by one of these kinds (e.g. `agent`).
    #[serde(default)]
    pub uploader_kinds: Vec<String>,
    /// The ledger settled each completed task rewarding at least one worker, every rewarded
    /// worker of one of these kinds.
    #[serde(default)]
    pub rewarded_kinds: Vec<String>,
    /// The ledger slashed a worker of each of these kinds on each completed task.
    #[serde(default)]
    pub slashed_kinds: Vec<String>,
    /// The ledger refused a contribution from a worker of each of these kinds (e.g. a `liar`
    /// on a TEE task: it has no enclave key).
    #[serde(default)]
    pub refused_kinds: Vec<String>,
}

impl Default for Expect {
    fn default() -> Self {
        Self {
            status: completed(),
            min_agreed: 0,
            disagreed_kinds: Vec::new(),
            lost_kinds: Vec::new(),
            never_agreed_kinds: Vec::new(),
            result_contains: None,
            uploader_kinds: Vec::new(),
            rewarded_kinds: Vec::new(),
            slashed_kinds: Vec::new(),
            refused_kinds: Vec::new(),
        }
    }
}

fn completed() -> String {
    "COMPLETED".into()
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is invalid.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Scenario {
    /// Parses `text`; relative paths are resolved against `base`.
    ///
    /// # Errors
    /// [`ScenarioError::Parse`] for bad TOML, unknown keys, or references to undeclared names.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Scenario, ScenarioError> {
        let bad = |message: String| ScenarioError::Parse {
            path: origin.to_string(),
            message,
        };
        let mut scenario: Scenario = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        for f in scenario.apps.iter_mut().chain(scenario.files.iter_mut()) {
            f.path = base.join(&f.path);
        }
        for d in &mut scenario.datasets {
            d.path = base.join(&d.path);
        }
        if scenario.deals.is_empty() {
            return Err(bad("a scenario needs at least one [[deals]]".into()));
        }
        for deal in &scenario.deals {
            if !scenario.apps.iter().any(|a| a.name == deal.app) {
                return Err(bad(format!(
                    "deal app {:?} is not among [[apps]]",
                    deal.app
                )));
            }
            if let Some(d) = &deal.dataset {
                if !scenario.datasets.iter().any(|x| &x.name == d) {
                    return Err(bad(format!("deal dataset {d:?} is not among [[datasets]]")));
                }
            }
            for f in &deal.input_files {
                if !scenario.files.iter().any(|x| &x.name == f) {
                    return Err(bad(format!("deal input file {f:?} is not among [[files]]")));
                }
            }
        }
        Ok(scenario)
    }

    /// Reads and parses `path`.
    ///
    /// # Errors
    /// [`ScenarioError`].
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Scenario::parse(&text, &path.display().to_string(), base)
    }

    /// Workers the run waits for before it submits the deals.
    pub fn worker_count(&self) -> u32 {
        let w = &self.workers;
        let honest = if w.late_honest { 0 } else { w.honest };
        w.agents + honest + w.liar + w.silent + w.slow + w.crashing
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_scenario_parses_with_defaults_and_unknown_keys_are_refused() {
        let text = r#"
name = "x"
[[apps]]
name = "hello"
path = "hello.wasm"
[[deals]]
app = "hello"
"#;
        let s = Scenario::parse(text, "x.toml", Path::new("/base")).unwrap();
        assert_eq!(s.deals[0].trust, 1);
        assert!(!s.deals[0].result_encryption);
        let encrypting = format!("{text}result_encryption = true\n");
        let e = Scenario::parse(&encrypting, "x.toml", Path::new("/base")).unwrap();
        assert!(e.deals[0].result_encryption);
        assert_eq!(s.expect.status, "COMPLETED");
        assert_eq!(s.apps[0].path, Path::new("/base/hello.wasm"));
        let typo = format!("{text}\ntrsut = 2\n");
        assert!(Scenario::parse(&typo, "x.toml", Path::new("/")).is_err());
        let missing = text.replace("app = \"hello\"", "app = \"nope\"");
        assert!(Scenario::parse(&missing, "x.toml", Path::new("/")).is_err());
    }
}
