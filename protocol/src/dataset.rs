//! iExec dataset encryption, as the iExec SDK (`iexec dataset encrypt`) writes it and the TEE
//! pre-compute reads it.
//!
//! - **Key**: 32 random bytes ([`DatasetKey`]), exchanged as standard base64 (44 characters, `=`
//!   padded). The same text is the dataset secret in the SMS.
//! - **File**: `IV (16 bytes) ‖ AES-256-CBC(key, IV, PKCS#7(plaintext))`. Padding is always
//!   applied, so an empty plaintext gives 32 bytes.
//! - **Checksum**: `"0x"` + SHA-256 of the whole encrypted file, IV included ([`checksum`]); this
//!   is the on-chain `m_datasetChecksum`.
//!
//! The format is not authenticated: a wrong key and corrupt data are told apart only by chance,
//! through the padding of the final block ([`DatasetError::BadPadding`]), and corruption before the
//! final block is not detected at all. Callers that need integrity check the [`checksum`] of the
//! encrypted file first, as the worker does against the on-chain value.
//!
//! Everything here works in constant memory on streams ([`encrypt_stream`], [`decrypt_stream`],
//! [`Decryptor`]); [`encrypt`] and [`decrypt`] are the in-memory shorthands.

use std::fmt;
use std::io::{ErrorKind, Read, Write};

use aes::Aes256;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use cbc::cipher::consts::U16;
use cbc::cipher::inout::InOutBuf;
use cbc::cipher::{BlockEncryptMut, KeyIvInit};
use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::hash::{sha256, Sha256};
use crate::primitives::Digest;

mod decryptor;

pub use decryptor::Decryptor;

/// Length of a dataset key in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// Length of the IV that starts every encrypted file.
pub const IV_LEN: usize = 16;
/// The AES block length.
pub const BLOCK_LEN: usize = 16;
/// Size of the fixed buffer of the stream functions.
const STREAM_BUFFER_LEN: usize = 64 * 1024;

type Aes256CbcEnc = cbc::Encryptor<Aes256>;
type Aes256CbcDec = cbc::Decryptor<Aes256>;

/// Standard base64 that accepts a missing `=` padding too, as Node's `Buffer.from(s, 'base64')`
/// and Java's `Base64.getDecoder()` do.
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a dataset key, an encrypted dataset or a stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatasetError {
    /// The key text is not standard base64, or does not decode to 32 bytes.
    #[error("invalid dataset key: expected standard base64 of 32 bytes, found {reason}")]
    InvalidKey {
        /// What was found instead (never the key material itself).
        reason: String,
    },
    /// The input is shorter than the 16-byte IV.
    #[error("encrypted dataset too short: expected at least the 16-byte iv, found {len} bytes")]
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// The ciphertext after the IV is empty or not a whole number of AES blocks.
    #[error(
        "encrypted dataset truncated: expected a non-empty multiple of 16 bytes after the iv, \
         found {body_len} bytes"
    )]
    Truncated {
        /// Bytes after the IV.
        body_len: u64,
    },
    /// The final block does not end in valid PKCS#7 padding. CBC is not authenticated, so this is
    /// what both a wrong key and a corrupt final block look like.
    #[error("final block has invalid PKCS#7 padding: wrong key or corrupt data")]
    BadPadding,
    /// The encrypted file does not have the expected checksum: it is corrupt or not the file that
    /// was registered. Only the checked functions ([`decrypt_checked`], [`decrypt_stream_checked`])
    /// return it.
    #[error("encrypted dataset checksum mismatch: expected {expected}, found {found}")]
    ChecksumMismatch {
        /// The checksum the caller expected (the on-chain `m_datasetChecksum`).
        expected: Digest,
        /// The checksum of the bytes read.
        found: Digest,
    },
    /// The file has the expected checksum, so it is intact, yet its padding is invalid: the key is
    /// not the key it was encrypted with. Only the checked functions return it.
    #[error("wrong dataset key: the file is intact (checksum matches) but does not decrypt")]
    WrongKey,
    /// The reader or the writer of a stream function failed.
    #[error("i/o error: {0}")]
    Io(String),
}

/// A 32-byte AES-256 dataset key. Wiped from memory on drop; `Debug` does not show it.
#[derive(Clone)]
pub struct DatasetKey(Zeroizing<[u8; KEY_LEN]>);

