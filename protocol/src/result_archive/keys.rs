//! The beneficiary's RSA keys, in the forms the iExec SDK produces and the SMS stores.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::{CryptoRng, RngCore};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};
use zeroize::Zeroizing;

use super::ArchiveError;
use crate::dataset::{DatasetKey, KEY_LEN};

/// A beneficiary's RSA public key, the one results are encrypted for.
#[derive(Clone, PartialEq, Eq)]
pub struct BeneficiaryPublicKey(RsaPublicKey);

impl BeneficiaryPublicKey {
    /// Parses an SPKI PEM (`BEGIN PUBLIC KEY`, what `iexec result generate-encryption-keypair`
    /// writes), a PKCS#1 PEM (`BEGIN RSA PUBLIC KEY`), or the standard base64 of either PEM text
    /// (what `iexec result push-encryption-key` stores in the SMS), told apart by the absence of
    /// `-----BEGIN`. Surrounding whitespace is ignored.
    ///
    /// # Errors
    /// [`ArchiveError::KeyParse`] for anything else.
    pub fn parse(text: &str) -> Result<Self, ArchiveError> {
        let text = text.trim();
        if text.contains("-----BEGIN") {
            return Self::parse_pem(text);
        }
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let decoded = STANDARD.decode(compact).map_err(|e| {
            ArchiveError::KeyParse(format!(
                "expected a PEM public key or the base64 of one, found neither ({e})"
            ))
        })?;
        let pem = String::from_utf8(decoded).map_err(|_| {
            ArchiveError::KeyParse("expected base64 of PEM text, found non-UTF-8 bytes".into())
        })?;
        if !pem.contains("-----BEGIN") {
            return Err(ArchiveError::KeyParse(
                "expected base64 of PEM text, found no -----BEGIN line after decoding".into(),
            ));
        }
        Self::parse_pem(pem.trim())
    }

    fn parse_pem(pem: &str) -> Result<Self, ArchiveError> {
        let parsed = if pem.contains("-----BEGIN RSA PUBLIC KEY-----") {
            RsaPublicKey::from_pkcs1_pem(pem).map_err(|e| e.to_string())
        } else if pem.contains("-----BEGIN PUBLIC KEY-----") {
            RsaPublicKey::from_public_key_pem(pem).map_err(|e| e.to_string())
        } else {
            Err("expected BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY, found another PEM label".into())
        };
        parsed
            .map(Self)
            .map_err(|e| ArchiveError::KeyParse(format!("rsa public key: {e}")))
    }

    /// The SPKI PEM (`BEGIN PUBLIC KEY`), the form `iexec result generate-encryption-keypair`
    /// writes and the SMS stores.
    ///
    /// # Errors
    /// [`ArchiveError::KeyParse`] if the encoder fails (it does not for a valid key).
    pub fn to_pem(&self) -> Result<String, ArchiveError> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| ArchiveError::KeyParse(format!("encoding the public key: {e}")))
    }

    /// Size of the modulus in bytes (512 for RSA-4096), which is the size of every ciphertext.
    pub fn size(&self) -> usize {
        self.0.size()
    }

    /// RSA PKCS#1 v1.5 encryption (Java's `Cipher.getInstance("RSA")`) of `message`.
    ///
    /// # Errors
    /// [`ArchiveError::Rsa`] when `message` is longer than the key allows (size − 11 bytes).
    pub fn encrypt_pkcs1v15<R: CryptoRng + RngCore + ?Sized>(
        &self,
        message: &[u8],
        mut rng: &mut R,
    ) -> Result<Vec<u8>, ArchiveError> {
        self.0
            .encrypt(&mut rng, Pkcs1v15Encrypt, message)
            .map_err(|e| ArchiveError::Rsa(format!("encryption failed: {e}")))
    }
}

impl fmt::Debug for BeneficiaryPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BeneficiaryPublicKey(rsa-{})", self.0.n().bits())
    }
}

/// A beneficiary's RSA private key. Wiped on drop; `Debug` does not show it.
#[derive(Clone)]
pub struct BeneficiaryPrivateKey(RsaPrivateKey);

