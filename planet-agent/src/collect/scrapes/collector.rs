//! The darkstat and ebpf_exporter collectors: scrape every interval,
//! report the numbers on success, keep the last good ones on failure and
//! count the failure by reason.

use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

use planet_cli::{errors, periodic::Periodic};
use reqwest::{StatusCode, Url};

use super::{
    ExternalReport, PeerBytes, ScrapeKind,
    darkstat::{self, Format},
    ebpf_exporter,
    scrape::{ScrapeClient, ScrapeError, parse_url, shown},
};
use crate::collect::{Input, Report, Reports, Run};

/// One scrape's numbers.
pub struct Scraped {
    pub peers: Vec<PeerBytes>,
    /// Samples or rows left out (bad address, direction or value).
    pub skipped: usize,
}

/// What a task scrapes.
pub trait ScrapeSource: Send {
    /// Which source this is.
    const KIND: ScrapeKind;
    /// The task's name in self-metrics and logs.
    const NAME: &'static str = Self::KIND.task();

    fn scrape(
        &mut self,
        client: &ScrapeClient,
    ) -> impl Future<Output = Result<Scraped, ScrapeError>> + Send;

    /// The configured address, for logs (without credentials and query).
    fn shown_addr(&self) -> String;

    /// The darkstat page in use, for darkstat.
    fn format(&self) -> Option<Format> {
        None
    }
}

/// darkstat: `/metrics` when it has one, else `/hosts/?full=yes`.
#[derive(Debug)]
pub struct DarkstatSource {
    addr: String,
    /// The page that worked last; `None` to probe `/metrics` first. Reset
    /// by any failure, so an upgraded darkstat is found after its restart.
    format: Option<Format>,
}

impl DarkstatSource {
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            format: None,
        }
    }
}

/// The `/metrics` and `/hosts/?full=yes` URLs of a darkstat address, which
/// may name its `/metrics` (as planet-exporter expected) or its root.
pub fn darkstat_urls(addr: &Url) -> (Url, Url) {
    let mut base = addr.clone();
    base.set_query(None);
    base.set_fragment(None);
    let path = base.path().to_owned();
    let dir = match path.strip_suffix("metrics") {
        Some(dir) if dir.ends_with('/') => dir.to_owned(),
        _ if path.ends_with('/') => path,
        _ => format!("{path}/"),
    };
    base.set_path(&dir);
    let metrics = base.join("metrics").unwrap_or_else(|_| base.clone());
    let hosts = base
        .join("hosts/?full=yes")
        .unwrap_or_else(|_| base.clone());
    (metrics, hosts)
}

impl ScrapeSource for DarkstatSource {
    const KIND: ScrapeKind = ScrapeKind::Darkstat;

    async fn scrape(&mut self, client: &ScrapeClient) -> Result<Scraped, ScrapeError> {
        let url = parse_url(Self::NAME, &self.addr)?;
        let (metrics_url, hosts_url) = darkstat_urls(&url);
        let result = match self.format {
            None | Some(Format::Metrics) => match scrape_metrics(client, &metrics_url).await {
                Err(err) if err.status() == Some(StatusCode::NOT_FOUND) => {
                    tracing::debug!(url = %shown(&metrics_url), "darkstat has no /metrics (older than 3.0.720); reading its hosts table");
                    scrape_hosts(client, &hosts_url).await
                }
                other => other,
            },
            Some(Format::HostsHtml) => scrape_hosts(client, &hosts_url).await,
        };
        match result {
            Ok((scraped, format)) => {
                if self.format != Some(format) {
                    tracing::info!(format = format.as_str(), "darkstat page in use");
                }
                self.format = Some(format);
                Ok(scraped)
            }
            Err(err) => {
                self.format = None;
                Err(err)
            }
        }
    }

    fn shown_addr(&self) -> String {
        shown_addr(Self::NAME, &self.addr)
    }

    fn format(&self) -> Option<Format> {
        self.format
    }
}

fn shown_addr(task: &'static str, addr: &str) -> String {
    parse_url(task, addr).map_or_else(|_| format!("{addr:?}"), |url| shown(&url))
}

fn content_error(url: &Url, err: impl std::error::Error + Send + Sync + 'static) -> ScrapeError {
    ScrapeError::Content {
        url: shown(url),
        source: Box::new(err),
    }
}

async fn scrape_metrics(
    client: &ScrapeClient,
    url: &Url,
) -> Result<(Scraped, Format), ScrapeError> {
    let exp = client.get_exposition(url).await?;
    let (peers, skipped) = darkstat::from_metrics(&exp).map_err(|e| content_error(url, e))?;
    let skipped = skipped.bad_ip + skipped.bad_dir + skipped.bad_value;
    Ok((Scraped { peers, skipped }, Format::Metrics))
}

