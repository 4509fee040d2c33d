//! The sandbox against the real C apps of `apps/` and their recorded samples: the in-memory
//! filesystem and the contract are what wasi-libc expects, and the output matches what wasmi's
//! CLI produced on real directories.
//!
//! Runs when the repository has `apps/` (it is built by its own tooling); otherwise it says so
//! and passes.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use edgepool_agent::sandbox::{
    DatasetInput, Failure, InputFile, Prepared, RunSpec, SandboxError, TaskContext,
};
use edgepool_protocol::digest::result_digest;
use edgepool_protocol::messages::TaskLimits;
use edgepool_protocol::tree::{FileTree, MemTree};
use edgepool_protocol::{Address, Bytes32, DealId, TaskId};
use zeroize::Zeroizing;

fn apps_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../apps");
    if dir.join("hello/hello.wasm").is_file() {
        Some(dir)
    } else {
        eprintln!("no apps/ in this checkout: skipping the real-app samples");
        None
    }
}

/// A sample folder as a run spec; `None` when RunSpec cannot express it (a declared input file
/// that is absent, or a file in `in/` that nothing declares).
fn sample_spec(case: &Path, app: &str) -> Option<RunSpec> {
    let env: BTreeMap<String, String> = std::fs::read_to_string(case.join("env"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let read_in = |name: &str| std::fs::read(case.join("in").join(name)).ok();
    let mut declared = Vec::new();
    let dataset = match env.get("IEXEC_DATASET_FILENAME") {
        Some(name) => {
            declared.push(name.clone());
            Some(DatasetInput {
                address: Address([0x0d; 20]),
                filename: name.clone(),
                content: Zeroizing::new(read_in(name)?),
            })
        }
        None => None,
    };
    let count: usize = env
        .get("IEXEC_INPUT_FILES_NUMBER")
        .map_or(0, |n| n.parse().unwrap());
    let mut input_files = Vec::new();
    for i in 1..=count {
        let name = env[&format!("IEXEC_INPUT_FILE_NAME_{i}")].clone();
        declared.push(name.clone());
        input_files.push(InputFile {
            content: read_in(&name)?,
            name,
        });
    }
    if let Ok(entries) = std::fs::read_dir(case.join("in")) {
        for entry in entries {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if !declared.contains(&name) {
                return None;
            }
        }
    }
    Some(RunSpec {
        app_name: app.to_string(),
        args: std::fs::read_to_string(case.join("iexec_args"))
            .unwrap_or_default()
            .trim_end()
            .to_string(),
        task: TaskContext {
            task_id: TaskId(Bytes32([1; 32])),
            deal_id: DealId(Bytes32([2; 32])),
            task_index: 0,
            bot_first: 0,
            bot_size: 1,
        },
        dataset,
        input_files,
        env: Vec::new(),
        limits: TaskLimits::default(),
        start_time_ms: 0,
    })
}

fn expected_tree(dir: &Path) -> MemTree {
    let mut tree = MemTree::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = pending.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if entry.file_type().unwrap().is_dir() {
                tree.insert_dir(&child).unwrap();
                pending.push((entry.path(), child));
            } else {
                tree.insert_file(&child, std::fs::read(entry.path()).unwrap())
                    .unwrap();
            }
        }
    }
    tree
}

fn without_streams(tree: &MemTree) -> MemTree {
    let mut out = MemTree::new();
    for (path, content) in tree.files() {
        if path != "stdout.txt" && path != "stderr.txt" {
            out.insert_file(path, content.to_vec()).unwrap();
        }
    }
    for dir in tree.dirs() {
        out.insert_dir(dir).unwrap();
    }
    out
}

/// hello's result lists the `IEXEC_*` environment, which differs between hosts: compare the
/// rest.
fn without_env_block(text: &[u8]) -> String {
    let text = String::from_utf8(text.to_vec()).unwrap();
    let mut in_env = false;
    let mut kept = Vec::new();
    for line in text.lines() {
        if line.starts_with("env: ") {
            in_env = true;
        } else if in_env && line.starts_with("  ") {
        } else {
            in_env = false;
            kept.push(line);
        }
    }
    kept.join("\n")
}

