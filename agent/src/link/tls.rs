//! TLS for the broker connection: rustls with the ring provider (no aws-lc), trusting either a
//! configured CA bundle or the system's roots, with an optional client certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::LinkError;

/// Builds the rustls client configuration.
///
/// # Errors
/// [`LinkError::Tls`] naming the file that cannot be read or holds no usable PEM item.
pub fn client_config(
    ca_file: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<ClientConfig, LinkError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = read_certs(path)?;
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(tls_error(path, "no usable CA certificate in the file"));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(LinkError::Tls(
                    "no system CA certificates found: set broker.ca_file".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LinkError::Tls(format!("tls protocol versions: {e}")))?
        .with_root_certificates(roots);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_path, key_path)) => {
            let chain = read_certs(cert_path)?;
            let key = PrivateKeyDer::from_pem_file(key_path)
                .map_err(|e| tls_error(key_path, &format!("no usable private key ({e})")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_error(cert_path, &format!("client certificate refused ({e})")))
        }
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, LinkError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(path, &format!("cannot read it ({e})")))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error(path, &format!("not valid PEM ({e})")))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn tls_error(path: &Path, what: &str) -> LinkError {
    LinkError::Tls(format!("{}: {what}", path.display()))
}
