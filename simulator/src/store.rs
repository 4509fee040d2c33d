//! The pool's store: a tiny_http server on 127.0.0.1 that serves apps, datasets and input files
//! (`GET /apps/…`, `/datasets/…`, `/files/…`), receives results (`PUT /results/{task}`, the
//! agent's upload) and serves them back (`GET /results/{task}`: the iExec-style result link).
//!
//! An upload must carry `X-Edgepool-Worker` and `X-Edgepool-Signature` = the worker's EIP-191
//! signature of `keccak256(taskId ‖ sha256(archive))`, and the worker must have been asked to
//! upload that task (the service calls [`Store::allow_upload`] when it sends PLEASE_UPLOAD);
//! anything else is refused with 401/403 and stored nowhere.
//!
//! `/control/…` is the `serve` command's API: its requests go to a handler installed with
//! [`Store::set_control`].
//!
//! [`Store::start_persistent`] (what `serve` uses) keeps what is published and uploaded in a
//! directory (`files/<path>`, `results/<task>.zip` with `results/<task>.worker`), each file
//! written whole or not at all (temporary file, fsync, rename), reloads it on start and binds a
//! given port, so links handed out before a restart still answer after it.

use std::collections::{HashMap, HashSet};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use edgepool_protocol::hash::{keccak256_concat, sha256};
use edgepool_protocol::primitives::{Address, TaskId};
use edgepool_protocol::signature::Signature;

/// The header naming the uploading worker.
pub const WORKER_HEADER: &str = "X-Edgepool-Worker";
/// The header carrying the upload signature.
pub const SIGNATURE_HEADER: &str = "X-Edgepool-Signature";
/// The largest result archive accepted.
pub const MAX_RESULT_BYTES: usize = 64 * 1024 * 1024;

/// A control request: method, path (after `/control`) and body.
#[derive(Debug, Clone)]
pub struct ControlRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// e.g. `/deals`.
    pub path: String,
    /// The body.
    pub body: Vec<u8>,
}

/// What the control handler answers: HTTP status and a JSON body.
pub type ControlReply = (u16, String);
type ControlHandler = Arc<dyn Fn(ControlRequest) -> ControlReply + Send + Sync>;

/// One upload the store accepted.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Who uploaded it.
    pub worker: Address,
    /// The archive.
    pub archive: Vec<u8>,
}

/// Why an upload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    /// The path does not name a task.
    #[error("expected /results/0x<64 hex>, found {0}")]
    BadPath(String),
    /// A header is missing or malformed.
    #[error("missing or malformed {0} header")]
    BadHeader(&'static str),
    /// The signature is not by the named worker over this task and archive.
    #[error("the upload signature is not by {0} over this task and archive")]
    BadSignature(Address),
    /// The worker was not asked to upload this task.
    #[error("{worker} was not asked to upload {task_id}")]
    NotAllowed {
        /// The task.
        task_id: TaskId,
        /// The worker.
        worker: Address,
    },
    /// The archive is too large or unreadable.
    #[error("the archive is unreadable or larger than {MAX_RESULT_BYTES} bytes")]
    Body,
    /// A persistent store could not keep the archive.
    #[error("the store could not keep the archive")]
    Storage,
}

/// Why a persistent store could not start or keep a file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The port could not be bound (taken by another process, …).
    #[error("the store cannot listen on 127.0.0.1:{port}: {reason}")]
    Bind {
        /// The port asked for (0: any).
        port: u16,
        /// What the OS said.
        reason: String,
    },
    /// The store's thread could not start.
    #[error("starting the store thread: {0}")]
    Thread(String),
    /// A published path that would leave the store's directory.
    #[error("a store path must be relative without `..`, found {0:?}")]
    BadPath(String),
    /// Reading or writing the store's directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Default)]
struct State {
    /// Where published files and uploads are kept (a persistent store).
    dir: Option<PathBuf>,
    files: HashMap<String, Vec<u8>>,
    results: HashMap<TaskId, Upload>,
    allowed: HashSet<(TaskId, Address)>,
    refused: Vec<String>,
    control: Option<ControlHandler>,
}

