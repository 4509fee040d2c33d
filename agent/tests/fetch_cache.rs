//! The download cache against a real HTTP server and a real journal: hits, LRU eviction,
//! items kept out of it, sweeping after a crash, and a throughput measurement.
#![allow(clippy::unwrap_used)]

mod fetch_support;

use std::time::{Duration, Instant};

use edgepool_agent::config::FetchSection;
use edgepool_agent::fetch::{Origin, Role, PARTIAL_PREFIX};
use fetch_support::server::{Behaviour, TestServer};
use fetch_support::{body, config, digest, env, env_with, hex_name, KIB, NO_CAP};

#[tokio::test]
async fn a_download_is_verified_cached_and_not_downloaded_again() {
    let app = body(100 * KIB, 1);
    let server = TestServer::start();
    server.route("/app.wasm", app.clone(), Behaviour::Serve);
    let env = env(3);
    let url = server.url("/app.wasm");

    let first = env
        .fetch(&url, Some(digest(&app)), Role::App, NO_CAP)
        .await
        .unwrap();
    assert_eq!(first.origin, Origin::Cached);
    assert_eq!(first.size, app.len() as u64);
    assert_eq!(first.sha256, digest(&app));
    assert_eq!(first.path, env.fetcher.cache_dir().join(hex_name(&app)));
    assert_eq!(std::fs::read(&first.path).unwrap(), app);

    let second = env
        .fetch(&url, Some(digest(&app)), Role::App, NO_CAP)
        .await
        .unwrap();
    assert_eq!(second.origin, Origin::CacheHit);
    assert_eq!(second.path, first.path);
    assert_eq!(server.requests("/app.wasm"), 1);
    assert_eq!(env.cache_files(), vec![hex_name(&app)]);
    assert_eq!(env.cached_bytes(), app.len() as u64);
}

#[tokio::test]
async fn an_item_without_checksum_is_a_temporary_file_deleted_on_drop() {
    let data = body(20 * KIB, 8);
    let server = TestServer::start();
    server.route("/input.csv", data.clone(), Behaviour::Serve);
    let env = env(0);
    let got = env
        .fetch(&server.url("/input.csv"), None, Role::InputFile(0), NO_CAP)
        .await
        .unwrap();
    assert_eq!(got.origin, Origin::Temporary);
    assert_eq!(got.sha256, digest(&data));
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
    assert_eq!(env.cached_bytes(), 0);
    let path = got.path.clone();
    drop(got);
    assert!(!path.exists());
    assert!(env.cache_files().is_empty());
}

#[tokio::test]
async fn the_least_recently_used_item_is_evicted_when_the_cache_is_full() {
    let a = body(500 * KIB, 11);
    let b = body(300 * KIB, 12);
    let c = body(300 * KIB, 13);
    let server = TestServer::start();
    for (path, data) in [("/a", &a), ("/b", &b), ("/c", &c)] {
        server.route(path, data.clone(), Behaviour::Serve);
    }
    let env = env_with(FetchSection {
        cache_max_mb: 1,
        ..config(0)
    });
    let fetch = |path: &'static str, data: &Vec<u8>| {
        let url = server.url(path);
        let expected = digest(data);
        let env = &env;
        async move {
            env.fetch(&url, Some(expected), Role::App, NO_CAP)
                .await
                .unwrap()
        }
    };
    fetch("/a", &a).await;
    fetch("/b", &b).await;
    assert_eq!(fetch("/a", &a).await.origin, Origin::CacheHit);
    fetch("/c", &c).await; // 1,100 KiB > 1 MiB: b is the least recently used

    let mut expected = vec![hex_name(&a), hex_name(&c)];
    expected.sort();
    assert_eq!(env.cache_files(), expected);
    assert_eq!(env.cached_bytes(), (a.len() + c.len()) as u64);
    assert_eq!(fetch("/b", &b).await.origin, Origin::Cached);
    assert_eq!(server.requests("/b"), 2);
    assert_eq!(server.requests("/a"), 1);
}

#[tokio::test]
async fn an_item_larger_than_the_whole_cache_is_kept_out_of_it() {
    let data = body(1024 * KIB + 1, 14);
    let server = TestServer::start();
    server.route("/huge", data.clone(), Behaviour::Serve);
    let env = env_with(FetchSection {
        cache_max_mb: 1,
        ..config(0)
    });
    let got = env
        .fetch(
            &server.url("/huge"),
            Some(digest(&data)),
            Role::Dataset,
            NO_CAP,
        )
        .await
        .unwrap();
    assert_eq!(got.origin, Origin::Temporary);
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
    assert_eq!(env.cached_bytes(), 0);
    drop(got);
    assert!(env.cache_files().is_empty());
}

