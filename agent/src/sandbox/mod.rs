//! The wasm sandbox: wasmi with an in-memory, deterministic WASI preview 1 (the iExec app contract).
//!
//! An app is a `wasm32-wasip1` command. [`run`] (or [`Prepared::run`] to compile once and run
//! many times) gives it what an iExec app sees — argv from `iexec_args`, the `IEXEC_*`
//! environment, `/iexec_in` read-only and `/iexec_out` writable — with every file in memory, and
//! returns `/iexec_out` as a [`MemTree`] ready for the result digest and archive.
//!
//! Two runs of one task give the same output bytes and the same fuel: clocks start at the task's
//! time and move only when the guest sleeps, `random_get` is ChaCha20 seeded by the task id,
//! compilation is eager, and no host resource (disk, network, real time) is reachable.
//!
//! Every limit is a typed [`Failure`]: fuel, linear memory and tables, recursion depth, output
//! bytes, output files and wall-clock time. The run is synchronous: call it from a blocking
//! thread. wasmi keeps the guest's stack on the heap, so a default 2 MiB thread stack is enough
//! (with wasmi built without debug assertions, as the workspace profile does).
//!
//! stdout and stderr are captured (at most [`limits::STDIO_CAP`] bytes each) and, after a
//! successful run, written to `/iexec_out/stdout.txt` and `/iexec_out/stderr.txt`, as the iExec
//! worker does; they do not count against the output quota (the host writes them, with a fixed
//! cap), so an output may hold `output_bytes + 2 MiB` and `output_files + 2` entries. If the app
//! created a directory under one of those names, that stream is not written.
//!
//! # Layout
//! - [`args`]: shell-like splitting of `iexec_args`.
//! - [`contract`]: argv, environment and volumes of the app contract.
//! - [`memfs`]: the in-memory filesystem (`WasiDir`/`WasiFile`).
//! - [`clock`], [`sched`], [`random`]: deterministic clocks, sleeps and randomness.
//! - [`stdio`]: capped stdout/stderr capture.
//! - [`limits`]: the fixed limits and the wasmi configuration.
//! - `exec`: the fuel-sliced call loop and the naming of failures.
//! - [`error`]: [`Failure`], [`SandboxError`] and the iExec causes.

pub mod args;
pub mod clock;
pub mod contract;
pub mod error;
mod exec;
pub mod limits;
pub mod memfs;
pub mod random;
pub mod sched;
pub mod stdio;

use std::time::{Duration, Instant};

use edgepool_protocol::messages::TaskLimits;
use edgepool_protocol::tree::MemTree;
use edgepool_protocol::{Address, DealId, TaskId};
use wasi_common::WasiCtx;
use wasmi::{Engine, ExternType, Linker, Module, Store, StoreLimits};
use zeroize::Zeroizing;

pub use error::{Failure, LeftBehind, SandboxError};
pub use stdio::Captured;

use exec::{call_sliced, classify, Stop};

/// The on-chain identity of the task, for the environment and the random seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskContext {
    /// `IEXEC_TASK_ID`, and the seed of `random_get`.
    pub task_id: TaskId,
    /// `IEXEC_DEAL_ID`.
    pub deal_id: DealId,
    /// `IEXEC_TASK_INDEX` and `IEXEC_BOT_TASK_INDEX`.
    pub task_index: u64,
    /// `IEXEC_BOT_FIRST_INDEX`.
    pub bot_first: u64,
    /// `IEXEC_BOT_SIZE`.
    pub bot_size: u64,
}

/// The decrypted dataset.
pub struct DatasetInput {
    /// `IEXEC_DATASET_ADDRESS`.
    pub address: Address,
    /// Its file name in `/iexec_in` (`IEXEC_DATASET_FILENAME`; iExec uses the address).
    pub filename: String,
    /// The plaintext, wiped when dropped.
    pub content: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for DatasetInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetInput")
            .field("address", &self.address)
            .field("filename", &self.filename)
            .field("content", &format_args!("<{} bytes>", self.content.len()))
            .finish()
    }
}

