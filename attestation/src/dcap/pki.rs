//! The X.509 side of DCAP: PEM chains, ECDSA P-256 checks with ring, chains to the pinned
//! Intel SGX Root CA, CRL membership.
//!
//! These checks run before dcap-qvl's so that the common refusals come out as precise
//! [`DcapError`] variants; dcap-qvl (webpki) then repeats the chain and CRL validation in full.

use der::{Decode, Encode};
use ring::signature::{self, UnparsedPublicKey};
use x509_cert::{crl::CertificateList, Certificate};

use super::{ChainKind, DcapError, INTEL_SGX_ROOT_CA_DER};

/// A parsed certificate with its DER.
#[derive(Debug)]
pub(crate) struct Cert {
    pub der: Vec<u8>,
    pub cert: Certificate,
}

impl Cert {
    fn from_der(der: Vec<u8>) -> Result<Self, String> {
        let cert = Certificate::from_der(&der).map_err(|e| format!("bad certificate DER: {e}"))?;
        Ok(Self { der, cert })
    }

    /// The uncompressed SEC1 public key.
    pub fn public_key(&self) -> &[u8] {
        self.cert
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes()
    }

    fn subject(&self) -> String {
        self.cert.tbs_certificate().subject().to_string()
    }

    fn serial_hex(&self) -> String {
        hex::encode(self.cert.tbs_certificate().serial_number().as_bytes())
    }

    /// Whether `issuer` signed this certificate (ECDSA P-256 / SHA-256, DER signature).
    fn is_signed_by(&self, issuer: &Cert) -> bool {
        let Ok(tbs) = self.cert.tbs_certificate().to_der() else {
            return false;
        };
        let Some(sig) = self.cert.signature().as_bytes() else {
            return false;
        };
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, issuer.public_key())
            .verify(&tbs, sig)
            .is_ok()
    }

    fn check_validity(&self, now_unix: u64) -> Result<(), String> {
        let v = self.cert.tbs_certificate().validity();
        let nb = v.not_before.to_unix_duration().as_secs();
        let na = v.not_after.to_unix_duration().as_secs();
        if now_unix < nb || now_unix > na {
            return Err(format!(
                "certificate {} is valid from {nb} to {na}, not at {now_unix}",
                self.subject()
            ));
        }
        Ok(())
    }
}

/// Verifies a raw `r ‖ s` ECDSA P-256 / SHA-256 signature by `public_key` (SEC1 uncompressed,
/// or the 64-byte `x ‖ y` DCAP uses for the attestation key).
pub(crate) fn verify_p256(public_key: &[u8], message: &[u8], sig_rs: &[u8]) -> bool {
    let mut sec1 = [0u8; 65];
    let key = match public_key.len() {
        64 => {
            sec1[0] = 0x04;
            sec1[1..].copy_from_slice(public_key);
            &sec1[..]
        }
        _ => public_key,
    };
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key)
        .verify(message, sig_rs)
        .is_ok()
}

/// The certificates of a PEM bundle, in order.
pub(crate) fn pem_chain(pem_bytes: &[u8]) -> Result<Vec<Cert>, String> {
    // A PCK chain from a quote may end with a NUL; PEM ignores surrounding bytes.
    let pems = pem::parse_many(pem_bytes).map_err(|e| format!("bad PEM: {e}"))?;
    if pems.is_empty() {
        return Err("no certificate in the PEM bundle".into());
    }
    pems.into_iter()
        .map(|p| Cert::from_der(p.into_contents()))
        .collect()
}

/// The pinned root, parsed.
pub(crate) fn pinned_root() -> Result<Cert, DcapError> {
    Cert::from_der(INTEL_SGX_ROOT_CA_DER.to_vec()).map_err(DcapError::Internal)
}

