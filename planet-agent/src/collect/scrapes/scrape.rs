//! The HTTP side of the darkstat and ebpf_exporter tasks: one GET within a
//! time limit (connect to last byte) and a size limit, 2xx only, through
//! the inventory's bounded [`fetch`](crate::collect::inventory::fetch).
//!
//! Unlike planet-exporter's client (spec §4.5) it has an overall timeout,
//! verifies TLS, asks for the text format, and ignores proxy variables (the
//! targets are normally on localhost, where a proxy would only break them).

use std::time::Duration;

use reqwest::{StatusCode, Url, header};
use thiserror::Error;

use super::exposition::{self, Exposition, ExpositionError};
use crate::collect::inventory::{FetchError, Source, fetch};

/// Default of `-task-scrape-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `-task-scrape-max-bytes`.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

/// Connection attempts give up after this (or the timeout, if shorter).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `Accept` of every scrape: the text format (darkstat ignores it).
const ACCEPT: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

/// Why a scrape produced no numbers.
#[derive(Debug, Error)]
pub enum ScrapeError {
    #[error("{task} address is empty")]
    EmptyAddress { task: &'static str },
    #[error("invalid {task} address {addr:?} (expected an http:// or https:// URL)")]
    BadAddress { task: &'static str, addr: String },
    #[error(transparent)]
    Fetch(FetchError),
    #[error("invalid exposition from {url}")]
    Exposition {
        url: String,
        #[source]
        source: ExpositionError,
    },
    /// The body parsed but is not what the task reads.
    #[error("unexpected content from {url}")]
    Content {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ScrapeError {
    /// A short, fixed label for `planet_scrape_errors_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::EmptyAddress { .. } | Self::BadAddress { .. } => "address",
            Self::Fetch(FetchError::Timeout(_)) => "timeout",
            Self::Fetch(FetchError::Status { .. }) => "status",
            Self::Fetch(FetchError::TooLarge { .. }) => "too_large",
            Self::Fetch(FetchError::Request { source, .. }) if source.is_connect() => "connect",
            Self::Fetch(_) => "request",
            Self::Exposition { .. } => "parse",
            Self::Content { .. } => "content",
        }
    }

    /// The HTTP status, when the target answered with a non-2xx one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Fetch(FetchError::Status { status, .. }) => Some(*status),
            _ => None,
        }
    }
}

/// Checks a `-task-*-addr` value: a non-empty `http(s)://` URL.
pub fn parse_url(task: &'static str, addr: &str) -> Result<Url, ScrapeError> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Err(ScrapeError::EmptyAddress { task });
    }
    Url::parse(addr)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        .ok_or_else(|| ScrapeError::BadAddress {
            task,
            addr: addr.to_owned(),
        })
}

/// The bounded GET shared by both tasks.
#[derive(Clone, Debug)]
pub struct ScrapeClient {
    client: reqwest::Client,
    timeout: Duration,
    max_bytes: usize,
}

impl ScrapeClient {
    pub fn new(timeout: Duration, max_bytes: usize) -> Result<Self, ScrapeError> {
        let mut headers = header::HeaderMap::new();
        headers.insert(header::ACCEPT, header::HeaderValue::from_static(ACCEPT));
        let client = reqwest::Client::builder()
            .user_agent(concat!("planet-agent/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::limited(5))
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .build()
            .map_err(|e| ScrapeError::Fetch(FetchError::Client(e)))?;
        Ok(Self {
            client,
            timeout,
            max_bytes,
        })
    }

    /// The whole body of a 2xx answer to `GET url`.
    pub async fn get(&self, url: &Url) -> Result<Vec<u8>, ScrapeError> {
        fetch(
            &Source::Http(url.clone()),
            &self.client,
            self.timeout,
            self.max_bytes,
        )
        .await
        .map_err(ScrapeError::Fetch)
    }

    /// `GET url`, parsed as the Prometheus text format.
    pub async fn get_exposition(&self, url: &Url) -> Result<Exposition, ScrapeError> {
        let body = self.get(url).await?;
        exposition::parse(&body).map_err(|source| ScrapeError::Exposition {
            url: shown(url),
            source,
        })
    }
}

/// `url` for logs and errors: without credentials and query.
pub fn shown(url: &Url) -> String {
    Source::Http(url.clone()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let err = |addr: &str| parse_url("darkstat", addr).unwrap_err().to_string();
        assert_eq!(err(""), "darkstat address is empty");
        assert_eq!(err("  "), "darkstat address is empty");
        assert_eq!(
            err("localhost:667/metrics"),
            "invalid darkstat address \"localhost:667/metrics\" (expected an http:// or https:// URL)"
        );
        assert_eq!(
            err("file:///tmp/x"),
            "invalid darkstat address \"file:///tmp/x\" (expected an http:// or https:// URL)"
        );
        let url = parse_url("ebpf", " http://localhost:9435/metrics\n").expect("valid");
        assert_eq!(url.as_str(), "http://localhost:9435/metrics");
        assert_eq!(
            shown(&Url::parse("http://u:p@h:1/m?token=x").expect("url")),
            "http://h:1/m?…"
        );
    }

    #[tokio::test]
    async fn refused_connections_are_connect_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let client = ScrapeClient::new(Duration::from_secs(2), 1024).expect("client");
        let url = Url::parse(&format!("http://{addr}/metrics")).expect("url");
        let err = client.get(&url).await.expect_err("nothing listens");
        assert_eq!(err.reason(), "connect", "{err:?}");
    }
}
