//! `edgepool-sim`: the local workerpool simulator (not built yet).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "edgepool-sim {}: the simulator is not built yet; see README.md for what runs today \
         (the iExec-compatible tools: scripts/demo.sh)",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
