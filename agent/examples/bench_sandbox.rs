//! Speed of the agent's sandbox on one module (the benchmark of `scripts/bench_pipeline.py`).
//!
//! Runs `sandbox::Prepared::compile` then `Prepared::run` `--runs` times with a very large fuel
//! budget and wall-clock limit (so neither is hit), exactly as the agent runs a task (eager
//! compilation, fuel metering in 10 M slices, in-memory WASI), and prints one JSON object with the
//! compile and run times (ms), the fuel used and the output files' sha256. `--out DIR` also writes
//! the last output tree there, to compare with what wasmi's CLI and the native build produce.
//!
//! `cargo run --release -p edgepool-agent --example bench_sandbox -- --module
//! apps/mandelbrot/mandelbrot.wasm --args "1200 1000" --runs 3`

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use edgepool_agent::sandbox::{DatasetInput, InputFile, Prepared, RunSpec, TaskContext};
use edgepool_protocol::hash::sha256;
use edgepool_protocol::messages::TaskLimits;
use edgepool_protocol::{Address, DealId, TaskId};
use serde_json::json;
use zeroize::Zeroizing;

#[path = "bench_support/stats.rs"]
mod stats;

#[derive(Parser, Debug)]
struct Args {
    /// The wasm module.
    #[arg(long)]
    module: PathBuf,
    /// The task's `iexec_args`.
    #[arg(long, default_value = "")]
    args: String,
    /// An input file (repeatable; named after the file in `/iexec_in`).
    #[arg(long)]
    input: Vec<PathBuf>,
    /// The dataset file (named after the file in `/iexec_in`).
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Timed runs.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where to write the last run's `/iexec_out`.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn file_name(path: &std::path::Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{} has no usable file name", path.display()))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let module = std::fs::read(&args.module).with_context(|| args.module.display().to_string())?;
    let mut input_files = Vec::new();
    for path in &args.input {
        input_files.push(InputFile {
            name: file_name(path)?,
            content: std::fs::read(path).with_context(|| path.display().to_string())?,
        });
    }
    let dataset = match &args.dataset {
        None => None,
        Some(path) => Some(DatasetInput {
            address: Address([0xd5; 20]),
            filename: file_name(path)?,
            content: Zeroizing::new(std::fs::read(path)?),
        }),
    };
    let spec = RunSpec {
        app_name: "app".into(),
        args: args.args.clone(),
        task: TaskContext {
            task_id: TaskId::from([0x7a; 32]),
            deal_id: DealId::from([0xde; 32]),
            task_index: 0,
            bot_first: 0,
            bot_size: 1,
        },
        dataset,
        input_files,
        env: Vec::new(),
        limits: TaskLimits {
            fuel: 1 << 50,
            wall_clock_ms: 3_600_000,
            ..TaskLimits::default()
        },
        start_time_ms: 1_700_000_000_000,
    };

    let mut compile_ms = Vec::new();
    let mut run_ms = Vec::new();
    let mut fuel_used = 0;
    let mut output = None;
    for _ in 0..args.runs.max(1) {
        let started = Instant::now();
        let prepared = Prepared::compile(&module).map_err(|e| anyhow!("compile: {e}"))?;
        compile_ms.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        let outcome = prepared.run(&spec).map_err(|e| anyhow!("run: {e}"))?;
        run_ms.push(started.elapsed().as_secs_f64() * 1e3);
        fuel_used = outcome.fuel_used;
        output = Some(outcome.output);
    }
    let output = output.ok_or_else(|| anyhow!("no run"))?;
    let mut files = serde_json::Map::new();
    for (path, bytes) in output.files() {
        files.insert(
            path.to_string(),
            json!(hex::encode(sha256(bytes).as_bytes())),
        );
        if let Some(dir) = &args.out {
            let target = dir.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&target, bytes)?;
        }
    }
    println!(
        "{}",
        json!({
            "module": args.module,
            "args": args.args,
            "compile_ms": compile_ms,
            "run_ms": run_ms,
            "compile": stats::Summary::of(&compile_ms),
            "run": stats::Summary::of(&run_ms),
            "fuel_used": fuel_used,
            "output_sha256": files,
        })
    );
    Ok(())
}
