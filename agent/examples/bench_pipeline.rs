//! Per-task overhead of the pipeline on loopback (the benchmark of `scripts/bench_pipeline.py`).
//!
//! Starts a broker (Mosquitto with TCP_NODELAY, or the embedded rumqttd of the tests, which has
//! TCP_NODELAY by the patch in vendor/rumqttd), a tiny_http server (the app, the datasets, the
//! result store) and a real agent process (the release binary given by `--agent`), then plays the scheduler with the simulator's state
//! machine: one standard task at a time with a 1 MiB dataset, timed from the publish of the
//! assignment to the receipt of the contribution on the scheduler's connection. Each task is run
//! to COMPLETED before the next is assigned.
//!
//! - task 0 is cold: the app and the dataset are downloaded;
//! - `--tasks` tasks reuse both from the cache;
//! - `--fresh` tasks each bring a new 1 MiB dataset (the app is cached);
//! - `--throughput N`: N more cached tasks with the agent's `--slots` kept busy (the next task is
//!   assigned as soon as a contribution frees a slot), for tasks/s per agent, against the same
//!   cached tasks run one at a time.
//!
//! The app is `--app read` (`bench_support/read_dataset.wat`: reads the dataset, writes its
//! size, no compute to speak of) or `--app hello` (`apps/hello`, which also CRC-32s it). Its own
//! compute is measured in this process with `sandbox::Prepared` (compile and run separately) on
//! the same inputs and task context, and its output digest is checked against the contributed
//! one. References measured in the same run: one QoS 1 publish → receipt hop through the same
//! broker, and a 1 MiB GET from the same HTTP server.
//!
//! Prints a human summary on stderr and one JSON object on stdout.
//!
//! With `--tee` every task is a TEE task, as `tests/tee_e2e.rs` runs them: the agent attests
//! with the software attester, the datasets are encrypted (iExec format) under a key the
//! dataset owner pushed to the scheduler's SMS (the simulator's, under its policy that accepts
//! software evidence), and each task adds the secret request, the SMS's sealed answer, the
//! dataset's decryption in memory and the enclave signature of the contribution.
//!
//! `cargo run --release -p edgepool-agent --example bench_pipeline -- --agent PATH [--tasks 100]
//! [--fresh 20] [--broker mosquitto|rumqttd] [--app read|hello] [--tee] [--throughput N --slots S]`

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use edgepool_agent::sandbox::{DatasetInput, Prepared, RunSpec, TaskContext};
use edgepool_protocol::dataset::{self as dataset_format, DatasetKey};
use edgepool_protocol::digest::result_digest;
use edgepool_protocol::hash::sha256;
use edgepool_protocol::messages::{AppRef, DatasetRef, DealSummary, TaskLimits};
use edgepool_protocol::poco;
use edgepool_protocol::primitives::{Address, DealId, Digest};
use edgepool_protocol::tags::Tag;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use zeroize::Zeroizing;

#[path = "bench_support/broker.rs"]
mod broker;
#[path = "bench_support/driver.rs"]
mod driver;
#[path = "bench_support/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "../tests/support/rumqttd.rs"]
mod rumqttd;
#[path = "bench_support/stats.rs"]
mod stats;

use driver::{Agent, Driver, Timing};
use stats::Summary;

/// What `tests/support/rumqttd.rs` expects from its parent module.
const BIND_ATTEMPTS: usize = 5;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to probe a free port")
}

fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

