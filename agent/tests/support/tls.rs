//! A rustls client configuration (ring provider, no process-wide default provider needed) built
//! from PEM files: the CA that signs the broker's certificate and, optionally, a client
//! certificate and key. Self-contained so the agent can take the same function.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Builds a TLS 1.2/1.3 client configuration that trusts only the CA certificates in `ca_pem`
/// and, when `client` is `Some((cert_pem, key_pem))`, authenticates with that certificate chain
/// and private key (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// A message naming the file when a file cannot be read, holds no certificate or key, or holds
/// a certificate or key that rustls rejects.
pub fn tls_client_config(
    ca_pem: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certificates(ca_pem)? {
        roots
            .add(cert)
            .map_err(|e| format!("CA certificate in {} rejected: {e}", ca_pem.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("no usable TLS protocol version with the ring provider: {e}"))?
    .with_root_certificates(roots);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_pem, key_pem)) => {
            let chain = read_certificates(cert_pem)?;
            let key = PrivateKeyDer::from_pem_file(key_pem).map_err(|e| {
                format!(
                    "expected a PEM private key in {}, found: {e}",
                    key_pem.display()
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!(
                    "client certificate {} with key {} rejected: {e}",
                    cert_pem.display(),
                    key_pem.display()
                )
            })
        }
    }
}

/// Reads every certificate of a PEM file; an empty file is an error.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "expected PEM certificates in {}, found: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "expected at least one PEM certificate in {}, found none",
            path.display()
        ));
    }
    Ok(certs)
}
