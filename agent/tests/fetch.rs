//! Downloads against a real HTTP server (tiny_http on a loopback port), real files and a real
//! journal: checksums, size caps, timeouts, bounded retries, IPFS gateways, redirects, and the
//! iExec cause of every failure. The cache itself is in `fetch_cache.rs`.
#![allow(clippy::unwrap_used)]

mod fetch_support;

use std::time::{Duration, Instant};

use edgepool_agent::config::FetchSection;
use edgepool_agent::fetch::{cause, FetchError, Origin, Role};
use edgepool_protocol::status::ReplicateStatusCause as Cause;
use fetch_support::server::{Behaviour, TestServer};
use fetch_support::{body, config, digest, env, env_with, KIB, NO_CAP};

#[tokio::test]
async fn a_body_without_content_length_is_streamed_and_verified() {
    let data = body(300 * KIB, 2);
    let server = TestServer::start();
    server.route("/d", data.clone(), Behaviour::Chunked);
    let env = env(0);
    let got = env
        .fetch(
            &server.url("/d"),
            Some(digest(&data)),
            Role::Dataset,
            NO_CAP,
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
}

#[tokio::test]
async fn transient_failures_are_retried_until_one_succeeds() {
    let data = body(10 * KIB, 3);
    let server = TestServer::start();
    server.route("/d", data.clone(), Behaviour::FailFirst(2));
    let env = env(3);
    let got = env
        .fetch(
            &server.url("/d"),
            Some(digest(&data)),
            Role::Dataset,
            NO_CAP,
        )
        .await
        .unwrap();
    assert_eq!(got.origin, Origin::Cached);
    assert_eq!(server.requests("/d"), 3);
}

#[tokio::test]
async fn retries_are_bounded_by_the_configuration() {
    let server = TestServer::start();
    server.route("/d", b"x".to_vec(), Behaviour::FailFirst(usize::MAX));
    let env = env(2);
    let err = env
        .fetch(&server.url("/d"), None, Role::Dataset, NO_CAP)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Http { status: 503, .. }), "{err}");
    assert_eq!(server.requests("/d"), 3, "one try and two retries");
    assert_eq!(cause(Role::Dataset, &err), Cause::DatasetFileDownloadFailed);
    assert!(env.cache_files().is_empty());
}

#[tokio::test]
async fn a_missing_file_is_not_retried() {
    let server = TestServer::start();
    let env = env(3);
    let err = env
        .fetch(&server.url("/nothing"), None, Role::InputFile(0), NO_CAP)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Http { status: 404, .. }), "{err}");
    assert_eq!(server.requests("/nothing"), 1);
    assert_eq!(
        cause(Role::InputFile(0), &err),
        Cause::InputFilesDownloadFailed
    );
}

#[tokio::test]
async fn a_stalled_server_times_out_and_is_retried_a_bounded_number_of_times() {
    let server = TestServer::start();
    server.route("/slow", body(64 * KIB, 4), Behaviour::Stall);
    let env = env_with(config(1));
    let fetcher_timeout = Duration::from_millis(300);
    let env = env.map_fetcher(|f| f.with_timeout(fetcher_timeout));
    let started = Instant::now();
    let err = env
        .fetch(&server.url("/slow"), None, Role::App, NO_CAP)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(server.requests("/slow"), 2);
    assert_eq!(cause(Role::App, &err), Cause::AppDownloadFailed);
    assert!(env.cache_files().is_empty(), "{:?}", env.cache_files());
}

