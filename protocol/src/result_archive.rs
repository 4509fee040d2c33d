//! The result archive (`iexec_out.zip`) and iExec result encryption.
//!
//! - [`zip_tree`] archives a result folder as iexec-common `FileHelper.zipFolder` does: entry
//!   names relative to the folder, `/` separators, no folder prefix. The output is deterministic.
//! - [`unzip_to_tree`] reads an archive into a [`MemTree`](crate::tree::MemTree), treating it
//!   as hostile (paths that climb, zip bombs, entry floods).
//! - [`encrypt_result`] / [`decrypt_result`] are the iExec result encryption for a beneficiary's
//!   RSA key: an outer zip with two root entries, `aes-key.rsa` (RSA PKCS#1 v1.5 encryption of a
//!   fresh 32-byte AES key) and `iexec_out.zip.aes` (`IV ‖ AES-256-CBC/PKCS#7(iexec_out.zip)`, the
//!   format of [`crate::dataset`]). This is what the TEE post-compute writes and what
//!   `iexec result decrypt` reads.

use std::io::{Cursor, ErrorKind, Read, Seek, Write};

use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;
use zip::result::ZipError;
use zip::{ZipArchive, ZipWriter};

use crate::dataset::{self, DatasetError, DatasetKey, Decryptor, IV_LEN};

mod keys;
mod tree_zip;

pub use keys::{BeneficiaryPrivateKey, BeneficiaryPublicKey};
pub use tree_zip::{unzip_to_tree, zip_tree};

use tree_zip::{entry_options, read_bounded};

/// Name of the entry holding the RSA-encrypted AES key.
pub const AES_KEY_ENTRY: &str = "aes-key.rsa";
/// Name of the entry holding the AES-encrypted `iexec_out.zip`.
pub const PAYLOAD_ENTRY: &str = "iexec_out.zip.aes";
/// Largest `aes-key.rsa` accepted, as in the iExec SDK.
pub const MAX_AES_KEY_ENTRY_LEN: u64 = 1000;

const COPY_BUFFER_LEN: usize = 64 * 1024;
/// Cap on what is reserved up front from a size declared by the archive (which may lie).
const MAX_RESERVE: u64 = 64 * 1024 * 1024;

/// Why an archive could not be built, read, encrypted or decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// The zip container is malformed or uses a feature we do not read (encryption, an unknown
    /// compression method), or the zip writer failed.
    #[error("invalid zip archive: {0}")]
    Zip(String),
    /// A required entry is not in the encrypted archive.
    #[error("missing zip entry: expected {0:?} at the root of the archive, found none")]
    MissingEntry(String),
    /// An entry name that could escape the extraction root (absolute, `..`, backslash, NUL,
    /// drive letter, or empty).
    #[error("unsafe zip entry name {0:?}: expected a relative path without `..`, `\\` or NUL")]
    UnsafePath(String),
    /// The decompressed data exceeds the limit (measured while reading, not declared).
    #[error("zip entry {entry:?} exceeds the limit: expected at most {limit} bytes")]
    TooLarge {
        /// The entry being read when the limit was hit.
        entry: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// More entries than the limit.
    #[error("too many zip entries: expected at most {limit}, found {found}")]
    TooManyEntries {
        /// The limit.
        limit: usize,
        /// Entries in the archive.
        found: usize,
    },
    /// RSA encryption or decryption failed (wrong private key, corrupt `aes-key.rsa`).
    #[error("rsa: {0}")]
    Rsa(String),
    /// A beneficiary key could not be parsed.
    #[error("invalid beneficiary key: {0}")]
    KeyParse(String),
    /// `aes-key.rsa` decrypted to something other than a 32-byte AES-256 key.
    #[error(
        "expected a 32-byte AES-256 key in aes-key.rsa, found {found} bytes \
         (the legacy AES-128-ECB and base64 key forms are not supported)"
    )]
    BadAesKeyLength {
        /// Length of the decrypted key.
        found: usize,
    },
    /// A legacy form of the iExec SDK decryptor that we refuse to support.
    #[error("unsupported legacy iExec result encryption: {what}")]
    LegacyFormat {
        /// Which legacy form was recognised.
        what: &'static str,
    },
    /// The AES layer of `iexec_out.zip.aes` failed.
    #[error("decrypting iexec_out.zip.aes: {0}")]
    Dataset(#[from] DatasetError),
    /// An empty result archive, which the iExec post-compute refuses to encrypt.
    #[error("refusing to encrypt an empty result archive: expected at least one byte")]
    EmptyInput,
    /// The file tree could not be read or written.
    #[error("result tree: {0}")]
    Tree(String),
    /// The writer of [`decrypt_result_to`] failed.
    #[error("writing the plain archive: {0}")]
    Write(String),
}

