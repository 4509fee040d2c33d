//! AMD's certificate chain: the pinned ARKs, RSA-PSS signatures between certificates, validity at
//! "now", and the VCEK/VLEK extensions (TCB SPLs, hwID, product name).

use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use x509_cert_02::der::{self, Decode, Encode};
use x509_cert_02::Certificate;

use super::report::{Report, SigningKey, Spl};
use super::table::CertTable;
use super::{Product, SnpError};

/// AMD's Milan bundle: ASK (SEV-Milan), ARK-Milan, ASVK (SEV-VLEK-Milan), as published by the KDS.
const MILAN: &[u8] = include_bytes!("anchors/milan_ask_ark_asvk.pem");
/// AMD's Genoa bundle (ASK, ARK-Genoa, ASVK).
const GENOA: &[u8] = include_bytes!("anchors/genoa_ask_ark_asvk.pem");
/// AMD's Turin bundle (ASK, ARK-Turin, ASVK).
const TURIN: &[u8] = include_bytes!("anchors/turin_ask_ark_asvk.pem");

/// RSASSA-PSS, the only signature algorithm AMD uses between its certificates.
const RSASSA_PSS: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";
/// Turin's VCEK carries only the first 8 bytes of the chip id.
const TURIN_HWID_LEN: usize = 8;

/// A parsed certificate with the name it plays in the chain (for error messages).
#[derive(Debug, Clone)]
pub struct Cert {
    /// `VCEK`, `VLEK`, `ASK`, `ASVK`, `ARK`.
    pub role: &'static str,
    /// The DER bytes as received.
    pub der: Vec<u8>,
    cert: Certificate,
}

impl Cert {
    /// Parses DER (or PEM, for convenience) bytes.
    ///
    /// # Errors
    /// [`SnpError::BadCertificate`].
    pub fn parse(role: &'static str, bytes: &[u8]) -> Result<Self, SnpError> {
        let bad = |e: &dyn std::fmt::Display| SnpError::BadCertificate {
            cert: role,
            reason: e.to_string(),
        };
        let cert = if bytes.starts_with(b"-----BEGIN") {
            <Certificate as der::DecodePem>::from_pem(bytes).map_err(|e| bad(&e))?
        } else {
            Certificate::from_der(bytes).map_err(|e| bad(&e))?
        };
        let der = cert.to_der().map_err(|e| bad(&e))?;
        Ok(Cert { role, der, cert })
    }

    /// Parses a PEM bundle.
    ///
    /// # Errors
    /// [`SnpError::BadCertificate`].
    pub fn parse_pem_bundle(pem: &[u8]) -> Result<Vec<Cert>, SnpError> {
        let certs = Certificate::load_pem_chain(pem).map_err(|e| SnpError::BadCertificate {
            cert: "chain",
            reason: e.to_string(),
        })?;
        certs
            .into_iter()
            .map(|cert| {
                let der = cert.to_der().map_err(|e| SnpError::BadCertificate {
                    cert: "chain",
                    reason: e.to_string(),
                })?;
                Ok(Cert {
                    role: "chain",
                    der,
                    cert,
                })
            })
            .collect()
    }

