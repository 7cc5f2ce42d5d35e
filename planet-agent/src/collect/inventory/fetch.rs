//! Fetching the inventory body from an HTTP(S) URL or a local file, within
//! a time limit and a size limit. The darkstat and ebpf_exporter scrapes
//! (`traffic_sources::scrape`) use the same [`fetch`].

use std::{
    fmt,
    io::{self, Read as _},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use reqwest::{StatusCode, Url};
use thiserror::Error;

type UrlError = <Url as FromStr>::Err;

/// Where the inventory comes from (`-task-inventory-addr`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// An `http://` or `https://` URL.
    Http(Url),
    /// A local file: an absolute path or a `file://` URL.
    File(PathBuf),
}

/// A `-task-inventory-addr` value that names no usable source.
#[derive(Debug, Error)]
pub enum AddressError {
    /// The task is enabled without `-task-inventory-addr`.
    #[error("inventory address is empty")]
    Empty,
    /// Another scheme, or a relative path.
    #[error(
        "unsupported inventory address {0:?} (expected an http://, https:// or file:// URL or an absolute path)"
    )]
    Unsupported(String),
    /// An `http(s)://` or `file://` address that is not a valid URL.
    #[error("invalid inventory URL {addr:?}")]
    InvalidUrl {
        /// The address as given.
        addr: String,
        /// What the URL parser rejected.
        #[source]
        source: UrlError,
    },
    /// A `file://` URL with a remote host.
    #[error("{0:?} does not name a local file")]
    NotAFilePath(String),
}

impl Source {
    /// Interprets `-task-inventory-addr`: `http://…`, `https://…`,
    /// `file:///path` or `/path`. Surrounding whitespace is ignored.
    pub fn parse(addr: &str) -> Result<Self, AddressError> {
        let addr = addr.trim();
        let has_scheme = |scheme: &str| {
            addr.get(..scheme.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
        };
        let url = || {
            Url::parse(addr).map_err(|source| AddressError::InvalidUrl {
                addr: addr.to_owned(),
                source,
            })
        };
        if addr.is_empty() {
            Err(AddressError::Empty)
        } else if has_scheme("http://") || has_scheme("https://") {
            url().map(Self::Http)
        } else if has_scheme("file:") {
            url()?
                .to_file_path()
                .map(Self::File)
                .map_err(|()| AddressError::NotAFilePath(addr.to_owned()))
        } else if addr.starts_with('/') {
            Ok(Self::File(PathBuf::from(addr)))
        } else {
            Err(AddressError::Unsupported(addr.to_owned()))
        }
    }
}

/// Logs and errors show a URL without credentials and query (an S3
/// presigned URL carries its signature there).
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(url) => f.write_str(&redacted(url)),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    // Both fail only for URLs that cannot have credentials; nothing to hide then.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_fragment(None);
    let had_query = shown.query().is_some();
    shown.set_query(None);
    if had_query {
        format!("{shown}?…")
    } else {
        shown.to_string()
    }
}

/// Why no body came back.
#[derive(Debug, Error)]
pub enum FetchError {
    /// The TLS configuration could not be set up.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    /// Connecting, sending, a redirect, or reading the body failed.
    #[error("HTTP request to {url} failed")]
    Request {
        /// The URL, without credentials and query.
        url: String,
        /// The client's error, without the URL.
        #[source]
        source: reqwest::Error,
    },
    /// A status other than 2xx (after redirects).
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The final URL, without credentials and query.
        url: String,
        /// The status received.
        status: StatusCode,
    },
    /// The body, declared or received, passed the size limit.
    #[error("body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The fetch did not complete within the timeout.
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    /// Reading a local inventory file failed.
    #[error("cannot read {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The local path is a directory, a FIFO, a device…
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
}