impl DatasetKey {
    /// Parses the base64 text of a key, as `iexec dataset encrypt` writes it in its key files
    /// and as the SMS stores it. Surrounding whitespace (the final newline of a key file) is
    /// ignored; the `=` padding may be omitted.
    ///
    /// # Errors
    /// [`DatasetError::InvalidKey`] when the text is not base64 or does not decode to 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, DatasetError> {
        let decoded = LENIENT_STANDARD
            .decode(text.trim())
            .map(Zeroizing::new)
            .map_err(|e| DatasetError::InvalidKey {
                reason: describe_base64_error(&e),
            })?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if decoded.len() != KEY_LEN {
            return Err(DatasetError::InvalidKey {
                reason: format!("{} bytes", decoded.len()),
            });
        }
        key.copy_from_slice(&decoded);
        Ok(Self(key))
    }

    /// The key as standard base64 with padding (44 characters), the form the iExec SDK uses.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(*self.0))
    }

    /// A key from its raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random key drawn from `rng`.
    pub fn generate<R: CryptoRng + RngCore + ?Sized>(rng: &mut R) -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(&mut *key);
        Self(key)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DatasetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatasetKey(redacted)")
    }
}

/// Describes a base64 failure without quoting the (secret) input.
fn describe_base64_error(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(offset, _) => {
            format!("a character outside the base64 alphabet at offset {offset}")
        }
        base64::DecodeError::InvalidLength(len) => format!("an invalid base64 length of {len}"),
        base64::DecodeError::InvalidLastSymbol(offset, _) => {
            format!("an invalid last base64 symbol at offset {offset}")
        }
        base64::DecodeError::InvalidPadding => "invalid base64 padding".to_string(),
    }
}

/// The iExec dataset checksum: SHA-256 of the whole encrypted file, IV included.
pub fn checksum(encrypted: &[u8]) -> Digest {
    Digest(sha256(encrypted))
}

/// Encrypts `plaintext` to `IV ‖ AES-256-CBC/PKCS#7(plaintext)`.
///
/// `iv` must be fresh random bytes for every file; it is an argument so that this crate draws no
/// randomness itself.
pub fn encrypt(key: &DatasetKey, iv: [u8; IV_LEN], plaintext: &[u8]) -> Vec<u8> {
    let pad = BLOCK_LEN - plaintext.len() % BLOCK_LEN;
    let mut out = Vec::with_capacity(IV_LEN + plaintext.len() + pad);
    out.extend_from_slice(&iv);
    out.extend_from_slice(plaintext);
    out.resize(out.len() + pad, pad as u8);
    let mut cipher = Aes256CbcEnc::new(key.as_bytes().into(), (&iv).into());
    encrypt_in_place(&mut cipher, &mut out[IV_LEN..]);
    out
}

/// Encrypts everything `reader` yields to `writer` (same format as [`encrypt`]) with a fixed
/// 64 KiB buffer, and returns the [`checksum`] of what it wrote. The writer is flushed at the end.
///
/// # Errors
/// [`DatasetError::Io`] when the reader or the writer fails; the writer then holds a partial file.
pub fn encrypt_stream<R: Read, W: Write>(
    key: &DatasetKey,
    iv: [u8; IV_LEN],
    mut reader: R,
    mut writer: W,
) -> Result<Digest, DatasetError> {
    let mut cipher = Aes256CbcEnc::new(key.as_bytes().into(), (&iv).into());
    let mut hasher = Sha256::new();
    let mut emit = |bytes: &[u8]| -> Result<(), DatasetError> {
        hasher.update(bytes);
        writer.write_all(bytes).map_err(write_error)
    };
    emit(&iv)?;
    // One spare block so the padding always fits after a partly filled buffer.
    let mut buf = Zeroizing::new(vec![0u8; STREAM_BUFFER_LEN + BLOCK_LEN]);
    let mut filled = 0;
    loop {
        let n = read_some(&mut reader, &mut buf[filled..STREAM_BUFFER_LEN])?;
        if n == 0 {
            break;
        }
        filled += n;
        if filled == STREAM_BUFFER_LEN {
            encrypt_in_place(&mut cipher, &mut buf[..filled]);
            emit(&buf[..filled])?;
            filled = 0;
        }
    }
    let pad = BLOCK_LEN - filled % BLOCK_LEN;
    buf[filled..filled + pad].fill(pad as u8);
    filled += pad;
    encrypt_in_place(&mut cipher, &mut buf[..filled]);
    emit(&buf[..filled])?;
    writer.flush().map_err(write_error)?;
    Ok(Digest(hasher.finalize()))
}