async fn scrape_hosts(client: &ScrapeClient, url: &Url) -> Result<(Scraped, Format), ScrapeError> {
    let body = client.get(url).await?;
    let page = String::from_utf8_lossy(&body);
    let peers = darkstat::from_hosts_html(&page).map_err(|e| content_error(url, e))?;
    Ok((Scraped { peers, skipped: 0 }, Format::HostsHtml))
}

/// ebpf_exporter's tcptop families.
#[derive(Debug)]
pub struct EbpfExporterSource {
    addr: String,
}

impl EbpfExporterSource {
    pub fn new(addr: impl Into<String>) -> Self {
        Self { addr: addr.into() }
    }
}

impl ScrapeSource for EbpfExporterSource {
    const KIND: ScrapeKind = ScrapeKind::EbpfExporter;

    async fn scrape(&mut self, client: &ScrapeClient) -> Result<Scraped, ScrapeError> {
        let url = parse_url(Self::NAME, &self.addr)?;
        let exp = client.get_exposition(&url).await?;
        let (peers, skipped) =
            ebpf_exporter::from_exposition(&exp).map_err(|e| content_error(&url, e))?;
        Ok(Scraped { peers, skipped })
    }

    fn shown_addr(&self) -> String {
        shown_addr(Self::NAME, &self.addr)
    }
}

/// Scrapes one [`ScrapeSource`] per run.
pub struct ScrapeCollector<S> {
    source: S,
    client: ScrapeClient,
    report: ExternalReport,
    /// Reason of the previous failure; a repeat is logged at debug level.
    failing: Option<&'static str>,
    reports: Reports,
}

impl<S: ScrapeSource> ScrapeCollector<S> {
    pub fn new(source: S, client: ScrapeClient, reports: Reports) -> Self {
        tracing::info!(
            task = S::NAME,
            addr = %source.shown_addr(),
            "task started"
        );
        Self {
            source,
            client,
            report: ExternalReport::default(),
            failing: None,
            reports,
        }
    }

    /// One scrape and its outcome.
    pub async fn scrape_once(&mut self) -> Report {
        let started = Instant::now();
        let result = self.source.scrape(&self.client).await;
        let elapsed = started.elapsed();
        let success = result.is_ok();
        match result {
            Ok(scraped) => {
                if self.failing.take().is_some() {
                    tracing::info!(task = S::NAME, "scrape works again");
                }
                if scraped.skipped > 0 {
                    tracing::debug!(
                        task = S::NAME,
                        skipped = scraped.skipped,
                        "samples left out"
                    );
                }
                self.report.peers = Arc::new(scraped.peers);
                self.report.last_success = Some(SystemTime::now());
                self.report.darkstat_format = self.source.format();
            }
            Err(err) => {
                let reason = err.reason();
                *self.report.errors.entry(reason).or_default() += 1;
                let error = errors::chain(&err);
                if self.failing.replace(reason) == Some(reason) {
                    tracing::debug!(task = S::NAME, reason, %error, "scrape failed again");
                } else {
                    tracing::error!(
                        task = S::NAME,
                        reason,
                        %error,
                        kept_peers = self.report.peers.len(),
                        "scrape failed; keeping the last good numbers"
                    );
                }
            }
        }
        let input = Input::External {
            kind: S::KIND,
            report: self.report.clone(),
        };
        Report::ran(
            S::NAME,
            Run {
                success,
                duration: elapsed,
            },
            Some(input),
        )
    }
}

impl<S: ScrapeSource> Periodic for ScrapeCollector<S> {
    async fn run(&mut self) {
        let report = self.scrape_once().await;
        self.reports.send(report).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn darkstat_addresses() {
        let urls = |addr: &str| {
            let (m, h) = darkstat_urls(&Url::parse(addr).expect(addr));
            (m.to_string(), h.to_string())
        };
        let pair = |m: &str, h: &str| (m.to_owned(), h.to_owned());
        assert_eq!(
            urls("http://127.0.0.1:11560/metrics"),
            pair(
                "http://127.0.0.1:11560/metrics",
                "http://127.0.0.1:11560/hosts/?full=yes"
            )
        );
        assert_eq!(
            urls("http://127.0.0.1:11560"),
            pair(
                "http://127.0.0.1:11560/metrics",
                "http://127.0.0.1:11560/hosts/?full=yes"
            )
        );
        assert_eq!(
            urls("http://proxy/darkstat/metrics?x=1"),
            pair(
                "http://proxy/darkstat/metrics",
                "http://proxy/darkstat/hosts/?full=yes"
            )
        );
        assert_eq!(
            urls("http://proxy/darkstat"),
            pair(
                "http://proxy/darkstat/metrics",
                "http://proxy/darkstat/hosts/?full=yes"
            )
        );
    }
}