/// The running store; stopped when dropped.
pub struct Store {
    server: Arc<tiny_http::Server>,
    port: u16,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("port", &self.port).finish()
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Starts the store on a free loopback port.
    ///
    /// # Errors
    /// When the server cannot bind or its thread cannot start.
    pub fn start() -> Result<Store, String> {
        Self::listen(0, State::default()).map_err(|e| e.to_string())
    }

    /// A store kept in `dir` (created if missing; what it held is served again) on
    /// `127.0.0.1:port` (`0`: a free port; see [`Store::port`]). A port that cannot be bound is an
    /// error, never another port: links already handed out name this one.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn start_persistent(dir: &Path, port: u16) -> Result<Store, StoreError> {
        let state = State {
            files: load_files(dir)?,
            results: load_results(dir)?,
            dir: Some(dir.to_path_buf()),
            ..State::default()
        };
        Self::listen(port, state)
    }

    fn listen(port: u16, state: State) -> Result<Store, StoreError> {
        let server =
            tiny_http::Server::http(("127.0.0.1", port)).map_err(|e| StoreError::Bind {
                port,
                reason: e.to_string(),
            })?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or(StoreError::Bind {
                port,
                reason: "not an IP address".into(),
            })?;
        let server = Arc::new(server);
        let state = Arc::new(Mutex::new(state));
        let (srv, st) = (Arc::clone(&server), Arc::clone(&state));
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                for request in srv.incoming_requests() {
                    serve(&st, request);
                }
            })
            .map_err(|e| StoreError::Thread(e.to_string()))?;
        Ok(Store {
            server,
            port,
            state,
        })
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Publishes `bytes` at `path` (e.g. `apps/hello.wasm`) and returns its URL. A persistent
    /// store that cannot write it still serves it until it stops (see [`StoreHandle::try_publish`]).
    pub fn publish(&self, path: &str, bytes: Vec<u8>) -> String {
        self.handle().publish(path, bytes)
    }

    /// Lets `worker` upload the result of `task_id`.
    pub fn allow_upload(&self, task_id: TaskId, worker: Address) {
        lock(&self.state).allowed.insert((task_id, worker));
    }

    /// The result uploaded for `task_id`.
    pub fn result(&self, task_id: &TaskId) -> Option<Upload> {
        lock(&self.state).results.get(task_id).cloned()
    }

    /// Why each refused upload was refused.
    pub fn refused(&self) -> Vec<String> {
        lock(&self.state).refused.clone()
    }

    /// Installs the handler of `/control/…`.
    pub fn set_control(
        &self,
        handler: impl Fn(ControlRequest) -> ControlReply + Send + Sync + 'static,
    ) {
        lock(&self.state).control = Some(Arc::new(handler));
    }

    /// A handle that a [`crate::service::Pool`] uses to allow uploads.
    pub fn handle(&self) -> StoreHandle {
        StoreHandle {
            state: Arc::clone(&self.state),
            base_url: self.base_url(),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// What the service needs of the store: allowing uploads and reading results.
#[derive(Clone)]
pub struct StoreHandle {
    state: Arc<Mutex<State>>,
    base_url: String,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl StoreHandle {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Lets `worker` upload the result of `task_id`.
    pub fn allow_upload(&self, task_id: TaskId, worker: Address) {
        lock(&self.state).allowed.insert((task_id, worker));
    }

    /// The result uploaded for `task_id`.
    pub fn result(&self, task_id: &TaskId) -> Option<Upload> {
        lock(&self.state).results.get(task_id).cloned()
    }

    /// Publishes `bytes` at `path` and returns its URL (see [`Store::publish`]).
    pub fn publish(&self, path: &str, bytes: Vec<u8>) -> String {
        let path = path.trim_start_matches('/').to_string();
        let url = format!("{}/{path}", self.base_url);
        let _ = publish_in(&self.state, path, bytes);
        url
    }

    /// Publishes `bytes` at `path` and returns its URL; a persistent store has written it to its
    /// directory first.
    ///
    /// # Errors
    /// [`StoreError::BadPath`] for a path with `..`, [`StoreError::Io`].
    pub fn try_publish(&self, path: &str, bytes: Vec<u8>) -> Result<String, StoreError> {
        let path = path.trim_start_matches('/').to_string();
        let url = format!("{}/{path}", self.base_url);
        publish_in(&self.state, path, bytes)?;
        Ok(url)
    }
}

fn publish_in(state: &Mutex<State>, path: String, bytes: Vec<u8>) -> Result<(), StoreError> {
    let safe = !path.is_empty()
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains(['\\', '\0']));
    let mut state = lock(state);
    if let Some(dir) = &state.dir {
        if !safe {
            return Err(StoreError::BadPath(path));
        }
        write_whole(&dir.join("files").join(&path), &bytes)?;
    }
    state.files.insert(path, bytes);
    Ok(())
}

/// Writes `bytes` to `path` whole or not at all: a temporary file beside it, fsync, rename.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(io_error(parent))?;
    tmp.write_all(bytes).map_err(io_error(path))?;
    tmp.as_file().sync_all().map_err(io_error(path))?;
    tmp.persist(path).map_err(|e| StoreError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    if let Ok(d) = std::fs::File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn load_files(dir: &Path) -> Result<HashMap<String, Vec<u8>>, StoreError> {
    let root = dir.join("files");
    let mut files = HashMap::new();
    if !root.exists() {
        return Ok(files);
    }
    // Bounded: a directory tree is finite and symlinks are not followed.
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io_error(&d))? {
            let entry = entry.map_err(io_error(&d))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io_error(&path))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(".tmp") {
                continue; // a write the process did not finish
            }
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let Ok(rel) = path.strip_prefix(&root) else {
                    continue;
                };
                let key = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                let bytes = std::fs::read(&path).map_err(io_error(&path))?;
                files.insert(key, bytes);
            }
        }
    }
    Ok(files)
}