    /// What AMD's common name says the certificate is: `ARK` (`ARK-Milan`), `ASVK`
    /// (`SEV-VLEK-Milan`) or `ASK` (`SEV-Milan`).
    pub fn subject_role(&self) -> Option<&'static str> {
        let subject = self.cert.tbs_certificate.subject.to_string();
        if subject.contains("CN=ARK-") {
            Some("ARK")
        } else if subject.contains("CN=SEV-VLEK-") {
            Some("ASVK")
        } else if subject.contains("CN=SEV-") {
            Some("ASK")
        } else {
            None
        }
    }

    fn extension(&self, oid: &str) -> Option<&[u8]> {
        self.cert
            .tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|e| e.extn_id.to_string() == oid)
            .map(|e| e.extn_value.as_bytes())
    }

    fn spl(&self, oid: &str) -> Option<u8> {
        let raw = self.extension(oid)?;
        u8::from_der(raw).ok()
    }

    /// The product named by the certificate: the productName extension of a VCEK/VLEK
    /// (`Milan-B0`), else the common name of an ASK/ASVK/ARK (`SEV-Milan`, `ARK-Genoa`). Only a
    /// hint for picking the chain; the chain itself is what is trusted.
    pub fn product_hint(&self) -> Option<Product> {
        let mut names = Vec::new();
        if let Some(raw) = self.extension(OID_PRODUCT_NAME) {
            if let Ok(s) = der::asn1::Ia5StringRef::from_der(raw) {
                names.push(s.as_str().to_owned());
            }
        }
        names.push(self.cert.tbs_certificate.subject.to_string());
        names.iter().find_map(|n| Product::find_in(n))
    }

    fn validity(&self) -> (u64, u64) {
        let v = &self.cert.tbs_certificate.validity;
        (
            v.not_before.to_unix_duration().as_secs(),
            v.not_after.to_unix_duration().as_secs(),
        )
    }

    /// Refuses the certificate outside its validity window.
    ///
    /// # Errors
    /// [`SnpError::NotYetValid`], [`SnpError::Expired`].
    pub fn check_validity(&self, now: u64) -> Result<(), SnpError> {
        let (not_before, not_after) = self.validity();
        if now < not_before {
            return Err(SnpError::NotYetValid {
                cert: self.role,
                not_before,
                not_after,
                now,
            });
        }
        if now > not_after {
            return Err(SnpError::Expired {
                cert: self.role,
                not_before,
                not_after,
                now,
            });
        }
        Ok(())
    }

    /// Checks that `issuer` signed this certificate with RSA-PSS, SHA-384, salt 48.
    ///
    /// # Errors
    /// [`SnpError::ChainBroken`] naming the link.
    pub fn check_signed_by(&self, issuer: &Cert) -> Result<(), SnpError> {
        let broken = |why: String| SnpError::ChainBroken {
            which: format!("{} by {}", self.role, issuer.role),
            reason: why,
        };
        if self.cert.tbs_certificate.issuer != issuer.cert.tbs_certificate.subject {
            return Err(broken(format!(
                "issuer is {}, the {} is {}",
                self.cert.tbs_certificate.issuer, issuer.role, issuer.cert.tbs_certificate.subject
            )));
        }
        if self.cert.signature_algorithm.oid != RSASSA_PSS {
            return Err(broken(format!(
                "signature algorithm {} is not RSASSA-PSS",
                self.cert.signature_algorithm.oid
            )));
        }
        let spki = issuer
            .cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| broken(e.to_string()))?;
        let key = rsa::RsaPublicKey::from_public_key_der(&spki)
            .map_err(|e| broken(format!("issuer key is not RSA: {e}")))?;
        let key = rsa::pss::VerifyingKey::<sha2::Sha384>::new_with_salt_len(key, 48);
        let tbs = self
            .cert
            .tbs_certificate
            .to_der()
            .map_err(|e| broken(e.to_string()))?;
        let sig = rsa::pss::Signature::try_from(self.cert.signature.raw_bytes())
            .map_err(|e| broken(e.to_string()))?;
        key.verify(&tbs, &sig)
            .map_err(|_| broken("RSA-PSS signature does not verify".into()))
    }

    /// The P-384 key of a VCEK/VLEK.
    ///
    /// # Errors
    /// [`SnpError::BadCertificate`] when it is not a P-384 key.
    pub fn ecdsa_key(&self) -> Result<p384::ecdsa::VerifyingKey, SnpError> {
        let point = self
            .cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| SnpError::BadCertificate {
            cert: self.role,
            reason: "the public key is not a P-384 point".into(),
        })
    }
}

/// One product's pinned certificates.
#[derive(Debug)]
pub struct Pinned {
    /// The product.
    pub product: Product,
    /// The ASK (signs VCEKs).
    pub ask: Cert,
    /// The ARK (root).
    pub ark: Cert,
    /// The ASVK (signs VLEKs).
    pub asvk: Cert,
}