const POOL: &str = "0x1111111111111111111111111111111111111111";
const SCHEDULER_KEY: [u8; 32] = [0x5c; 32];
const DATASET_BYTES: usize = 1 << 20;
/// The dataset of every deal (its key is pushed to the SMS once, for `--tee`).
const DATASET_ADDRESS: Address = Address([0xd5; 20]);
/// The dataset owner who pushes the key (`--tee`).
const OWNER_KEY: [u8; 32] = [0x0d; 32];
/// The dataset key of `--tee` runs (a benchmark's fixed key, not a secret).
const DATASET_KEY: [u8; 32] = [0x4b; 32];
/// How long one task may take before the benchmark gives up.
const TASK_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Parser, Debug)]
struct Args {
    /// The agent binary (a release build).
    #[arg(long)]
    agent: PathBuf,
    /// Tasks with the app and dataset in the cache.
    #[arg(long, default_value_t = 100)]
    tasks: usize,
    /// Tasks with a new dataset each (app cached).
    #[arg(long, default_value_t = 20)]
    fresh: usize,
    /// In-process runs of the app, to measure its own compute.
    #[arg(long, default_value_t = 30)]
    compute_runs: usize,
    /// The agent's log level.
    #[arg(long, default_value = "info")]
    log: String,
    /// The broker: `mosquitto` (with TCP_NODELAY) or `rumqttd` (embedded, TCP_NODELAY by
    /// the patch in `vendor/rumqttd`).
    #[arg(long, default_value = "mosquitto")]
    broker: String,
    /// Extra `NAME=VALUE` environment for the agent's `run` (e.g. an `LD_PRELOAD` for a
    /// diagnostic run).
    #[arg(long)]
    agent_env: Vec<String>,
    /// The app: `read` (reads the dataset, no compute) or `hello` (apps/hello: CRC-32 of it).
    #[arg(long, default_value = "read")]
    app: String,
    /// TEE tasks: software attestation, encrypted datasets, the SMS's secret exchange.
    #[arg(long)]
    tee: bool,
    /// Throughput: this many more cached tasks, `--slots` of them assigned at a time (the
    /// scheduler assigns the next one as soon as a contribution frees a slot), timed from the
    /// first assignment to the last COMPLETED. 0: skipped.
    #[arg(long, default_value_t = 0)]
    throughput: usize,
    /// The agent's `agent.slots` (tasks run at once).
    #[arg(long, default_value_t = 1)]
    slots: u32,
}

/// The app's file in the repository, and its name on the HTTP server.
fn app_file(app: &str) -> Result<(&'static str, &'static str)> {
    match app {
        "read" => Ok((
            "agent/examples/bench_support/read_dataset.wat",
            "read_dataset.wasm",
        )),
        "hello" => Ok(("apps/hello/hello.wasm", "hello.wasm")),
        other => bail!("unknown app {other:?}: expected read or hello"),
    }
}

/// Client socket options like the agent's: TCP_NODELAY.
fn nodelay(connection: &mut rumqttc::Connection) {
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    connection.eventloop.set_network_options(network);
}

