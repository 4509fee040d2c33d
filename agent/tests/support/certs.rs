//! Certificates made on the fly with rcgen: a CA, a server certificate for `localhost` and
//! 127.0.0.1, a client certificate (CN "worker"), and an unrelated CA with its own client
//! certificate for negative tests. All are ECDSA P-256, written as PEM files in a temp dir.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

/// The common name of the client certificates (the MQTT username under
/// `use_identity_as_username`).
pub const CLIENT_CN: &str = "worker";

/// PEM files of a test PKI; the files live as long as this value.
#[derive(Debug)]
pub struct TestCerts {
    /// The temp dir holding every file below.
    pub dir: TempDir,
    /// The CA certificate that signs the server and client certificates.
    pub ca: PathBuf,
    /// Server certificate for DNS `localhost` and IP 127.0.0.1, signed by `ca`.
    pub server_cert: PathBuf,
    /// Private key of `server_cert` (PKCS#8).
    pub server_key: PathBuf,
    /// Client certificate with CN [`CLIENT_CN`], signed by `ca`.
    pub client_cert: PathBuf,
    /// Private key of `client_cert` (PKCS#8).
    pub client_key: PathBuf,
    /// A CA unrelated to `ca`.
    pub other_ca: PathBuf,
    /// Client certificate with CN [`CLIENT_CN`], signed by `other_ca`.
    pub other_client_cert: PathBuf,
    /// Private key of `other_client_cert` (PKCS#8).
    pub other_client_key: PathBuf,
}

impl TestCerts {
    /// Generates the whole PKI in a fresh temp dir.
    ///
    /// # Panics
    /// If key generation, signing or writing a file fails.
    pub fn generate() -> TestCerts {
        let dir = tempfile::tempdir().expect("create a temp dir for certificates");
        let path = |name: &str| dir.path().join(name);

        let (ca_issuer, ca_pem) = make_ca("edgepool test CA");
        let (other_issuer, other_ca_pem) = make_ca("unrelated test CA");

        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server certificate parameters");
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (server_cert, server_key) = make_leaf(server, &ca_issuer);

        let (client_cert, client_key) = make_leaf(client_params(), &ca_issuer);
        let (other_client_cert, other_client_key) = make_leaf(client_params(), &other_issuer);

        let certs = TestCerts {
            ca: path("ca.pem"),
            server_cert: path("server.pem"),
            server_key: path("server.key"),
            client_cert: path("client.pem"),
            client_key: path("client.key"),
            other_ca: path("other-ca.pem"),
            other_client_cert: path("other-client.pem"),
            other_client_key: path("other-client.key"),
            dir,
        };
        write(&certs.ca, &ca_pem);
        write(&certs.server_cert, &server_cert);
        write(&certs.server_key, &server_key);
        write(&certs.client_cert, &client_cert);
        write(&certs.client_key, &client_key);
        write(&certs.other_ca, &other_ca_pem);
        write(&certs.other_client_cert, &other_client_cert);
        write(&certs.other_client_key, &other_client_key);
        certs
    }
}

/// A self-signed CA: its issuer (to sign leaves) and its certificate as PEM.
fn make_ca(common_name: &str) -> (Issuer<'static, KeyPair>, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("generate a CA key");
    let cert = params.self_signed(&key).expect("self-sign the CA");
    (Issuer::new(params, key), cert.pem())
}

/// Parameters of a client certificate with CN [`CLIENT_CN`].
fn client_params() -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, CLIENT_CN);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

/// A leaf certificate signed by `issuer`: (certificate PEM, PKCS#8 key PEM).
fn make_leaf(mut params: CertificateParams, issuer: &Issuer<'_, KeyPair>) -> (String, String) {
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().expect("generate a leaf key");
    let cert = params
        .signed_by(&key, issuer)
        .expect("sign a leaf certificate");
    (cert.pem(), key.serialize_pem())
}

fn write(path: &Path, pem: &str) {
    fs::write(path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
