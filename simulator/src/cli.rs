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
    },
    /// Runs a long-lived local workerpool for external agents.
    Serve {
        /// Use this broker (mqtt://host:port) instead of an embedded one.
        #[arg(long, value_name = "URL")]
        broker: Option<String>,
        /// Where the pool keeps its identity, `serve.json` and a ready agent config.
        #[arg(long, value_name = "DIR", default_value = "edgepool-sim-state")]
        state: PathBuf,
    },
    /// Submits a deal to a running `serve`.
    Deal {
        /// The `serve`'s state directory.
        #[arg(long, value_name = "DIR", default_value = "edgepool-sim-state")]
        state: PathBuf,
        /// The app (.wasm or .wat).
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
    },
    /// Prints the JSON report of a running `serve`.
    Report {
        /// The `serve`'s state directory.
        #[arg(long, value_name = "DIR", default_value = "edgepool-sim-state")]
        state: PathBuf,
    },
}
