//! The adversarial module corpus (`tests/data/wat/`) run in parallel with honest tasks on one
//! agent with several slots: every honest task completes with the recorded digest, every
//! adversarial one fails with its typed cause, and the agent's peak RSS stays bounded.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use edgepool_protocol::messages::{DealSummary, Message, TaskLimits};
use edgepool_protocol::primitives::TaskId;
use edgepool_protocol::status::ReplicateStatusCause;
use edgepool_simulator::scheduler::Action;

use crate::harness::{deal, repo, Agent, Driver, HttpServer, SCENARIO};
use crate::support::rumqttd::EmbeddedBroker;

const SLOTS: u32 = 4;
const MEMORY_MIB: u64 = 16;
const OUTPUT_MIB: u64 = 1;

/// Limits every task of this test asks for (the agent's own maxima are the same).
fn limits() -> TaskLimits {
    TaskLimits {
        fuel: 10_000_000_000,
        memory_bytes: MEMORY_MIB << 20,
        wall_clock_ms: 60_000,
        output_bytes: OUTPUT_MIB << 20,
        output_files: 50,
        max_input_bytes: 1 << 20,
    }
}

/// One task of the mix: its app, its limits, and the cause it must fail with (None: honest).
struct Case {
    name: &'static str,
    app: String,
    limits: TaskLimits,
    cause: Option<ReplicateStatusCause>,
}

fn wat_case(
    name: &'static str,
    file: &str,
    limits: TaskLimits,
    cause: ReplicateStatusCause,
) -> Case {
    Case {
        name,
        app: file.into(),
        limits,
        cause: Some(cause),
    }
}

