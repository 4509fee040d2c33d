//! `edgepool-sim`: parse the command line, run it, map the outcome to an exit code.
//!
//! Exit codes: 0 success; 1 a scenario or the demo ran but did not end as expected; 2 invalid
//! usage; 3 the run could not be set up (broker, store, agents, files) or the serve is
//! unreachable.

use std::process::ExitCode;

use clap::Parser;
use edgepool_simulator::cli::{Cli, Command};
use edgepool_simulator::runner::{self, RunOptions};
use edgepool_simulator::scenario::Scenario;
use edgepool_simulator::{bench, demo, serve};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("edgepool-sim: error: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn run(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Demo { json } => demo::run(json.as_deref()),
        Command::Run {
            scenario,
            json,
            broker,
            quiet,
            accounting,
        } => {
            let scenario = Scenario::load(&scenario)?;
            let options = RunOptions {
                broker_url: broker,
                verbose: !quiet,
            };
            let outcome = runner::run(&scenario, &options)?;
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_vec_pretty(&outcome.report)?)?;
            }
            if let Some(path) = accounting {
                std::fs::write(&path, serde_json::to_vec_pretty(&outcome.accounting)?)?;
            }
            demo::print_summary(&outcome);
            Ok(outcome.failures.is_empty())
        }
        Command::Serve { broker, state } => serve::serve(broker, &state).map(|()| true),
        Command::Deal {
            state,
            app,
            dataset,
            input_files,
            args,
            tag,
            trust,
            volume,
            replicas,
            time_ref_secs,
            encrypt_result,
            encrypt_dataset,
        } => {
            let tee = tag.split(',').any(|t| t.trim() == "tee");
            if encrypt_result && !tee {
                anyhow::bail!(
                    "--encrypt-result needs --tag tee: as in iExec, only TEE tasks encrypt results (agents decline a standard deal that asks for it)"
                );
            }
            if encrypt_dataset && !tee {
                anyhow::bail!(
                    "--encrypt-dataset needs --tag tee: only an attested enclave is given the dataset key"
                );
            }
            let info = serve::info(&state)?;
            let body = serve::DealBody {
                app: serve::named_file(&app)?,
                dataset: dataset.as_deref().map(serve::named_file).transpose()?,
                input_files: input_files
                    .iter()
                    .map(|p| serve::named_file(p))
                    .collect::<anyhow::Result<_>>()?,
                args,
                tag,
                trust,
                time_ref_secs,
                volume,
                replicas,
                result_encryption: encrypt_result,
                encrypt_dataset,
            };
            let (status, text) =
                serve::request(&info.store, "POST", "/deals", &serde_json::to_vec(&body)?)?;
            println!("{text}");
            Ok(status == 200)
        }
        Command::Bench {
            agents,
            tasks,
            trust,
            deal_size,
            slots,
            compute_ms,
            threads,
            connect_batch,
            heartbeat_ms,
            status_updates,
            broker,
            timeout_secs,
            state,
            json,
            quiet,
        } => {
            let options = bench::BenchOptions {
                agents,
                tasks,
                trust,
                deal_size,
                slots,
                compute_ms,
                threads,
                connect_batch,
                heartbeat_ms,
                status_updates,
                broker,
                timeout_secs,
                state,
                verbose: !quiet,
                ..bench::BenchOptions::default()
            };
            let report = bench::run(&options)?;
            print!("{}", report.table());
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
            }
            Ok(report.nothing_lost())
        }
        Command::Report { state } => {
            let info = serve::info(&state)?;
            let (status, text) = serve::request(&info.store, "GET", "/report", b"")?;
            println!("{text}");
            Ok(status == 200)
        }
    }
}
