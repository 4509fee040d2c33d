//! Operator commands as a real process: the systemd notify protocol of `run` (READY, STATUS,
//! WATCHDOG, STOPPING over a real datagram socket), `init` idempotency and `--force`,
//! `capacity --json` on a fake GPU machine, and `tasks` on an empty journal.

#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::rumqttd::EmbeddedBroker;

const POOL: &str = "0x1111111111111111111111111111111111111111";
const SCHEDULER: &str = "0x2222222222222222222222222222222222222222";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgepool-agent"))
}

fn init(dir: &Path, broker: &str, password: &str, extra: &[&str]) -> Output {
    let pw = dir.join("password");
    std::fs::write(&pw, password).unwrap();
    bin()
        .args(["init", "--json", "--config"])
        .arg(dir.join("agent.toml"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--broker", broker, "--pool", POOL, "--scheduler", SCHEDULER])
        .arg("--password-file")
        .arg(&pw)
        .args(extra)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn init_is_idempotent_refuses_a_wrong_password_and_force_sets_the_old_key_aside() {
    let dir = tempfile::tempdir().unwrap();
    let first = json(&init(dir.path(), "mqtt://127.0.0.1:1883", "pw one\n", &[]));
    assert_eq!(first["created_key"], true);
    assert_eq!(first["wrote_config"], true);
    let keystore = PathBuf::from(first["keystore"].as_str().unwrap());
    let bytes = std::fs::read(&keystore).unwrap();

    let second = json(&init(dir.path(), "mqtt://127.0.0.1:1883", "pw one\n", &[]));
    assert_eq!(second["address"], first["address"]);
    assert_eq!(second["created_key"], false);
    assert_eq!(second["wrote_config"], false);
    assert_eq!(std::fs::read(&keystore).unwrap(), bytes);

    let wrong = init(dir.path(), "mqtt://127.0.0.1:1883", "pw two\n", &[]);
    assert_eq!(wrong.status.code(), Some(7));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("wrong keystore password"), "{stderr}");
    assert!(!stderr.contains("pw two"));

    let forced = json(&init(
        dir.path(),
        "mqtt://127.0.0.1:1883",
        "pw two\n",
        &["--force"],
    ));
    assert_eq!(forced["created_key"], true);
    assert_ne!(forced["address"], first["address"]);
    let kept: Vec<_> = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("replaced"))
        .collect();
    assert_eq!(kept.len(), 1, "the replaced keystore is kept: {kept:?}");

    let bad = init(
        dir.path(),
        "http://127.0.0.1:1883",
        "pw two\n",
        &["--force"],
    );
    assert_eq!(bad.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("broker.url"));
}

#[test]
fn capacity_json_on_a_fake_gpu_machine_reports_the_gpus_and_the_gpu_tag() {
    let dir = tempfile::tempdir().unwrap();
    json(&init(dir.path(), "mqtt://127.0.0.1:1883", "pw\n", &[]));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/roots/gpu-machine");
    let out = bin()
        .args(["capacity", "--json", "--config"])
        .arg(dir.path().join("agent.toml"))
        .env("EDGEPOOL_AGENT_SYSTEM_ROOT", &root)
        .output()
        .unwrap();
    let report = json(&out);
    assert_eq!(report["gpus"].as_array().unwrap().len(), 2, "{report}");
    assert!(report["tag_names"].as_str().unwrap().contains("gpu"));
    assert!(report["fuel_per_second"].as_u64().unwrap() > 0);
    assert!(report["tee"].is_null());
}

#[test]
fn tasks_and_status_read_an_empty_journal() {
    let dir = tempfile::tempdir().unwrap();
    json(&init(dir.path(), "mqtt://127.0.0.1:1883", "pw\n", &[]));
    let config = dir.path().join("agent.toml");
    // No journal yet: a clear error, not an empty answer.
    let out = bin()
        .args(["tasks", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    // Create it with the store's own migration, as `run` does.
    edgepool_agent::store::Store::open(&dir.path().join("state")).unwrap();
    let tasks = json(
        &bin()
            .args(["tasks", "--json", "--config"])
            .arg(&config)
            .output()
            .unwrap(),
    );
    assert_eq!(tasks, serde_json::json!([]));
    let status = json(
        &bin()
            .args(["status", "--json", "--config"])
            .arg(&config)
            .output()
            .unwrap(),
    );
    assert_eq!(status["outbox_pending"], 0);
    assert_eq!(
        status["schema_version"],
        edgepool_agent::store::SCHEMA_VERSION
    );
}

#[test]
fn run_speaks_the_systemd_notify_protocol() {
    let broker = EmbeddedBroker::start();
    let dir = tempfile::tempdir().unwrap();
    json(&init(dir.path(), &broker.url(), "pw\n", &[]));
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut child = bin()
        .args(["run", "--config"])
        .arg(dir.path().join("agent.toml"))
        .env(
            "EDGEPOOL_IDENTITY_PASSWORD_FILE",
            dir.path().join("password"),
        )
        .env("EDGEPOOL_AGENT_MIN_FREE_DISK_MB", "1")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(15);
    let has =
        |seen: &[String], what: &str| seen.iter().any(|m| m.lines().any(|l| l.starts_with(what)));
    while Instant::now() < deadline
        && !(has(&seen, "READY=1") && seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2)
    {
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    assert!(has(&seen, "READY=1"), "{seen:?}");
    assert!(has(&seen, "STATUS=connected, 0/1 slots busy"), "{seen:?}");
    assert!(
        seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2,
        "the watchdog is fed at half of WATCHDOG_USEC: {seen:?}"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && !has(&seen, "STOPPING=1") {
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    assert!(has(&seen, "STOPPING=1"), "{seen:?}");
    assert!(child.wait().unwrap().success());
}
