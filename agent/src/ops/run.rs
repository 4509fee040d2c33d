//! `edgepool-agent run`: load the configuration, set up logging, prepare the daemon and serve on
//! a single-threaded tokio runtime until SIGTERM or SIGINT.

use std::path::Path;
use std::time::Instant;

use super::{load_config, process_env, OpsError};
use crate::daemon::Daemon;

/// Runs the daemon until a termination signal.
///
/// # Errors
/// [`OpsError`] for a bad configuration, wallet or journal, or a broker that refuses us.
pub fn run(config_path: &Path) -> Result<(), OpsError> {
    let started = Instant::now();
    let config = load_config(config_path)?;
    crate::logging::init(&config.log, process_env("EDGEPOOL_LOG").as_deref());
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %config_path.display(), "starting");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| OpsError::Io(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let daemon = Daemon::prepare(config, &process_env, started)?;
        daemon.run(shutdown_signal()).await?;
        Ok(())
    })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers: stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
    }
}