/// The pinned chains of every product.
///
/// # Errors
/// [`SnpError::BadCertificate`] if an embedded bundle does not parse (a build defect; the unit
/// tests catch it).
pub fn pinned() -> Result<Vec<Pinned>, SnpError> {
    [
        (Product::Milan, MILAN),
        (Product::Genoa, GENOA),
        (Product::Turin, TURIN),
    ]
    .into_iter()
    .map(|(product, pem)| {
        let certs = Certificate::load_pem_chain(pem).map_err(|e| SnpError::BadCertificate {
            cert: "pinned bundle",
            reason: e.to_string(),
        })?;
        let [ask, ark, asvk] =
            <[Certificate; 3]>::try_from(certs).map_err(|v| SnpError::BadCertificate {
                cert: "pinned bundle",
                reason: format!("{} certificates instead of 3", v.len()),
            })?;
        let wrap = |role, cert: Certificate| -> Result<Cert, SnpError> {
            let der = cert.to_der().map_err(|e| SnpError::BadCertificate {
                cert: role,
                reason: e.to_string(),
            })?;
            Ok(Cert { role, der, cert })
        };
        Ok(Pinned {
            product,
            ask: wrap("ASK", ask)?,
            ark: wrap("ARK", ark)?,
            asvk: wrap("ASVK", asvk)?,
        })
    })
    .collect()
}