impl BeneficiaryPrivateKey {
    /// Parses a PKCS#8 PEM (`BEGIN PRIVATE KEY`, what the iExec SDK writes) or a PKCS#1 PEM
    /// (`BEGIN RSA PRIVATE KEY`). Surrounding whitespace is ignored. Encrypted PEM is refused.
    ///
    /// # Errors
    /// [`ArchiveError::KeyParse`] for anything else; the message never quotes the key.
    pub fn parse(text: &str) -> Result<Self, ArchiveError> {
        let pem = text.trim();
        let parsed = if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
            RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| e.to_string())
        } else if pem.contains("-----BEGIN PRIVATE KEY-----") {
            RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| e.to_string())
        } else if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            Err("expected an unencrypted PEM, found an encrypted PKCS#8 key".into())
        } else {
            Err("expected a PEM with BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY, found none".into())
        };
        parsed
            .map(Self)
            .map_err(|e| ArchiveError::KeyParse(format!("rsa private key: {e}")))
    }

    /// A fresh RSA key of `bits` bits (the iExec SDK makes 4096-bit keys) with exponent 65537,
    /// drawn from `rng`.
    ///
    /// # Errors
    /// [`ArchiveError::Rsa`] for a size the `rsa` crate refuses (below 64 bits or absurdly large).
    pub fn generate<R: CryptoRng + RngCore + ?Sized>(
        mut rng: &mut R,
        bits: usize,
    ) -> Result<Self, ArchiveError> {
        RsaPrivateKey::new(&mut rng, bits)
            .map(Self)
            .map_err(|e| ArchiveError::Rsa(format!("generating a {bits}-bit key: {e}")))
    }

    /// The PKCS#8 PEM (`BEGIN PRIVATE KEY`), the form the iExec SDK writes and
    /// [`BeneficiaryPrivateKey::parse`] reads; wiped when dropped.
    ///
    /// # Errors
    /// [`ArchiveError::KeyParse`] if the encoder fails (it does not for a valid key).
    pub fn to_pem(&self) -> Result<Zeroizing<String>, ArchiveError> {
        self.0
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| ArchiveError::KeyParse(format!("encoding the private key: {e}")))
    }

    /// The matching public key.
    pub fn public_key(&self) -> BeneficiaryPublicKey {
        BeneficiaryPublicKey(self.0.to_public_key())
    }

    /// RSA PKCS#1 v1.5 decryption (Java's `Cipher.getInstance("RSA")`, node-forge's default).
    /// Not constant time (RUSTSEC-2023-0071): do not expose it as an oracle to others.
    ///
    /// # Errors
    /// [`ArchiveError::Rsa`] for a wrong key or corrupt ciphertext.
    pub fn decrypt_pkcs1v15(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, ArchiveError> {
        self.0
            .decrypt(Pkcs1v15Encrypt, ciphertext)
            .map(Zeroizing::new)
            .map_err(|e| {
                ArchiveError::Rsa(format!(
                    "{e}: expected a PKCS#1 v1.5 ciphertext for this key (wrong private key or \
                     corrupt data)"
                ))
            })
    }

    /// Recovers the AES key of `aes-key.rsa`, refusing the SDK's legacy forms.
    pub(super) fn unwrap_aes_key(&self, wrapped: &[u8]) -> Result<DatasetKey, ArchiveError> {
        let size = self.0.size();
        if wrapped.len() != size {
            if looks_like_base64(wrapped) {
                return Err(ArchiveError::LegacyFormat {
                    what: "aes-key.rsa holds base64 text instead of the raw RSA ciphertext",
                });
            }
            return Err(ArchiveError::Rsa(format!(
                "expected a {size}-byte ciphertext in aes-key.rsa, found {} bytes",
                wrapped.len()
            )));
        }
        let raw = self.decrypt_pkcs1v15(wrapped)?;
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        if raw.len() != KEY_LEN {
            return Err(ArchiveError::BadAesKeyLength { found: raw.len() });
        }
        bytes.copy_from_slice(&raw);
        Ok(DatasetKey::from_bytes(*bytes))
    }
}

impl fmt::Debug for BeneficiaryPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BeneficiaryPrivateKey(redacted)")
    }
}

