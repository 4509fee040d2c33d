//! A real HTTP server for the fetch tests: tiny_http on `127.0.0.1:0`, one thread per request,
//! serving in-memory bodies per path, counting requests, and misbehaving on demand (fail the
//! first N requests with 503, stall mid-body, omit `Content-Length`, redirect).

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tiny_http::{Header, Response, Server, StatusCode};

/// How a path answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// 200 with `Content-Length`.
    Serve,
    /// 200 with chunked transfer encoding (no `Content-Length`).
    Chunked,
    /// 503 for the first N requests, then like [`Behaviour::Serve`].
    FailFirst(usize),
    /// 200 with `Content-Length`, half the body, then nothing until the server is dropped.
    Stall,
    /// 302 to this location.
    Redirect(String),
}

#[derive(Debug, Default)]
struct State {
    routes: HashMap<String, (Arc<Vec<u8>>, Behaviour)>,
    requests: HashMap<String, usize>,
}

/// Released when the server is dropped, so that stalled answers end.
#[derive(Debug, Default)]
struct Gate {
    closed: Mutex<bool>,
    cond: Condvar,
}

impl Gate {
    fn wait_closed(&self) {
        let mut closed = self.closed.lock().unwrap();
        while !*closed {
            closed = self.cond.wait(closed).unwrap();
        }
    }

    fn close(&self) {
        *self.closed.lock().unwrap() = true;
        self.cond.notify_all();
    }
}

/// The server; stops (and releases stalled answers) when dropped.
pub struct TestServer {
    server: Arc<Server>,
    state: Arc<Mutex<State>>,
    gate: Arc<Gate>,
    port: u16,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts on a free loopback port.
    pub fn start() -> TestServer {
        let server = Arc::new(Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let gate = Arc::new(Gate::default());
        let accept = {
            let (server, state, gate) = (server.clone(), state.clone(), gate.clone());
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    let (state, gate) = (state.clone(), gate.clone());
                    std::thread::spawn(move || answer(request, &state, &gate));
                }
            })
        };
        TestServer {
            server,
            state,
            gate,
            port,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Serves `body` at `path`.
    pub fn route(&self, path: &str, body: Vec<u8>, behaviour: Behaviour) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), (Arc::new(body), behaviour));
    }

    /// How many requests `path` received.
    pub fn requests(&self, path: &str) -> usize {
        *self.state.lock().unwrap().requests.get(path).unwrap_or(&0)
    }
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("port", &self.port)
            .finish()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.gate.close();
        self.server.unblock();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// A shared body as a reader, without copying it per request.
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Gives the first half of a body, then blocks until the server is dropped, then fails.
struct Stalling {
    body: Cursor<Shared>,
    half: u64,
    gate: Arc<Gate>,
}

impl Read for Stalling {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.half.saturating_sub(self.body.position());
        if left == 0 {
            self.gate.wait_closed();
            return Err(std::io::Error::other("server dropped"));
        }
        let n = buf.len().min(left as usize);
        self.body.read(&mut buf[..n])
    }
}

fn answer(request: tiny_http::Request, state: &Mutex<State>, gate: &Arc<Gate>) {
    let path = request.url().to_owned();
    let route = {
        let mut state = state.lock().unwrap();
        let seen = state.requests.entry(path.clone()).or_insert(0);
        *seen += 1;
        let seen = *seen;
        state.routes.get(&path).cloned().map(|r| (r, seen))
    };
    let Some(((body, behaviour), seen)) = route else {
        let _ = request.respond(Response::empty(404));
        return;
    };
    let len = body.len();
    let sized = |data: Arc<Vec<u8>>| {
        Response::new(
            StatusCode(200),
            vec![],
            Cursor::new(Shared(data)),
            Some(len),
            None,
        )
        .with_chunked_threshold(usize::MAX)
    };
    let _ = match behaviour {
        Behaviour::Serve => request.respond(sized(body)),
        Behaviour::FailFirst(n) if seen <= n => request.respond(Response::empty(503)),
        Behaviour::FailFirst(_) => request.respond(sized(body)),
        Behaviour::Chunked => request.respond(Response::new(
            StatusCode(200),
            vec![],
            Cursor::new(Shared(body)),
            None,
            None,
        )),
        Behaviour::Stall => {
            let reader = Stalling {
                body: Cursor::new(Shared(body)),
                half: len as u64 / 2,
                gate: gate.clone(),
            };
            request.respond(
                Response::new(StatusCode(200), vec![], reader, Some(len), None)
                    .with_chunked_threshold(usize::MAX),
            )
        }
        Behaviour::Redirect(location) => request.respond(
            Response::empty(302)
                .with_header(Header::from_bytes(&b"Location"[..], location.as_bytes()).unwrap()),
        ),
    };
}
