//! `edgepool-agent`: parse the command line, run it, map errors to exit codes.
//!
//! Exit codes: 0 success; 1 the input was refused (bad key, wrong padding, malformed tag, …);
//! 2 invalid usage; 3 a file could not be read or written; 4 invalid configuration; 5 the broker
//! refused the credentials or certificates; 6 a `doctor` check failed; 7 the wallet cannot be
//! opened; 8 the state directory can neither be written nor its journal read (`run`).

use std::process::ExitCode;

use clap::Parser;
use edgepool_agent::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Crash points armed by FAILPOINTS (test builds only); the guard lives until exit.
    #[cfg(feature = "failpoints")]
    let _failpoints = edgepool_agent::failpoints::setup();
    let mut stdout = std::io::stdout().lock();
    if edgepool_agent::ops::is_ops(&cli.command) {
        return match edgepool_agent::ops::run(cli.command, &mut stdout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("edgepool-agent: error: {e}");
                ExitCode::from(e.exit_code())
            }
        };
    }
    match edgepool_agent::tools::run(cli.command, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgepool-agent: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