/// Decrypts a whole encrypted dataset held in memory.
///
/// # Errors
/// [`DatasetError::TooShort`], [`DatasetError::Truncated`] or [`DatasetError::BadPadding`] (see
/// their docs). No partial plaintext is returned, and the partial plaintext is wiped.
pub fn decrypt(key: &DatasetKey, encrypted: &[u8]) -> Result<Vec<u8>, DatasetError> {
    check_lengths(encrypted.len())?;
    // The capacity covers the whole output, so the buffer never moves and leaves no copies behind.
    let mut out = Zeroizing::new(Vec::with_capacity(encrypted.len()));
    let mut decryptor = Decryptor::new(key);
    decryptor.update(encrypted, &mut out)?;
    decryptor.finish(&mut out)?;
    Ok(std::mem::take(&mut *out))
}

/// Decrypts everything `reader` yields to `writer` with fixed buffers, and returns the number of
/// plaintext bytes written. The writer is flushed at the end.
///
/// # Errors
/// The errors of [`decrypt`], found only at the end of the stream, and [`DatasetError::Io`]. On
/// any error the writer has already received the plaintext of every block but the last, which
/// is unauthenticated: discard the output (write to a temporary file and rename on success).
pub fn decrypt_stream<R: Read, W: Write>(
    key: &DatasetKey,
    mut reader: R,
    mut writer: W,
) -> Result<u64, DatasetError> {
    let mut decryptor = Decryptor::new(key);
    let mut input = vec![0u8; STREAM_BUFFER_LEN];
    // `update` emits at most one block more than it is given.
    let mut output = Zeroizing::new(Vec::with_capacity(STREAM_BUFFER_LEN + BLOCK_LEN));
    let mut written = 0u64;
    loop {
        let n = read_some(&mut reader, &mut input)?;
        if n == 0 {
            break;
        }
        decryptor.update(&input[..n], &mut output)?;
        writer.write_all(&output).map_err(write_error)?;
        written += output.len() as u64;
        output.clear();
    }
    decryptor.finish(&mut output)?;
    writer.write_all(&output).map_err(write_error)?;
    written += output.len() as u64;
    writer.flush().map_err(write_error)?;
    Ok(written)
}

/// [`decrypt`] for a file whose [`checksum`] is known (the on-chain value): tells a wrong key
/// ([`DatasetError::WrongKey`]) from a corrupt file ([`DatasetError::ChecksumMismatch`]).
///
/// # Errors
/// [`DatasetError::TooShort`] and [`DatasetError::Truncated`] for impossible lengths, then
/// [`DatasetError::ChecksumMismatch`] before any decryption, then [`DatasetError::WrongKey`].
pub fn decrypt_checked(
    key: &DatasetKey,
    expected: &Digest,
    encrypted: &[u8],
) -> Result<Vec<u8>, DatasetError> {
    check_lengths(encrypted.len())?;
    let found = checksum(encrypted);
    if found != *expected {
        return Err(DatasetError::ChecksumMismatch {
            expected: *expected,
            found,
        });
    }
    decrypt(key, encrypted).map_err(padding_means_wrong_key)
}

/// [`decrypt_stream`] for a file whose [`checksum`] is known: hashes the ciphertext while it
/// decrypts, in the same fixed memory, and tells a wrong key from a corrupt file at the end.
///
/// # Errors
/// As [`decrypt_checked`], plus [`DatasetError::Io`]. A [`DatasetError::ChecksumMismatch`] is
/// reported even when the padding happened to be valid. As with [`decrypt_stream`], the writer
/// has received unverified plaintext when an error is returned: discard it.
pub fn decrypt_stream_checked<R: Read, W: Write>(
    key: &DatasetKey,
    expected: &Digest,
    reader: R,
    writer: W,
) -> Result<u64, DatasetError> {
    let mut hashing = HashingReader {
        inner: reader,
        hasher: Sha256::new(),
    };
    let outcome = decrypt_stream(key, &mut hashing, writer);
    match outcome {
        Ok(_) | Err(DatasetError::BadPadding) => {
            let found = Digest(hashing.hasher.finalize());
            if found != *expected {
                return Err(DatasetError::ChecksumMismatch {
                    expected: *expected,
                    found,
                });
            }
            outcome.map_err(padding_means_wrong_key)
        }
        Err(other) => Err(other),
    }
}

fn padding_means_wrong_key(e: DatasetError) -> DatasetError {
    match e {
        DatasetError::BadPadding => DatasetError::WrongKey,
        other => other,
    }
}