#[test]
fn adversarial_modules_fail_with_their_cause_while_honest_tasks_complete_and_rss_stays_bounded() {
    let mut files = HashMap::new();
    let wat_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wat");
    for name in [
        "loop",
        "memory_bomb",
        "recursion",
        "output_flood",
        "file_flood",
        "trap",
        "exit3",
    ] {
        // The agent runs binary wasm only: the corpus's WAT is converted here.
        files.insert(
            format!("{name}.wasm"),
            wat::parse_file(wat_dir.join(format!("{name}.wat"))).unwrap(),
        );
    }
    files.insert(
        "big_memory.wasm".into(),
        wat::parse_str(r#"(module (memory (export "memory") 1000) (func (export "_start")))"#)
            .unwrap(),
    );
    files.insert("garbage.wasm".into(), b"\0asm garbage".to_vec());
    let mandelbrot = std::fs::read(repo().join("apps/mandelbrot/mandelbrot.wasm")).unwrap();
    files.insert("mandelbrot.wasm".into(), mandelbrot);
    let args =
        std::fs::read_to_string(repo().join("apps/mandelbrot/samples/small/iexec_args")).unwrap();
    let expected = crate::expected_digest(&repo().join("apps/mandelbrot/samples/small/expected"));

    use ReplicateStatusCause as C;
    let honest = || Case {
        name: "mandelbrot",
        app: "mandelbrot.wasm".into(),
        limits: limits(),
        cause: None,
    };
    let cases = vec![
        honest(),
        wat_case(
            "endless loop, out of fuel",
            "loop.wasm",
            TaskLimits {
                fuel: 20_000_000,
                ..limits()
            },
            C::OutOfFuel,
        ),
        wat_case(
            "endless loop, wall clock",
            "loop.wasm",
            TaskLimits {
                wall_clock_ms: 1_500,
                ..limits()
            },
            C::AppComputeTimeout,
        ),
        honest(),
        wat_case(
            "memory bomb",
            "memory_bomb.wasm",
            limits(),
            C::MemoryLimitExceeded,
        ),
        wat_case(
            "initial memory above the limit",
            "big_memory.wasm",
            limits(),
            C::MemoryLimitExceeded,
        ),
        honest(),
        wat_case(
            "endless recursion",
            "recursion.wasm",
            limits(),
            C::StackOverflow,
        ),
        wat_case(
            "output flood",
            "output_flood.wasm",
            limits(),
            C::OutputLimitExceeded,
        ),
        honest(),
        wat_case(
            "file flood",
            "file_flood.wasm",
            limits(),
            C::OutputLimitExceeded,
        ),
        wat_case("unreachable", "trap.wasm", limits(), C::AppComputeFailed),
        honest(),
        wat_case("exit 3", "exit3.wasm", limits(), C::AppComputeFailed),
        wat_case("not a module", "garbage.wasm", limits(), C::InvalidModule),
        honest(),
    ];
    let server = HttpServer::start(files.clone());
    let broker = EmbeddedBroker::start();
    let mut driver = Driver::connect(broker.port());
    let env = [
        ("EDGEPOOL_AGENT_SLOTS", SLOTS.to_string()),
        ("EDGEPOOL_LIMITS_MEMORY_MB", MEMORY_MIB.to_string()),
        ("EDGEPOOL_LIMITS_OUTPUT_MB", OUTPUT_MIB.to_string()),
        ("EDGEPOOL_LIMITS_OUTPUT_FILES", "50".to_string()),
        ("EDGEPOOL_LIMITS_MAX_INPUT_MB", "1".to_string()),
    ];
    let mut agent = Agent::start(&broker.url(), driver.scheduler.address(), &env);
    driver.wait_online(&[&agent]);
    let baseline_kib = agent.vm_hwm_kib();

    // Keep every slot busy: a new task as soon as one settles, honest and hostile interleaved.
    let deals: Vec<(DealSummary, &Case)> = cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let bytes = &files[&case.app];
            (
                deal(&server, &case.app, bytes, args.trim(), 100 + i as u8),
                case,
            )
        })
        .collect();
    let mut queue: VecDeque<&(DealSummary, &Case)> = deals.iter().collect();
    let mut in_flight: HashMap<TaskId, &Case> = HashMap::new();
    let mut settled: HashMap<TaskId, (&Case, bool)> = HashMap::new();
    let mut max_parallel = 0;
    let deadline = Instant::now() + SCENARIO;
    while settled.len() < deals.len() {
        assert!(
            Instant::now() < deadline,
            "settled {} of {}; log:\n{}",
            settled.len(),
            deals.len(),
            agent.log()
        );
        while in_flight.len() < SLOTS as usize {
            let Some((d, case)) = queue.pop_front() else {
                break;
            };
            let task = driver.assign(d, agent.address, case.limits);
            in_flight.insert(task, case);
        }
        max_parallel = max_parallel.max(in_flight.len());
        for action in driver.step() {
            let (task, finalized) = match action {
                Action::Finalized { task_id, .. } => (task_id, true),
                Action::Failed { task_id, .. } => (task_id, false),
                _ => continue,
            };
            if let Some(case) = in_flight.remove(&task) {
                settled.insert(task, (case, finalized));
            }
        }
    }
    agent.assert_running();
    let peak_kib = agent.vm_hwm_kib();

    assert_eq!(max_parallel, SLOTS as usize);
    let declined: Vec<&Message> = driver
        .seen
        .iter()
        .map(|(_, m)| m)
        .filter(|m| matches!(m, Message::Decline(_)))
        .collect();
    assert!(declined.is_empty(), "{declined:?}");
    for (task, (case, finalized)) in &settled {
        match case.cause {
            None => {
                assert!(
                    finalized,
                    "honest task {task} failed; log:\n{}",
                    agent.log()
                );
                assert_eq!(driver.failure_cause(*task), None, "{task}");
                let digests = driver.contributions(*task);
                assert!(
                    !digests.is_empty() && digests.iter().all(|d| *d == expected),
                    "{task}: {digests:?}"
                );
            }
            Some(cause) => {
                let reported = driver.failure_cause(*task);
                assert_eq!(
                    reported.map(|(_, c)| c),
                    Some(cause),
                    "{}: {reported:?}",
                    case.name
                );
                println!("{:<32} {:?}", case.name, reported.unwrap());
            }
        }
    }

    // The bound: what the agent held before any task, plus per slot the guest's linear memory
    // limit, its output quota (the in-memory /iexec_out and the zipped copy) and 8 MiB for the
    // compiled module, the WASI context and the fetch buffers.
    let per_slot_kib = (MEMORY_MIB << 10) + 2 * (OUTPUT_MIB << 10) + 8 * 1024;
    let bound_kib = baseline_kib + u64::from(SLOTS) * per_slot_kib;
    println!(
        "VmHWM: baseline {baseline_kib} KiB, after {} tasks ({SLOTS} slots) {peak_kib} KiB, bound {bound_kib} KiB",
        deals.len()
    );
    assert!(
        peak_kib <= bound_kib,
        "peak {peak_kib} KiB over the bound {bound_kib} KiB"
    );
}
