//! A loopback HTTP server standing for the app and data host and the result store: GET serves
//! the files it was given, PUT stores the body with its `X-Edgepool-Signature` header (every
//! upload kept, in order: an agent may upload a result again after a restart).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One PUT: the body and the upload signature header (empty when absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub body: Vec<u8>,
    pub signature: String,
}

/// The server; it serves until the test process ends.
pub struct StoreServer {
    pub port: u16,
    uploads: Arc<Mutex<HashMap<String, Vec<Upload>>>>,
}

impl StoreServer {
    /// Serves `files` (by path without the leading `/`) on a free loopback port.
    pub fn start(files: HashMap<String, Vec<u8>>) -> StoreServer {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let uploads = Arc::new(Mutex::new(HashMap::<String, Vec<Upload>>::new()));
        let stored = Arc::clone(&uploads);
        std::thread::spawn(move || {
            for mut request in server.incoming_requests() {
                let url = request.url().to_string();
                if *request.method() == tiny_http::Method::Put {
                    let mut body = Vec::new();
                    let _ = std::io::Read::read_to_end(request.as_reader(), &mut body);
                    let signature = request
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("X-Edgepool-Signature"))
                        .map(|h| h.value.to_string())
                        .unwrap_or_default();
                    stored
                        .lock()
                        .unwrap()
                        .entry(url)
                        .or_default()
                        .push(Upload { body, signature });
                    let _ = request.respond(tiny_http::Response::empty(201));
                    continue;
                }
                let _ = match files.get(url.trim_start_matches('/')) {
                    Some(bytes) => request.respond(tiny_http::Response::from_data(bytes.clone())),
                    None => request.respond(tiny_http::Response::empty(404)),
                };
            }
        });
        StoreServer { port, uploads }
    }

    /// `http://127.0.0.1:<port>/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// Every body PUT at `path` (`/results/<task>`), in order.
    pub fn uploads(&self, path: &str) -> Vec<Vec<u8>> {
        self.uploads
            .lock()
            .unwrap()
            .get(path)
            .map(|all| all.iter().map(|u| u.body.clone()).collect())
            .unwrap_or_default()
    }

    /// The last upload at `path`.
    pub fn last_upload(&self, path: &str) -> Option<Upload> {
        self.uploads
            .lock()
            .unwrap()
            .get(path)
            .and_then(|all| all.last().cloned())
    }

    /// Whether nothing was uploaded anywhere.
    pub fn nothing_uploaded(&self) -> bool {
        self.uploads.lock().unwrap().is_empty()
    }
}