fn load_results(dir: &Path) -> Result<HashMap<TaskId, Upload>, StoreError> {
    let root = dir.join("results");
    let mut results = HashMap::new();
    if !root.exists() {
        return Ok(results);
    }
    for entry in std::fs::read_dir(&root).map_err(io_error(&root))? {
        let path = entry.map_err(io_error(&root))?.path();
        let Some(task) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".zip"))
            .and_then(|t| t.parse::<TaskId>().ok())
        else {
            continue;
        };
        let worker_path = path.with_extension("worker");
        // The archive is written last: a result without its uploader is not one.
        let Some(worker) = std::fs::read_to_string(&worker_path)
            .ok()
            .and_then(|w| w.trim().parse::<Address>().ok())
        else {
            continue;
        };
        let archive = std::fs::read(&path).map_err(io_error(&path))?;
        results.insert(task, Upload { worker, archive });
    }
    Ok(results)
}

fn header(request: &tiny_http::Request, name: &'static str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.to_string())
}

fn serve(state: &Mutex<State>, mut request: tiny_http::Request) {
    let url = request.url().to_string();
    let method = request.method().clone();
    let respond = |request: tiny_http::Request, status: u16, body: Vec<u8>| {
        let _ = request.respond(tiny_http::Response::from_data(body).with_status_code(status));
    };
    if let Some(path) = url.strip_prefix("/control") {
        let mut body = Vec::new();
        let _ = request.as_reader().take(1024 * 1024).read_to_end(&mut body);
        let control = ControlRequest {
            method: method.as_str().to_string(),
            path: path.to_string(),
            body,
        };
        // Called without the lock: the handler talks to the pool, which allows uploads here.
        let handler = lock(state).control.clone();
        let reply = match handler {
            Some(handler) => handler(control),
            None => (
                404,
                r#"{"error":"no control API on this store"}"#.to_string(),
            ),
        };
        return respond(request, reply.0, reply.1.into_bytes());
    }
    match method {
        tiny_http::Method::Put if url.starts_with("/results/") => {
            match receive_upload(state, &mut request, &url) {
                Ok(()) => respond(request, 201, Vec::new()),
                Err(e) => {
                    let status = match e {
                        UploadError::NotAllowed { .. } => 403,
                        UploadError::BadSignature(_) | UploadError::BadHeader(_) => 401,
                        UploadError::BadPath(_) | UploadError::Body => 400,
                        UploadError::Storage => 500,
                    };
                    lock(state).refused.push(e.to_string());
                    respond(request, status, e.to_string().into_bytes());
                }
            }
        }
        tiny_http::Method::Get => {
            let key = url.trim_start_matches('/');
            let found = match key.strip_prefix("results/") {
                Some(task) => task
                    .parse::<TaskId>()
                    .ok()
                    .and_then(|t| lock(state).results.get(&t).map(|u| u.archive.clone())),
                None => lock(state).files.get(key).cloned(),
            };
            match found {
                Some(bytes) => respond(request, 200, bytes),
                None => respond(request, 404, Vec::new()),
            }
        }
        _ => respond(request, 405, Vec::new()),
    }
}

