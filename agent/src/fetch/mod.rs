//! Fetching apps, datasets and input files (http(s), file, IPFS gateways) into a content-addressed cache.
//!
//! [`Fetcher::fetch`] takes a task's URL, the expected sha256 (the on-chain checksum; for an
//! encrypted dataset, of the encrypted file) and a size cap, and gives a local file:
//!
//! - `http://` and `https://` with reqwest over rustls (ring provider, the system's roots plus an
//!   optional extra CA), redirects limited to 5 and to http(s) targets;
//! - `file:///absolute/path` (optionally confined to one directory, [`Fetcher::with_file_root`]);
//! - `/ipfs/<cid>` and `ipfs://<cid>` through the gateways of `fetch.ipfs_gateways`, in order
//!   (`https://ipfs.io` → `GET https://ipfs.io/ipfs/<cid>`).
//!
//! Every download streams to a temporary file in the cache directory, hashed as it arrives and
//! cut off at the cap (`fetch.max_download_mb` and the per-call cap, whichever is smaller).
//! `fetch.timeout_secs` bounds connecting, waiting for the answer and every stall of the body.
//! Transient failures (timeouts, broken connections, 408, 429, 5xx) are retried up to
//! `fetch.retries` times with exponential backoff; with several gateways, each round tries every
//! gateway still worth trying, so a dead gateway hands over to the next one at once.
//!
//! # Cache
//!
//! Items with an expected checksum (app, dataset) are cached by it under `<cache_dir>/<hex
//! sha256>`, indexed in the journal ([`CacheIndex`]), capped by `fetch.cache_max_mb` with
//! least-recently-used eviction; a cached item is not downloaded again. Only a verified file
//! enters the cache: a failed or mismatching download leaves nothing behind.
//!
//! Items without a checksum (input files) are **not cached**: a cache is looked up by a checksum
//! known before downloading, which they do not have, so caching them under their computed hash
//! would only use disk. They are kept in a temporary file that [`Fetched`] deletes when dropped.
//! Items larger than the whole cache are handled the same way.
//!
//! A file handed out from the cache can be evicted by a later fetch (when the cache is full):
//! open or read it before fetching something else that is cacheable.
//!
//! # Layout
//!
//! - `mod.rs`: [`Fetcher`], [`Fetched`].
//! - `source.rs`: [`Source`], the accepted URL forms.
//! - `http.rs`: the client and one HTTP attempt.
//! - `sink.rs`: the hashing, capped temporary file.
//! - `cache.rs`: [`CacheIndex`] and the cache directory.
//! - `error.rs`: [`FetchError`], [`Role`] and [`cause`] (the iExec cause of a failure).

mod cache;
mod error;
mod http;
pub(crate) use http::build_client;
mod sink;
mod source;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgepool_protocol::primitives::Digest;
use reqwest::{Client, Url};
use tempfile::TempPath;
use tokio::io::AsyncReadExt;

pub use cache::CacheIndex;
pub use error::{cause, FetchError, Role};
pub use http::MAX_REDIRECTS;
pub use sink::PARTIAL_PREFIX;
pub use source::{Source, MAX_URL_LEN};

use crate::config::FetchSection;
use cache::{Admitted, Cache};
use http::redact;
use sink::{Sink, Written};

const MIB: u64 = 1024 * 1024;

/// The first retry waits this long by default; each next one twice as long.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);

/// The longest wait between two retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Downloads items of tasks into the cache directory. Cheap to share (`&self` everywhere): one
/// per agent, its HTTP connections pooled.
#[derive(Debug)]
pub struct Fetcher {
    client: Client,
    cache: Cache,
    gateways: Vec<Url>,
    retries: u32,
    max_download_bytes: u64,
    timeout: Duration,
    backoff: Duration,
    file_root: Option<PathBuf>,
}

/// Where a fetched item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Found in the cache: nothing was downloaded.
    CacheHit,
    /// Downloaded, verified and added to the cache.
    Cached,
    /// Downloaded into a temporary file (no expected checksum, or larger than the whole cache),
    /// deleted when the [`Fetched`] is dropped.
    Temporary,
}

/// A fetched item on the local disk.
#[derive(Debug)]
pub struct Fetched {
    /// The file: in the cache, or a temporary file in the cache directory.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256 (equal to the expected checksum when one was given).
    pub sha256: Digest,
    /// Whether it came from the cache.
    pub origin: Origin,
    /// Deletes a temporary file on drop.
    _temporary: Option<TempPath>,
}

