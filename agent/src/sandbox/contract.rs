//! The iExec app contract as a WASI context: argv, the `IEXEC_*` environment, `/iexec_in` and
//! `/iexec_out` in memory, captured stdio, virtual clocks and the task's random generator.

use std::sync::Arc;

use wasi_common::{WasiClocks, WasiCtx};

use super::args::split_args;
use super::clock::VirtualClock;
use super::error::Failure;
use super::limits::STDIO_CAP;
use super::memfs::{MemDir, Quota, Volume};
use super::random::task_rng;
use super::sched::VirtualSched;
use super::stdio::CapturePipe;
use super::RunSpec;

/// Where the inputs are mounted (`IEXEC_IN`).
pub const IEXEC_IN: &str = "/iexec_in";
/// Where the app writes its results (`IEXEC_OUT`).
pub const IEXEC_OUT: &str = "/iexec_out";

/// A guest ready to instantiate, with handles on what it will produce.
pub(super) struct Guest {
    pub ctx: WasiCtx,
    pub output: Arc<Volume>,
    pub stdout: CapturePipe,
    pub stderr: CapturePipe,
}

/// argv: the app name, then `iexec_args` split like a shell would.
///
/// # Errors
/// [`Failure::InvalidArgs`] for bad quoting, [`Failure::InvalidInput`] for a NUL byte.
pub fn argv(spec: &RunSpec) -> Result<Vec<String>, Failure> {
    let mut argv = vec![if spec.app_name.is_empty() {
        "app".to_string()
    } else {
        spec.app_name.clone()
    }];
    argv.extend(split_args(&spec.args)?);
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(Failure::InvalidInput(
            "an argument contains a NUL byte".into(),
        ));
    }
    Ok(argv)
}

/// The environment, in a fixed order: the `IEXEC_*` variables an iExec worker sets, then the
/// caller's extras (an extra whose name the sandbox already set is ignored: the contract wins).
///
/// `IEXEC_DATASET_ADDRESS` and `IEXEC_DATASET_FILENAME` are set only when there is a dataset.
///
/// # Errors
/// [`Failure::InvalidInput`] for an extra whose name is empty or holds `=` or NUL, or whose
/// value holds NUL.
pub fn environment(spec: &RunSpec) -> Result<Vec<(String, String)>, Failure> {
    let task = &spec.task;
    let mut env = vec![
        ("IEXEC_TASK_ID".to_string(), task.task_id.to_string()),
        ("IEXEC_DEAL_ID".to_string(), task.deal_id.to_string()),
        ("IEXEC_TASK_INDEX".to_string(), task.task_index.to_string()),
        ("IEXEC_IN".to_string(), IEXEC_IN.to_string()),
        ("IEXEC_OUT".to_string(), IEXEC_OUT.to_string()),
    ];
    if let Some(dataset) = &spec.dataset {
        env.push((
            "IEXEC_DATASET_ADDRESS".to_string(),
            dataset.address.to_string(),
        ));
        env.push((
            "IEXEC_DATASET_FILENAME".to_string(),
            dataset.filename.clone(),
        ));
    }
    env.extend([
        ("IEXEC_BOT_SIZE".to_string(), task.bot_size.to_string()),
        (
            "IEXEC_BOT_FIRST_INDEX".to_string(),
            task.bot_first.to_string(),
        ),
        (
            "IEXEC_BOT_TASK_INDEX".to_string(),
            task.task_index.to_string(),
        ),
        ("IEXEC_INPUT_FILES_FOLDER".to_string(), IEXEC_IN.to_string()),
        (
            "IEXEC_INPUT_FILES_NUMBER".to_string(),
            spec.input_files.len().to_string(),
        ),
    ]);
    for (index, file) in spec.input_files.iter().enumerate() {
        env.push((
            format!("IEXEC_INPUT_FILE_NAME_{}", index + 1),
            file.name.clone(),
        ));
    }
    for (name, value) in &spec.env {
        if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
            return Err(Failure::InvalidInput(format!(
                "environment variable {:?} is not a valid name=value pair",
                name.escape_default().to_string()
            )));
        }
        if !env.iter().any(|(set, _)| set == name) {
            env.push((name.clone(), value.clone()));
        }
    }
    Ok(env)
}

/// `/iexec_in`: the dataset under its file name and the input files, read-only.
fn input_volume(spec: &RunSpec, clock: &VirtualClock) -> Result<Volume, Failure> {
    let total: u64 = spec
        .dataset
        .iter()
        .map(|d| d.content.len() as u64)
        .chain(spec.input_files.iter().map(|f| f.content.len() as u64))
        .sum();
    if total > spec.limits.max_input_bytes {
        return Err(Failure::InputTooLarge {
            limit: spec.limits.max_input_bytes,
            found: total,
        });
    }
    let volume = Volume::new(1, false, None, clock.system_now());
    let files = spec
        .dataset
        .iter()
        .map(|d| (&d.filename, d.content.as_slice()))
        .chain(
            spec.input_files
                .iter()
                .map(|f| (&f.name, f.content.as_slice())),
        );
    for (name, content) in files {
        volume.add_root_file(name, content.to_vec()).map_err(|_| {
            Failure::InvalidInput(format!(
                "input file name {:?} is not a plain, unique file name",
                name.escape_default().to_string()
            ))
        })?;
    }
    Ok(volume)
}

/// Builds the WASI context of one run.
pub(super) fn build(spec: &RunSpec) -> Result<Guest, Failure> {
    let clock = VirtualClock::new(spec.start_time_ms);
    let argv = argv(spec)?;
    let env = environment(spec)?;
    let input = Arc::new(input_volume(spec, &clock)?);
    let quota = Quota {
        max_bytes: spec.limits.output_bytes,
        max_entries: u64::from(spec.limits.output_files),
    };
    let output = Arc::new(Volume::new(2, true, Some(quota), clock.system_now()));

    let clocks = WasiClocks::new()
        .with_system(clock.system())
        .with_monotonic(clock.monotonic());
    let mut ctx = WasiCtx::new(
        Box::new(task_rng(&spec.task.task_id)),
        clocks,
        Box::new(VirtualSched::new(clock)),
        wasi_common::Table::new(),
    );
    let too_big = |e: wasi_common::StringArrayError| Failure::InvalidInput(e.to_string());
    for arg in &argv {
        ctx.push_arg(arg).map_err(too_big)?;
    }
    for (name, value) in &env {
        ctx.push_env(name, value).map_err(too_big)?;
    }
    let stdout = CapturePipe::new(STDIO_CAP);
    let stderr = CapturePipe::new(STDIO_CAP);
    ctx.set_stdout(Box::new(stdout.clone()));
    ctx.set_stderr(Box::new(stderr.clone()));
    let internal = |e: wasi_common::Error| Failure::Internal(format!("preopen failed: {e}"));
    ctx.push_preopened_dir(Box::new(MemDir::root(input)), IEXEC_IN)
        .map_err(internal)?;
    ctx.push_preopened_dir(Box::new(MemDir::root(output.clone())), IEXEC_OUT)
        .map_err(internal)?;
    Ok(Guest {
        ctx,
        output,
        stdout,
        stderr,
    })
}
