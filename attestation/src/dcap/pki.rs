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

/// Intel's chains are leaf, CA, root; anything much longer is an attempt to make us spend
/// signature checks (dcap-qvl allows at most 4 intermediates).
const MAX_CHAIN_LEN: usize = 6;

/// The certificates of a PEM bundle, in order.
pub(crate) fn pem_chain(pem_bytes: &[u8]) -> Result<Vec<Cert>, String> {
    // A PCK chain from a quote may end with a NUL; PEM ignores surrounding bytes.
    let pems = pem::parse_many(pem_bytes).map_err(|e| format!("bad PEM: {e}"))?;
    if pems.is_empty() {
        return Err("no certificate in the PEM bundle".into());
    }
    if pems.len() > MAX_CHAIN_LEN {
        return Err(format!(
            "{} certificates in the bundle, at most {MAX_CHAIN_LEN} expected",
            pems.len()
        ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams,
        DnType, IsCa, KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
    };

    /// 2026-01-01: inside every synthetic certificate's validity.
    const NOW: u64 = 1_767_225_600;

    struct Pki {
        root: Cert,
        ca: Cert,
        leaf: Cert,
        ca_params: CertificateParams,
        ca_key: KeyPair,
        root_params: CertificateParams,
        root_key: KeyPair,
    }

    fn params(cn: &str, serial: u64, ca: bool) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.serial_number = Some(SerialNumber::from(serial));
        p.not_before = date_time_ymd(2025, 1, 1);
        p.not_after = date_time_ymd(2030, 1, 1);
        if ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        p
    }

    fn cert(c: &rcgen::Certificate) -> Cert {
        Cert::from_der(c.der().to_vec()).expect("parses")
    }

    fn pki(root_cn: &str) -> Pki {
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let root_key = KeyPair::generate_for(alg).expect("key");
        let root_params = params(root_cn, 1, true);
        let root = root_params.self_signed(&root_key).expect("root");
        let ca_key = KeyPair::generate_for(alg).expect("key");
        let ca_params = params("Test PCK CA", 2, true);
        let ca = ca_params
            .signed_by(
                &ca_key,
                &rcgen::Issuer::from_params(&root_params, &root_key),
            )
            .expect("ca");
        let leaf_key = KeyPair::generate_for(alg).expect("key");
        let leaf = params("Test PCK", 0x4242, false)
            .signed_by(&leaf_key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
            .expect("leaf");
        Pki {
            root: cert(&root),
            ca: cert(&ca),
            leaf: cert(&leaf),
            ca_params,
            ca_key,
            root_params,
            root_key,
        }
    }

    fn crl(issuer_params: &CertificateParams, key: &KeyPair, revoked: &[u64]) -> Crl {
        let list = CertificateRevocationListParams {
            this_update: date_time_ymd(2025, 12, 1),
            next_update: date_time_ymd(2026, 2, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&s| RevokedCertParams {
                    serial_number: SerialNumber::from(s),
                    revocation_time: date_time_ymd(2025, 11, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&rcgen::Issuer::from_params(issuer_params, key))
        .expect("crl");
        Crl::from_der(list.der()).expect("parses")
    }

    fn chain(p: &Pki) -> Vec<Cert> {
        vec![
            Cert::from_der(p.leaf.der.clone()).expect("leaf"),
            Cert::from_der(p.ca.der.clone()).expect("ca"),
            Cert::from_der(p.root.der.clone()).expect("root"),
        ]
    }

    #[test]
    fn a_chain_to_the_given_root_with_empty_crls_passes() {
        let p = pki("Test Root");
        let root_crl = crl(&p.root_params, &p.root_key, &[]);
        let pck_crl = crl(&p.ca_params, &p.ca_key, &[]);
        assert!(root_crl.is_signed_by(&p.root) && pck_crl.is_signed_by(&p.ca));
        assert!(!pck_crl.is_signed_by(&p.root));
        assert!(pck_crl.is_current(NOW) && !pck_crl.is_current(NOW + 86_400 * 60));
        check_chain(
            ChainKind::Pck,
            &chain(&p),
            &p.root,
            &[&root_crl, &pck_crl],
            NOW,
        )
        .expect("valid");
        // The root may be left out of the chain.
        check_chain(ChainKind::Pck, &chain(&p)[..2], &p.root, &[&pck_crl], NOW).expect("valid");
    }

    #[test]
    fn a_leaf_on_the_pck_crl_is_revoked() {
        let p = pki("Test Root");
        let pck_crl = crl(&p.ca_params, &p.ca_key, &[7, 0x4242]);
        let r = check_chain(ChainKind::Pck, &chain(&p), &p.root, &[&pck_crl], NOW);
        assert!(
            matches!(&r, Err(DcapError::Revoked { which: ChainKind::Pck, serial, .. }) if serial == "4242"),
            "{r:?}"
        );
    }

    #[test]
    fn a_ca_on_the_root_crl_is_revoked() {
        let p = pki("Test Root");
        let root_crl = crl(&p.root_params, &p.root_key, &[2]);
        let r = check_chain(ChainKind::Pck, &chain(&p), &p.root, &[&root_crl], NOW);
        assert!(matches!(r, Err(DcapError::Revoked { .. })), "{r:?}");
        // The same serial on the PCK CA's own CRL does not revoke the CA (wrong issuer).
        let pck_crl = crl(&p.ca_params, &p.ca_key, &[2]);
        check_chain(ChainKind::Pck, &chain(&p), &p.root, &[&pck_crl], NOW).expect("valid");
    }

    #[test]
    fn a_chain_to_another_root_is_unpinned() {
        let p = pki("Test Root");
        let other = pki("Another Root");
        let r = check_chain(ChainKind::Pck, &chain(&p), &other.root, &[], NOW);
        assert!(
            matches!(&r, Err(DcapError::UnpinnedRoot { subject, .. }) if subject.contains("Test Root")),
            "{r:?}"
        );
        // Without the root in the chain: the top CA is not signed by the pinned root.
        let r = check_chain(ChainKind::Pck, &chain(&p)[..2], &other.root, &[], NOW);
        assert!(matches!(r, Err(DcapError::UnpinnedRoot { .. })), "{r:?}");
    }

    #[test]
    fn a_chain_outside_its_validity_is_refused() {
        let p = pki("Test Root");
        let r = check_chain(ChainKind::Pck, &chain(&p), &p.root, &[], 1_000_000_000);
        assert!(matches!(r, Err(DcapError::Chain { .. })), "{r:?}");
    }

    #[test]
    fn a_chain_with_a_foreign_intermediate_is_refused() {
        let p = pki("Test Root");
        let q = pki("Test Root");
        let mixed = vec![
            Cert::from_der(p.leaf.der.clone()).expect("leaf"),
            Cert::from_der(q.ca.der.clone()).expect("ca"),
        ];
        let r = check_chain(ChainKind::Pck, &mixed, &q.root, &[], NOW);
        assert!(matches!(r, Err(DcapError::Chain { .. })), "{r:?}");
    }

    #[test]
    fn a_pem_bundle_longer_than_any_intel_chain_is_refused() {
        let p = pki("Test Root");
        let one = pem::encode(&pem::Pem::new("CERTIFICATE", p.ca.der.clone()));
        assert_eq!(
            pem_chain(one.repeat(MAX_CHAIN_LEN).as_bytes()).map(|c| c.len()),
            Ok(6)
        );
        assert!(pem_chain(one.repeat(MAX_CHAIN_LEN + 1).as_bytes()).is_err());
        assert!(pem_chain(b"no PEM here").is_err());
    }

    #[test]
    fn the_pinned_roots_key_checks_a_raw_p256_signature_of_the_right_shape_only() {
        let root = pinned_root().expect("root");
        assert!(!verify_p256(root.public_key(), b"x", &[0u8; 64]));
        assert!(!verify_p256(&[], b"x", &[]));
    }
}