fn main() -> Result<()> {
    let args = Args::parse();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (app_path, app_name) = app_file(&args.app)?;
    let app = std::fs::read(repo.join(app_path)).context(app_path)?;
    // The agent accepts binary wasm only: a WAT source is converted here.
    let app = if app_path.ends_with(".wat") {
        wat::parse_bytes(&app).context(app_path)?.into_owned()
    } else {
        app
    };
    let mut files = HashMap::new();
    files.insert(app_name.to_string(), app.clone());
    for k in 0..=args.fresh {
        files.insert(format!("dataset-{k}.bin"), served_dataset(k, args.tee));
    }
    let server = http::Server::start(files)?;
    let broker = broker::Broker::start(&args.broker)?;
    let mut driver = Driver::connect(broker.port(), args.tee)?;
    if args.tee {
        let owner = edgepool_protocol::signature::Signer::from_bytes(&OWNER_KEY)?;
        let value = DatasetKey::from_bytes(DATASET_KEY).to_base64();
        let challenge = edgepool_protocol::sms::web3_secret_challenge(&DATASET_ADDRESS, &value);
        let signature = owner.sign_personal(challenge.as_bytes());
        driver
            .scheduler
            .sms_mut()
            .ok_or_else(|| anyhow!("the scheduler has no SMS"))?
            .secrets_mut()
            .push_dataset_secret(DATASET_ADDRESS, owner.address(), &value, &signature)
            .map_err(|e| anyhow!("pushing the dataset key: {e}"))?;
    }
    let agent = Agent::start(&args, &broker.url(), driver.scheduler.address())?;
    driver.wait_online(&agent)?;
    // The agent measures its sandbox once after connecting; keep it out of the first task.
    let benched = poll_until(Duration::from_secs(30), || {
        agent.log().contains("sandbox benchmark")
    });
    eprintln!("agent online (start-up sandbox benchmark seen: {benched})");

    let mut cold = Vec::new();
    let mut cached = Vec::new();
    let mut fresh = Vec::new();
    let mut last = None;
    let mut cached_cpu_ms = (0.0, 0.0);
    let total = 1 + args.tasks + args.fresh;
    let mut cached_wall = (Instant::now(), Duration::ZERO);
    for i in 0..total {
        let k = i.saturating_sub(args.tasks);
        let deal = deal(&server, (app_name, &app), k, i, args.tee)?;
        if i == 1 {
            cached_cpu_ms.0 = agent.cpu_ms();
            cached_wall.0 = Instant::now();
        }
        let timing = driver.run_task(&deal, &agent)?;
        match (i, k) {
            (0, _) => cold.push(timing),
            (_, 0) => {
                cached.push(timing.clone());
                last = Some((deal, timing));
            }
            _ => fresh.push(timing),
        }
        if i == args.tasks {
            cached_cpu_ms.1 = agent.cpu_ms();
            cached_wall.1 = cached_wall.0.elapsed();
        }
    }
    // Throughput: the cached tasks again, the agent's slots kept busy.
    let throughput = if args.throughput > 0 {
        let deals = (0..args.throughput)
            .map(|j| deal(&server, (app_name, &app), 0, total + j, args.tee))
            .collect::<Result<Vec<_>>>()?;
        let cpu_before = agent.cpu_ms();
        let elapsed = driver.run_window(&deals, args.slots as usize, &agent)?;
        let cpu = agent.cpu_ms() - cpu_before;
        json!({
            "tasks": args.throughput,
            "slots": args.slots,
            "seconds": elapsed.as_secs_f64(),
            "tasks_per_s": args.throughput as f64 / elapsed.as_secs_f64(),
            "agent_cpu_ms_per_task": cpu / args.throughput as f64,
            // The same tasks one at a time, assigned when the previous one COMPLETED.
            "sequential_tasks_per_s": args.tasks as f64 / cached_wall.1.as_secs_f64().max(1e-9),
        })
    } else {
        serde_json::Value::Null
    };
    let (last_deal, last_timing) = last.ok_or_else(|| anyhow!("no cached task ran"))?;

    // The app's own compute, on the inputs and task context of the last cached task.
    let compute = measure_compute(&app, &last_deal, args.compute_runs)?;
    if compute.digest != last_timing.digest {
        bail!(
            "the in-process run gave digest {} but the agent contributed {}: not the same work",
            compute.digest,
            last_timing.digest
        );
    }
    let hop = mqtt_hop(broker.port(), 200)?;
    let get = http_get(server.port, "dataset-0.bin", 50)?;

    let report = json!({
        "tasks": {"cold": 1, "cached": args.tasks, "fresh_dataset": args.fresh},
        "dataset_bytes": DATASET_BYTES,
        "app": app_path,
        "tee": args.tee,
        "broker": args.broker,
        "agent_env": args.agent_env,
        "agent_log_level": args.log,
        "slots": args.slots,
        "end_to_end_ms": {
            "cold": Summary::of(&cold.iter().map(|t| t.total_ms).collect::<Vec<_>>()),
            "cached": Summary::of(&cached.iter().map(|t| t.total_ms).collect::<Vec<_>>()),
            "fresh_dataset": Summary::of(&fresh.iter().map(|t| t.total_ms).collect::<Vec<_>>()),
        },
        "phases_ms": {
            "cached": Timing::phase_medians(&cached),
            "fresh_dataset": Timing::phase_medians(&fresh),
            "cold": Timing::phase_medians(&cold),
        },
        "app_compute_ms": {
            "compile": Summary::of(&compute.compile_ms),
            "run": Summary::of(&compute.run_ms),
            "fuel_used": compute.fuel_used,
        },
        // Reveal, upload and completion included: the whole task, not only up to the contribution.
        "agent_cpu_ms_per_cached_task": (cached_cpu_ms.1 - cached_cpu_ms.0) / args.tasks.max(1) as f64,
        "throughput": throughput,
        "reference_ms": {
            "mqtt_qos1_hop": Summary::of(&hop),
            "http_get_1mib": Summary::of(&get),
        },
    });
    eprintln!("{}", serde_json::to_string_pretty(&report)?);
    println!("{report}");
    Ok(())
}