/// Connection attempts give up after this (or the overall timeout, if
/// shorter) so an unreachable host reports as a connect error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP client for inventory fetches: rustls with the Mozilla and the
/// system roots, proxy environment variables honoured, at most 10
/// redirects, no idle connections kept between refreshes.
pub(super) fn http_client(timeout: Duration) -> Result<reqwest::Client, FetchError> {
    reqwest::Client::builder()
        .user_agent(concat!("planet-agent/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(10))
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .build()
        .map_err(FetchError::Client)
}

/// Reads the whole body from `source`: at most `max_bytes`, within
/// `timeout` (connect, headers and body together). Only 2xx HTTP answers
/// count; a larger body is abandoned as soon as it passes the limit.
pub async fn fetch(
    source: &Source,
    client: &reqwest::Client,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Vec<u8>, FetchError> {
    let body = async {
        match source {
            Source::Http(url) => fetch_http(client, url, timeout, max_bytes).await,
            Source::File(path) => fetch_file(path.clone(), max_bytes).await,
        }
    };
    tokio::time::timeout(timeout, body)
        .await
        .unwrap_or(Err(FetchError::Timeout(timeout)))
}

async fn fetch_http(
    client: &reqwest::Client,
    url: &Url,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Vec<u8>, FetchError> {
    let request_failed = |url: &Url, err: reqwest::Error| {
        if err.is_timeout() && !err.is_connect() {
            // The client's own timeout equals ours; report both the same way.
            return FetchError::Timeout(timeout);
        }
        FetchError::Request {
            url: redacted(url),
            source: err.without_url(),
        }
    };
    let mut response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|err| request_failed(url, err))?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status {
            url: redacted(response.url()),
            status,
        });
    }
    let too_large = FetchError::TooLarge { limit: max_bytes };
    let declared = response.content_length().unwrap_or(0);
    if declared > u64::try_from(max_bytes).unwrap_or(u64::MAX) {
        return Err(too_large);
    }
    let mut body = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|err| request_failed(url, err))?;
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if chunk.len() > max_bytes - body.len() {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
}

async fn fetch_file(path: PathBuf, max_bytes: usize) -> Result<Vec<u8>, FetchError> {
    let shown = path.clone();
    tokio::task::spawn_blocking(move || read_file(path, max_bytes))
        .await
        .unwrap_or_else(|join| {
            Err(FetchError::File {
                path: shown,
                source: io::Error::other(join),
            })
        })
}

fn read_file(path: PathBuf, max_bytes: usize) -> Result<Vec<u8>, FetchError> {
    let io_error = |path: &PathBuf, source| FetchError::File {
        path: path.clone(),
        source,
    };
    // Checked before opening: opening a FIFO for reading would block.
    let metadata = std::fs::metadata(&path).map_err(|e| io_error(&path, e))?;
    if !metadata.is_file() {
        return Err(FetchError::NotAFile(path));
    }
    let limit = u64::try_from(max_bytes).unwrap_or(u64::MAX);
    if metadata.len() > limit {
        return Err(FetchError::TooLarge { limit: max_bytes });
    }
    let file = std::fs::File::open(&path).map_err(|e| io_error(&path, e))?;
    let mut body = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    // One byte past the limit tells a file that grew meanwhile.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut body)
        .map_err(|e| io_error(&path, e))?;
    if body.len() > max_bytes {
        return Err(FetchError::TooLarge { limit: max_bytes });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let http = |s: &str| Source::Http(Url::parse(s).expect(s));
        let cases: &[(&str, Result<Source, &str>)] = &[
            (
                "http://127.0.0.1:8080/inv.json",
                Ok(http("http://127.0.0.1:8080/inv.json")),
            ),
            (
                "HTTPS://inventory.example/x?sig=1",
                Ok(http("https://inventory.example/x?sig=1")),
            ),
            ("  http://[::1]:9/a \n", Ok(http("http://[::1]:9/a"))),
            (
                "/etc/planet/inventory.json",
                Ok(Source::File("/etc/planet/inventory.json".into())),
            ),
            (
                "file:///etc/planet/inv%20entory.json",
                Ok(Source::File("/etc/planet/inv entory.json".into())),
            ),
            (
                "file://localhost/etc/x.json",
                Ok(Source::File("/etc/x.json".into())),
            ),
            ("", Err("inventory address is empty")),
            ("   ", Err("inventory address is empty")),
            (
                "inventory.json",
                Err(
                    "unsupported inventory address \"inventory.json\" (expected an http://, https:// or file:// URL or an absolute path)",
                ),
            ),
            (
                "localhost:8080/inv",
                Err(
                    "unsupported inventory address \"localhost:8080/inv\" (expected an http://, https:// or file:// URL or an absolute path)",
                ),
            ),
            (
                "ftp://host/inv",
                Err(
                    "unsupported inventory address \"ftp://host/inv\" (expected an http://, https:// or file:// URL or an absolute path)",
                ),
            ),
            ("http://", Err("invalid inventory URL \"http://\"")),
            (
                "http://exa mple/",
                Err("invalid inventory URL \"http://exa mple/\""),
            ),
            (
                "file://remote-host/x",
                Err("\"file://remote-host/x\" does not name a local file"),
            ),
        ];
        for (addr, want) in cases {
            match (Source::parse(addr), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{addr:?}"),
                (Err(got), Err(want)) => assert_eq!(got.to_string(), *want, "{addr:?}"),
                (got, want) => panic!("{addr:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn display_hides_credentials_and_query() {
        let source = Source::parse(
            "https://user:secret@inv.example:8443/p/hosts.json?X-Amz-Signature=abc#frag",
        )
        .expect("valid");
        assert_eq!(
            source.to_string(),
            "https://inv.example:8443/p/hosts.json?…"
        );
        let plain = Source::parse("http://inv.example/hosts.json").expect("valid");
        assert_eq!(plain.to_string(), "http://inv.example/hosts.json");
        let file = Source::parse("/srv/inv.json").expect("valid");
        assert_eq!(file.to_string(), "/srv/inv.json");
    }

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("planet-inventory-{}-{name}", std::process::id()))
    }

    #[test]
    fn file_limits() {
        let path = temp_path("limits.json");
        std::fs::write(&path, b"[1234567890]").expect("write");
        assert_eq!(read_file(path.clone(), 12).expect("fits"), b"[1234567890]");
        assert!(matches!(
            read_file(path.clone(), 11),
            Err(FetchError::TooLarge { limit: 11 })
        ));
        std::fs::remove_file(&path).expect("remove");
        let missing = read_file(path.clone(), 100).expect_err("missing");
        assert!(
            planet_cli::errors::chain(&missing)
                .starts_with(&format!("cannot read {}: ", path.display())),
            "{missing}"
        );
        let dir = read_file(std::env::temp_dir(), 100).expect_err("directory");
        assert!(matches!(dir, FetchError::NotAFile(_)), "{dir:?}");
    }
}