fn looks_like_base64(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\r' | b'\n'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod tests {
    use super::*;
    use rand::SeedableRng;

    pub(in crate::result_archive) const UPSTREAM_PRIVATE_PEM: &str = include_str!(
        "../../tests/data/iexec/upstream_fixtures/iexec-common/src/test/resources/security/rsa/key"
    );
    const UPSTREAM_PUBLIC_PEM: &str = include_str!(
        "../../tests/data/iexec/upstream_fixtures/iexec-common/src/test/resources/security/rsa/key.pub"
    );

    #[test]
    fn public_key_parses_as_pem_and_as_base64_of_pem() {
        let from_pem = BeneficiaryPublicKey::parse(UPSTREAM_PUBLIC_PEM).unwrap();
        let b64 = STANDARD.encode(UPSTREAM_PUBLIC_PEM);
        let from_b64 = BeneficiaryPublicKey::parse(&format!("{b64}\n")).unwrap();
        assert_eq!(from_pem, from_b64);
        assert_eq!(from_pem.size(), 512);
        let private = BeneficiaryPrivateKey::parse(UPSTREAM_PRIVATE_PEM).unwrap();
        assert_eq!(private.public_key(), from_pem);
    }

    #[test]
    fn a_generated_key_round_trips_through_its_pem_forms_and_decrypts_what_it_encrypts() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let private = BeneficiaryPrivateKey::generate(&mut rng, 1024).unwrap();
        let public_pem = private.public_key().to_pem().unwrap();
        assert!(
            public_pem.starts_with("-----BEGIN PUBLIC KEY-----"),
            "{public_pem}"
        );
        let public = BeneficiaryPublicKey::parse(&public_pem).unwrap();
        assert_eq!(public, private.public_key());
        let again = BeneficiaryPrivateKey::parse(&private.to_pem().unwrap()).unwrap();
        let wrapped = public.encrypt_pkcs1v15(&[9u8; 32], &mut rng).unwrap();
        assert_eq!(
            again.decrypt_pkcs1v15(&wrapped).unwrap().as_slice(),
            &[9u8; 32]
        );
    }

    #[test]
    fn pkcs1_pem_forms_are_accepted() {
        use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey, LineEnding};
        let private = BeneficiaryPrivateKey::parse(UPSTREAM_PRIVATE_PEM).unwrap();
        let pkcs1_private = private.0.to_pkcs1_pem(LineEnding::LF).unwrap();
        let pkcs1_public = private
            .0
            .to_public_key()
            .to_pkcs1_pem(LineEnding::LF)
            .unwrap();
        assert!(pkcs1_public.contains("BEGIN RSA PUBLIC KEY"));
        let public = BeneficiaryPublicKey::parse(&pkcs1_public).unwrap();
        assert_eq!(public, private.public_key());
        let again = BeneficiaryPrivateKey::parse(&pkcs1_private).unwrap();
        assert_eq!(again.public_key(), public);
    }

    #[test]
    fn garbage_keys_are_key_parse_errors_that_do_not_quote_the_key() {
        for text in [
            "",
            "hello",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        ] {
            assert!(
                matches!(
                    BeneficiaryPublicKey::parse(text),
                    Err(ArchiveError::KeyParse(_))
                ),
                "{text}"
            );
        }
        let mangled = UPSTREAM_PRIVATE_PEM.replace("MIIJ", "XXXX");
        let err = BeneficiaryPrivateKey::parse(&mangled).unwrap_err();
        assert!(matches!(err, ArchiveError::KeyParse(_)));
        assert!(!err.to_string().contains("XXXX"), "{err}");
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----";
        assert!(BeneficiaryPrivateKey::parse(encrypted)
            .unwrap_err()
            .to_string()
            .contains("encrypted"));
        let private = BeneficiaryPrivateKey::parse(UPSTREAM_PRIVATE_PEM).unwrap();
        assert_eq!(format!("{private:?}"), "BeneficiaryPrivateKey(redacted)");
    }

    #[test]
    fn legacy_and_wrong_sized_key_entries_are_refused_with_their_own_errors() {
        let private = BeneficiaryPrivateKey::parse(UPSTREAM_PRIVATE_PEM).unwrap();
        let public = private.public_key();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let b64_text = STANDARD.encode(public.encrypt_pkcs1v15(&[1; 32], &mut rng).unwrap());
        assert!(matches!(
            private.unwrap_aes_key(b64_text.as_bytes()),
            Err(ArchiveError::LegacyFormat { .. })
        ));
        let aes128 = public.encrypt_pkcs1v15(&[1; 16], &mut rng).unwrap();
        assert_eq!(
            private.unwrap_aes_key(&aes128).unwrap_err(),
            ArchiveError::BadAesKeyLength { found: 16 }
        );
        assert!(matches!(
            private.unwrap_aes_key(&[0xff; 100]),
            Err(ArchiveError::Rsa(_))
        ));
        assert!(matches!(
            private.unwrap_aes_key(&[0x00; 512]),
            Err(ArchiveError::Rsa(_))
        ));
        let good = public.encrypt_pkcs1v15(&[9; 32], &mut rng).unwrap();
        assert_eq!(private.unwrap_aes_key(&good).unwrap().as_bytes(), &[9; 32]);
    }
}
