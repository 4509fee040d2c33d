//! A loopback HTTP server for the pipeline benchmark: GET serves files from memory, PUT
//! /results/<task> accepts (and drops) the uploaded result archive.

use std::collections::HashMap;

use anyhow::{anyhow, Result};

/// A running server (its thread runs until the process exits).
#[derive(Debug)]
pub struct Server {
    /// The loopback port.
    pub port: u16,
}

impl Server {
    /// Serves `files` (by path without the leading slash) on a free loopback port.
    pub fn start(files: HashMap<String, Vec<u8>>) -> Result<Server> {
        let server = tiny_http::Server::http("127.0.0.1:0").map_err(|e| anyhow!("{e}"))?;
        let port = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| anyhow!("not an IP listener"))?
            .port();
        std::thread::spawn(move || {
            for mut request in server.incoming_requests() {
                let url = request.url().to_string();
                let response = match request.method() {
                    tiny_http::Method::Put if url.starts_with("/results/") => {
                        let mut body = Vec::new();
                        let _ = std::io::Read::read_to_end(request.as_reader(), &mut body);
                        tiny_http::Response::from_data(Vec::new()).with_status_code(201)
                    }
                    _ => match files.get(url.trim_start_matches('/')) {
                        Some(bytes) => tiny_http::Response::from_data(bytes.clone()),
                        None => tiny_http::Response::from_data(Vec::new()).with_status_code(404),
                    },
                };
                let _ = request.respond(response);
            }
        });
        Ok(Server { port })
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}