impl From<ZipError> for ArchiveError {
    fn from(e: ZipError) -> Self {
        ArchiveError::Zip(e.to_string())
    }
}

/// Bounds on what [`unzip_to_tree`] and [`decrypt_result`] accept from a hostile archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Most entries (files and directories) in an archive; default 10,000. Above it:
    /// [`ArchiveError::TooManyEntries`].
    pub max_entries: usize,
    /// Most decompressed bytes, all entries together; default 1 GiB (the iExec SDK's payload
    /// limit). Above it: [`ArchiveError::TooLarge`].
    pub max_total_bytes: u64,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_total_bytes: 1 << 30,
        }
    }
}

/// Encrypts a plain `iexec_out.zip` for the beneficiary, as the iExec TEE post-compute does.
///
/// Draws a fresh AES-256 key and IV from `rng`; returns the outer zip holding, in this order,
/// `aes-key.rsa` (RSA PKCS#1 v1.5 of the 32 raw key bytes; 512 bytes for RSA-4096) and
/// `iexec_out.zip.aes` (`IV ‖ AES-256-CBC/PKCS#7(plain_zip)`).
///
/// # Errors
/// [`ArchiveError::EmptyInput`] for an empty `plain_zip`, [`ArchiveError::Rsa`] when the key is
/// too small for the message, [`ArchiveError::Zip`] when the zip writer fails.
pub fn encrypt_result<R: CryptoRng + RngCore + ?Sized>(
    plain_zip: &[u8],
    key: &BeneficiaryPublicKey,
    rng: &mut R,
) -> Result<Vec<u8>, ArchiveError> {
    if plain_zip.is_empty() {
        return Err(ArchiveError::EmptyInput);
    }
    let aes_key = DatasetKey::generate(rng);
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);
    let payload = dataset::encrypt(&aes_key, iv, plain_zip);
    let wrapped_key = key.encrypt_pkcs1v15(aes_key.as_bytes(), rng)?;

    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, content) in [(AES_KEY_ENTRY, &wrapped_key), (PAYLOAD_ENTRY, &payload)] {
        writer.start_file(name, entry_options(0o644))?;
        writer
            .write_all(content)
            .map_err(|e| ArchiveError::Zip(e.to_string()))?;
    }
    Ok(writer.finish()?.into_inner())
}

/// Decrypts an encrypted result archive and returns the plain `iexec_out.zip` bytes.
///
/// Reads the entries `aes-key.rsa` (at most 1000 bytes) and `iexec_out.zip.aes` (at most
/// `limits.max_total_bytes`, counted while inflating), RSA-decrypts the AES key (PKCS#1 v1.5),
/// which must be 32 bytes, and AES-256-CBC-decrypts the payload. The legacy forms the iExec SDK
/// still accepts (base64 text of the RSA ciphertext, a 16-byte AES-128-ECB key) are refused.
///
/// RSA decryption uses the `rsa` crate, whose PKCS#1 v1.5 decryption is not constant time
/// (RUSTSEC-2023-0071, "Marvin"): fine for a beneficiary decrypting their own files, not for a
/// service that answers decryption requests from others.
///
/// # Errors
/// [`ArchiveError::Zip`], [`ArchiveError::MissingEntry`], [`ArchiveError::TooManyEntries`],
/// [`ArchiveError::TooLarge`], [`ArchiveError::LegacyFormat`], [`ArchiveError::Rsa`] (wrong
/// private key or corrupt key entry), [`ArchiveError::BadAesKeyLength`] and
/// [`ArchiveError::Dataset`] for the AES layer.
pub fn decrypt_result(
    encrypted_zip: &[u8],
    key: &BeneficiaryPrivateKey,
    limits: &ExtractLimits,
) -> Result<Vec<u8>, ArchiveError> {
    // Plaintext is wiped if anything fails; copies left by growing past the reservation are not.
    let mut plain = Zeroizing::new(Vec::with_capacity(
        (encrypted_zip.len() as u64).min(MAX_RESERVE) as usize,
    ));
    decrypt_result_to(Cursor::new(encrypted_zip), key, limits, &mut *plain)?;
    Ok(std::mem::take(&mut *plain))
}