/// The `k`-th 1 MiB dataset: distinct content (and checksum) for each `k`.
fn dataset(k: usize) -> Vec<u8> {
    (0..DATASET_BYTES)
        .map(|i| ((i * 7 + 3 + k * 11) % 256) as u8)
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the HTTP server serves as dataset `k`: the plain bytes, or for TEE tasks their
/// encryption under [`DATASET_KEY`] (a distinct IV per dataset).
fn served_dataset(k: usize, tee: bool) -> Vec<u8> {
    let plain = dataset(k);
    if !tee {
        return plain;
    }
    let iv = [k as u8; 16];
    dataset_format::encrypt(&DatasetKey::from_bytes(DATASET_KEY), iv, &plain)
}

fn deal(
    server: &http::Server,
    (name, app): (&str, &[u8]),
    k: usize,
    i: usize,
    tee: bool,
) -> Result<DealSummary> {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    let data = served_dataset(k, tee);
    Ok(DealSummary {
        deal_id: DealId::from(id),
        app: AppRef {
            address: Address([0xa1; 20]),
            url: server.url(name),
            checksum: Digest(sha256(app)),
            size_bytes: Some(app.len() as u64),
        },
        dataset: Some(DatasetRef {
            address: DATASET_ADDRESS,
            url: server.url(&format!("dataset-{k}.bin")),
            // The iExec dataset checksum: sha256 of the file as served (encrypted or not).
            checksum: Digest(sha256(&data)),
            filename: "dataset.bin".into(),
            size_bytes: Some(data.len() as u64),
            encrypted: tee,
        }),
        input_files: Vec::new(),
        args: String::new(),
        tag: if tee {
            Tag::encode(&["tee"]).map_err(|e| anyhow!("tag: {e}"))?
        } else {
            Tag::NONE
        },
        trust: 1,
        category: 0,
        time_ref_seconds: 600,
        start_time_ms: now_ms(),
        requester: Address([0x51; 20]),
        beneficiary: Address([0x52; 20]),
        callback: Address::ZERO,
        result_encryption: false,
        result_storage_provider: "http".into(),
        result_storage_proxy: Some(format!("http://127.0.0.1:{}", server.port)),
        bot_first: 0,
        bot_size: 1,
    })
}

/// The in-process measurement of the app on the inputs of `deal`'s task 0.
struct Compute {
    compile_ms: Vec<f64>,
    run_ms: Vec<f64>,
    fuel_used: u64,
    digest: Digest,
}

fn measure_compute(app: &[u8], deal: &DealSummary, runs: usize) -> Result<Compute> {
    let reference = deal.dataset.as_ref().ok_or_else(|| anyhow!("no dataset"))?;
    let content = dataset(0);
    if Digest(sha256(&served_dataset(0, reference.encrypted))) != reference.checksum {
        bail!("the last task's dataset is not dataset 0");
    }
    let spec = RunSpec {
        app_name: "app".into(),
        args: deal.args.clone(),
        task: TaskContext {
            task_id: poco::task_id(&deal.deal_id, 0),
            deal_id: deal.deal_id,
            task_index: 0,
            bot_first: deal.bot_first,
            bot_size: deal.bot_size,
        },
        dataset: Some(DatasetInput {
            address: reference.address,
            filename: reference.filename.clone(),
            content: Zeroizing::new(content),
        }),
        input_files: Vec::new(),
        env: Vec::new(),
        limits: TaskLimits::default(),
        start_time_ms: deal.start_time_ms,
    };
    let mut out = Compute {
        compile_ms: Vec::new(),
        run_ms: Vec::new(),
        fuel_used: 0,
        digest: Digest::default(),
    };
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let prepared = Prepared::compile(app).map_err(|e| anyhow!("compile: {e}"))?;
        out.compile_ms.push(ms(started.elapsed()));
        let started = Instant::now();
        let outcome = prepared.run(&spec).map_err(|e| anyhow!("run: {e}"))?;
        out.run_ms.push(ms(started.elapsed()));
        out.fuel_used = outcome.fuel_used;
        out.digest = result_digest(&outcome.output, "")?;
    }
    Ok(out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Publish → receipt of one small QoS 1 message through the broker, `n` times in a row.
fn mqtt_hop(port: u16, n: usize) -> Result<Vec<f64>> {
    let mut options = MqttOptions::new("probe", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = Client::new(options, 16);
    nodelay(&mut connection);
    client.subscribe("bench/probe", QoS::AtLeastOnce)?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    if tx.send(Instant::now()).is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = tx.send(Instant::now());
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .context("no SUBACK from the broker")?;
    let mut times = Vec::with_capacity(n);
    for i in 0..=n {
        let sent = Instant::now();
        client.publish("bench/probe", QoS::AtLeastOnce, false, vec![0u8; 200])?;
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .context("the probe message did not come back")?;
        // The first message of a connection is slow (see NOTES.md): left out.
        if i > 0 {
            times.push(ms(got.duration_since(sent)));
        }
    }
    let _ = client.disconnect();
    Ok(times)
}

/// A plain HTTP/1.1 GET of `path` on a new connection, `n` times.
fn http_get(port: u16, path: &str, n: usize) -> Result<Vec<f64>> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        write!(
            stream,
            "GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )?;
        let mut body = Vec::new();
        stream.read_to_end(&mut body)?;
        times.push(ms(started.elapsed()));
        if body.len() < DATASET_BYTES {
            bail!("short answer: {} bytes", body.len());
        }
    }
    Ok(times)
}