/// Checks the chain from the signing key to a pinned ARK and returns the product it belongs to.
///
/// The ARK, when the table carries one, must be a pinned ARK byte for byte. The product is
/// taken from the report's CPUID (v3+), the certificates' names and the ARK; when they disagree
/// the chain is for the wrong product. When nothing names the product (a v2 report with bare
/// certificates), each pinned chain is tried.
///
/// # Errors
/// [`SnpError::UnpinnedRoot`], [`SnpError::WrongProduct`], [`SnpError::ChainBroken`],
/// [`SnpError::NotYetValid`], [`SnpError::Expired`], [`SnpError::BadCertificate`].
pub fn check_chain(
    report: &Report<'_>,
    key: SigningKey,
    leaf: &Cert,
    table: &CertTable<'_>,
    now: u64,
) -> Result<Product, SnpError> {
    let anchors = pinned()?;
    let inter_role = match key {
        SigningKey::Vcek => "ASK",
        SigningKey::Vlek => "ASVK",
    };
    let ark_product = match table.ark {
        None => None,
        Some(bytes) => {
            let ark = Cert::parse("ARK", bytes)?;
            let found = anchors.iter().find(|a| a.ark.der == ark.der);
            Some(found.ok_or(SnpError::UnpinnedRoot)?.product)
        }
    };
    let inter = table.ask.map(|b| Cert::parse(inter_role, b)).transpose()?;
    let hints = [
        ("report CPUID", report.product()?),
        (leaf.role, leaf.product_hint()),
        (inter_role, inter.as_ref().and_then(Cert::product_hint)),
        ("ARK", ark_product),
    ];
    let mut named = hints.iter().filter_map(|(src, p)| p.map(|p| (*src, p)));
    let expected = named.next();
    if let Some((src, p)) = expected {
        if let Some((other_src, other)) = named.find(|(_, q)| *q != p) {
            return Err(SnpError::WrongProduct {
                expected: p.as_str(),
                expected_from: src,
                found: other.as_str(),
                found_from: other_src,
            });
        }
    }
    let mut last = SnpError::ChainBroken {
        which: format!("{} by {inter_role}", leaf.role),
        reason: "no pinned chain".into(),
    };
    for anchor in anchors
        .iter()
        .filter(|a| expected.is_none_or(|(_, p)| a.product == p))
    {
        let pinned_inter = match key {
            SigningKey::Vcek => &anchor.ask,
            SigningKey::Vlek => &anchor.asvk,
        };
        let inter = inter.as_ref().unwrap_or(pinned_inter);
        match check_links(leaf, inter, &anchor.ark, now) {
            Ok(()) => return Ok(anchor.product),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn check_links(leaf: &Cert, inter: &Cert, ark: &Cert, now: u64) -> Result<(), SnpError> {
    ark.check_signed_by(ark)?;
    inter.check_signed_by(ark)?;
    leaf.check_signed_by(inter)?;
    for cert in [ark, inter, leaf] {
        cert.check_validity(now)?;
    }
    Ok(())
}

/// Checks the VCEK/VLEK SPL extensions against `REPORTED_TCB`, and a VCEK's hwID against
/// `CHIP_ID`.
///
/// # Errors
/// [`SnpError::TcbMismatch`], [`SnpError::ChipIdMismatch`].
pub fn check_leaf_matches(
    report: &Report<'_>,
    key: SigningKey,
    leaf: &Cert,
    product: Product,
    spl: Spl,
) -> Result<(), SnpError> {
    for (field, oid, reported) in [
        ("bootloader", OID_BL_SPL, spl.bootloader),
        ("tee", OID_TEE_SPL, spl.tee),
        ("snp", OID_SNP_SPL, spl.snp),
        ("microcode", OID_UCODE_SPL, spl.microcode),
    ] {
        let certified = leaf.spl(oid);
        if certified != Some(reported) {
            return Err(SnpError::TcbMismatch {
                field,
                certified,
                reported,
            });
        }
    }
    if key == SigningKey::Vcek {
        let hwid = leaf.extension(OID_HWID).ok_or(SnpError::ChipIdMismatch)?;
        let chip = report.chip_id();
        let matches = match product {
            Product::Turin => {
                hwid.len() == TURIN_HWID_LEN
                    && chip[..TURIN_HWID_LEN] == *hwid
                    && chip[TURIN_HWID_LEN..].iter().all(|b| *b == 0)
            }
            Product::Milan | Product::Genoa => hwid == chip,
        };
        if !matches {
            return Err(SnpError::ChipIdMismatch);
        }
    }
    Ok(())
}

/// Checks the report's ECDSA P-384/SHA-384 signature over bytes `0x000..0x2A0`.
///
/// # Errors
/// [`SnpError::BadReportSignature`].
pub fn check_report_signature(report: &Report<'_>, leaf: &Cert) -> Result<(), SnpError> {
    let key = leaf.ecdsa_key()?;
    let (r_le, s_le) = report.signature_r_s();
    // R and S are 72-byte little-endian fields; a P-384 scalar fills 48 of them.
    if r_le[48..].iter().chain(&s_le[48..]).any(|b| *b != 0) {
        return Err(SnpError::BadReportSignature);
    }
    let mut r = [0u8; 48];
    let mut s = [0u8; 48];
    r.copy_from_slice(&r_le[..48]);
    s.copy_from_slice(&s_le[..48]);
    r.reverse();
    s.reverse();
    let sig =
        p384::ecdsa::Signature::from_scalars(r, s).map_err(|_| SnpError::BadReportSignature)?;
    key.verify(report.signed(), &sig)
        .map_err(|_| SnpError::BadReportSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pinned_bundle_parses_and_each_ark_signs_its_intermediates() {
        let anchors = pinned().expect("embedded bundles parse");
        assert_eq!(anchors.len(), 3);
        for a in &anchors {
            a.ark.check_signed_by(&a.ark).expect("ARK self-signed");
            a.ask.check_signed_by(&a.ark).expect("ASK signed by ARK");
            a.asvk.check_signed_by(&a.ark).expect("ASVK signed by ARK");
            assert_eq!(a.ark.product_hint(), Some(a.product));
            assert_eq!(a.ask.product_hint(), Some(a.product));
        }
    }

    #[test]
    fn the_pinned_arks_are_the_published_ones() {
        use sha2::Digest;
        let want = [
            // PROVENANCE.md (vectors): SHA-256 of the DER.
            "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
            "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
            // trustee deps/verifier/src/snp/turin_ask_ark_asvk.pem; its SPKI hash matches an
            // independently published pin (see anchors/README.md).
            "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
        ];
        let anchors = pinned().expect("embedded bundles parse");
        for (a, want) in anchors.iter().zip(want) {
            assert_eq!(hex::encode(sha2::Sha256::digest(&a.ark.der)), want);
        }
    }
}
