//! The iExec result digest, exactly as iexec-common `ResultUtils` computes it.
//!
//! - With `callback-data` in `computed.json` (a web3 task): `keccak256(bytes of the hex data)`.
//! - Otherwise the `deterministic-output-path` (a web2 task): a file gives `sha256(file)`; a
//!   directory gives `keccak256(concat(sha256(child)))` over its direct children sorted as Java's
//!   `File.compareTo` sorts them (UTF-16 code units); subdirectories contribute nothing, an empty
//!   file contributes `sha256("")`, an empty directory gives `keccak256("")`.
//!
//! Everything is computed over a [`FileTree`], so the sandbox's in-memory output and a real
//! directory share this one implementation.

use std::cmp::Ordering;
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::hash::{keccak256, Keccak256, Sha256};
use crate::primitives::{Bytes32, Digest};
use crate::tree::{join, normalize, EntryKind, FileTree};

/// The name of the file an app writes in its output folder.
pub const COMPUTED_FILE: &str = "computed.json";

/// The output folder as the app sees it.
pub const IEXEC_OUT: &str = "/iexec_out";

/// Why a result digest could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// No `computed.json` in the output folder.
    #[error("computed.json not found in the output folder")]
    ComputedFileMissing,
    /// `computed.json` is not the expected JSON object.
    #[error("computed.json is invalid: {0}")]
    ComputedFileInvalid(String),
    /// `computed.json` has neither `callback-data` nor `deterministic-output-path`.
    #[error("computed.json has neither callback-data nor deterministic-output-path")]
    NoOutputPath,
    /// The deterministic output path names nothing.
    #[error("deterministic output path {0:?} does not exist")]
    OutputPathMissing(String),
    /// The deterministic output path leaves the output folder.
    #[error("deterministic output path {0:?} is outside {IEXEC_OUT}")]
    OutputPathEscapes(String),
    /// `callback-data` is not hex.
    #[error("callback-data is not valid hex: {0}")]
    InvalidCallbackData(String),
    /// Reading the tree failed.
    #[error("reading the result tree failed: {0}")]
    Tree(Box<dyn std::error::Error + Send + Sync>),
}

fn tree_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> DigestError {
    DigestError::Tree(Box::new(e))
}

/// The `computed.json` an app writes (iexec-common `ComputedFile`, kebab-case keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ComputedFile {
    /// The file or folder whose content is the result (web2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deterministic_output_path: Option<String>,
    /// Hex bytes handed to the requester's callback (web3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_data: Option<String>,
    /// The task id, filled by the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The result digest, filled by the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_digest: Option<String>,
    /// The enclave signature, filled by a TEE worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enclave_signature: Option<String>,
    /// Why the task failed, written by the worker for download failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

impl ComputedFile {
    /// Parses `computed.json` bytes.
    ///
    /// # Errors
    /// [`DigestError::ComputedFileInvalid`] when the bytes are not such a JSON object.
    pub fn parse(bytes: &[u8]) -> Result<Self, DigestError> {
        serde_json::from_slice(bytes).map_err(|e| DigestError::ComputedFileInvalid(e.to_string()))
    }

    /// Reads `computed.json` from the output folder `out_dir` of `tree`.
    ///
    /// # Errors
    /// [`DigestError::ComputedFileMissing`], or the file is invalid or unreadable.
    pub fn read_from<T: FileTree>(tree: &T, out_dir: &str) -> Result<Self, DigestError> {
        let path = join(out_dir, COMPUTED_FILE);
        match tree.kind(&path).map_err(tree_error)? {
            Some(EntryKind::File) => {}
            _ => return Err(DigestError::ComputedFileMissing),
        }
        let mut bytes = Vec::new();
        tree.open(&path)
            .map_err(tree_error)?
            .take(1024 * 1024)
            .read_to_end(&mut bytes)
            .map_err(tree_error)?;
        Self::parse(&bytes)
    }

    /// The callback data, if present and non-empty.
    pub fn callback(&self) -> Option<&str> {
        self.callback_data
            .as_deref()
            .filter(|s| !s.trim().is_empty())
    }
}

/// The result digest of an output folder, following its `computed.json` as the iExec worker does.
///
/// `out_dir` is the path of the output folder within `tree` (`""` when the tree *is* the folder).
/// A `deterministic-output-path` is resolved inside that folder: `/iexec_out/x` and `x` both name
/// `out_dir/x`; a path outside `/iexec_out` is refused.
///
/// # Errors
/// See [`DigestError`].
pub fn result_digest<T: FileTree>(tree: &T, out_dir: &str) -> Result<Digest, DigestError> {
    let computed = ComputedFile::read_from(tree, out_dir)?;
    if let Some(callback) = computed.callback() {
        return web3_digest(callback);
    }
    let output = computed
        .deterministic_output_path
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .ok_or(DigestError::NoOutputPath)?;
    let relative = resolve_output_path(output)?;
    path_digest(tree, &join(out_dir, &relative))
}

/// Maps a `deterministic-output-path` to a path relative to the output folder.
fn resolve_output_path(output: &str) -> Result<String, DigestError> {
    let trimmed = output.trim();
    let relative = if let Some(rest) = trimmed.strip_prefix(IEXEC_OUT) {
        if !(rest.is_empty() || rest.starts_with('/')) {
            return Err(DigestError::OutputPathEscapes(output.to_string()));
        }
        rest
    } else if trimmed.starts_with('/') {
        return Err(DigestError::OutputPathEscapes(output.to_string()));
    } else {
        trimmed
    };
    normalize(relative).map_err(|_| DigestError::OutputPathEscapes(output.to_string()))
}