#[tokio::test]
async fn a_wrong_body_is_a_bad_checksum_and_leaves_nothing_in_the_cache() {
    let server = TestServer::start();
    server.route("/d", body(200 * KIB, 5), Behaviour::Serve);
    let env = env(3);
    let expected = digest(b"what the chain says");
    let err = env
        .fetch(&server.url("/d"), Some(expected), Role::Dataset, NO_CAP)
        .await
        .unwrap_err();
    match &err {
        FetchError::BadChecksum { expected: e, found } => {
            assert_eq!(*e, expected);
            assert_eq!(*found, digest(&body(200 * KIB, 5)));
        }
        other => panic!("expected a bad checksum, found {other}"),
    }
    assert_eq!(server.requests("/d"), 1, "a bad checksum is not retried");
    assert_eq!(cause(Role::Dataset, &err), Cause::DatasetFileBadChecksum);
    assert_eq!(cause(Role::App, &err), Cause::AppDownloadFailed);
    assert!(env.cache_files().is_empty(), "{:?}", env.cache_files());
    assert_eq!(env.cached_bytes(), 0);
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused_with_and_without_content_length() {
    let data = body(100 * KIB, 6);
    let server = TestServer::start();
    server.route("/sized", data.clone(), Behaviour::Serve);
    server.route("/chunked", data.clone(), Behaviour::Chunked);
    let env = env(3);
    for path in ["/sized", "/chunked"] {
        let err = env
            .fetch(
                &server.url(path),
                Some(digest(&data)),
                Role::Dataset,
                50 * KIB as u64,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, FetchError::TooLarge { limit, .. } if limit == 50 * KIB as u64),
            "{path}: {err}"
        );
        assert_eq!(server.requests(path), 1, "{path}: not retried");
        assert_eq!(cause(Role::Dataset, &err), Cause::DatasetFileDownloadFailed);
    }
    assert!(env.cache_files().is_empty(), "{:?}", env.cache_files());
}

#[tokio::test]
async fn the_configured_cap_applies_when_the_call_allows_more() {
    let data = body(1024 * KIB + 1, 7);
    let server = TestServer::start();
    server.route("/big", data, Behaviour::Chunked);
    let env = env_with(FetchSection {
        max_download_mb: 1,
        ..config(0)
    });
    let err = env
        .fetch(&server.url("/big"), None, Role::InputFile(1), NO_CAP)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit, .. } if limit == 1024 * 1024),
        "{err}"
    );
    assert!(env.cache_files().is_empty());
}

#[tokio::test]
async fn file_urls_are_read_verified_and_cached() {
    let env = env(3);
    let data = body(70 * KIB, 9);
    let path = env.root.join("dataset.bin");
    std::fs::write(&path, &data).unwrap();
    let url = format!("file://{}", path.display());
    let got = env
        .fetch(&url, Some(digest(&data)), Role::Dataset, NO_CAP)
        .await
        .unwrap();
    assert_eq!(got.origin, Origin::Cached);
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
    let err = env
        .fetch(&url, Some(digest(b"other")), Role::Dataset, NO_CAP)
        .await
        .unwrap_err();
    assert_eq!(cause(Role::Dataset, &err), Cause::DatasetFileBadChecksum);
}

#[tokio::test]
async fn a_missing_local_file_is_a_typed_error() {
    let env = env(3);
    let url = format!("file://{}", env.root.join("absent.bin").display());
    let err = env
        .fetch(&url, None, Role::InputFile(2), NO_CAP)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::LocalFile { .. }), "{err}");
    assert_eq!(
        cause(Role::InputFile(2), &err),
        Cause::InputFilesDownloadFailed
    );
}

#[tokio::test]
async fn a_file_root_keeps_file_urls_inside_it() {
    let env = env(0);
    let allowed = env.root.join("public");
    std::fs::create_dir(&allowed).unwrap();
    std::fs::write(allowed.join("ok.txt"), b"ok").unwrap();
    std::fs::write(env.root.join("secret.txt"), b"secret").unwrap();
    std::os::unix::fs::symlink(env.root.join("secret.txt"), allowed.join("link.txt")).unwrap();
    let env = env.map_fetcher(|f| f.with_file_root(allowed.clone()));
    let ok = format!("file://{}", allowed.join("ok.txt").display());
    env.fetch(&ok, None, Role::InputFile(0), NO_CAP)
        .await
        .unwrap();
    for bad in [
        env.root.join("secret.txt"),
        allowed.join("link.txt"),
        allowed.join("../secret.txt"),
    ] {
        let url = format!("file://{}", bad.display());
        let err = env
            .fetch(&url, None, Role::InputFile(0), NO_CAP)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FetchError::LocalFile { .. }),
            "{}: {err}",
            bad.display()
        );
    }
}

