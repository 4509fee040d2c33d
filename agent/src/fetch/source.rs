//! [`Source`]: where an item comes from, parsed from the URL a task gives. Exactly five forms are
//! accepted: `http://`, `https://`, `file://` with an absolute path, `/ipfs/<cid>[/path]` and
//! `ipfs://<cid>[/path]`; anything else is refused with [`FetchError::UnsupportedUrl`].

use std::path::PathBuf;

use reqwest::Url;

use super::error::FetchError;

/// The longest URL accepted (a task's URLs come from the requester: bound them).
pub const MAX_URL_LEN: usize = 4096;

/// Where an item comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An `http://` or `https://` URL.
    Http(Url),
    /// A local file (`file:///abs/path`).
    File(PathBuf),
    /// IPFS content, fetched through the configured gateways: the content id and an optional
    /// sub-path, without leading slash (`Qm…` or `bafy…/data.bin`).
    Ipfs(String),
}

impl Source {
    /// Parses a task's URL.
    ///
    /// # Errors
    /// [`FetchError::UnsupportedUrl`] saying what was expected.
    pub fn parse(url: &str) -> Result<Source, FetchError> {
        let refuse = |reason: &str| FetchError::UnsupportedUrl {
            url: url.chars().take(200).collect(),
            reason: reason.to_owned(),
        };
        if url.len() > MAX_URL_LEN {
            return Err(refuse(&format!(
                "expected at most {MAX_URL_LEN} bytes, found {}",
                url.len()
            )));
        }
        if let Some(rest) = url.strip_prefix("/ipfs/") {
            return ipfs_path(rest).map(Source::Ipfs).map_err(|r| refuse(&r));
        }
        if let Some(rest) = url.strip_prefix("ipfs://") {
            return ipfs_path(rest).map(Source::Ipfs).map_err(|r| refuse(&r));
        }
        let parsed = Url::parse(url).map_err(|e| {
            refuse(&format!(
                "expected http(s)://, file://, /ipfs/ or ipfs:// ({e})"
            ))
        })?;
        match parsed.scheme() {
            "http" | "https" => {
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(refuse("expected a host"));
                }
                Ok(Source::Http(parsed))
            }
            "file" => {
                if !matches!(parsed.host_str(), None | Some("") | Some("localhost")) {
                    return Err(refuse("expected a local file (file:///absolute/path)"));
                }
                let path = parsed
                    .to_file_path()
                    .map_err(|()| refuse("expected an absolute path"))?;
                Ok(Source::File(path))
            }
            other => Err(refuse(&format!(
                "expected http, https, file or ipfs, found scheme {other}"
            ))),
        }
    }

    /// The URL of this IPFS content on a gateway (`https://ipfs.io` → `https://ipfs.io/ipfs/<cid>`).
    pub(crate) fn gateway_url(gateway: &Url, cid_path: &str) -> Result<Url, FetchError> {
        let base = gateway.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/ipfs/{cid_path}")).map_err(|e| FetchError::UnsupportedUrl {
            url: gateway.to_string(),
            reason: format!("cannot join /ipfs/{cid_path}: {e}"),
        })
    }
}

/// Checks `<cid>[/segment…]`: a base32/base58 content id, then plain path segments (no `.`/`..`,
/// no query, no fragment), so that joining it to a gateway cannot leave `/ipfs/`.
fn ipfs_path(rest: &str) -> Result<String, String> {
    let rest = rest.trim_end_matches('/');
    let mut segments = rest.split('/');
    let cid = segments.next().unwrap_or_default();
    if cid.is_empty() || cid.len() > 128 || !cid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!(
            "expected an ipfs content id (1 to 128 letters and digits), found {:?}",
            cid.chars().take(140).collect::<String>()
        ));
    }
    for segment in segments {
        let plain = segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if segment.is_empty() || segment == "." || segment == ".." || !plain {
            return Err(format!(
                "expected plain path segments after the content id, found {segment:?}"
            ));
        }
    }
    Ok(rest.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CID: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";

    #[test]
    fn http_and_https_urls_are_accepted() {
        assert!(matches!(
            Source::parse("https://example.com/app.wasm").unwrap(),
            Source::Http(u) if u.as_str() == "https://example.com/app.wasm"
        ));
        assert!(matches!(
            Source::parse("http://127.0.0.1:8080/x").unwrap(),
            Source::Http(_)
        ));
    }

    #[test]
    fn file_urls_give_absolute_paths() {
        assert_eq!(
            Source::parse("file:///var/data/set.bin").unwrap(),
            Source::File("/var/data/set.bin".into())
        );
        assert_eq!(
            Source::parse("file://localhost/tmp/a%20b").unwrap(),
            Source::File("/tmp/a b".into())
        );
    }

    #[test]
    fn file_urls_on_another_host_are_refused() {
        assert!(matches!(
            Source::parse("file://server/share/x"),
            Err(FetchError::UnsupportedUrl { .. })
        ));
    }

    #[test]
    fn both_ipfs_forms_give_the_content_id() {
        assert_eq!(
            Source::parse(&format!("/ipfs/{CID}")).unwrap(),
            Source::Ipfs(CID.into())
        );
        assert_eq!(
            Source::parse(&format!("ipfs://{CID}/data.bin")).unwrap(),
            Source::Ipfs(format!("{CID}/data.bin"))
        );
    }

    #[test]
    fn ipfs_paths_that_could_escape_the_gateway_are_refused() {
        for bad in [
            "/ipfs/",
            "/ipfs/../etc",
            "/ipfs/Qm/../../x",
            "/ipfs/Qm?x=1",
            "/ipfs/Qm/a#b",
            "ipfs://Qm//x",
        ] {
            assert!(
                matches!(Source::parse(bad), Err(FetchError::UnsupportedUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn other_schemes_and_relative_urls_are_refused() {
        for bad in [
            "ftp://example.com/x",
            "data:text/plain,hi",
            "app.wasm",
            "/tmp/app.wasm",
            "",
            "http://",
        ] {
            let err = Source::parse(bad).unwrap_err();
            assert!(
                matches!(err, FetchError::UnsupportedUrl { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn gateway_urls_join_with_or_without_a_trailing_slash() {
        for gateway in ["https://ipfs.io", "https://ipfs.io/"] {
            let url = Source::gateway_url(&Url::parse(gateway).unwrap(), CID).unwrap();
            assert_eq!(url.as_str(), format!("https://ipfs.io/ipfs/{CID}"));
        }
    }
}