/// Hashes what passes through a reader.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Refuses lengths that cannot be an encrypted file, before any decryption work.
fn check_lengths(len: usize) -> Result<(), DatasetError> {
    if len < IV_LEN {
        return Err(DatasetError::TooShort { len });
    }
    let body_len = len - IV_LEN;
    if body_len == 0 || body_len % BLOCK_LEN != 0 {
        return Err(DatasetError::Truncated {
            body_len: body_len as u64,
        });
    }
    Ok(())
}

/// CBC-encrypts whole blocks in place.
fn encrypt_in_place(cipher: &mut Aes256CbcEnc, buf: &mut [u8]) {
    let (blocks, tail) = InOutBuf::from(buf).into_chunks::<U16>();
    debug_assert!(tail.is_empty(), "only whole blocks are encrypted");
    cipher.encrypt_blocks_inout_mut(blocks);
}

/// One `read`, retried on `Interrupted`.
fn read_some<R: Read>(reader: &mut R, buf: &mut [u8]) -> Result<usize, DatasetError> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(DatasetError::Io(format!("reading the input: {e}"))),
        }
    }
}

fn write_error(e: std::io::Error) -> DatasetError {
    DatasetError::Io(format!("writing the output: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn key() -> DatasetKey {
        DatasetKey::from_bytes([0x5a; KEY_LEN])
    }

    #[test]
    fn random_sizes_from_0_to_100_round_trip_through_every_api() {
        let mut rng = StdRng::seed_from_u64(1);
        for len in 0..=100 {
            let key = DatasetKey::generate(&mut rng);
            let iv: [u8; IV_LEN] = rng.gen();
            let mut plain = vec![0u8; len];
            rng.fill_bytes(&mut plain);

            let encrypted = encrypt(&key, iv, &plain);
            assert_eq!(encrypted.len(), IV_LEN + BLOCK_LEN * (len / BLOCK_LEN + 1));
            assert_eq!(&encrypted[..IV_LEN], &iv);
            assert_eq!(decrypt(&key, &encrypted).unwrap(), plain, "len {len}");

            let mut streamed = Vec::new();
            let sum = encrypt_stream(&key, iv, plain.as_slice(), &mut streamed).unwrap();
            assert_eq!(streamed, encrypted);
            assert_eq!(sum, checksum(&encrypted));

            let mut back = Vec::new();
            let n = decrypt_stream(&key, encrypted.as_slice(), &mut back).unwrap();
            assert_eq!((n, back), (len as u64, plain));
        }
    }

    #[test]
    fn a_few_megabytes_round_trip_through_the_streams() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut plain = vec![0u8; 3 * 1024 * 1024 + 5];
        rng.fill_bytes(&mut plain);
        let iv = [9u8; IV_LEN];
        let mut encrypted = Vec::new();
        let sum = encrypt_stream(&key(), iv, plain.as_slice(), &mut encrypted).unwrap();
        assert_eq!(encrypted, encrypt(&key(), iv, &plain));
        assert_eq!(sum, checksum(&encrypted));
        let mut back = Vec::new();
        decrypt_stream(&key(), encrypted.as_slice(), &mut back).unwrap();
        assert!(back == plain);
        assert!(decrypt(&key(), &encrypted).unwrap() == plain);
    }

    #[test]
    fn key_text_round_trips_and_tolerates_a_final_newline() {
        let key = DatasetKey::from_bytes(core::array::from_fn(|i| i as u8));
        let text = key.to_base64();
        assert_eq!(text.len(), 44);
        let back = DatasetKey::from_base64(&format!("  {}\n", text.as_str())).unwrap();
        assert_eq!(back.as_bytes(), key.as_bytes());
        let unpadded = text.trim_end_matches('=');
        assert_eq!(
            DatasetKey::from_base64(unpadded).unwrap().as_bytes(),
            key.as_bytes()
        );
    }

    #[test]
    fn invalid_keys_are_refused_without_echoing_them() {
        for text in [
            "",
            "not base64!",
            "AAAA",
            "YWJj\u{e9}",
            &STANDARD.encode([1u8; 31]),
        ] {
            let err = DatasetKey::from_base64(text).unwrap_err();
            assert!(
                matches!(err, DatasetError::InvalidKey { .. }),
                "{text:?}: {err}"
            );
        }
        let err = DatasetKey::from_base64(&STANDARD.encode([1u8; 33])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid dataset key: expected standard base64 of 32 bytes, found 33 bytes"
        );
        let secret = "SECRETSECRETSECRET$";
        assert!(!DatasetKey::from_base64(secret)
            .unwrap_err()
            .to_string()
            .contains("SECRET"));
    }

    #[test]
    fn debug_does_not_show_the_key() {
        assert_eq!(format!("{:?}", key()), "DatasetKey(redacted)");
        assert!(!format!("{:?}", Decryptor::new(&key())).contains("5a"));
    }

    #[test]
    fn a_flipped_bit_in_the_last_block_gives_bad_padding() {
        let mut encrypted = encrypt(&key(), [3; IV_LEN], b"sixteen bytes!!!");
        // Flipping a bit of the second-to-last ciphertext block flips the same bit of the final
        // plaintext block, which is all padding here.
        let at = encrypted.len() - BLOCK_LEN - 1;
        encrypted[at] ^= 0x01;
        assert_eq!(decrypt(&key(), &encrypted), Err(DatasetError::BadPadding));
        let mut sink = Vec::new();
        assert_eq!(
            decrypt_stream(&key(), encrypted.as_slice(), &mut sink),
            Err(DatasetError::BadPadding)
        );
    }

    #[test]
    fn with_a_known_checksum_a_wrong_key_and_a_corrupt_file_are_told_apart() {
        let encrypted = encrypt(&key(), [3; IV_LEN], b"the plaintext of a small dataset");
        let sum = checksum(&encrypted);
        let wrong = DatasetKey::from_bytes([0x11; KEY_LEN]);
        // Wrong key: the file is intact.
        assert_eq!(
            decrypt_checked(&wrong, &sum, &encrypted),
            Err(DatasetError::WrongKey)
        );
        assert_eq!(
            decrypt_stream_checked(&wrong, &sum, encrypted.as_slice(), Vec::new()),
            Err(DatasetError::WrongKey)
        );
        // Corrupt file: a flipped bit in the first block leaves the padding valid, yet the
        // checksum catches it, with the right key or a wrong one.
        let mut corrupt = encrypted.clone();
        corrupt[IV_LEN] ^= 0x80;
        let mismatch = DatasetError::ChecksumMismatch {
            expected: sum,
            found: checksum(&corrupt),
        };
        assert_eq!(decrypt(&key(), &corrupt).map(|_| ()), Ok(()));
        assert_eq!(
            decrypt_checked(&key(), &sum, &corrupt),
            Err(mismatch.clone())
        );
        assert_eq!(
            decrypt_stream_checked(&key(), &sum, corrupt.as_slice(), Vec::new()),
            Err(mismatch.clone())
        );
        assert_eq!(decrypt_checked(&wrong, &sum, &corrupt), Err(mismatch));
        // The right key and the right file.
        let mut out = Vec::new();
        decrypt_stream_checked(&key(), &sum, encrypted.as_slice(), &mut out).unwrap();
        assert_eq!(out, b"the plaintext of a small dataset");
        // Impossible lengths keep their own errors.
        assert_eq!(
            decrypt_checked(&key(), &sum, &encrypted[..20]),
            Err(DatasetError::Truncated { body_len: 4 })
        );
        assert_eq!(
            decrypt_stream_checked(&key(), &sum, &encrypted[..7], Vec::new()),
            Err(DatasetError::TooShort { len: 7 })
        );
    }

    #[test]
    fn lengths_that_cannot_be_a_file_give_their_own_errors() {
        assert_eq!(
            decrypt(&key(), &[0; 15]),
            Err(DatasetError::TooShort { len: 15 })
        );
        assert_eq!(
            decrypt(&key(), &[0; 16]),
            Err(DatasetError::Truncated { body_len: 0 })
        );
        assert_eq!(
            decrypt(&key(), &[0; 33]),
            Err(DatasetError::Truncated { body_len: 17 })
        );
        let mut d = Decryptor::new(&key());
        d.update(&[0; 40], &mut Vec::new()).unwrap();
        assert_eq!(
            d.finish(&mut Vec::new()),
            Err(DatasetError::Truncated { body_len: 24 })
        );
    }

    #[test]
    fn stream_errors_of_the_reader_are_io_errors() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let err = decrypt_stream(&key(), Failing, Vec::new()).unwrap_err();
        assert!(
            matches!(&err, DatasetError::Io(m) if m.contains("disk on fire")),
            "{err}"
        );
        let err = encrypt_stream(&key(), [0; IV_LEN], Failing, Vec::new()).unwrap_err();
        assert!(matches!(err, DatasetError::Io(_)));
    }
}