#[tokio::test]
async fn ipfs_content_comes_from_the_next_gateway_when_the_first_fails() {
    let data = body(40 * KIB, 10);
    let cid = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
    let path = format!("/ipfs/{cid}");
    let down = TestServer::start();
    down.route(&path, data.clone(), Behaviour::FailFirst(usize::MAX));
    let up = TestServer::start();
    up.route(&path, data.clone(), Behaviour::Serve);
    let env = env_with(FetchSection {
        ipfs_gateways: vec![down.url(""), format!("{}/", up.url(""))],
        ..config(0)
    });
    let got = env
        .fetch(&path, Some(digest(&data)), Role::Dataset, NO_CAP)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
    assert_eq!(down.requests(&path), 1);
    assert_eq!(up.requests(&path), 1);

    // ipfs:// is the same content: now a cache hit, no request at all.
    let again = env
        .fetch(
            &format!("ipfs://{cid}"),
            Some(digest(&data)),
            Role::Dataset,
            NO_CAP,
        )
        .await
        .unwrap();
    assert_eq!(again.origin, Origin::CacheHit);
    assert_eq!(down.requests(&path) + up.requests(&path), 2);
}

#[tokio::test]
async fn when_every_gateway_fails_each_failure_is_reported() {
    let cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
    let path = format!("/ipfs/{cid}");
    let flaky = TestServer::start();
    flaky.route(&path, b"x".to_vec(), Behaviour::FailFirst(usize::MAX));
    let liar = TestServer::start();
    liar.route(&path, b"not it".to_vec(), Behaviour::Serve);
    let env = env_with(FetchSection {
        ipfs_gateways: vec![flaky.url(""), liar.url("")],
        ..config(2)
    });
    let err = env
        .fetch(&path, Some(digest(b"it")), Role::Dataset, NO_CAP)
        .await
        .unwrap_err();
    let FetchError::GatewaysExhausted { failures, .. } = &err else {
        panic!("expected every gateway to fail, found {err}");
    };
    assert_eq!(failures.len(), 2);
    assert!(matches!(
        failures[0].1,
        FetchError::Http { status: 503, .. }
    ));
    assert!(matches!(failures[1].1, FetchError::BadChecksum { .. }));
    // The transient gateway is retried every round, the lying one only once.
    assert_eq!(flaky.requests(&path), 3);
    assert_eq!(liar.requests(&path), 1);
    assert_eq!(cause(Role::Dataset, &err), Cause::DatasetFileDownloadFailed);
    assert!(env.cache_files().is_empty());
}

#[tokio::test]
async fn ipfs_without_gateways_is_a_typed_error() {
    let env = env(0);
    let err = env
        .fetch("/ipfs/QmX", None, Role::App, NO_CAP)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::NoGateway { .. }), "{err}");
}

#[tokio::test]
async fn redirects_are_followed_to_http_but_never_to_other_schemes() {
    let data = body(5 * KIB, 16);
    let server = TestServer::start();
    server.route("/real", data.clone(), Behaviour::Serve);
    server.route(
        "/moved",
        Vec::new(),
        Behaviour::Redirect(server.url("/real")),
    );
    server.route(
        "/sneaky",
        Vec::new(),
        Behaviour::Redirect("file:///etc/passwd".into()),
    );
    server.route(
        "/loop",
        Vec::new(),
        Behaviour::Redirect(server.url("/loop")),
    );
    let env = env(0);
    let got = env
        .fetch(
            &server.url("/moved"),
            Some(digest(&data)),
            Role::App,
            NO_CAP,
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
    for path in ["/sneaky", "/loop"] {
        let err = env
            .fetch(&server.url(path), None, Role::App, NO_CAP)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Redirect { .. }), "{path}: {err}");
    }
    assert_eq!(
        server.requests("/loop"),
        6,
        "the first request and 5 redirects"
    );
}

#[tokio::test]
async fn unsupported_urls_are_refused_without_a_request() {
    let env = env(3);
    for url in ["ftp://example.com/app.wasm", "app.wasm", "s3://bucket/key"] {
        let err = env.fetch(url, None, Role::App, NO_CAP).await.unwrap_err();
        assert!(
            matches!(err, FetchError::UnsupportedUrl { .. }),
            "{url}: {err}"
        );
        assert_eq!(cause(Role::App, &err), Cause::AppDownloadFailed);
    }
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_reported() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let env = env(1);
    let err = env
        .fetch(
            &format!("http://127.0.0.1:{port}/x"),
            None,
            Role::Dataset,
            NO_CAP,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Network { .. }), "{err}");
}