/// One input file of the deal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Its file name in `/iexec_in` (`IEXEC_INPUT_FILE_NAME_i`).
    pub name: String,
    /// Its content.
    pub content: Vec<u8>,
}

/// Everything a run needs besides the module.
#[derive(Debug)]
pub struct RunSpec {
    /// argv\[0\].
    pub app_name: String,
    /// The deal's `iexec_args`, split like a shell would ([`args::split_args`]).
    pub args: String,
    /// The task's identity.
    pub task: TaskContext,
    /// The decrypted dataset, if the deal has one.
    pub dataset: Option<DatasetInput>,
    /// The input files, in deal order (numbered from 1 in the environment).
    pub input_files: Vec<InputFile>,
    /// Extra environment variables, after the `IEXEC_*` ones (which they cannot override).
    pub env: Vec<(String, String)>,
    /// Fuel, memory, wall clock, output and input limits.
    pub limits: TaskLimits,
    /// What the guest's realtime clock reads at start (unix ms), e.g. the deal's start time.
    pub start_time_ms: u64,
}

/// A successful run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Always 0: a non-zero exit is [`Failure::Exit`].
    pub exit_code: i32,
    /// Fuel consumed by instantiation and `_start` (deterministic).
    pub fuel_used: u64,
    /// Wall-clock time of the run (not deterministic).
    pub elapsed: Duration,
    /// `/iexec_out`, with `stdout.txt` and `stderr.txt` added; paths relative to it.
    pub output: MemTree,
    /// What the app wrote to stdout.
    pub stdout: Captured,
    /// What the app wrote to stderr.
    pub stderr: Captured,
}

/// The store data of a run.
pub(crate) struct HostState {
    wasi: WasiCtx,
    limits: StoreLimits,
}

/// A compiled module, ready to run any number of times (also concurrently: it is `Send + Sync`).
pub struct Prepared {
    engine: Engine,
    module: Module,
    linker: Linker<HostState>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").finish_non_exhaustive()
    }
}

/// The WASI module name every import must come from.
const WASI_MODULE: &str = "wasi_snapshot_preview1";

impl Prepared {
    /// Validates and eagerly compiles `module_bytes` (a binary module, or WAT text).
    ///
    /// # Errors
    /// [`Failure::InvalidModule`] when it does not parse or validate or has a start function;
    /// [`Failure::NotACommand`] when it imports anything but WASI preview 1 functions or lacks
    /// an exported `memory` or a `_start: () -> ()`.
    pub fn compile(module_bytes: &[u8]) -> Result<Self, SandboxError> {
        let engine = Engine::new(&limits::engine_config());
        let module = Module::new(&engine, module_bytes)
            .map_err(|e| SandboxError::before_run(Failure::InvalidModule(e.to_string())))?;
        check_command(&module).map_err(SandboxError::before_run)?;
        let mut linker = Linker::new(&engine);
        wasmi_wasi::add_to_linker(&mut linker, |state: &mut HostState| &mut state.wasi)
            .map_err(|e| SandboxError::before_run(Failure::Internal(e.to_string())))?;
        Ok(Self {
            engine,
            module,
            linker,
        })
    }