#[test]
fn every_expressible_sample_of_the_real_apps_gives_the_recorded_output() {
    let Some(apps) = apps_dir() else { return };
    let mut ran = 0;
    for app in ["hello", "csv-stats", "mandelbrot", "sha256sum"] {
        let module = std::fs::read(apps.join(app).join(format!("{app}.wasm"))).unwrap();
        let prepared = Prepared::compile(&module).unwrap();
        let mut cases: Vec<PathBuf> = std::fs::read_dir(apps.join(app).join("samples"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        cases.sort();
        for case in cases {
            let name = format!("{app}/{}", case.file_name().unwrap().to_string_lossy());
            let Some(spec) = sample_spec(&case, app) else {
                eprintln!("{name}: not expressible as a RunSpec, skipped");
                continue;
            };
            let exit_code: i32 = std::fs::read_to_string(case.join("exit_code"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let (code, output) = match prepared.run(&spec) {
                Ok(outcome) => (0, without_streams(&outcome.output)),
                Err(SandboxError {
                    failure: Failure::Exit { code },
                    left_behind,
                    ..
                }) => (code, left_behind.output.unwrap()),
                Err(other) => panic!("{name}: {other}"),
            };
            assert_eq!(code, exit_code, "{name}");
            let expected = expected_tree(&case.join("expected"));
            if app == "hello" && code == 0 {
                assert_eq!(
                    without_env_block(output.read("result.txt").unwrap()),
                    without_env_block(expected.read("result.txt").unwrap()),
                    "{name}"
                );
                assert_eq!(
                    output.read("computed.json").unwrap(),
                    expected.read("computed.json").unwrap()
                );
            } else {
                assert_eq!(output, expected, "{name}");
            }
            if code == 0 {
                result_digest(&output, "").unwrap();
                assert!(output.kind("computed.json").unwrap().is_some());
            }
            ran += 1;
        }
    }
    assert!(ran >= 8, "only {ran} samples ran");
}

fn median(mut samples: Vec<std::time::Duration>) -> std::time::Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn plain_spec() -> RunSpec {
    let mut spec = sample_spec(Path::new("/nonexistent"), "app").unwrap();
    spec.limits.fuel = u64::MAX;
    spec
}

/// Figures for BENCHMARKS.md (printed, not asserted):
/// `cargo test -p edgepool-agent --test sandbox_apps -- --ignored --nocapture`.
#[test]
#[ignore = "measurement: run on demand with --ignored --nocapture"]
fn measure_compile_instantiate_and_run_times() {
    use std::time::Instant;
    if let Some(apps) = apps_dir() {
        for app in ["hello", "csv-stats", "mandelbrot", "sha256sum"] {
            let module = std::fs::read(apps.join(app).join(format!("{app}.wasm"))).unwrap();
            let times = (0..21)
                .map(|_| {
                    let started = Instant::now();
                    Prepared::compile(&module).unwrap();
                    started.elapsed()
                })
                .collect();
            eprintln!(
                "eager compile {app} ({} bytes): median {:?}",
                module.len(),
                median(times)
            );
        }
    }

    // An empty command: the contract (volumes, env, context) plus instantiation.
    let empty = wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
        .unwrap();
    let empty = Prepared::compile(&empty).unwrap();
    let spec = plain_spec();
    let times = (0..201)
        .map(|_| {
            let started = Instant::now();
            empty.run(&spec).unwrap();
            started.elapsed()
        })
        .collect();
    eprintln!(
        "run of an empty module (contract + instantiate + collect): median {:?}",
        median(times)
    );

    // A compute loop of 50M iterations, in fuel slices.
    let count =
        wat::parse_file(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wat/count.wat"))
            .unwrap();
    let count = Prepared::compile(&count).unwrap();
    let mut best = std::time::Duration::MAX;
    let mut fuel = 0;
    for _ in 0..5 {
        let outcome = count.run(&spec).unwrap();
        best = best.min(outcome.elapsed);
        fuel = outcome.fuel_used;
    }
    eprintln!(
        "count.wat (50M iterations): {fuel} fuel, best {best:?}: {:.0} M iterations/s, {:.0} M fuel/s",
        50.0 / best.as_secs_f64(),
        fuel as f64 / best.as_secs_f64() / 1e6
    );

    if let Some(apps) = apps_dir() {
        let module = std::fs::read(apps.join("mandelbrot/mandelbrot.wasm")).unwrap();
        let prepared = Prepared::compile(&module).unwrap();
        let mut spec = plain_spec();
        spec.args = "256 1000".into();
        let outcome = prepared.run(&spec).unwrap();
        eprintln!(
            "mandelbrot 256 1000: {} fuel in {:?}",
            outcome.fuel_used, outcome.elapsed
        );
    }
}
