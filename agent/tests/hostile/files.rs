//! Hostile file servers against a real agent process: a server that stalls mid-body, one that
//! sends endless bytes, a truncated body, a corrupt dataset and a wrong app. Each task fails
//! with its typed cause, the agent's memory stays bounded by the download cap, and an honest
//! task still completes afterwards. (The fetcher's own tests, `fetch.rs`, cover retries, caps
//! and checksums one request at a time; this is the same through the whole pipeline.)

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use edgepool_protocol::hash::sha256;
use edgepool_protocol::messages::{DatasetRef, TaskLimits};
use edgepool_protocol::primitives::{Address, Digest};
use edgepool_protocol::status::ReplicateStatusCause;

use crate::harness::{deal, repo, Agent, Driver, HttpServer};
use crate::support::rumqttd::EmbeddedBroker;

/// Upper bound on what the endless server sends (so the test's own loop is bounded): 1 GiB.
const ENDLESS_LIMIT: usize = 1 << 30;

/// A raw HTTP/1.1 server on loopback whose answers misbehave on purpose.
struct HostileServer {
    port: u16,
}

impl HostileServer {
    fn start() -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                std::thread::spawn(move || serve(stream));
            }
        });
        HostileServer { port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

fn serve(mut stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    match path.as_str() {
        // Headers and 1 KiB of a 1 MiB body, then silence with the connection open.
        "/stall" => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n");
            let _ = stream.write_all(&[7u8; 1024]);
            let _ = stream.flush();
            std::thread::sleep(Duration::from_secs(60));
        }
        // A chunked body that never ends (until the client hangs up or 1 GiB).
        "/endless" => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            let chunk = [0x42u8; 64 * 1024];
            let mut sent = 0;
            while sent < ENDLESS_LIMIT {
                let head = format!("{:x}\r\n", chunk.len());
                if stream.write_all(head.as_bytes()).is_err()
                    || stream.write_all(&chunk).is_err()
                    || stream.write_all(b"\r\n").is_err()
                {
                    return;
                }
                sent += chunk.len();
            }
        }
        // 1 MiB announced, one byte every 300 ms: never stalls long enough for the per-read
        // timeout (slowloris). Bounded: the client hangs up, or 60 s.
        "/drip" => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n");
            for _ in 0..200 {
                if stream
                    .write_all(b"x")
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        // Announces 1 MiB, sends 10 KiB, closes.
        "/truncated" => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n");
            let _ = stream.write_all(&[9u8; 10 * 1024]);
        }
        _ => {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    }
}

