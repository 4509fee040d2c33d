//! The result store answers a new connection while others are kept alive (the fix in
//! `vendor/tiny_http`). tiny_http runs each connection on a pool thread for the connection's whole
//! life. Upstream, a new connection was queued for a waiting thread whenever one was waiting,
//! so two connections accepted before that thread woke both went to the queue, and the second
//! waited for a busy thread to be freed: for a kept-alive connection, until its client closed it.
//! Agents upload results over kept-alive connections; a burst of uploads stalled for seconds.
//!
//! The pool starts with 4 idle threads. Each round keeps 3 connections alive (one thread left
//! waiting), then opens 2 connections at once and expects both answered. The race is a matter of
//! scheduling, so it is tried in many rounds; a round that stalls fails within its bound.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use edgepool_simulator::store::Store;

/// How long an answer may take before the connection counts as stalled: far above a loopback
/// round trip, far below the seconds a queued connection waited.
const ANSWER_BOUND: Duration = Duration::from_secs(2);

const ROUNDS: usize = 30;

/// Sends one keep-alive GET on `stream` and reads the whole answer; the status code.
fn get(stream: &mut TcpStream) -> std::io::Result<u16> {
    stream.set_read_timeout(Some(ANSWER_BOUND))?;
    stream.write_all(b"GET /nothing-here HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(status)
}

#[test]
fn a_new_connection_is_answered_while_others_are_kept_alive() {
    for round in 0..ROUNDS {
        // A new store (and thread pool) per round: 4 idle threads at the start.
        let store = Store::start().expect("store");
        let addr = ("127.0.0.1", store.port());
        let mut kept: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        for stream in &mut kept {
            assert_eq!(get(stream).expect("kept-alive connection answered"), 404);
        }
        // Two connections at once: the accept loop hands both to the pool back to back.
        let mut first = TcpStream::connect(addr).expect("connect");
        let mut second = TcpStream::connect(addr).expect("connect");
        let answers = [get(&mut first), get(&mut second)];
        for (which, answer) in ["first", "second"].iter().zip(answers) {
            match answer {
                Ok(status) => assert_eq!(status, 404),
                Err(e) => panic!(
                    "round {round}: the {which} of two new connections was not answered within \
                     {ANSWER_BOUND:?} while 3 others were kept alive: {e}"
                ),
            }
        }
        drop(kept);
    }
}
