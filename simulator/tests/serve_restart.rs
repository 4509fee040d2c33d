//! `edgepool-sim serve` killed (`kill -9`) and started again on the same state directory, as
//! processes with real agents: every task completes exactly once with money conserved
//! (Mosquitto, acknowledgements after the journal commit), a TEE task on an encrypted dataset
//! assigned before the kill gets its secrets from the restarted SMS, and the store and the
//! embedded broker come back on their ports (or the serve says why not).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use edgepool_simulator::agents::AgentProcess;
use edgepool_simulator::broker::MosquittoBroker;
use edgepool_simulator::ledger::Ledger;
use edgepool_simulator::serve::ServeInfo;
use serde_json::Value;

#[path = "support/http.rs"]
mod http;
use http::http_get;

const HELLO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../apps/hello/hello.wasm");
const CSV_STATS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../apps/csv-stats/csv-stats.wasm"
);
const WEATHER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/data/weather.csv");

/// A serve process, `kill -9`ed when dropped.
struct Serve {
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Serve {
    /// Starts `serve --state STATE [--broker URL]` and waits for its `serve.json` (removed first,
    /// so that a restart is only ready once it wrote it again).
    fn start(state: &Path, broker: Option<&str>, run: u32) -> Serve {
        let info = state.join("serve.json");
        let _ = std::fs::remove_file(&info);
        let log = state.join(format!("serve-{run}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_edgepool-sim"));
        command.args(["serve", "--state"]).arg(state);
        if let Some(url) = broker {
            command.args(["--broker", url]);
        }
        let child = command
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut serve = Serve {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !info.exists() {
            assert!(serve.running(), "serve exited:\n{}", serve.log());
            assert!(Instant::now() < deadline, "no serve.json:\n{}", serve.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        serve
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL, as a crash.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            let status = child.wait().unwrap();
            assert!(!status.success());
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgepool-sim"))
}

fn info(state: &Path) -> ServeInfo {
    serde_json::from_slice(&std::fs::read(state.join("serve.json")).unwrap()).unwrap()
}

fn report(state: &Path) -> Value {
    let out = sim()
        .args(["report", "--state"])
        .arg(state)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn deal(state: &Path, args: &[&str]) -> Vec<String> {
    let out = sim()
        .arg("deal")
        .args(args)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    answer["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn count(report: &Value, f: impl Fn(&Value) -> bool) -> usize {
    report["tasks"]
        .as_array()
        .map_or(0, |ts| ts.iter().filter(|t| f(t)).count())
}

fn settled(task: &Value) -> bool {
    task["status"] == "COMPLETED" && task["settlement"]["status"] == "COMPLETED"
}

/// Polls the report until `done` or `timeout`; the last report.
fn wait_report(state: &Path, timeout: Duration, done: impl Fn(&Value) -> bool) -> (bool, Value) {
    let deadline = Instant::now() + timeout;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        last = report(state);
        if done(&last) {
            return (true, last);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (false, last)
}

/// The ledger in the state dir (read after the serve is gone): balances plus frozen amounts
/// equal the supply.
fn money_conserved(state: &Path) -> bool {
    let ledger = Ledger::open(&state.join("ledger.sqlite")).unwrap();
    ledger.total_money() == u128::from(ledger.supply())
}

#[test]
fn a_serve_killed_twice_mid_deal_on_mosquitto_finishes_every_task_exactly_once() {
    let broker = MosquittoBroker::start().expect("Mosquitto (/usr/sbin/mosquitto)");
    let url = broker.url();
    let state = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(state.path(), Some(&url), 0);
    let first = info(state.path());
    let agents: Vec<AgentProcess> = (0..2)
        .map(|_| AgentProcess::start(&url, first.pool, first.scheduler, 3).unwrap())
        .collect();
    // Trust 1, one replica per task: every message of every task matters (a lost contribution
    // or reveal would leave its replica waiting until the pool gives it up, which fails below).
    const VOLUME: usize = 24;
    let tasks = deal(
        state.path(),
        &["--app", HELLO, "--args", "crash", "--volume", "24"],
    );
    assert_eq!(tasks.len(), VOLUME);
    let started = Instant::now();
    let mut kills = Vec::new();
    for (run, fraction) in [(1, 6), (2, 14)] {
        // Kill once `fraction` tasks are settled, mid-deal.
        let (reached, last) = wait_report(state.path(), Duration::from_secs(90), |r| {
            count(r, settled) >= fraction
        });
        assert!(reached, "{last:#}\n{}", serve.log());
        let done_before = count(&last, settled);
        serve.kill9();
        let killed = Instant::now();
        serve = Serve::start(state.path(), Some(&url), run);
        kills.push((started.elapsed(), done_before, killed.elapsed()));
        let again = info(state.path());
        assert_eq!(again.store, first.store, "the store moved");
        assert_eq!(again.scheduler, first.scheduler);
    }
    let (all, last) = wait_report(state.path(), Duration::from_secs(120), |r| {
        count(r, settled) == VOLUME
    });
    let elapsed = started.elapsed();
    assert!(
        all,
        "{last:#}\nserve:\n{}\nagents:\n{}",
        serve.log(),
        agents.iter().map(AgentProcess::logs).collect::<String>()
    );
    let mut ids = BTreeSet::new();
    for task in last["tasks"].as_array().unwrap() {
        assert!(ids.insert(task["task_id"].as_str().unwrap().to_string()));
        // Its one contributor agreed and was rewarded once, nobody slashed, no replica given
        // up (a lost message would have timed its replica out).
        let agreed: Vec<&str> = task["agreed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(agreed.len(), 1, "{task:#}");
        let rewarded: Vec<&str> = task["settlement"]["rewarded"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[0].as_str().unwrap())
            .collect();
        assert_eq!(rewarded, agreed, "{task:#}");
        assert!(task["settlement"]["slashed"].as_array().unwrap().is_empty());
        let replicas = task["replicas"].as_array().unwrap();
        assert_eq!(replicas.len(), 1, "{task:#}");
        assert!(replicas[0]["lost"].is_null(), "{task:#}");
        assert_eq!(replicas[0]["state"], "Completed", "{task:#}");
        assert!(task["result_link"].is_string(), "{task:#}");
    }
    assert_eq!(
        ids,
        tasks.iter().cloned().collect::<BTreeSet<_>>(),
        "the tasks reported are the tasks submitted"
    );
    let refused: Vec<&str> = last["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        !refused
            .iter()
            .any(|r| r.contains("conflicting") || r.contains("already contributed")),
        "{refused:#?}"
    );
    let replays = refused
        .iter()
        .filter(|r| r.contains("must be above"))
        .count();
    let mut kinds: Vec<String> = refused
        .iter()
        .map(|r| {
            r.split(':')
                .nth(1)
                .unwrap_or(r)
                .trim()
                .chars()
                .take(60)
                .collect()
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    drop(serve);
    assert!(money_conserved(state.path()));
    eprintln!(
        "figures: {VOLUME} tasks trust 1 on 2 agents x 3 slots; kills at {kills:?} (elapsed, \
         settled then); all settled after {elapsed:?}; {} messages refused after restarts, {replays} \
         of them replays (redelivered, already journaled); refusals: {kinds:?}",
        refused.len()
    );
}

#[test]
fn a_tee_task_on_an_encrypted_dataset_assigned_before_a_kill_gets_its_secrets_after_it() {
    let broker = MosquittoBroker::start().expect("Mosquitto (/usr/sbin/mosquitto)");
    let url = broker.url();
    let state = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(state.path(), Some(&url), 0);
    let first = info(state.path());
    let agent = AgentProcess::start_with_env(
        &url,
        first.pool,
        first.scheduler,
        1,
        &[("EDGEPOOL_AGENT_ATTESTATION", "software")],
    )
    .unwrap();
    let (online, last) = wait_report(state.path(), Duration::from_secs(30), |r| {
        r["workers"]
            .as_array()
            .is_some_and(|ws| ws.iter().any(|w| w["online"] == true))
    });
    assert!(online, "{last:#}\n{}", agent.logs());
    // The agent is stopped before the deal: its assignment (and the enclave challenge the SMS
    // made for it) waits at the broker while the serve is killed and started again.
    let pid = agent.pid().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let plain = std::fs::read_to_string(WEATHER).unwrap();
    let tasks = deal(
        state.path(),
        &[
            "--app",
            CSV_STATS,
            "--dataset",
            WEATHER,
            "--encrypt-dataset",
            "--tag",
            "tee",
            "--args",
            "temp_c",
        ],
    );
    assert_eq!(tasks.len(), 1);
    let (assigned, last) = wait_report(state.path(), Duration::from_secs(10), |r| {
        r["tasks"][0]["replicas"]
            .as_array()
            .is_some_and(|rs| !rs.is_empty())
    });
    assert!(assigned, "{last:#}");
    // Only the encrypted dataset was published.
    let published: Vec<_> = walk(&state.path().join("store/files/datasets"));
    assert_eq!(published.len(), 1);
    let bytes = std::fs::read(&published[0]).unwrap();
    assert!(!bytes.windows(8).any(|w| plain.as_bytes().starts_with(w)));
    // The SMS's vault is private to the user.
    let mode = {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(state.path().join("sms.sqlite"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode, 0o600);
    serve.kill9();
    serve = Serve::start(state.path(), Some(&url), 1);
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    let (done, last) = wait_report(state.path(), Duration::from_secs(60), |r| {
        r["tasks"][0]["status"] == "COMPLETED"
    });
    assert!(
        done,
        "{last:#}\nserve:\n{}\nagent:\n{}",
        serve.log(),
        agent.logs()
    );
    let task = &last["tasks"][0];
    assert_eq!(
        task["agreed"][0],
        Value::String(agent.address().to_string())
    );
    // The result was computed on the decrypted dataset: csv-stats counted its rows.
    let link = task["result_link"].as_str().unwrap();
    let archive = http_get(link).1;
    let tree = edgepool_protocol::result_archive::unzip_to_tree(
        &archive,
        &edgepool_protocol::result_archive::ExtractLimits::default(),
    )
    .unwrap();
    let stats: String = tree
        .files()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    let rows = plain.lines().filter(|l| !l.trim().is_empty()).count() - 1;
    assert!(stats.contains(&format!("\"rows\": {rows}")), "{stats}");
    assert!(stats.contains("\"name\": \"temp_c\""), "{stats}");
    // No secret request was refused: the restarted SMS knew the challenge.
    let refused = last["refused"].to_string();
    assert!(!refused.contains("challenge"), "{refused}");
    assert!(
        !agent.logs().contains("UNKNOWN_CHALLENGE"),
        "{}",
        agent.logs()
    );
    drop(serve);
    assert!(money_conserved(state.path()));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_restarted_serve_keeps_its_store_and_broker_ports_and_says_so_when_one_is_taken() {
    let state = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(state.path(), None, 0);
    let first = info(state.path());
    let agent = AgentProcess::start(&first.broker, first.pool, first.scheduler, 1).unwrap();
    deal(state.path(), &["--app", HELLO, "--args", "before"]);
    let (done, last) = wait_report(state.path(), Duration::from_secs(40), |r| {
        count(r, settled) == 1
    });
    assert!(done, "{last:#}\n{}", agent.logs());
    let link = last["tasks"][0]["result_link"]
        .as_str()
        .unwrap()
        .to_string();
    let app_url = format!("{}/apps/hello.wasm", first.store);
    let before = http_get(&link);
    assert_eq!(before.0, 200);

    serve.kill9();
    serve = Serve::start(state.path(), None, 1);
    let again = info(state.path());
    assert_eq!(again.store, first.store);
    assert_eq!(again.broker, first.broker);
    // Links handed out before the kill still answer, with the same bytes.
    assert!(http_get(&link) == before, "the result link changed");
    let app = http_get(&app_url);
    assert_eq!(app.0, 200);
    assert!(app.1 == std::fs::read(HELLO).unwrap(), "the app changed");
    // The agent (configured with the old broker URL) reconnects and takes a second deal.
    deal(state.path(), &["--app", HELLO, "--args", "after"]);
    let (done, last) = wait_report(state.path(), Duration::from_secs(60), |r| {
        count(r, settled) == 2
    });
    assert!(done, "{last:#}\nserve:\n{}\n{}", serve.log(), agent.logs());
    // The ready agent config was made once, not again on restart.
    assert!(state.path().join("agent/agent.toml").exists());

    // The store's port taken by someone else: the serve refuses to start, naming the file.
    serve.kill9();
    let port: u16 = std::fs::read_to_string(state.path().join("store.port"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let out = sim()
        .args(["serve", "--state"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&port.to_string()) && stderr.contains("store.port"),
        "{stderr}"
    );
}