#[tokio::test]
async fn a_cached_file_that_vanished_is_downloaded_again() {
    let data = body(10 * KIB, 15);
    let server = TestServer::start();
    server.route("/d", data.clone(), Behaviour::Serve);
    let env = env(0);
    let first = env
        .fetch(&server.url("/d"), Some(digest(&data)), Role::App, NO_CAP)
        .await
        .unwrap();
    std::fs::remove_file(&first.path).unwrap();
    let second = env
        .fetch(&server.url("/d"), Some(digest(&data)), Role::App, NO_CAP)
        .await
        .unwrap();
    assert_eq!(second.origin, Origin::Cached);
    assert_eq!(server.requests("/d"), 2);
}

#[tokio::test]
async fn sweep_removes_leftovers_and_keeps_indexed_files() {
    let data = body(10 * KIB, 17);
    let server = TestServer::start();
    server.route("/d", data.clone(), Behaviour::Serve);
    let env = env(0);
    env.fetch(&server.url("/d"), Some(digest(&data)), Role::App, NO_CAP)
        .await
        .unwrap();
    let dir = env.fetcher.cache_dir().to_path_buf();
    std::fs::write(dir.join(format!("{PARTIAL_PREFIX}crashed")), b"half").unwrap();
    std::fs::write(dir.join(hex_name(b"unindexed")), b"unindexed").unwrap();
    assert_eq!(env.fetcher.sweep(&env.store).unwrap(), 2);
    assert_eq!(env.cache_files(), vec![hex_name(&data)]);
}

/// Throughput of a 64 MiB download into the cache, against a plain `std::io::copy` of the same
/// response from the same server. Run with
/// `cargo test --release -p edgepool-agent --test fetch_cache -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "measurement, not a check"]
async fn measure_throughput_of_a_64_mib_download() {
    let data = body(64 * 1024 * KIB, 18);
    let server = TestServer::start();
    server.route("/big", data.clone(), Behaviour::Serve);
    let mib = data.len() as f64 / (1024.0 * 1024.0);
    for round in 0..3 {
        let env = env_with(FetchSection {
            max_download_mb: 128,
            cache_max_mb: 128,
            ..config(0)
        });
        let started = Instant::now();
        let got = env
            .fetch(
                &server.url("/big"),
                Some(digest(&data)),
                Role::Dataset,
                NO_CAP,
            )
            .await
            .unwrap();
        let fetch = started.elapsed();
        assert_eq!(got.size, data.len() as u64);

        // The same bytes from a local file: hashing, writing and syncing without the network.
        let local = env.root.join("big.bin");
        std::fs::write(&local, &data).unwrap();
        let env = env_with(FetchSection {
            max_download_mb: 128,
            cache_max_mb: 128,
            ..config(0)
        });
        let started = Instant::now();
        env.fetch(
            &format!("file://{}", local.display()),
            Some(digest(&data)),
            Role::Dataset,
            NO_CAP,
        )
        .await
        .unwrap();
        let file = started.elapsed();

        let url = server.url("/big");
        let plain = tokio::task::spawn_blocking(move || plain_copy(&url))
            .await
            .unwrap();
        println!(
            "round {round}: http fetch into cache {:.0} MiB/s ({fetch:?}); file:// fetch into cache {:.0} MiB/s ({file:?}); plain io::copy from the socket {:.0} MiB/s ({plain:?})",
            mib / fetch.as_secs_f64(),
            mib / file.as_secs_f64(),
            mib / plain.as_secs_f64()
        );
    }
    println!("curl: curl -o /dev/null {}", server.url("/big"));
    if std::env::var_os("FETCH_BENCH_WAIT").is_some() {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// GET over a raw socket, copied into `io::sink` (headers included: a few hundred bytes).
fn plain_copy(url: &str) -> Duration {
    use std::io::Write;
    let authority = url.trim_start_matches("http://").split('/').next().unwrap();
    let path = &url[url.find(authority).unwrap() + authority.len()..];
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    std::io::copy(&mut stream, &mut std::io::sink()).unwrap();
    started.elapsed()
}
