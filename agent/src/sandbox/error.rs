//! Why a run failed ([`Failure`]), with the fuel and time it used ([`SandboxError`]), and the
//! iExec cause each failure is reported with.

use std::time::Duration;

use edgepool_protocol::status::ReplicateStatusCause;
use edgepool_protocol::tree::MemTree;

use super::args::ArgsError;
use super::stdio::Captured;

/// One variant per reason a run fails; each maps to a [`ReplicateStatusCause`] with
/// [`Failure::cause`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// `iexec_args` cannot be split into argv.
    #[error("invalid app arguments: {0}")]
    InvalidArgs(#[from] ArgsError),
    /// An input file name, the dataset file name or an environment variable cannot be given
    /// to the app as is.
    #[error("invalid task input: {0}")]
    InvalidInput(String),
    /// The dataset and input files together are larger than `max_input_bytes`.
    #[error("inputs take {found} bytes, more than the limit of {limit}")]
    InputTooLarge {
        /// The limit.
        limit: u64,
        /// The total size.
        found: u64,
    },
    /// The bytes are not a valid WebAssembly module (or WAT text), or have a start function.
    #[error("invalid wasm module: {0}")]
    InvalidModule(String),
    /// The module is valid but is not a WASI preview 1 command: an unknown import, no exported
    /// memory or no `_start` function of type `() -> ()`.
    #[error("not a wasi command: {0}")]
    NotACommand(String),
    /// The module used all its fuel.
    #[error("out of fuel: the limit is {limit} instructions")]
    OutOfFuel {
        /// The fuel limit.
        limit: u64,
    },
    /// The module ran past its wall-clock limit.
    #[error("wall-clock limit of {limit_ms} ms reached")]
    WallClock {
        /// The limit.
        limit_ms: u64,
    },
    /// A linear memory or a table was to grow (or start) beyond its limit.
    #[error("memory or table limit reached (memory limit {memory_limit} bytes)")]
    MemoryLimit {
        /// The linear memory limit.
        memory_limit: u64,
    },
    /// The call stack went deeper than the recursion or value-stack limit.
    #[error("stack overflow: recursion deeper than the sandbox allows")]
    StackOverflow,
    /// The app wrote more bytes to `/iexec_out` than allowed.
    #[error("output exceeds its limit of {limit} bytes")]
    OutputBytes {
        /// The limit.
        limit: u64,
    },
    /// The app created more files and directories in `/iexec_out` than allowed.
    #[error("output exceeds its limit of {limit} files and directories")]
    OutputFiles {
        /// The limit.
        limit: u64,
    },
    /// The module trapped (unreachable, out-of-bounds access, division by zero, ...).
    #[error("the app trapped: {code}")]
    Trap {
        /// wasmi's trap code, e.g. `UnreachableCodeReached`.
        code: String,
    },
    /// The app exited with a non-zero status (`proc_exit`).
    #[error("the app exited with status {code}")]
    Exit {
        /// The exit status.
        code: i32,
    },
    /// A host call stopped the app (for example a WASI call on a module without memory).
    #[error("a host call stopped the app: {0}")]
    Host(String),
    /// The sandbox itself failed (not the app's fault).
    #[error("sandbox failure: {0}")]
    Internal(String),
}

