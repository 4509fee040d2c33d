//! The HTTP client (reqwest over rustls with the ring provider) and one download attempt of one
//! URL into a [`Sink`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{redirect, Client, Url};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::error::FetchError;
use super::sink::Sink;

/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 5;

/// How long an idle connection to a store or gateway is kept for reuse.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// Builds the client: the system's roots plus `extra_ca` (a PEM file, for tests and private
/// stores), redirects limited to [`MAX_REDIRECTS`] and to http(s) targets.
///
/// # Errors
/// [`FetchError::Client`] if `extra_ca` cannot be read or holds no certificate.
pub(crate) fn build_client(
    extra_ca: Option<&Path>,
    connect_timeout: Duration,
) -> Result<Client, FetchError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| client_error(path, &format!("cannot read it ({e})")))?
            .collect::<Result<_, _>>()
            .map_err(|e| client_error(path, &format!("not valid PEM ({e})")))?;
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(client_error(path, "expected a CA certificate, found none"));
        }
    }
    if roots.is_empty() {
        tracing::warn!("no CA certificate found: https downloads will fail");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Client(format!("tls protocol versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // HTTP/1.1 only (the client is built without HTTP/2, see the workspace Cargo.toml).
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(redirect::Policy::custom(check_redirect))
        .connect_timeout(connect_timeout)
        // The fetches of one task (app, dataset, input files) follow each other and share a
        // connection; between tasks an idle connection is closed soon. Holding idle sockets to
        // every store for reqwest's default 90 s costs servers a connection (with tiny_http, the
        // simulator's store, a thread per connection: two connections opened at the same instant
        // can leave the second queued behind a kept-alive one, a stall seen in the TEE demo).
        .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
        .user_agent(concat!("edgepool-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Client(chain(&e)))
}

fn check_redirect(attempt: redirect::Attempt<'_>) -> redirect::Action {
    let scheme = attempt.url().scheme();
    if !matches!(scheme, "http" | "https") {
        let reason = format!("expected a redirect to http(s), found scheme {scheme}");
        attempt.error(reason)
    } else if attempt.previous().len() > MAX_REDIRECTS {
        attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
    } else {
        attempt.follow()
    }
}

/// One GET of `url` into `sink`. `timeout` bounds the wait for the answer's headers and for each
/// next part of the body (a stall), not the whole download: a large item on a slow link is fine
/// as long as bytes keep coming.
pub(crate) async fn download(
    client: &Client,
    url: &Url,
    sink: &mut Sink,
    timeout: Duration,
) -> Result<(), FetchError> {
    let shown = redact(url);
    let stalled = || FetchError::Timeout {
        url: shown.clone(),
        after: timeout,
    };
    let mut response = tokio::time::timeout(timeout, client.get(url.clone()).send())
        .await
        .map_err(|_| stalled())?
        .map_err(|e| classify(&shown, &e, timeout))?;
    let status = response.status();
    if status.is_redirection() {
        // reqwest hands back the redirects it does not follow: those without a usable location
        // and those to a scheme it does not speak (file://, ftp://).
        return Err(FetchError::Redirect {
            url: shown,
            reason: format!(
                "http status {} not followed: expected a location with http(s)",
                status.as_u16()
            ),
        });
    }
    if !status.is_success() {
        return Err(FetchError::Http {
            url: shown,
            status: status.as_u16(),
        });
    }
    sink.check_announced(response.content_length())?;
    loop {
        let chunk = tokio::time::timeout(timeout, response.chunk())
            .await
            .map_err(|_| stalled())?
            .map_err(|e| classify(&shown, &e, timeout))?;
        match chunk {
            Some(bytes) => sink.write(&bytes).await?,
            None => return Ok(()),
        }
    }
}

/// The URL without user info, query or fragment, for errors and logs (a pre-signed URL's query
/// is a credential).
pub(crate) fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    // Both fail only for URLs that cannot have credentials; nothing to hide then.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

fn classify(url: &str, err: &reqwest::Error, timeout: Duration) -> FetchError {
    let reason = chain(err);
    if err.is_timeout() {
        FetchError::Timeout {
            url: url.to_owned(),
            after: timeout,
        }
    } else if err.is_redirect() {
        FetchError::Redirect {
            url: url.to_owned(),
            reason,
        }
    } else {
        FetchError::Network {
            url: url.to_owned(),
            reason,
        }
    }
}

/// An error with its sources, `: `-separated (reqwest's own message is only the outer layer).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn client_error(path: &Path, what: &str) -> FetchError {
    FetchError::Client(format!("{}: {what}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn redacted_urls_lose_credentials_and_queries() {
        let url =
            Url::parse("https://user:pw@store.example/a/b.bin?X-Amz-Signature=s3cr3t#f").unwrap();
        assert_eq!(redact(&url), "https://store.example/a/b.bin");
    }

    #[test]
    fn a_client_builds_with_the_ring_provider_and_no_extra_ca() {
        build_client(None, Duration::from_secs(1)).unwrap();
    }

    #[test]
    fn an_extra_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = build_client(Some(&path), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, FetchError::Client(_)), "{err}");
    }
}
