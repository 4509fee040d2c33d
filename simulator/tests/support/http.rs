//! Helpers shared by the simulator's integration tests (each test file includes it with
//! `#[path = "support/http.rs"] mod http;`).

use std::time::Duration;

/// `GET url` on loopback: (status, body).
pub fn http_get(url: &str) -> (u16, Vec<u8>) {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    write!(
        stream,
        // HTTP/1.0: the answer is the body as is (no chunked encoding).
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&response[..split])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response[split + 4..].to_vec())
}
