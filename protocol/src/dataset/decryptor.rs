//! [`Decryptor`]: push-style decryption of the dataset format in constant memory.

use std::fmt;

use cbc::cipher::consts::U16;
use cbc::cipher::inout::InOutBuf;
use cbc::cipher::{BlockDecryptMut, KeyIvInit};
use zeroize::Zeroizing;

use super::{Aes256CbcDec, DatasetError, DatasetKey, BLOCK_LEN, IV_LEN};

/// A push-style decryptor in constant memory: it holds back only the IV and the last ciphertext
/// block (which carries the padding) and decrypts everything else as soon as it arrives.
///
/// ```
/// use edgepool_protocol::dataset::{self, DatasetKey, Decryptor};
///
/// let key = DatasetKey::from_bytes([7; 32]);
/// let encrypted = dataset::encrypt(&key, [1; 16], b"hello, dataset");
/// let mut decryptor = Decryptor::new(&key);
/// let mut plain = Vec::new();
/// for chunk in encrypted.chunks(5) {
///     decryptor.update(chunk, &mut plain)?;
/// }
/// decryptor.finish(&mut plain)?;
/// assert_eq!(plain, b"hello, dataset");
/// # Ok::<(), dataset::DatasetError>(())
/// ```
pub struct Decryptor {
    key: DatasetKey,
    iv: [u8; IV_LEN],
    iv_len: usize,
    /// Set once the IV is complete.
    cipher: Option<Aes256CbcDec>,
    /// Ciphertext not decrypted yet: between 1 and 16 bytes once the body has started.
    held: [u8; BLOCK_LEN],
    held_len: usize,
    body_len: u64,
}

impl Decryptor {
    /// A decryptor for one encrypted file.
    pub fn new(key: &DatasetKey) -> Self {
        Self {
            key: key.clone(),
            iv: [0; IV_LEN],
            iv_len: 0,
            cipher: None,
            held: [0; BLOCK_LEN],
            held_len: 0,
            body_len: 0,
        }
    }

    /// Feeds the next bytes of the encrypted file and appends the plaintext that can already be
    /// released to `out` (at most `input.len() + 16` bytes). `out` is used as scratch space: the
    /// ciphertext is appended and decrypted in place, so nothing is buffered here.
    ///
    /// # Errors
    /// None today: every check needs the end of the file and happens in [`Decryptor::finish`].
    /// The `Result` keeps callers ready for checks that can fail earlier.
    pub fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), DatasetError> {
        if self.cipher.is_none() {
            let take = (IV_LEN - self.iv_len).min(input.len());
            self.iv[self.iv_len..self.iv_len + take].copy_from_slice(&input[..take]);
            self.iv_len += take;
            input = &input[take..];
            if self.iv_len < IV_LEN {
                return Ok(());
            }
            self.cipher = Some(Aes256CbcDec::new(
                self.key.as_bytes().into(),
                (&self.iv).into(),
            ));
        }
        let cipher = self
            .cipher
            .as_mut()
            .expect("the cipher is set once the iv is complete");
        self.body_len += input.len() as u64;

        let take = (BLOCK_LEN - self.held_len).min(input.len());
        self.held[self.held_len..self.held_len + take].copy_from_slice(&input[..take]);
        self.held_len += take;
        input = &input[take..];
        if input.is_empty() {
            return Ok(());
        }
        // More follows, so the held block is not the final one: release it with every complete
        // block of `input` except the last 1..=16 bytes, which become the new held block.
        let keep = (input.len() - 1) % BLOCK_LEN + 1;
        let (now, later) = input.split_at(input.len() - keep);
        let start = out.len();
        out.reserve(BLOCK_LEN + now.len());
        out.extend_from_slice(&self.held);
        out.extend_from_slice(now);
        decrypt_in_place(cipher, &mut out[start..]);
        self.held[..keep].copy_from_slice(later);
        self.held_len = keep;
        Ok(())
    }

    /// Ends the file: checks the lengths and the padding, and appends the last plaintext bytes.
    ///
    /// # Errors
    /// [`DatasetError::TooShort`] when the IV never completed, [`DatasetError::Truncated`] when the
    /// body is empty or not whole blocks, [`DatasetError::BadPadding`] for a wrong key or corrupt
    /// final block.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), DatasetError> {
        let Some(cipher) = self.cipher.as_mut() else {
            return Err(DatasetError::TooShort { len: self.iv_len });
        };
        if self.body_len == 0 || self.body_len % BLOCK_LEN as u64 != 0 {
            return Err(DatasetError::Truncated {
                body_len: self.body_len,
            });
        }
        debug_assert_eq!(self.held_len, BLOCK_LEN);
        let mut block = Zeroizing::new(self.held);
        decrypt_in_place(cipher, &mut block[..]);
        let pad = pkcs7_padding_len(&block).ok_or(DatasetError::BadPadding)?;
        out.extend_from_slice(&block[..BLOCK_LEN - pad]);
        Ok(())
    }

    /// Bytes held back so far (IV and undecrypted ciphertext); never more than 32.
    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        self.iv_len + self.held_len
    }
}

impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decryptor")
            .field("iv_len", &self.iv_len)
            .field("body_len", &self.body_len)
            .finish_non_exhaustive()
    }
}

/// The PKCS#7 padding length of a decrypted final block, or `None` when it is invalid. Every
/// byte is looked at whatever the outcome, so the time taken does not depend on where a
/// mismatch is.
fn pkcs7_padding_len(block: &[u8; BLOCK_LEN]) -> Option<usize> {
    let n = block[BLOCK_LEN - 1];
    let mut bad = u8::from(n == 0) | u8::from(usize::from(n) > BLOCK_LEN);
    for (i, &byte) in block.iter().enumerate() {
        let in_padding = u8::from(BLOCK_LEN - i <= usize::from(n));
        bad |= in_padding & u8::from(byte != n);
    }
    (bad == 0).then_some(usize::from(n))
}

/// CBC-decrypts whole blocks in place, many at a time (the AES backend pipelines them).
fn decrypt_in_place(cipher: &mut Aes256CbcDec, buf: &mut [u8]) {
    let (blocks, tail) = InOutBuf::from(buf).into_chunks::<U16>();
    debug_assert!(tail.is_empty(), "only whole blocks are decrypted");
    cipher.decrypt_blocks_inout_mut(blocks);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dataset::{encrypt, KEY_LEN};
    use rand::rngs::StdRng;
    use rand::{RngCore, SeedableRng};

    fn key() -> DatasetKey {
        DatasetKey::from_bytes([0x5a; KEY_LEN])
    }

    #[test]
    fn padding_check_accepts_exactly_the_pkcs7_forms() {
        let mut block = [0xaa; BLOCK_LEN];
        for n in 1..=16u8 {
            block[BLOCK_LEN - usize::from(n)..].fill(n);
            assert_eq!(pkcs7_padding_len(&block), Some(usize::from(n)));
        }
        for last in [0u8, 17, 0xff] {
            let mut bad = [last; BLOCK_LEN];
            bad[BLOCK_LEN - 1] = last;
            assert_eq!(pkcs7_padding_len(&bad), None, "{last}");
        }
        let mut uneven = [3u8; BLOCK_LEN];
        uneven[BLOCK_LEN - 3] = 2;
        assert_eq!(pkcs7_padding_len(&uneven), None);
    }

    #[test]
    fn decryptor_memory_does_not_grow_with_the_input() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut plain = vec![0u8; 8 * 1024 * 1024];
        rng.fill_bytes(&mut plain);
        let encrypted = encrypt(&key(), [4; IV_LEN], &plain);
        let mut decryptor = Decryptor::new(&key());
        let mut out = Vec::with_capacity(encrypted.len());
        let mut offset = 0;
        for size in [1usize, 7, 4093, 65_536, 100_003].into_iter().cycle() {
            if offset == encrypted.len() {
                break;
            }
            let end = (offset + size).min(encrypted.len());
            decryptor.update(&encrypted[offset..end], &mut out).unwrap();
            assert!(decryptor.held_bytes() <= IV_LEN + BLOCK_LEN);
            offset = end;
        }
        // The decryptor owns no heap buffer, so its size (mostly the AES key schedules) is all it
        // ever holds.
        assert!(
            std::mem::size_of::<Decryptor>() < 4096,
            "{}",
            std::mem::size_of::<Decryptor>()
        );
        decryptor.finish(&mut out).unwrap();
        assert!(out == plain);
    }
}
