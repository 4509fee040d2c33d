//! Shared by the fetch test files: a real HTTP server ([`server`]) and a fetcher over a real
//! journal in a temporary state directory ([`Env`]).
// Every test file compiles its own copy of this module and uses only part of it.
#![allow(dead_code, clippy::unwrap_used)]

pub mod server;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use edgepool_agent::config::FetchSection;
use edgepool_agent::fetch::{FetchError, Fetched, Fetcher, Role};
use edgepool_agent::store::Store;
use edgepool_protocol::hash::sha256;
use edgepool_protocol::primitives::Digest;

pub const KIB: usize = 1024;
pub const NO_CAP: u64 = u64::MAX;

/// A fetcher caching in `<tmp>/state/cache`, its journal in `<tmp>/state`.
pub struct Env {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub store: Mutex<Store>,
    pub fetcher: Fetcher,
}

pub fn config(retries: u32) -> FetchSection {
    FetchSection {
        timeout_secs: 5,
        retries,
        max_download_mb: 16,
        ipfs_gateways: vec![],
        cache_max_mb: 64,
    }
}

pub fn env_with(config: FetchSection) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let state = root.join("state");
    let store = Mutex::new(Store::open(&state).unwrap());
    let fetcher = Fetcher::new(&config, &state.join("cache"), None)
        .unwrap()
        .with_backoff(Duration::from_millis(5));
    Env {
        _dir: dir,
        root,
        store,
        fetcher,
    }
}

pub fn env(retries: u32) -> Env {
    env_with(config(retries))
}

impl Env {
    /// The same environment with the fetcher changed (`with_timeout`, `with_file_root`).
    pub fn map_fetcher(self, f: impl FnOnce(Fetcher) -> Fetcher) -> Env {
        Env {
            fetcher: f(self.fetcher),
            ..self
        }
    }

    pub async fn fetch(
        &self,
        url: &str,
        expected: Option<Digest>,
        role: Role,
        cap: u64,
    ) -> Result<Fetched, FetchError> {
        self.fetcher
            .fetch(&self.store, url, expected, role, cap)
            .await
    }

    /// Every file name in the cache directory.
    pub fn cache_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.fetcher.cache_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    pub fn cached_bytes(&self) -> u64 {
        self.store.lock().unwrap().cache_total_bytes().unwrap()
    }
}

pub fn digest(data: &[u8]) -> Digest {
    Digest(sha256(data))
}

pub fn hex_name(data: &[u8]) -> String {
    hex::encode(sha256(data).0)
}

pub fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