    /// Runs the module's `_start` under `spec`.
    ///
    /// # Errors
    /// A [`SandboxError`]: the [`Failure`], the fuel used so far and the captured streams.
    pub fn run(&self, spec: &RunSpec) -> Result<RunOutcome, SandboxError> {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(spec.limits.wall_clock_ms);
        let guest = contract::build(spec).map_err(SandboxError::before_run)?;
        let output = guest.output;
        let (stdout, stderr) = (guest.stdout, guest.stderr);
        let fail = |failure: Failure, fuel_used: u64| SandboxError {
            failure,
            fuel_used,
            elapsed: started.elapsed(),
            left_behind: Box::new(LeftBehind {
                stdout: stdout.take(),
                stderr: stderr.take(),
                output: output.to_mem_tree().ok(),
            }),
        };

        let budget = spec.limits.fuel;
        let mut store = Store::new(
            &self.engine,
            HostState {
                wasi: guest.ctx,
                limits: limits::store_limits(&spec.limits),
            },
        );
        store.limiter(|state| &mut state.limits);
        store
            .set_fuel(budget)
            .map_err(|e| fail(Failure::Internal(e.to_string()), 0))?;
        let memory_limit = spec.limits.memory_bytes;
        let instance = match self.linker.instantiate_and_start(&mut store, &self.module) {
            Ok(instance) => instance,
            Err(error) => {
                let used = budget.saturating_sub(store.get_fuel().unwrap_or(budget));
                let failure = classify(&error, &output, budget, memory_limit)
                    .unwrap_or(Failure::Host(error.to_string()));
                return Err(fail(failure, used));
            }
        };
        let used = budget.saturating_sub(store.get_fuel().unwrap_or(budget));
        let Some(start) = instance.get_func(&store, "_start") else {
            return Err(fail(
                Failure::NotACommand("no _start function".into()),
                used,
            ));
        };

        let (stop, fuel_used) = call_sliced(&mut store, start, budget, used, deadline);
        match stop {
            Stop::Finished => {}
            Stop::OutOfFuel => return Err(fail(Failure::OutOfFuel { limit: budget }, fuel_used)),
            Stop::WallClock => {
                let limit_ms = spec.limits.wall_clock_ms;
                return Err(fail(Failure::WallClock { limit_ms }, fuel_used));
            }
            Stop::Error(error) => {
                if let Some(failure) = classify(&error, &output, budget, memory_limit) {
                    return Err(fail(failure, fuel_used));
                }
            }
        }
        drop(store);

        let mut tree = output
            .to_mem_tree()
            .map_err(|e| fail(Failure::Internal(e.to_string()), fuel_used))?;
        let (stdout, stderr) = (stdout.take(), stderr.take());
        // An app-made directory of the same name wins (see the module documentation).
        let _ = tree.insert_file("stdout.txt", stdout.bytes.clone());
        let _ = tree.insert_file("stderr.txt", stderr.bytes.clone());
        Ok(RunOutcome {
            exit_code: 0,
            fuel_used,
            elapsed: started.elapsed(),
            output: tree,
            stdout,
            stderr,
        })
    }
}

/// Checks that a module is a WASI preview 1 command.
fn check_command(module: &Module) -> Result<(), Failure> {
    for import in module.imports() {
        if import.module() != WASI_MODULE || !matches!(import.ty(), ExternType::Func(_)) {
            return Err(Failure::NotACommand(format!(
                "unsupported import {}::{}, only {WASI_MODULE} functions are available",
                import.module(),
                import.name()
            )));
        }
    }
    let mut has_memory = false;
    let mut has_start = false;
    for export in module.exports() {
        match (export.name(), export.ty()) {
            ("memory", ExternType::Memory(_)) => has_memory = true,
            ("_start", ExternType::Func(ty)) => {
                has_start = ty.params().is_empty() && ty.results().is_empty();
            }
            _ => {}
        }
    }
    if !has_memory {
        return Err(Failure::NotACommand("no exported memory".into()));
    }
    if !has_start {
        return Err(Failure::NotACommand(
            "no exported _start function of type () -> ()".into(),
        ));
    }
    Ok(())
}

/// Compiles and runs `module_bytes` once (see [`Prepared`]).
///
/// # Errors
/// See [`Prepared::compile`] and [`Prepared::run`].
pub fn run(module_bytes: &[u8], spec: &RunSpec) -> Result<RunOutcome, SandboxError> {
    Prepared::compile(module_bytes)?.run(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_module_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Prepared>();
    }
}
