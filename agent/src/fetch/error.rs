//! [`FetchError`]: what can go wrong with a download, and [`cause`], the iExec cause a failed
//! download is reported with for each [`Role`].

use std::path::PathBuf;
use std::time::Duration;

use edgepool_protocol::primitives::Digest;
use edgepool_protocol::status::ReplicateStatusCause;

use crate::store::StoreError;

/// What a downloaded item is for in a task; decides the iExec cause of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The app (a WebAssembly module), checked against the app checksum.
    App,
    /// The dataset file, checked against the dataset checksum (of the encrypted file).
    Dataset,
    /// The input file at this index of the task's input files (not checksummed).
    InputFile(usize),
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::App => f.write_str("app"),
            Role::Dataset => f.write_str("dataset"),
            Role::InputFile(i) => write!(f, "input file {i}"),
        }
    }
}

/// A download failed; one variant per outcome a caller (or the retry loop) branches on.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not one of `http://`, `https://`, `file://` (absolute path), `/ipfs/<cid>` or
    /// `ipfs://<cid>`, or an IPFS gateway of the configuration is not an http(s) URL.
    #[error("unsupported url {url:?}: {reason}")]
    UnsupportedUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server answered with a status other than 2xx.
    #[error("expected a 2xx answer from {url}, found http status {status}")]
    Http {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// Connecting, the answer's headers or the next part of the body took longer than the
    /// configured timeout.
    #[error("{url} stalled for more than {after:?}")]
    Timeout {
        /// The URL requested.
        url: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The connection failed or broke (refused, reset, DNS, TLS, truncated body).
    #[error("cannot download {url}: {reason}")]
    Network {
        /// The URL requested.
        url: String,
        /// What the HTTP client said.
        reason: String,
    },
    /// A redirect went to a scheme other than http(s), or there were too many redirects.
    #[error("refused redirect from {url}: {reason}")]
    Redirect {
        /// The URL requested.
        url: String,
        /// What was wrong with the redirect.
        reason: String,
    },
    /// The item is larger than the cap (announced by `Content-Length`, or found while streaming).
    #[error("{url} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The URL requested.
        url: String,
        /// The cap in bytes.
        limit: u64,
    },
    /// The bytes downloaded do not have the expected sha256.
    #[error("expected sha256 {expected}, found {found}")]
    BadChecksum {
        /// The checksum the task gives.
        expected: Digest,
        /// The sha256 of what was downloaded.
        found: Digest,
    },
    /// A `file://` URL names a file that cannot be read (missing, a directory, no permission,
    /// outside the allowed root).
    #[error("cannot read {path}: {reason}")]
    LocalFile {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        reason: String,
    },
    /// An IPFS URL, but no gateway is configured (`fetch.ipfs_gateways` is empty).
    #[error("cannot fetch /ipfs/{cid}: no ipfs gateway configured (fetch.ipfs_gateways)")]
    NoGateway {
        /// The content id.
        cid: String,
    },
    /// Every IPFS gateway failed; the last error of each, in the configured order.
    #[error("every ipfs gateway failed for /ipfs/{cid}: {}", list(failures))]
    GatewaysExhausted {
        /// The content id (with its sub-path, if any).
        cid: String,
        /// The gateway and its last error.
        failures: Vec<(String, FetchError)>,
    },
    /// The cache directory could not be written (full, read-only, failing disk).
    #[error("cannot write the download cache {path}: {reason}")]
    CacheIo {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        reason: String,
    },
    /// The journal's cache index failed.
    #[error("cache index: {0}")]
    Index(#[from] StoreError),
    /// The TLS configuration or the HTTP client could not be built.
    #[error("cannot set up the http client: {0}")]
    Client(String),
}

fn list(failures: &[(String, FetchError)]) -> String {
    failures
        .iter()
        .map(|(gateway, err)| format!("{gateway}: {err}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl FetchError {
    /// Whether trying the same URL again may succeed: timeouts, broken connections, and the
    /// statuses that say "later" (408, 429, 5xx). A wrong checksum, a size cap, a 404 or a
    /// refused URL stay what they are.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Timeout { .. } | FetchError::Network { .. } => true,
            FetchError::Http { status, .. } => {
                *status == 408 || *status == 429 || (500..600).contains(status)
            }
            _ => false,
        }
    }

    /// Whether the content itself was wrong: a bad checksum, or every gateway served a bad one.
    pub fn is_bad_checksum(&self) -> bool {
        match self {
            FetchError::BadChecksum { .. } => true,
            FetchError::GatewaysExhausted { failures, .. } => {
                !failures.is_empty() && failures.iter().all(|(_, e)| e.is_bad_checksum())
            }
            _ => false,
        }
    }

    /// Whether the agent's own storage failed rather than the download.
    pub fn is_local_storage(&self) -> bool {
        matches!(self, FetchError::CacheIo { .. } | FetchError::Index(_))
    }
}

/// The iExec cause a failed download of `role` is reported with.
///
/// - App: `APP_DOWNLOAD_FAILED`, whatever went wrong (iExec has no separate app checksum cause).
/// - Dataset: `DATASET_FILE_BAD_CHECKSUM` when the content did not match, otherwise
///   `DATASET_FILE_DOWNLOAD_FAILED`.
/// - Input file: `INPUT_FILES_DOWNLOAD_FAILED`.
/// - For any role, a failure of the agent's own disk or journal (not the requester's fault) is
///   `EDGEPOOL_STORAGE_UNAVAILABLE`.
pub fn cause(role: Role, err: &FetchError) -> ReplicateStatusCause {
    if err.is_local_storage() {
        return ReplicateStatusCause::StorageUnavailable;
    }
    match role {
        Role::App => ReplicateStatusCause::AppDownloadFailed,
        Role::Dataset if err.is_bad_checksum() => ReplicateStatusCause::DatasetFileBadChecksum,
        Role::Dataset => ReplicateStatusCause::DatasetFileDownloadFailed,
        Role::InputFile(_) => ReplicateStatusCause::InputFilesDownloadFailed,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bad() -> FetchError {
        FetchError::BadChecksum {
            expected: Digest::from([1; 32]),
            found: Digest::from([2; 32]),
        }
    }

    fn http(status: u16) -> FetchError {
        FetchError::Http {
            url: "http://x/".into(),
            status,
        }
    }

    #[test]
    fn a_bad_dataset_checksum_is_reported_as_such() {
        assert_eq!(
            cause(Role::Dataset, &bad()),
            ReplicateStatusCause::DatasetFileBadChecksum
        );
        assert_eq!(
            cause(Role::Dataset, &http(404)),
            ReplicateStatusCause::DatasetFileDownloadFailed
        );
    }

    #[test]
    fn every_app_failure_is_an_app_download_failure() {
        for err in [bad(), http(500)] {
            assert_eq!(
                cause(Role::App, &err),
                ReplicateStatusCause::AppDownloadFailed
            );
        }
    }

    #[test]
    fn input_file_failures_are_input_files_download_failures() {
        assert_eq!(
            cause(Role::InputFile(3), &bad()),
            ReplicateStatusCause::InputFilesDownloadFailed
        );
    }

    #[test]
    fn local_storage_failures_are_not_blamed_on_the_download() {
        let err = FetchError::CacheIo {
            path: "/x".into(),
            reason: "no space left on device".into(),
        };
        assert_eq!(
            cause(Role::Dataset, &err),
            ReplicateStatusCause::StorageUnavailable
        );
    }

    #[test]
    fn gateways_that_all_served_bad_content_make_a_bad_checksum() {
        let all_bad = FetchError::GatewaysExhausted {
            cid: "Qm".into(),
            failures: vec![("a".into(), bad()), ("b".into(), bad())],
        };
        assert!(all_bad.is_bad_checksum());
        let mixed = FetchError::GatewaysExhausted {
            cid: "Qm".into(),
            failures: vec![("a".into(), bad()), ("b".into(), http(503))],
        };
        assert!(!mixed.is_bad_checksum());
        assert_eq!(
            cause(Role::Dataset, &mixed),
            ReplicateStatusCause::DatasetFileDownloadFailed
        );
    }

    #[test]
    fn only_later_statuses_and_broken_connections_are_transient() {
        assert!(http(503).is_transient());
        assert!(http(429).is_transient());
        assert!(http(408).is_transient());
        assert!(!http(404).is_transient());
        assert!(!bad().is_transient());
        assert!(!FetchError::TooLarge {
            url: "u".into(),
            limit: 1
        }
        .is_transient());
    }
}