fn receive_upload(
    state: &Mutex<State>,
    request: &mut tiny_http::Request,
    url: &str,
) -> Result<(), UploadError> {
    let task_id: TaskId = url
        .trim_start_matches("/results/")
        .parse()
        .map_err(|_| UploadError::BadPath(url.to_string()))?;
    let worker: Address = header(request, WORKER_HEADER)
        .and_then(|v| v.parse().ok())
        .ok_or(UploadError::BadHeader(WORKER_HEADER))?;
    let signature: Signature = header(request, SIGNATURE_HEADER)
        .and_then(|v| v.parse().ok())
        .ok_or(UploadError::BadHeader(SIGNATURE_HEADER))?;
    let mut archive = Vec::new();
    request
        .as_reader()
        .take(MAX_RESULT_BYTES as u64 + 1)
        .read_to_end(&mut archive)
        .map_err(|_| UploadError::Body)?;
    if archive.len() > MAX_RESULT_BYTES {
        return Err(UploadError::Body);
    }
    verify_upload(&task_id, &archive, worker, &signature)?;
    let mut state = lock(state);
    if !state.allowed.contains(&(task_id, worker)) {
        return Err(UploadError::NotAllowed { task_id, worker });
    }
    if state.results.contains_key(&task_id) {
        return Ok(());
    }
    if let Some(dir) = &state.dir {
        // Kept before it is acknowledged: the uploader, then the archive (which makes it one).
        let base = dir.join("results").join(task_id.to_string());
        write_whole(
            &base.with_extension("worker"),
            worker.to_string().as_bytes(),
        )
        .and_then(|()| write_whole(&base.with_extension("zip"), &archive))
        .map_err(|_| UploadError::Storage)?;
    }
    state.results.insert(task_id, Upload { worker, archive });
    Ok(())
}

/// Checks an upload token: `signature` is `worker`'s EIP-191 signature of
/// `keccak256(taskId ‖ sha256(archive))`.
///
/// # Errors
/// [`UploadError::BadSignature`].
pub fn verify_upload(
    task_id: &TaskId,
    archive: &[u8],
    worker: Address,
    signature: &Signature,
) -> Result<(), UploadError> {
    let signed = keccak256_concat(&[task_id.as_bytes(), sha256(archive).as_bytes()]);
    match signature.recover_personal(signed.as_bytes()) {
        Ok(signer) if signer == worker => Ok(()),
        _ => Err(UploadError::BadSignature(worker)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use edgepool_protocol::signature::Signer;

    #[test]
    fn an_upload_token_verifies_only_for_its_worker_task_and_archive() {
        let worker = Signer::from_bytes(&[7; 32]).unwrap();
        let task = TaskId::from([1; 32]);
        let archive = b"zip bytes".to_vec();
        let signed = keccak256_concat(&[task.as_bytes(), sha256(&archive).as_bytes()]);
        let signature = worker.sign_personal(signed.as_bytes());
        assert!(verify_upload(&task, &archive, worker.address(), &signature).is_ok());
        assert!(verify_upload(&task, b"other", worker.address(), &signature).is_err());
        assert!(verify_upload(
            &TaskId::from([2; 32]),
            &archive,
            worker.address(),
            &signature
        )
        .is_err());
        assert!(verify_upload(&task, &archive, Address([9; 20]), &signature).is_err());
    }
}