impl Failure {
    /// The iExec cause reported with `COMPUTE_FAILED` for this failure.
    ///
    /// | failure | cause |
    /// |---|---|
    /// | `InvalidArgs`, `InvalidInput` | `TASK_DESCRIPTION_INVALID` |
    /// | `InputTooLarge` | `EDGEPOOL_INSUFFICIENT_RESOURCES` |
    /// | `InvalidModule`, `NotACommand` | `EDGEPOOL_INVALID_MODULE` |
    /// | `OutOfFuel` | `EDGEPOOL_OUT_OF_FUEL` |
    /// | `WallClock` | `APP_COMPUTE_TIMEOUT` |
    /// | `MemoryLimit` | `EDGEPOOL_MEMORY_LIMIT_EXCEEDED` |
    /// | `StackOverflow` | `EDGEPOOL_STACK_OVERFLOW` |
    /// | `OutputBytes`, `OutputFiles` | `EDGEPOOL_OUTPUT_LIMIT_EXCEEDED` |
    /// | `Trap`, `Exit`, `Host` | `APP_COMPUTE_FAILED` |
    /// | `Internal` | `UNKNOWN` |
    pub fn cause(&self) -> ReplicateStatusCause {
        use ReplicateStatusCause as C;
        match self {
            Failure::InvalidArgs(_) | Failure::InvalidInput(_) => C::TaskDescriptionInvalid,
            Failure::InputTooLarge { .. } => C::InsufficientResources,
            Failure::InvalidModule(_) | Failure::NotACommand(_) => C::InvalidModule,
            Failure::OutOfFuel { .. } => C::OutOfFuel,
            Failure::WallClock { .. } => C::AppComputeTimeout,
            Failure::MemoryLimit { .. } => C::MemoryLimitExceeded,
            Failure::StackOverflow => C::StackOverflow,
            Failure::OutputBytes { .. } | Failure::OutputFiles { .. } => C::OutputLimitExceeded,
            Failure::Trap { .. } | Failure::Exit { .. } | Failure::Host(_) => C::AppComputeFailed,
            Failure::Internal(_) => C::Unknown,
        }
    }
}

/// A failed run: why, and what it used (fuel is always reported, even on failure).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{failure} (fuel used {fuel_used}, {elapsed:?})")]
pub struct SandboxError {
    /// Why the run failed.
    pub failure: Failure,
    /// Fuel consumed before the failure (0 when the module never ran).
    pub fuel_used: u64,
    /// Wall-clock time from the start of the run to the failure.
    pub elapsed: Duration,
    /// What the app left behind (boxed: errors are moved around more than they are read).
    pub left_behind: Box<LeftBehind>,
}

/// What a failed app left behind, for diagnostics.
#[derive(Debug, Clone, Default)]
pub struct LeftBehind {
    /// What the app wrote to stdout before it failed.
    pub stdout: Captured,
    /// What the app wrote to stderr before it failed (the first place to look).
    pub stderr: Captured,
    /// `/iexec_out` as the app left it, when the module got to run (an app may explain its
    /// failure in a file). Not a result: it has no `stdout.txt`/`stderr.txt` added.
    pub output: Option<MemTree>,
}

impl SandboxError {
    /// A failure before anything ran.
    pub fn before_run(failure: impl Into<Failure>) -> Self {
        Self {
            failure: failure.into(),
            fuel_used: 0,
            elapsed: Duration::ZERO,
            left_behind: Box::default(),
        }
    }

    /// The iExec cause of [`Self::failure`].
    pub fn cause(&self) -> ReplicateStatusCause {
        self.failure.cause()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_has_its_own_edgepool_cause() {
        assert_eq!(
            Failure::OutOfFuel { limit: 1 }.cause(),
            ReplicateStatusCause::OutOfFuel
        );
        assert_eq!(
            Failure::WallClock { limit_ms: 1 }.cause(),
            ReplicateStatusCause::AppComputeTimeout
        );
        assert_eq!(
            Failure::OutputFiles { limit: 1 }.cause(),
            ReplicateStatusCause::OutputLimitExceeded
        );
        assert_eq!(
            Failure::Exit { code: 3 }.cause(),
            ReplicateStatusCause::AppComputeFailed
        );
    }

    #[test]
    fn the_error_message_says_why_and_how_much_fuel_was_used() {
        let mut error = SandboxError::before_run(Failure::StackOverflow);
        error.fuel_used = 42;
        assert!(error.to_string().starts_with("stack overflow"));
        assert!(error.to_string().contains("fuel used 42"));
    }
}