/// [`decrypt_result`] from a seekable reader to a writer, in constant memory: the plain
/// `iexec_out.zip` is written as it is decrypted, so neither the encrypted file nor the
/// plaintext is ever held whole (a zip bomb costs time up to `limits.max_total_bytes`, not
/// memory). Returns the plaintext length.
///
/// When an error is returned the writer has received unverified plaintext: discard it (the CLI
/// writes to a temporary file that is removed on error).
///
/// # Errors
/// As [`decrypt_result`], plus [`ArchiveError::Write`] when the writer fails.
pub fn decrypt_result_to<R: Read + Seek, W: Write>(
    reader: R,
    key: &BeneficiaryPrivateKey,
    limits: &ExtractLimits,
    mut writer: W,
) -> Result<u64, ArchiveError> {
    let mut archive = ZipArchive::new(reader)?;
    if archive.len() > limits.max_entries {
        return Err(ArchiveError::TooManyEntries {
            limit: limits.max_entries,
            found: archive.len(),
        });
    }
    let wrapped_key = {
        let mut entry = open_entry(&mut archive, AES_KEY_ENTRY)?;
        read_bounded(
            &mut entry,
            AES_KEY_ENTRY,
            MAX_AES_KEY_ENTRY_LEN,
            MAX_AES_KEY_ENTRY_LEN,
        )?
    };
    let aes_key = key.unwrap_aes_key(&wrapped_key)?;

    let mut entry = open_entry(&mut archive, PAYLOAD_ENTRY)?;
    let limit = limits.max_total_bytes;
    let too_large = || ArchiveError::TooLarge {
        entry: PAYLOAD_ENTRY.to_string(),
        limit,
    };
    if entry.size() > limit {
        return Err(too_large());
    }
    let mut decryptor = Decryptor::new(&aes_key);
    let mut buf = vec![0u8; COPY_BUFFER_LEN];
    let mut chunk = Zeroizing::new(Vec::with_capacity(COPY_BUFFER_LEN + 16));
    let mut read = 0u64;
    let mut written = 0u64;
    let mut emit = |chunk: &mut Vec<u8>| -> Result<(), ArchiveError> {
        writer
            .write_all(chunk)
            .map_err(|e| ArchiveError::Write(e.to_string()))?;
        written += chunk.len() as u64;
        chunk.clear();
        Ok(())
    };
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(ArchiveError::Zip(format!(
                    "reading entry {PAYLOAD_ENTRY:?}: {e}"
                )))
            }
        };
        read += n as u64;
        if read > limit {
            return Err(too_large());
        }
        decryptor.update(&buf[..n], &mut chunk)?;
        emit(&mut chunk)?;
    }
    decryptor.finish(&mut chunk)?;
    emit(&mut chunk)?;
    writer
        .flush()
        .map_err(|e| ArchiveError::Write(e.to_string()))?;
    Ok(written)
}

fn open_entry<'a, R: Read + Seek>(
    archive: &'a mut ZipArchive<R>,
    name: &str,
) -> Result<zip::read::ZipFile<'a, R>, ArchiveError> {
    match archive.by_name(name) {
        Ok(entry) => Ok(entry),
        Err(ZipError::FileNotFound) => Err(ArchiveError::MissingEntry(name.to_string())),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_is_not_encrypted() {
        let key = BeneficiaryPrivateKey::parse(keys::tests::UPSTREAM_PRIVATE_PEM).unwrap();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
        assert_eq!(
            encrypt_result(b"", &key.public_key(), &mut rng),
            Err(ArchiveError::EmptyInput)
        );
    }
}
