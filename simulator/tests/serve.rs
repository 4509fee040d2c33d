//! `edgepool-sim serve`, `deal` and `report` as processes: a serve with its embedded broker, a
//! real agent configured from what the serve printed, a deal submitted by the CLI, and the report
//! polled until the task completes.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgepool_simulator::agents::AgentProcess;
use edgepool_simulator::serve::ServeInfo;

#[path = "support/http.rs"]
mod http;
use http::http_get;

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgepool-sim"))
}

/// Starts `edgepool-sim serve --state STATE` and waits (bounded) for what it prints to
/// `STATE/serve.json`; the serve is killed when the first value drops.
fn serve(state: &std::path::Path) -> (Killed, ServeInfo) {
    let serve = Killed(
        sim()
            .args(["serve", "--state"])
            .arg(state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let info_path = state.join("serve.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !info_path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let info = serde_json::from_slice(&std::fs::read(&info_path).unwrap()).unwrap();
    (serve, info)
}

#[test]
fn a_deal_submitted_to_a_running_serve_completes_on_an_external_agent_and_is_reported() {
    let state = tempfile::tempdir().unwrap();
    let (_serve, info) = serve(state.path());
    let agent = AgentProcess::start(&info.broker, info.pool, info.scheduler, 1).unwrap();

    let app = concat!(env!("CARGO_MANIFEST_DIR"), "/../apps/hello/hello.wasm");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut submitted = false;
    let mut last = String::new();
    while Instant::now() < deadline {
        if !submitted {
            // The agent must be online first: before that the deal waits, which is fine too.
            let out = sim()
                .args(["deal", "--args", "served", "--app", app, "--state"])
                .arg(state.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
            submitted = true;
        }
        let out = sim()
            .args(["report", "--state"])
            .arg(state.path())
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        let report: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
        let task = &report["tasks"][0];
        if task["status"] == "COMPLETED" && task["settlement"]["status"] == "COMPLETED" {
            let me = serde_json::Value::String(agent.address().to_string());
            assert_eq!(task["agreed"][0], me);
            // The ledger (in the state dir) settled it: the lone contributor is rewarded.
            assert_eq!(task["settlement"]["rewarded"][0][0], me, "{last}");
            assert!(task["settlement"]["slashed"]
                .as_array()
                .is_some_and(Vec::is_empty));
            let worker = report["workers"]
                .as_array()
                .and_then(|ws| ws.iter().find(|w| w["address"] == me))
                .cloned()
                .unwrap_or_default();
            assert!(worker["score"].is_u64(), "{last}");
            assert!(worker["stake"].as_str().is_some_and(|s| s.contains("nRLC")));
            assert!(state.path().join("ledger.sqlite").exists());
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "the task did not complete; report: {last}\nagent log:\n{}",
        agent.logs()
    );
}

#[test]
fn a_served_tee_deal_with_an_encrypted_result_decrypts_with_the_serve_beneficiary_key() {
    use edgepool_protocol::result_archive::{unzip_to_tree, ExtractLimits};

    let state = tempfile::tempdir().unwrap();
    let (_serve, info) = serve(state.path());
    let agent = AgentProcess::start_with_env(
        &info.broker,
        info.pool,
        info.scheduler,
        1,
        &[("EDGEPOOL_AGENT_ATTESTATION", "software")],
    )
    .unwrap();
    let app = concat!(env!("CARGO_MANIFEST_DIR"), "/../apps/hello/hello.wasm");

    // Without the tee tag the CLI refuses, as iExec offers result encryption to TEE tasks only.
    let out = sim()
        .args(["deal", "--encrypt-result", "--app", app, "--state"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tag tee"));

    let out = sim()
        .args([
            "deal",
            "--tag",
            "tee",
            "--encrypt-result",
            "--args",
            "sealed",
        ])
        .args(["--app", app, "--state"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut last = String::new();
    while Instant::now() < deadline {
        let out = sim()
            .args(["report", "--state"])
            .arg(state.path())
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        let report: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
        let task = &report["tasks"][0];
        if task["status"] != "COMPLETED" {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        // What the README tells a beneficiary to do: fetch, decrypt with the CLI, digest.
        let (status, encrypted) = http_get(task["result_link"].as_str().unwrap());
        assert_eq!(status, 200);
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("result.zip"), &encrypted).unwrap();
        let bin = edgepool_simulator::agents::agent_binary().unwrap();
        let out = Command::new(bin)
            .args(["result", "decrypt", "--private-key"])
            .arg(state.path().join("beneficiary_key.pem"))
            .arg(work.path().join("result.zip"))
            .arg(work.path().join("iexec_out.zip"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let clear = std::fs::read(work.path().join("iexec_out.zip")).unwrap();
        let tree = unzip_to_tree(&clear, &ExtractLimits::default()).unwrap();
        let task_id = task["task_id"].as_str().unwrap().parse().unwrap();
        let digest = edgepool_protocol::digest::result_digest(&tree, "").unwrap();
        assert_eq!(
            serde_json::Value::String(
                edgepool_protocol::poco::result_hash(&task_id, &digest).to_string()
            ),
            task["consensus_hash"],
            "{last}"
        );
        let text: String = tree
            .files()
            .map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned())
            .collect();
        assert!(text.contains("sealed"), "{text}");
        // The upload itself was not readable without the key.
        assert!(!encrypted.windows(6).any(|w| w == b"sealed"));
        return;
    }
    panic!(
        "the task did not complete; report: {last}\nagent log:\n{}",
        agent.logs()
    );
}

/// A deal naming its dataset (or app, or an input file) with anything but one plain file name is
/// refused with the reason, and nothing of it reaches the store: not the app published before the
/// dataset, not the dataset.
#[test]
fn a_deal_with_a_file_name_that_is_not_plain_is_refused_before_anything_is_published() {
    use base64::Engine as _;
    use edgepool_simulator::serve::{request, DealBody, NamedFile};
    let state = tempfile::tempdir().unwrap();
    let (_serve, info) = serve(state.path());
    let file = |name: &str, bytes: &[u8]| NamedFile {
        name: name.to_string(),
        base64: base64::engine::general_purpose::STANDARD.encode(bytes),
    };
    let app = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../apps/hello/hello.wasm"
    ))
    .unwrap();
    let body = |app_name: &str, dataset: &str, input: &str| DealBody {
        app: file(app_name, &app),
        dataset: Some(file(dataset, b"the dataset")),
        input_files: vec![file(input, b"an input")],
        args: String::new(),
        tag: String::new(),
        trust: 1,
        time_ref_secs: 60,
        volume: 1,
        replicas: 1,
        result_encryption: false,
        encrypt_dataset: false,
    };
    let files = state.path().join("store").join("files");
    for (deal, kind) in [
        (body("hello.wasm", "sub/data.bin", "in.txt"), "dataset"),
        (body("hello.wasm", "..", "in.txt"), "dataset"),
        (body("apps/hello.wasm", "data.bin", "in.txt"), "app"),
        (body("hello.wasm", "data.bin", "a\\b"), "input file"),
    ] {
        let (status, answer) = request(
            &info.store,
            "POST",
            "/deals",
            &serde_json::to_vec(&deal).unwrap(),
        )
        .unwrap();
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer.contains(&format!("{kind} name")) && answer.contains("one plain file name"),
            "{answer}"
        );
        let published: Vec<_> = walk(&files);
        assert!(
            published.is_empty(),
            "published before the refusal: {published:?}"
        );
    }
    // The same deal with plain names is taken (the refusals above were about the names).
    let (status, answer) = request(
        &info.store,
        "POST",
        "/deals",
        &serde_json::to_vec(&body("hello.wasm", "data.bin", "in.txt")).unwrap(),
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(!walk(&files).is_empty());
}

/// Every file below `dir` (none when it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}