impl Fetcher {
    /// A fetcher with `config`, caching in `cache_dir` (created, mode 0700), trusting the
    /// system's CA roots and, if given, the certificates of the PEM file `extra_ca`.
    ///
    /// # Errors
    /// [`FetchError::UnsupportedUrl`] for a gateway that is not an http(s) URL,
    /// [`FetchError::Client`] if `extra_ca` is unusable, [`FetchError::CacheIo`] if the cache
    /// directory cannot be created.
    pub fn new(
        config: &FetchSection,
        cache_dir: &Path,
        extra_ca: Option<&Path>,
    ) -> Result<Fetcher, FetchError> {
        let gateways = config
            .ipfs_gateways
            .iter()
            .map(|g| match Source::parse(g)? {
                Source::Http(url) => Ok(url),
                _ => Err(FetchError::UnsupportedUrl {
                    url: g.clone(),
                    reason: "expected an http(s) ipfs gateway".into(),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let timeout = Duration::from_secs(config.timeout_secs.max(1));
        Ok(Fetcher {
            client: http::build_client(extra_ca, timeout)?,
            cache: Cache::open(cache_dir, config.cache_max_mb.saturating_mul(MIB))?,
            gateways,
            retries: config.retries,
            max_download_bytes: config.max_download_mb.saturating_mul(MIB),
            timeout,
            backoff: DEFAULT_BACKOFF,
            file_root: None,
        })
    }

    /// Sets the first retry's wait (doubling after each retry, at most [`MAX_BACKOFF`]).
    #[must_use]
    pub fn with_backoff(mut self, backoff: Duration) -> Fetcher {
        self.backoff = backoff;
        self
    }

    /// Overrides `fetch.timeout_secs` for waits on answers and body stalls (tests use
    /// milliseconds).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Fetcher {
        self.timeout = timeout;
        self
    }

    /// Accepts `file://` URLs only for files under `root` (after resolving symbolic links), so
    /// that a task cannot read the agent's own files (its keystore, its journal).
    #[must_use]
    pub fn with_file_root(mut self, root: PathBuf) -> Fetcher {
        self.file_root = Some(root);
        self
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        self.cache.dir()
    }

    /// Removes what a crash can leave in the cache directory (temporary files, unindexed files)
    /// and index entries whose file is gone. Call it once at start, before fetching. Returns how
    /// many files were removed.
    ///
    /// # Errors
    /// [`FetchError::CacheIo`] or [`FetchError::Index`].
    pub fn sweep<I: CacheIndex + ?Sized>(&self, index: &I) -> Result<usize, FetchError> {
        self.cache.sweep(index)
    }

    /// Fetches `url` for `role`: from the cache when `expected` is given and cached, otherwise
    /// downloaded (with retries), checked against `expected`, and cached. The size cap is the
    /// smaller of `max_bytes` and `fetch.max_download_mb`.
    ///
    /// # Errors
    /// A [`FetchError`]; [`cause`] maps it with `role` to the iExec cause to report.
    pub async fn fetch<I: CacheIndex + ?Sized>(
        &self,
        index: &I,
        url: &str,
        expected: Option<Digest>,
        role: Role,
        max_bytes: u64,
    ) -> Result<Fetched, FetchError> {
        let source = Source::parse(url)?;
        let limit = max_bytes.min(self.max_download_bytes);
        if let Some(digest) = expected {
            if let Some(entry) = self.cache.lookup(index, digest, now_ms())? {
                if entry.size_bytes > limit {
                    return Err(FetchError::TooLarge {
                        url: url.chars().take(200).collect(),
                        limit,
                    });
                }
                tracing::debug!(%role, %digest, "cache hit");
                return Ok(Fetched {
                    path: entry.path,
                    size: entry.size_bytes,
                    sha256: digest,
                    origin: Origin::CacheHit,
                    _temporary: None,
                });
            }
        }
        let written = self.download(&source, expected, limit, role).await?;
        let (size, sha256) = (written.size, written.sha256);
        let (path, origin, temporary) = if expected.is_some() {
            match self.cache.admit(index, written, now_ms()).await? {
                Admitted::Cached(path) => (path, Origin::Cached, None),
                Admitted::TooBigToCache(temp) => {
                    (temp.to_path_buf(), Origin::Temporary, Some(temp))
                }
            }
        } else {
            (
                written.path.to_path_buf(),
                Origin::Temporary,
                Some(written.path),
            )
        };
        tracing::info!(%role, size, sha256 = %sha256, ?origin, "fetched");
        Ok(Fetched {
            path,
            size,
            sha256,
            origin,
            _temporary: temporary,
        })
    }

    async fn download(
        &self,
        source: &Source,
        expected: Option<Digest>,
        limit: u64,
        role: Role,
    ) -> Result<Written, FetchError> {
        match source {
            Source::File(path) => self.copy_file(path, expected, limit).await,
            Source::Http(url) => self
                .with_retries(std::slice::from_ref(url), expected, limit, role)
                .await
                .map_err(|mut failures| match failures.pop() {
                    Some((_, err)) => err,
                    None => FetchError::Network {
                        url: redact(url),
                        reason: "no attempt was made".into(),
                    },
                }),
            Source::Ipfs(cid) => {
                if self.gateways.is_empty() {
                    return Err(FetchError::NoGateway { cid: cid.clone() });
                }
                let urls = self
                    .gateways
                    .iter()
                    .map(|g| Source::gateway_url(g, cid))
                    .collect::<Result<Vec<_>, _>>()?;
                self.with_retries(&urls, expected, limit, role)
                    .await
                    .map_err(|failures| FetchError::GatewaysExhausted {
                        cid: cid.clone(),
                        failures,
                    })
            }
        }
    }

    /// Tries `urls` in rounds: each round tries, in order, every URL whose last failure was
    /// transient; the first success wins. At most `1 + retries` rounds, with backoff between
    /// them. On failure, gives each URL (redacted) with its last error.
    async fn with_retries(
        &self,
        urls: &[Url],
        expected: Option<Digest>,
        limit: u64,
        role: Role,
    ) -> Result<Written, Vec<(String, FetchError)>> {
        let mut last: Vec<Option<FetchError>> = urls.iter().map(|_| None).collect();
        let mut backoff = self.backoff;
        for round in 0..=self.retries {
            if round > 0 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            for (url, last) in urls.iter().zip(last.iter_mut()) {
                if last.as_ref().is_some_and(|e| !e.is_transient()) {
                    continue;
                }
                match self.attempt(url, expected, limit).await {
                    Ok(written) => return Ok(written),
                    Err(err) => {
                        tracing::warn!(%role, url = %redact(url), round, error = %err, "download failed");
                        *last = Some(err);
                    }
                }
            }
            if last.iter().flatten().all(|e| !e.is_transient()) {
                break;
            }
        }
        Err(urls
            .iter()
            .zip(last)
            .filter_map(|(url, err)| err.map(|e| (redact(url), e)))
            .collect())
    }

    async fn attempt(
        &self,
        url: &Url,
        expected: Option<Digest>,
        limit: u64,
    ) -> Result<Written, FetchError> {
        let mut sink = Sink::create(self.cache.dir(), limit, &redact(url))?;
        http::download(&self.client, url, &mut sink, self.timeout).await?;
        verify(sink.finish().await?, expected)
    }

    async fn copy_file(
        &self,
        path: &Path,
        expected: Option<Digest>,
        limit: u64,
    ) -> Result<Written, FetchError> {
        let local = |e: &dyn std::fmt::Display| FetchError::LocalFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let resolved = tokio::fs::canonicalize(path).await.map_err(|e| local(&e))?;
        if let Some(root) = &self.file_root {
            let root = tokio::fs::canonicalize(root).await.map_err(|e| local(&e))?;
            if !resolved.starts_with(&root) {
                return Err(local(&format!(
                    "expected a file under {}, found {}",
                    root.display(),
                    resolved.display()
                )));
            }
        }
        let mut file = tokio::fs::File::open(&resolved)
            .await
            .map_err(|e| local(&e))?;
        let meta = file.metadata().await.map_err(|e| local(&e))?;
        if !meta.is_file() {
            return Err(local(&"expected a regular file"));
        }
        let mut sink = Sink::create(
            self.cache.dir(),
            limit,
            &format!("file://{}", path.display()),
        )?;
        sink.check_announced(Some(meta.len()))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf).await.map_err(|e| local(&e))?;
            if n == 0 {
                break;
            }
            sink.write(buf.get(..n).unwrap_or_default()).await?;
        }
        verify(sink.finish().await?, expected)
    }
}

/// Refuses a download whose sha256 is not the expected one (its temporary file is then dropped,
/// hence deleted).
fn verify(written: Written, expected: Option<Digest>) -> Result<Written, FetchError> {
    match expected {
        Some(expected) if written.sha256 != expected => Err(FetchError::BadChecksum {
            expected,
            found: written.sha256,
        }),
        _ => Ok(written),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::store::Store;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn a_fetch_can_run_on_any_runtime_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = Mutex::new(Store::open(&dir.path().join("state")).unwrap());
        let fetcher =
            Fetcher::new(&FetchSection::default(), &dir.path().join("cache"), None).unwrap();
        let future = fetcher.fetch(&store, "file:///nothing", None, Role::App, 1);
        assert_send(&future);
    }

    #[test]
    fn a_gateway_that_is_not_http_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = FetchSection {
            ipfs_gateways: vec!["file:///ipfs".into()],
            ..FetchSection::default()
        };
        let err = Fetcher::new(&config, dir.path(), None).unwrap_err();
        assert!(matches!(err, FetchError::UnsupportedUrl { .. }), "{err}");
    }
}
