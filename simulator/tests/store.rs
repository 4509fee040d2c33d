//! The store over real HTTP on loopback: it serves what was published, accepts an upload only with
//! a valid worker token from a worker allowed to upload that task, and serves it back.

#![allow(clippy::unwrap_used)]

use edgepool_protocol::primitives::TaskId;
use edgepool_protocol::signature::Signer;
use edgepool_simulator::store::Store;
use edgepool_simulator::workers::upload;

fn get(url: &str) -> (u16, Vec<u8>) {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, response[split + 4..].to_vec())
}

#[test]
fn uploads_need_a_valid_token_from_an_allowed_worker_and_are_served_back() {
    let store = Store::start().unwrap();
    let url = store.publish("apps/x.wasm", b"module".to_vec());
    assert_eq!(get(&url), (200, b"module".to_vec()));
    assert_eq!(get(&format!("{}/apps/missing", store.base_url())).0, 404);

    let worker = Signer::from_bytes(&[3; 32]).unwrap();
    let stranger = Signer::from_bytes(&[4; 32]).unwrap();
    let task = TaskId::from([9; 32]);
    // Not asked to upload yet: refused, nothing stored.
    let refused = upload(&worker, &store.base_url(), &task, b"zip").unwrap_err();
    assert!(refused.contains("403"), "{refused}");
    assert!(store.result(&task).is_none());
    store.allow_upload(task, worker.address());
    // Someone else's token is refused even for an allowed task.
    assert!(upload(&stranger, &store.base_url(), &task, b"zip")
        .unwrap_err()
        .contains("403"));
    let link = upload(&worker, &store.base_url(), &task, b"zip").unwrap();
    assert_eq!(link, format!("{}/results/{task}", store.base_url()));
    assert_eq!(get(&link), (200, b"zip".to_vec()));
    assert_eq!(store.result(&task).unwrap().worker, worker.address());
    assert_eq!(store.refused().len(), 2);
}

#[test]
fn an_upload_whose_signature_does_not_match_the_archive_is_refused() {
    use std::io::{Read as _, Write as _};
    let store = Store::start().unwrap();
    let worker = Signer::from_bytes(&[3; 32]).unwrap();
    let task = TaskId::from([9; 32]);
    store.allow_upload(task, worker.address());
    // A token over another archive.
    let token = worker.sign_personal(b"not the hash of this archive");
    let authority = store.base_url().trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&authority).unwrap();
    write!(
        stream,
        "PUT /results/{task} HTTP/1.1\r\nHost: {authority}\r\nX-Edgepool-Worker: {}\r\nX-Edgepool-Signature: {token}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nzip",
        worker.address()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(store.result(&task).is_none());
}

#[test]
fn a_persistent_store_serves_its_files_and_results_again_on_the_same_port_after_a_restart() {
    use edgepool_simulator::store::StoreError;
    let dir = tempfile::tempdir().unwrap();
    let worker = Signer::from_bytes(&[3; 32]).unwrap();
    let task = TaskId::from([9; 32]);
    let (port, app, link) = {
        let store = Store::start_persistent(dir.path(), 0).unwrap();
        let app = store.publish("apps/x.wasm", b"module".to_vec());
        store.allow_upload(task, worker.address());
        let link = upload(&worker, &store.base_url(), &task, b"zip").unwrap();
        // A path climbing out of the store is refused, and nothing is written.
        let err = store
            .handle()
            .try_publish("files/../../escape", b"x".to_vec())
            .unwrap_err();
        assert!(matches!(err, StoreError::BadPath(_)), "{err}");
        (store.port(), app, link)
    };
    assert!(!dir.path().join("escape").exists());
    // Stopped (dropped): started again on its directory and port (tiny_http's accept thread
    // lets the listener go a moment after the drop: a few tries, bounded).
    let mut started = Store::start_persistent(dir.path(), port);
    for _ in 0..50 {
        if started.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        started = Store::start_persistent(dir.path(), port);
    }
    let store = started.unwrap();
    assert_eq!(store.port(), port);
    assert_eq!(get(&app), (200, b"module".to_vec()));
    assert_eq!(get(&link), (200, b"zip".to_vec()));
    assert_eq!(store.result(&task).unwrap().worker, worker.address());
    // Its port taken: an error naming the port, never another port.
    let err = Store::start_persistent(dir.path(), port).unwrap_err();
    assert!(
        matches!(err, StoreError::Bind { port: p, .. } if p == port),
        "{err}"
    );
}
