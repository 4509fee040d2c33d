//! The operator commands: `run`, `init`, `doctor`, `capacity`, `status`, `tasks`, `attest`.
//!
//! Exit codes (with the tools' 0–3; 2 is also a usage error found after parsing): 4 the configuration is invalid; 5 the broker refused the
//! credentials or certificates; 6 a `doctor` check failed; 7 the wallet cannot be opened; 8 `run` found a state
//! directory it can neither write nor read a journal from.

mod attest;
mod doctor;
mod init;
mod report;
mod run;

use std::io::Write;

use crate::cli::Command;

/// Why an operator command failed, with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The configuration is invalid: exit code 4.
    #[error("{0}")]
    Config(String),
    /// The broker refused us: exit code 5.
    #[error("{0}")]
    Broker(String),
    /// A `doctor` check failed: exit code 6.
    #[error("{0} check(s) failed")]
    ChecksFailed(usize),
    /// The wallet cannot be made or opened: exit code 7.
    #[error("{0}")]
    Identity(String),
    /// Input refused: exit code 1.
    #[error("{0}")]
    Refused(String),
    /// The arguments do not fit together: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// A file or the journal could not be read or written: exit code 3.
    #[error("{0}")]
    Io(String),
    /// The state directory cannot be written and holds no journal to read (a first start on a
    /// full or read-only disk): exit code 8. Disk trouble with a readable journal does not stop
    /// `run`.
    #[error("{0}")]
    StateDir(String),
}

impl OpsError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            OpsError::Refused(_) => 1,
            OpsError::Usage(_) => 2,
            OpsError::Io(_) => 3,
            OpsError::Config(_) => 4,
            OpsError::Broker(_) => 5,
            OpsError::ChecksFailed(_) => 6,
            OpsError::Identity(_) => 7,
            OpsError::StateDir(_) => 8,
        }
    }
}

impl From<crate::daemon::DaemonError> for OpsError {
    fn from(e: crate::daemon::DaemonError) -> Self {
        use crate::daemon::DaemonError as D;
        match e {
            D::Identity(e) => OpsError::Identity(e.to_string()),
            D::BrokerRefused(m) => OpsError::Broker(m),
            D::Link(e) => OpsError::Config(e.to_string()),
            e @ D::StateDirUnusable { .. } => OpsError::StateDir(e.to_string()),
            other => OpsError::Io(other.to_string()),
        }
    }
}

/// Whether `command` is an operator command (else it is a tool).
pub fn is_ops(command: &Command) -> bool {
    matches!(
        command,
        Command::Run { .. }
            | Command::Init(_)
            | Command::Doctor { .. }
            | Command::Capacity { .. }
            | Command::Status { .. }
            | Command::Tasks { .. }
            | Command::Attest(_)
    )
}

/// Runs an operator command.
///
/// # Errors
/// [`OpsError`].
pub fn run(command: Command, stdout: &mut dyn Write) -> Result<(), OpsError> {
    match command {
        Command::Run { config } => run::run(&config),
        Command::Init(args) => init::init(&args, stdout),
        Command::Doctor { config, json } => doctor::doctor(&config, json, stdout),
        Command::Capacity { config, json } => report::capacity(&config, json, stdout),
        Command::Status { config, json } => report::status(&config, json, stdout),
        Command::Tasks { config, json } => report::tasks(&config, json, stdout),
        Command::Attest(command) => attest::run(command, stdout),
        other => Err(OpsError::Refused(format!(
            "{other:?} is a tool, not a daemon command"
        ))),
    }
}

/// The process environment as a lookup function.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads the configuration with the process environment's overrides.
///
/// # Errors
/// [`OpsError::Config`].
pub fn load_config(path: &std::path::Path) -> Result<crate::config::Config, OpsError> {
    crate::config::load(path, crate::config::process_environment(), false)
        .map_err(|e| OpsError::Config(e.to_string()))
}

fn write_out(stdout: &mut dyn Write, text: &str) -> Result<(), OpsError> {
    writeln!(stdout, "{text}").map_err(|e| OpsError::Io(format!("writing to stdout: {e}")))
}
