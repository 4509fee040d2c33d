//! The sandbox's promises, on real wasm modules (WAT in `tests/data/wat/`): the app contract,
//! determinism, and a typed failure for every limit a hostile module can hit.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use edgepool_agent::sandbox::{
    run, DatasetInput, Failure, InputFile, Prepared, RunOutcome, RunSpec, SandboxError, TaskContext,
};
use edgepool_protocol::digest::result_digest;
use edgepool_protocol::hash::sha256;
use edgepool_protocol::messages::TaskLimits;
use edgepool_protocol::status::ReplicateStatusCause;
use edgepool_protocol::{Address, Bytes32, DealId, TaskId};
use zeroize::Zeroizing;

const START_MS: u64 = 1_700_000_000_000;

fn wat(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/wat/{name}.wat", env!("CARGO_MANIFEST_DIR"));
    // The agent accepts binary wasm only: the test sources are WAT, converted here.
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Binary wasm from inline WAT text.
fn binary(text: &[u8]) -> Vec<u8> {
    wat::parse_bytes(text).unwrap().into_owned()
}

fn spec() -> RunSpec {
    RunSpec {
        app_name: "app".into(),
        args: String::new(),
        task: TaskContext {
            task_id: TaskId(Bytes32([0x11; 32])),
            deal_id: DealId(Bytes32([0x22; 32])),
            task_index: 3,
            bot_first: 2,
            bot_size: 5,
        },
        dataset: None,
        input_files: vec![InputFile {
            name: "input.txt".into(),
            content: b"world".to_vec(),
        }],
        env: Vec::new(),
        limits: TaskLimits {
            fuel: 100_000_000,
            memory_bytes: 16 * 1024 * 1024,
            wall_clock_ms: 30_000,
            output_bytes: 1024 * 1024,
            output_files: 50,
            max_input_bytes: 1024 * 1024,
        },
        start_time_ms: START_MS,
    }
}

fn run_wat(name: &str, spec: &RunSpec) -> Result<RunOutcome, SandboxError> {
    run(&wat(name), spec)
}

fn failure(name: &str, spec: &RunSpec) -> SandboxError {
    match run_wat(name, spec) {
        Ok(outcome) => panic!("{name} succeeded: {outcome:?}"),
        Err(error) => error,
    }
}

fn nul_separated(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

#[test]
fn hello_reads_its_input_args_and_env_and_writes_a_stable_digest() {
    let mut spec = spec();
    spec.app_name = "hello".into();
    spec.args = r#"--name "Ada Lovelace" 'x y' a\ b"#.into();
    spec.dataset = Some(DatasetInput {
        address: Address([0xab; 20]),
        filename: "dataset.bin".into(),
        content: Zeroizing::new(b"secret".to_vec()),
    });
    spec.input_files.push(InputFile {
        name: "second.dat".into(),
        content: Vec::new(),
    });
    spec.env = vec![
        ("MY_VAR".into(), "1".into()),
        ("IEXEC_IN".into(), "/elsewhere".into()),
    ];
    let first = run_wat("hello", &spec).unwrap();
    let out = &first.output;

    assert_eq!(out.read("result.txt").unwrap(), b"hello world");
    assert_eq!(
        nul_separated(out.read("args.txt").unwrap()),
        ["hello", "--name", "Ada Lovelace", "x y", "a b"]
    );
    let task_id = format!("0x{}", "11".repeat(32));
    let deal_id = format!("0x{}", "22".repeat(32));
    let dataset_address = Address([0xab; 20]).to_string();
    let expected_env = [
        format!("IEXEC_TASK_ID={task_id}"),
        format!("IEXEC_DEAL_ID={deal_id}"),
        "IEXEC_TASK_INDEX=3".into(),
        "IEXEC_IN=/iexec_in".into(),
        "IEXEC_OUT=/iexec_out".into(),
        format!("IEXEC_DATASET_ADDRESS={dataset_address}"),
        "IEXEC_DATASET_FILENAME=dataset.bin".into(),
        "IEXEC_BOT_SIZE=5".into(),
        "IEXEC_BOT_FIRST_INDEX=2".into(),
        "IEXEC_BOT_TASK_INDEX=3".into(),
        "IEXEC_INPUT_FILES_FOLDER=/iexec_in".into(),
        "IEXEC_INPUT_FILES_NUMBER=2".into(),
        "IEXEC_INPUT_FILE_NAME_1=input.txt".into(),
        "IEXEC_INPUT_FILE_NAME_2=second.dat".into(),
        "MY_VAR=1".into(),
    ];
    assert_eq!(nul_separated(out.read("env.txt").unwrap()), expected_env);
    assert_eq!(out.read("stdout.txt").unwrap(), b"done\n");
    assert_eq!(out.read("stderr.txt").unwrap(), b"");
    assert_eq!(first.exit_code, 0);

    // The digest follows computed.json to result.txt: sha256 of the file, every run.
    let digest = result_digest(out, "").unwrap();
    assert_eq!(digest.0, sha256(b"hello world"));
    let second = run_wat("hello", &spec).unwrap();
    assert_eq!(result_digest(&second.output, "").unwrap(), digest);
    assert_eq!(second.output, first.output);
    assert_eq!(second.fuel_used, first.fuel_used);
    assert!(first.fuel_used > 0);
}

#[test]
fn the_determinism_probe_sees_fixed_clocks_virtual_sleep_and_task_seeded_randomness() {
    let spec = spec();
    let started = Instant::now();
    let first = run_wat("determinism", &spec).unwrap();
    // poll_oneoff asked for a 5 s sleep: the virtual clock moved, the real one hardly did.
    assert!(started.elapsed() < Duration::from_secs(4));
    let probe = first.output.read("stdout.txt").unwrap();
    assert_eq!(probe.len(), 48);
    let u64_at = |at: usize| u64::from_le_bytes(probe[at..at + 8].try_into().unwrap());
    assert_eq!(u64_at(0), START_MS * 1_000_000);
    assert_eq!(u64_at(8), 0);
    assert_eq!(u64_at(32), START_MS * 1_000_000 + 5_000_000_000);
    assert_eq!(u64_at(40), 5_000_000_000);

    let second = run_wat("determinism", &spec).unwrap();
    assert_eq!(second.output, first.output);
    assert_eq!(second.fuel_used, first.fuel_used);

    let mut other_task = self::spec();
    other_task.task.task_id = TaskId(Bytes32([0x33; 32]));
    let other = run_wat("determinism", &other_task).unwrap();
    let other_probe = other.output.read("stdout.txt").unwrap();
    assert_ne!(other_probe[16..32], probe[16..32], "random bytes");
    assert_eq!(other_probe[..16], probe[..16], "clocks");
    assert_eq!(other_probe[32..], probe[32..], "clocks after the sleep");
}

#[test]
fn an_endless_loop_runs_out_of_fuel_and_reports_the_whole_budget() {
    let spec = spec();
    let error = failure("loop", &spec);
    assert_eq!(
        error.failure,
        Failure::OutOfFuel {
            limit: spec.limits.fuel
        }
    );
    assert_eq!(error.cause(), ReplicateStatusCause::OutOfFuel);
    assert!(error.fuel_used <= spec.limits.fuel);
    assert!(
        error.fuel_used > spec.limits.fuel - 10,
        "{}",
        error.fuel_used
    );
    assert_eq!(failure("loop", &spec).fuel_used, error.fuel_used);
}

#[test]
fn an_endless_loop_with_ample_fuel_is_stopped_by_the_wall_clock() {
    let mut spec = spec();
    spec.limits.fuel = u64::MAX;
    spec.limits.wall_clock_ms = 300;
    let started = Instant::now();
    let error = failure("loop", &spec);
    let took = started.elapsed();
    assert_eq!(error.failure, Failure::WallClock { limit_ms: 300 });
    assert_eq!(error.cause(), ReplicateStatusCause::AppComputeTimeout);
    assert!(took >= Duration::from_millis(300));
    assert!(took < Duration::from_secs(3), "stopped after {took:?}");
    assert!(error.fuel_used > 0);
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let error = failure("memory_bomb", &spec());
    assert!(
        matches!(error.failure, Failure::MemoryLimit { .. }),
        "{error}"
    );
    assert_eq!(error.cause(), ReplicateStatusCause::MemoryLimitExceeded);
    assert!(error.fuel_used > 0);
}

#[test]
fn an_initial_memory_or_table_above_the_limits_is_refused() {
    let big_memory = br#"(module (memory (export "memory") 1000) (func (export "_start")))"#;
    let error = run(&binary(big_memory), &spec()).unwrap_err();
    assert!(
        matches!(error.failure, Failure::MemoryLimit { .. }),
        "{error}"
    );

    let table_bomb = br#"(module (memory (export "memory") 1) (table $t 1 funcref)
        (func (export "_start")
          (loop $grow (drop (table.grow $t (ref.null func) (i32.const 10000))) (br $grow))))"#;
    let error = run(&binary(table_bomb), &spec()).unwrap_err();
    assert!(
        matches!(error.failure, Failure::MemoryLimit { .. }),
        "{error}"
    );
}

#[test]
fn endless_recursion_is_a_stack_overflow() {
    let error = failure("recursion", &spec());
    assert_eq!(error.failure, Failure::StackOverflow);
    assert_eq!(error.cause(), ReplicateStatusCause::StackOverflow);
}

#[test]
fn an_output_flood_hits_the_byte_quota() {
    let error = failure("output_flood", &spec());
    assert_eq!(error.failure, Failure::OutputBytes { limit: 1024 * 1024 });
    assert_eq!(error.cause(), ReplicateStatusCause::OutputLimitExceeded);
}

#[test]
fn a_flood_of_empty_files_hits_the_entry_quota() {
    let error = failure("file_flood", &spec());
    assert_eq!(error.failure, Failure::OutputFiles { limit: 50 });
    assert_eq!(error.cause(), ReplicateStatusCause::OutputLimitExceeded);
}

#[test]
fn unreachable_is_a_trap_with_its_code() {
    let error = failure("trap", &spec());
    assert_eq!(
        error.failure,
        Failure::Trap {
            code: "UnreachableCodeReached".into()
        }
    );
    assert_eq!(error.cause(), ReplicateStatusCause::AppComputeFailed);
}

#[test]
fn a_non_zero_exit_fails_and_exit_zero_succeeds() {
    let error = failure("exit3", &spec());
    assert_eq!(error.failure, Failure::Exit { code: 3 });
    assert_eq!(error.cause(), ReplicateStatusCause::AppComputeFailed);

    let exit0 = br#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start") (call $exit (i32.const 0))))"#;
    assert_eq!(run(&binary(exit0), &spec()).unwrap().exit_code, 0);
}

#[test]
fn path_escapes_and_writes_to_the_inputs_are_refused_and_the_module_sees_why() {
    let outcome = run_wat("escape", &spec()).unwrap();
    // EPERM (63) for each escape, EROFS (69) for the write in /iexec_in.
    assert_eq!(
        outcome.output.read("escape.txt").unwrap(),
        b"63 63 63 63 69 "
    );
    assert_eq!(outcome.output.dirs().count(), 0);
}

#[test]
fn invalid_and_foreign_modules_are_refused_before_anything_runs() {
    type Expect = fn(&Failure) -> bool;
    let cases: [(Vec<u8>, Expect); 6] = [
        (b"\0asm garbage".to_vec(), |f| {
            matches!(f, Failure::InvalidModule(_))
        }),
        // WAT text is not an app: the agent accepts binary wasm only.
        (
            br#"(module (memory (export "memory") 1) (func (export "_start")))"#.to_vec(),
            |f| matches!(f, Failure::InvalidModule(_)),
        ),
        (
            binary(br#"(module (memory (export "memory") 1) (func $s) (start $s) (func (export "_start")))"#),
            |f| matches!(f, Failure::InvalidModule(_)),
        ),
        (
            binary(br#"(module (import "env" "sys" (func)) (memory (export "memory") 1) (func (export "_start")))"#),
            |f| matches!(f, Failure::NotACommand(_)),
        ),
        (binary(br#"(module (memory (export "memory") 1))"#), |f| {
            matches!(f, Failure::NotACommand(_))
        }),
        (binary(br#"(module (func (export "_start")))"#), |f| {
            matches!(f, Failure::NotACommand(_))
        }),
    ];
    for (module, expected) in cases {
        let error = Prepared::compile(&module).unwrap_err();
        assert!(expected(&error.failure), "{error}");
        assert_eq!(error.cause(), ReplicateStatusCause::InvalidModule);
        assert_eq!(error.fuel_used, 0);
    }
}

#[test]
fn bad_arguments_and_input_names_fail_before_the_module_runs() {
    let mut spec = spec();
    spec.args = "'unterminated".into();
    let error = failure("hello", &spec);
    assert!(matches!(error.failure, Failure::InvalidArgs(_)));
    assert_eq!(error.cause(), ReplicateStatusCause::TaskDescriptionInvalid);

    let mut spec = self::spec();
    spec.input_files[0].name = "../escape".into();
    assert!(matches!(
        failure("hello", &spec).failure,
        Failure::InvalidInput(_)
    ));

    let mut spec = self::spec();
    spec.limits.max_input_bytes = 2;
    assert!(matches!(
        failure("hello", &spec).failure,
        Failure::InputTooLarge { limit: 2, found: 5 }
    ));
}

#[test]
fn stdout_is_captured_up_to_its_cap_and_written_to_the_output() {
    let outcome = run_wat("stdout_flood", &spec()).unwrap();
    assert!(outcome.stdout.truncated);
    assert_eq!(outcome.stdout.bytes.len(), 1024 * 1024);
    assert_eq!(
        outcome.output.read("stdout.txt").unwrap(),
        outcome.stdout.bytes.as_slice()
    );
}

#[test]
fn a_failed_run_still_reports_its_streams_and_the_same_fuel_every_time() {
    let module = br#"(module
        (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 64) "boom\n")
        (func (export "_start")
          (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 5))
          (drop (call $w (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
          unreachable))"#;
    let prepared = Prepared::compile(&binary(module)).unwrap();
    let first = prepared.run(&spec()).unwrap_err();
    let second = prepared.run(&spec()).unwrap_err();
    assert_eq!(first.left_behind.stderr.bytes, b"boom\n");
    assert!(first.fuel_used > 0);
    assert_eq!(first.fuel_used, second.fuel_used);
}

#[test]
fn a_prepared_module_gives_the_same_fuel_however_small_the_budget_slices_are() {
    // count.wat needs more than one FUEL_SLICE: the total must not depend on the slicing.
    let prepared = Prepared::compile(&wat("count")).unwrap();
    let mut spec = spec();
    spec.limits.fuel = 10_000_000_000;
    let first = prepared.run(&spec).unwrap();
    let second = prepared.run(&spec).unwrap();
    assert_eq!(first.fuel_used, second.fuel_used);
    assert!(first.fuel_used > edgepool_agent::sandbox::limits::FUEL_SLICE);
    // A budget of exactly what it needs still succeeds; one less runs out.
    spec.limits.fuel = first.fuel_used;
    assert_eq!(prepared.run(&spec).unwrap().fuel_used, first.fuel_used);
    spec.limits.fuel = first.fuel_used - 1;
    assert!(matches!(
        prepared.run(&spec).unwrap_err().failure,
        Failure::OutOfFuel { .. }
    ));
}