/// The web3 digest: `keccak256` of the bytes the hex `callback_data` encodes (`0x` optional).
///
/// # Errors
/// [`DigestError::InvalidCallbackData`] when it is not hex.
pub fn web3_digest(callback_data: &str) -> Result<Digest, DigestError> {
    let trimmed = callback_data.trim();
    let digits = trimmed.strip_prefix("0x").unwrap_or(trimmed);
    let bytes = hex::decode(digits).map_err(|e| DigestError::InvalidCallbackData(e.to_string()))?;
    Ok(Digest(keccak256(&bytes)))
}

/// The web2 digest of `path` in `tree`: `sha256` of a file, or the tree digest of a directory.
///
/// # Errors
/// [`DigestError::OutputPathMissing`] when nothing is there, or a read failed.
pub fn path_digest<T: FileTree>(tree: &T, path: &str) -> Result<Digest, DigestError> {
    match tree.kind(path).map_err(tree_error)? {
        Some(EntryKind::File) => file_sha256(tree, path).map(Digest),
        Some(EntryKind::Dir) => dir_digest(tree, path),
        None => Err(DigestError::OutputPathMissing(path.to_string())),
    }
}

fn dir_digest<T: FileTree>(tree: &T, dir: &str) -> Result<Digest, DigestError> {
    let mut names = tree.list(dir).map_err(tree_error)?;
    names.sort_by(|a, b| java_string_cmp(a, b));
    let mut hasher = Keccak256::new();
    for name in names {
        let path = join(dir, &name);
        // Java's readAllBytes fails on a directory and FileHashUtils then contributes "".
        if tree.kind(&path).map_err(tree_error)? == Some(EntryKind::File) {
            hasher.update(file_sha256(tree, &path)?.as_bytes());
        }
    }
    Ok(Digest(hasher.finalize()))
}

fn file_sha256<T: FileTree>(tree: &T, path: &str) -> Result<Bytes32, DigestError> {
    let mut reader = tree.open(path).map_err(tree_error)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut reader, &mut hasher).map_err(tree_error)?;
    Ok(hasher.finalize())
}

/// Java's `String.compareTo`: lexicographic over UTF-16 code units (so `10.txt < 9.txt <
/// C.txt < _x.bin < a.txt`, and characters beyond the BMP sort by their surrogates).
pub fn java_string_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tree::MemTree;

    #[test]
    fn java_order_puts_digits_before_upper_before_underscore_before_lower() {
        let mut names = vec!["a.txt", "_x.bin", "C.txt", "9.txt", "10.txt"];
        names.sort_by(|a, b| java_string_cmp(a, b));
        assert_eq!(names, ["10.txt", "9.txt", "C.txt", "_x.bin", "a.txt"]);
    }

    #[test]
    fn java_order_compares_utf16_units_not_code_points() {
        // U+FF61 is one unit above U+E000; U+1F600 is a surrogate pair starting at 0xD83D.
        assert_eq!(java_string_cmp("\u{1F600}", "\u{FF61}"), Ordering::Less);
        assert_eq!("\u{1F600}".cmp("\u{FF61}"), Ordering::Greater);
    }

    #[test]
    fn callback_data_wins_over_the_output_path() {
        let mut t = MemTree::new();
        t.insert_file(
            "computed.json",
            r#"{"deterministic-output-path":"/iexec_out/r.txt","callback-data":"0x01"}"#,
        )
        .unwrap();
        assert_eq!(result_digest(&t, "").unwrap(), Digest(keccak256(&[1])));
    }

    #[test]
    fn output_path_is_resolved_inside_the_output_folder() {
        let mut t = MemTree::new();
        t.insert_file(
            "out/computed.json",
            r#"{"deterministic-output-path":"/iexec_out/r.txt"}"#,
        )
        .unwrap();
        t.insert_file("out/r.txt", "hello").unwrap();
        assert_eq!(
            result_digest(&t, "out").unwrap(),
            Digest(crate::hash::sha256(b"hello"))
        );
        for bad in ["/etc/passwd", "/iexec_out/../x", "/iexec_outx", "../x"] {
            assert!(
                matches!(
                    resolve_output_path(bad),
                    Err(DigestError::OutputPathEscapes(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(resolve_output_path("/iexec_out").unwrap(), "");
    }

    #[test]
    fn missing_or_broken_computed_json_gives_typed_errors() {
        let mut t = MemTree::new();
        assert!(matches!(
            result_digest(&t, ""),
            Err(DigestError::ComputedFileMissing)
        ));
        t.insert_file("computed.json", "not json").unwrap();
        assert!(matches!(
            result_digest(&t, ""),
            Err(DigestError::ComputedFileInvalid(_))
        ));
        t.insert_file("computed.json", "{}").unwrap();
        assert!(matches!(
            result_digest(&t, ""),
            Err(DigestError::NoOutputPath)
        ));
        t.insert_file(
            "computed.json",
            r#"{"deterministic-output-path":"/iexec_out/none"}"#,
        )
        .unwrap();
        assert!(matches!(
            result_digest(&t, ""),
            Err(DigestError::OutputPathMissing(_))
        ));
        t.insert_file("computed.json", r#"{"callback-data":"0xzz"}"#)
            .unwrap();
        assert!(matches!(
            result_digest(&t, ""),
            Err(DigestError::InvalidCallbackData(_))
        ));
    }

    #[test]
    fn empty_directory_digest_is_keccak_of_nothing() {
        let mut t = MemTree::new();
        t.insert_dir("d").unwrap();
        assert_eq!(path_digest(&t, "d").unwrap(), Digest(keccak256(b"")));
    }
}