#[test]
fn hostile_file_servers_fail_their_task_with_a_typed_cause_and_the_agent_keeps_serving() {
    let app = std::fs::read(repo().join("apps/mandelbrot/mandelbrot.wasm")).unwrap();
    let args =
        std::fs::read_to_string(repo().join("apps/mandelbrot/samples/small/iexec_args")).unwrap();
    let expected = crate::expected_digest(&repo().join("apps/mandelbrot/samples/small/expected"));
    let good_data = b"a dataset the app ignores\n".to_vec();
    let mut files = HashMap::new();
    files.insert("mandelbrot.wasm".to_string(), app.clone());
    files.insert("not-the-app.wasm".to_string(), b"\0asm\x01\0\0\0".to_vec());
    files.insert("data.csv".to_string(), good_data.clone());
    let server = HttpServer::start(files);
    let hostile = HostileServer::start();
    let broker = EmbeddedBroker::start();
    let mut driver = Driver::connect(broker.port());
    let env = [
        ("EDGEPOOL_AGENT_SLOTS", "8".to_string()),
        ("EDGEPOOL_FETCH_TIMEOUT_SECS", "2".to_string()),
        ("EDGEPOOL_FETCH_MAX_DOWNLOAD_MB", "8".to_string()),
    ];
    let mut agent = Agent::start(&broker.url(), driver.scheduler.address(), &env);
    driver.wait_online(&[&agent]);
    // An honest task first: the app is then in the agent's content-addressed cache, so the
    // hostile tasks below differ only in what they name as hostile.
    let warm = driver.assign(
        &deal(&server, "mandelbrot.wasm", &app, args.trim(), 39),
        agent.address,
        TaskLimits::default(),
    );
    let (finalized, _) = driver.run_until_settled(&[warm], &|| agent.log());
    assert!(finalized.contains_key(&warm), "{}", agent.log());
    let baseline_kib = agent.vm_hwm_kib();

    let dataset = |url: String, checksum: Digest| DatasetRef {
        address: Address([0xd1; 20]),
        url,
        checksum,
        filename: "data.csv".into(),
        size_bytes: None,
        encrypted: false,
    };
    use ReplicateStatusCause as C;
    let good_sum = Digest(sha256(&good_data));
    let cases: Vec<(&str, Option<DatasetRef>, bool, C)> = vec![
        (
            "dataset server stalls mid-body",
            Some(dataset(hostile.url("stall"), good_sum)),
            false,
            C::DatasetFileDownloadFailed,
        ),
        (
            "dataset server sends endless bytes",
            Some(dataset(hostile.url("endless"), good_sum)),
            false,
            C::DatasetFileDownloadFailed,
        ),
        (
            "dataset server drips a byte at a time",
            Some(dataset(hostile.url("drip"), good_sum)),
            false,
            C::ContributionTimeout,
        ),
        (
            "dataset body truncated",
            Some(dataset(hostile.url("truncated"), good_sum)),
            false,
            C::DatasetFileDownloadFailed,
        ),
        (
            "corrupt dataset (checksum mismatch)",
            Some(dataset(server.url("data.csv"), Digest(sha256(b"other")))),
            false,
            C::DatasetFileBadChecksum,
        ),
        (
            "app does not match its checksum",
            None,
            true,
            C::AppDownloadFailed,
        ),
    ];
    let mut tasks = Vec::new();
    for (i, (name, data, wrong_app, cause)) in cases.iter().enumerate() {
        let mut d = deal(&server, "mandelbrot.wasm", &app, args.trim(), 40 + i as u8);
        d.dataset = data.clone();
        if name.contains("drips") {
            // Contribution deadline 7 s after the start (7 time refs).
            d.time_ref_seconds = 1;
        }
        if *wrong_app {
            // A checksum nothing in the agent's content-addressed cache has, so the served
            // bytes are fetched and compared.
            d.app.url = server.url("not-the-app.wasm");
            d.app.checksum = Digest(sha256(b"the app the chain registered"));
            d.app.size_bytes = None;
        }
        tasks.push((
            driver.assign(&d, agent.address, TaskLimits::default()),
            *name,
            *cause,
        ));
    }
    // A task failed at its contribution deadline is not contributed, so the scheduler only
    // settles it at its own deadline: wait for the report instead.
    let ids: Vec<_> = tasks
        .iter()
        .filter(|(_, _, cause)| *cause != C::ContributionTimeout)
        .map(|(t, _, _)| *t)
        .collect();
    driver.run_until_settled(&ids, &|| agent.log());
    for (task, name, cause) in &tasks {
        let reported = driver.run_until_failure_reported(*task, &|| agent.log());
        assert_eq!(reported.1, *cause, "{name}: {reported:?}\n{}", agent.log());
        assert!(
            driver.contributions(*task).iter().all(|d| *d != expected),
            "{name}"
        );
        println!("{name:<40} {reported:?}");
    }
    agent.assert_running();
    let peak_kib = agent.vm_hwm_kib();
    // Nothing was buffered beyond the download cap (8 MiB) and the HTTP client's buffers.
    let bound_kib = baseline_kib + 8 * 1024 + 8 * 1024;
    println!("VmHWM: baseline {baseline_kib} KiB, after the hostile servers {peak_kib} KiB, bound {bound_kib} KiB");
    assert!(
        peak_kib <= bound_kib,
        "peak {peak_kib} KiB over {bound_kib} KiB"
    );

    // Nothing of the hostile bodies stayed on disk: the cache holds no partial download.
    let cache = agent.dir.path().join("state/cache");
    let leftovers: Vec<_> = std::fs::read_dir(&cache)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.iter().all(|p| std::fs::metadata(p)
            .map(|m| m.len() < 1 << 20)
            .unwrap_or(true)),
        "{leftovers:?}"
    );

    // An honest task still completes with the recorded digest.
    let honest = driver.assign(
        &deal(&server, "mandelbrot.wasm", &app, args.trim(), 60),
        agent.address,
        TaskLimits::default(),
    );
    let (finalized, _) = driver.run_until_settled(&[honest], &|| agent.log());
    assert!(finalized.contains_key(&honest), "{}", agent.log());
    assert_eq!(driver.contributions(honest), vec![expected]);
}
