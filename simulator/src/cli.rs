//! The command line of `edgepool-sim` (clap definitions only).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// edgepool's local workerpool: broker, scheduler, store and workers in one process.
#[derive(Debug, Parser)]
#[command(name = "edgepool-sim", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the demo: real agents and a lying worker on one deal, live progress, a summary.
    Demo {
        /// Also write the JSON report here.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Runs a scenario file; exits 0 only if every task ends as it expects.
    Run {
        /// The scenario (TOML; see simulator/scenarios/README.md).
        scenario: PathBuf,
        /// Write the JSON report here.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Use this broker (mqtt://host:port) instead of the scenario's.
        #[arg(long, value_name = "URL")]
        broker: Option<String>,
        /// Only the summary, no progress lines.
        #[arg(long)]
        quiet: bool,
        /// Write the end-of-run accounting (JSON: submitted, completed, failed, lost, double
        /// contributions, money conserved, liar slashed, faults injected) here.
        #[arg(long, value_name = "FILE")]
        accounting: Option<PathBuf>,
    },
    /// Runs a long-lived local workerpool for external agents; restart-safe (`kill -9`
    /// included) on the same `--state`.
    Serve {
        /// Use this broker (mqtt://host:port) instead of an embedded one. The pool then
        /// acknowledges what it receives only once journaled: a killed serve loses nothing.
        #[arg(long, value_name = "URL")]
        broker: Option<String>,
        /// Where the pool keeps its identity, journal, ledger, SMS vault (`sms.sqlite`, 0600),
        /// store (`store/`, on the port in `store.port`), `serve.json` and a ready agent config.
        #[arg(long, value_name = "DIR", default_value = "edgepool-sim-state")]
        state: PathBuf,
    },
    /// Submits a deal to a running `serve`.
    Deal {
        /// The `serve`'s state directory.
        #[arg(long, value_name = "DIR", default_value = "edgepool-sim-state")]
        state: PathBuf,
        /// The app (binary .wasm: agents refuse WAT text).
        #[arg(long, value_name = "FILE")]
        app: PathBuf,
        /// The dataset (given to the app as is).
        #[arg(long, value_name = "FILE")]
        dataset: Option<PathBuf>,
        /// An input file (repeatable).
        #[arg(long = "input-file", value_name = "FILE")]
        input_files: Vec<PathBuf>,
        /// The app's arguments.
        #[arg(long, default_value = "", allow_hyphen_values = true)]
        args: String,
        /// Tag names, comma-separated (e.g. `tee`).
        #[arg(long, default_value = "")]
        tag: String,
        /// Agreeing contributions needed.
        #[arg(long, default_value_t = 1)]
        trust: u64,
        /// Tasks in the deal.
        #[arg(long, default_value_t = 1)]
        volume: u64,
        /// Replicas per task at the start (at least the trust).
        #[arg(long, default_value_t = 0)]
        replicas: usize,
        /// The category's reference time in seconds (deadlines derive from it).
        #[arg(long, default_value_t = 60)]
        time_ref_secs: u64,
        /// Encrypt the result for the serve's beneficiary (`iexec_result_encryption`; its
        /// private key is `STATE/beneficiary_key.pem`). Needs `--tag tee`, as in iExec.
        #[arg(long)]
        encrypt_result: bool,
        /// Publish `--dataset` encrypted (a new key, iExec's IV ‖ AES-256-CBC) and push its key
        /// to the serve's SMS, as `iexec dataset encrypt` and `push-secret` do; only an attested
        /// enclave gets the key. Needs `--tag tee`.
        #[arg(long, requires = "dataset")]
        encrypt_dataset: bool,
    },
    /// Prints the JSON report of a running `serve`.
    Report {
        /// The `serve`'s state directory.
        #[arg(long, value_name = "DIR", default_value = "edgepool-sim-state")]
        state: PathBuf,
    },
    /// Benchmarks the pool: many light agents (real connections, keys, signed envelopes and
    /// uploads; simulated compute); exits 1 unless every task completed.
    Bench {
        /// Connected agents.
        #[arg(long, default_value_t = 20)]
        agents: usize,
        /// Tasks in total.
        #[arg(long, default_value_t = 100)]
        tasks: u64,
        /// Agreeing contributions per task.
        #[arg(long, default_value_t = 1)]
        trust: u64,
        /// Tasks per deal (the deals are submitted one after the other; each waits for the
        /// pool's answer behind whatever it is processing).
        #[arg(long, default_value_t = 100_000)]
        deal_size: u64,
        /// Slots per agent.
        #[arg(long, default_value_t = 4)]
        slots: u32,
        /// Simulated compute time per task (ms).
        #[arg(long, default_value_t = 10)]
        compute_ms: u64,
        /// OS threads running the agents (tokio workers; connections per thread = agents/threads).
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Agents connected per batch while ramping up.
        #[arg(long, default_value_t = 500)]
        connect_batch: usize,
        /// Agents' heartbeat period (ms); the pool's limit is three periods.
        #[arg(long, default_value_t = 30_000)]
        heartbeat_ms: u64,
        /// Also send a COMPUTING status update per task.
        #[arg(long)]
        status_updates: bool,
        /// Use this broker (mqtt://host:port) instead of the embedded rumqttd.
        #[arg(long, value_name = "URL")]
        broker: Option<String>,
        /// Give up after this many seconds (unfinished tasks are lost).
        #[arg(long, default_value_t = 900)]
        timeout_secs: u64,
        /// Keep the pool's journal in DIR (as `serve --state`), to measure durability's cost.
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Write the JSON figures here.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// No progress lines.
        #[arg(long)]
        quiet: bool,
    },
}