/// Checks that `chain` (leaf first) is a signature chain, valid at `now_unix`, ending at the
/// pinned root (the root may be included or left out), with no certificate revoked by `crls`
/// (the root CRL and the PCK CRL; membership is checked by serial against the CRL whose issuer
/// issued the certificate).
pub(crate) fn check_chain(
    which: ChainKind,
    chain: &[Cert],
    root: &Cert,
    crls: &[&Crl],
    now_unix: u64,
) -> Result<(), DcapError> {
    let err = |reason: String| DcapError::Chain { which, reason };
    let mut certs: Vec<&Cert> = chain.iter().collect();
    if certs.last().is_some_and(|c| c.der == root.der) {
        certs.pop();
    }
    let Some(&top) = certs.last() else {
        return Err(err("the chain holds no certificate below the root".into()));
    };
    if top.cert.tbs_certificate().issuer() == top.cert.tbs_certificate().subject()
        && top.is_signed_by(top)
    {
        return Err(DcapError::UnpinnedRoot {
            which,
            subject: top.subject(),
        });
    }
    for pair in certs.windows(2) {
        if !pair[0].is_signed_by(pair[1]) {
            return Err(err(format!(
                "{} is not signed by {}",
                pair[0].subject(),
                pair[1].subject()
            )));
        }
    }
    if !top.is_signed_by(root) {
        return Err(DcapError::UnpinnedRoot {
            which,
            subject: top.cert.tbs_certificate().issuer().to_string(),
        });
    }
    for c in &certs {
        c.check_validity(now_unix).map_err(err)?;
    }
    for (i, c) in certs.iter().enumerate() {
        let issuer = certs.get(i + 1).copied().unwrap_or(root);
        for crl in crls {
            if crl.issuer_der == issuer.cert.tbs_certificate().subject().to_der().ok()
                && crl.revokes(c.cert.tbs_certificate().serial_number().as_bytes())
            {
                return Err(DcapError::Revoked {
                    which,
                    subject: c.subject(),
                    serial: c.serial_hex(),
                });
            }
        }
    }
    Ok(())
}

/// A parsed CRL.
#[derive(Debug)]
pub(crate) struct Crl {
    list: CertificateList,
    issuer_der: Option<Vec<u8>>,
}

impl Crl {
    /// Parses a DER CRL.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let list = CertificateList::from_der(der).map_err(|e| format!("bad CRL DER: {e}"))?;
        let issuer_der = list.tbs_cert_list.issuer.to_der().ok();
        Ok(Self { list, issuer_der })
    }

    /// Whether `issuer` signed this CRL.
    pub fn is_signed_by(&self, issuer: &Cert) -> bool {
        let Ok(tbs) = self.list.tbs_cert_list.to_der() else {
            return false;
        };
        let Some(sig) = self.list.signature.as_bytes() else {
            return false;
        };
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, issuer.public_key())
            .verify(&tbs, sig)
            .is_ok()
    }

    /// Whether the CRL's window contains `now_unix`.
    pub fn is_current(&self, now_unix: u64) -> bool {
        let t = &self.list.tbs_cert_list;
        t.this_update.to_unix_duration().as_secs() <= now_unix
            && t.next_update
                .as_ref()
                .is_none_or(|n| now_unix <= n.to_unix_duration().as_secs())
    }

    fn revokes(&self, serial: &[u8]) -> bool {
        self.list
            .tbs_cert_list
            .revoked_certificates
            .as_ref()
            .is_some_and(|r| r.iter().any(|rc| rc.serial_number.as_bytes() == serial))
    }
}

/// The issuer of `leaf` among `chain`, or the pinned root.
pub(crate) fn issuer_of<'a>(leaf: &Cert, chain: &'a [Cert], root: &'a Cert) -> &'a Cert {
    let issuer = leaf.cert.tbs_certificate().issuer();
    chain
        .iter()
        .find(|c| c.cert.tbs_certificate().subject() == issuer && leaf.is_signed_by(c))
        .unwrap_or(root)
}
