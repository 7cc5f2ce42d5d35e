//! The inventory collector: fetch at start, then every refresh interval.
//! A new inventory on success; on any failure the model keeps the last
//! good one.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use planet_cli::{errors, periodic::Periodic};
use thiserror::Error;

use super::{
    AddressError, FetchError, Format, Inventory, InventoryStatus, ParseError, Source, fetch,
    fetch::http_client, parse,
};
use crate::collect::{Input, Report, Reports, Run};

/// Name of this task in self-metrics.
pub const TASK_NAME: &str = "inventory";

/// Overall fetch timeout, planet-exporter's value.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest accepted body.
pub const DEFAULT_MAX_BYTES: usize = 16 << 20;

/// Shortest refresh interval the task accepts; shorter values are raised
/// to it (a zero interval would spin).
pub const MIN_REFRESH: Duration = Duration::from_millis(10);

/// How the inventory task fetches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryConfig {
    /// `-task-inventory-addr`: `http(s)://…`, `file:///…` or `/path`.
    pub addr: String,
    /// `-task-inventory-format`.
    pub format: Format,
    /// Time between refreshes (the CLI uses 25 × task interval).
    pub refresh: Duration,
    /// Limit for one fetch: connect, headers and body together.
    pub timeout: Duration,
    /// Largest accepted body in bytes.
    pub max_bytes: usize,
}

impl InventoryConfig {
    /// A configuration with [`DEFAULT_TIMEOUT`] and [`DEFAULT_MAX_BYTES`].
    pub fn new(addr: impl Into<String>, format: Format, refresh: Duration) -> Self {
        Self {
            addr: addr.into(),
            format,
            refresh,
            timeout: DEFAULT_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Why a refresh failed. The previous inventory stays in use.
#[derive(Debug, Error)]
pub enum RefreshError {
    /// `-task-inventory-addr` names no usable source.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// No body: network, HTTP status, size, timeout, file.
    #[error("cannot fetch the inventory")]
    Fetch(#[source] FetchError),
    /// The body is not valid for the configured format.
    #[error("cannot parse the inventory from {from}")]
    Parse {
        /// The source, without credentials and query.
        from: String,
        /// Why decoding failed.
        #[source]
        source: ParseError,
    },
}

/// Fetches the inventory periodically and reports it to the model.
#[derive(Debug)]
pub struct InventoryCollector {
    config: InventoryConfig,
    /// Built on first use, then reused.
    client: Option<reqwest::Client>,
    status: InventoryStatus,
    reports: Reports,
}

impl InventoryCollector {
    /// A collector that has not run yet. An unusable address is reported
    /// by every refresh, not here.
    pub fn new(config: InventoryConfig, reports: Reports) -> Self {
        let shown = Source::parse(&config.addr)
            .map_or_else(|_| format!("{:?}", config.addr), |s| s.to_string());
        tracing::info!(
            source = %shown,
            format = %config.format,
            refresh = ?config.refresh.max(MIN_REFRESH),
            "inventory task started"
        );
        Self {
            config,
            client: None,
            status: InventoryStatus::default(),
            reports,
        }
    }

    /// How often to refresh.
    pub fn refresh(&self) -> Duration {
        self.config.refresh.max(MIN_REFRESH)
    }

    /// One refresh: fetch, parse, build. On success the new inventory
    /// replaces the old one wholesale and its entry count is returned. On
    /// failure the old inventory stays, the status counts the failure, and
    /// one error line is logged. The report says the same to the model.
    pub async fn refresh_once(&mut self) -> (Report, Result<usize, RefreshError>) {
        let started = Instant::now();
        let outcome = self.load().await;
        let (inventory, result) = match outcome {
            Ok(inventory) => {
                let (entries, skipped) = (inventory.len(), inventory.skipped());
                self.status.entries = entries;
                self.status.last_success = Some(SystemTime::now());
                self.status.last_error = None;
                if skipped > 0 {
                    tracing::warn!(
                        skipped,
                        "inventory entries left out: undecodable, unknown fields, \
                         no domain and no hostgroup, or invalid CIDR (details at debug level)"
                    );
                }
                tracing::info!(entries, skipped, elapsed = ?started.elapsed(), "inventory loaded");
                (Some(Arc::new(inventory)), Ok(entries))
            }
            Err(err) => {
                let reason = errors::chain(&err);
                self.status.failures += 1;
                self.status.last_error = Some(reason.clone());
                tracing::error!(
                    error = %reason,
                    failures = self.status.failures,
                    kept_entries = self.status.entries,
                    "inventory refresh failed; keeping the last good inventory"
                );
                (None, Err(err))
            }
        };
        let run = Run::since(started, result.is_ok());
        let input = Input::Inventory {
            inventory,
            status: self.status.clone(),
        };
        (Report::ran(TASK_NAME, run, Some(input)), result)
    }

    /// The new inventory, with the localhost entry.
    async fn load(&mut self) -> Result<Inventory, RefreshError> {
        let source = Source::parse(&self.config.addr)?;
        let client = match &self.client {
            Some(client) => client.clone(),
            None => {
                let client = http_client(self.config.timeout).map_err(RefreshError::Fetch)?;
                self.client.insert(client).clone()
            }
        };
        let body = fetch(&source, &client, self.config.timeout, self.config.max_bytes)
            .await
            .map_err(RefreshError::Fetch)?;
        let parsed =
            parse(self.config.format, &body).map_err(|source_err| RefreshError::Parse {
                from: source.to_string(),
                source: source_err,
            })?;
        drop(body);
        let mut inventory = Inventory::with_localhost(parsed.hosts);
        inventory.count_skipped(parsed.skipped + parsed.uninformative);
        Ok(inventory)
    }
}

impl Periodic for InventoryCollector {
    async fn run(&mut self) {
        let (report, _) = self.refresh_once().await;
        self.reports.send(report).await;
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::{IpAddr, SocketAddr},
        path::PathBuf,
        sync::{
            Mutex,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::{TcpListener, TcpStream},
    };

    use planet_cli::periodic;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::collect::inventory::{Host, LOCALHOST};
    use crate::model::{
        self, Store,
        testing::{self, Pipeline},
    };

    /// What the test server answers.
    #[derive(Clone, Debug)]
    enum Reply {
        /// 200 with this body and its Content-Length.
        Ok(String),
        /// This status with a short HTML body.
        Status(u16),
        /// 200 with `size` bytes of JSON-ish filler; with or without a
        /// Content-Length header (without: the body ends at close).
        Huge { size: usize, declared: bool },
        /// 200 headers and half a body, then nothing, forever.
        Stall,
        /// A redirect to `path` on the same server.
        Redirect(String),
    }

    struct Server {
        addr: SocketAddr,
        reply: Arc<Mutex<Reply>>,
        requests: Arc<AtomicUsize>,
    }

    impl Server {
        async fn start(reply: Reply) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let reply = Arc::new(Mutex::new(reply));
            let requests = Arc::new(AtomicUsize::new(0));
            let (shared, count) = (reply.clone(), requests.clone());
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    count.fetch_add(1, Ordering::SeqCst);
                    let reply = shared.lock().expect("lock").clone();
                    tokio::spawn(serve(stream, reply));
                }
            });
            Self {
                addr,
                reply,
                requests,
            }
        }

        fn set(&self, reply: Reply) {
            *self.reply.lock().expect("lock") = reply;
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }
    }

    async fn serve(mut stream: TcpStream, reply: Reply) {
        let mut head = Vec::new();
        let mut buf = [0; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        // `/hop/<n>/rest` redirects to `/hop/<n-1>/rest`; `/hop/0/…` answers.
        let head = String::from_utf8_lossy(&head);
        let path = head.split(' ').nth(1).unwrap_or("/");
        if let Some((n, rest)) = path
            .strip_prefix("/hop/")
            .and_then(|p| p.split_once('/'))
            .and_then(|(n, rest)| Some((n.parse::<u32>().ok()?, rest)))
            .filter(|&(n, _)| n > 0)
        {
            let to = format!("/hop/{}/{rest}", n - 1);
            let _ = respond(&mut stream, "302 Found", &[("Location", &to)], b"").await;
            return;
        }
        let _ = match reply {
            Reply::Ok(body) => respond(&mut stream, "200 OK", &[], body.as_bytes()).await,
            Reply::Status(code) => {
                let body = format!("<html><body><h1>{code}</h1></body></html>");
                respond(&mut stream, &format!("{code} Oops"), &[], body.as_bytes()).await
            }
            Reply::Redirect(to) => {
                respond(&mut stream, "302 Found", &[("Location", to.as_str())], b"").await
            }
            Reply::Huge { size, declared } => huge(&mut stream, size, declared).await,
            Reply::Stall => {
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n[{\"domain\":";
                let _ = stream.write_all(head.as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
        };
    }

    async fn respond(
        stream: &mut TcpStream,
        status: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.shutdown().await
    }

    async fn huge(stream: &mut TcpStream, size: usize, declared: bool) -> std::io::Result<()> {
        let length = if declared {
            format!("Content-Length: {size}\r\n")
        } else {
            String::new()
        };
        let head = format!("HTTP/1.1 200 OK\r\n{length}Connection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await?;
        let block = [b' '; 64 * 1024];
        let mut sent = 0;
        while sent < size {
            let n = block.len().min(size - sent);
            // Fails once the client gives up: that is the point.
            stream.write_all(&block[..n]).await?;
            sent += n;
        }
        stream.shutdown().await
    }

    fn good_body(hosts: &[(&str, &str, &str)]) -> String {
        let entries: Vec<String> = hosts
            .iter()
            .map(|(ip, domain, group)| {
                format!(r#"{{"ip_address":"{ip}","domain":"{domain}","hostgroup":"{group}"}}"#)
            })
            .collect();
        format!("[{}]", entries.join(",\n"))
    }

    const FIRST: &[(&str, &str, &str)] = &[
        ("10.0.1.2", "xyz.service.consul", "xyz"),
        ("172.16.1.2", "abc.service.consul", "abc"),
        ("10.3.0.0/16", "", "unknown-but-its-network-xyz"),
    ];
    const SECOND: &[(&str, &str, &str)] = &[
        ("10.0.1.2", "xyz2.service.consul", "xyz2"),
        ("10.9.0.0/16", "", "net-nine"),
    ];

    fn ip(s: &str) -> IpAddr {
        s.parse().expect(s)
    }

    fn domain_of(store: &Store, address: &str) -> Option<String> {
        store
            .load()
            .inventory
            .lookup(ip(address))
            .map(|h| format!("{}|{}", h.domain, h.hostgroup))
    }

    fn pipeline() -> Pipeline {
        Pipeline::new(model::Config {
            inventory_enabled: true,
            ..model::Config::default()
        })
    }

    /// A collector whose reports are applied by hand (see [`refresh`]).
    fn collector(config: InventoryConfig) -> InventoryCollector {
        InventoryCollector::new(config, crate::collect::Reports::channel().0)
    }

    /// One refresh, applied to `store`.
    async fn refresh(
        task: &mut InventoryCollector,
        store: &mut Pipeline,
    ) -> Result<usize, RefreshError> {
        let (report, result) = task.refresh_once().await;
        store.apply(report);
        result
    }

    /// A collector reporting to a running model, in the periodic loop.
    fn spawn(
        config: InventoryConfig,
        shutdown: &CancellationToken,
    ) -> (Arc<Store>, tokio::task::JoinHandle<()>) {
        let (reports, store) = testing::spawn(model::Config {
            inventory_enabled: true,
            ..model::Config::default()
        });
        let task = InventoryCollector::new(config, reports);
        let refresh = task.refresh();
        let handle = tokio::spawn(periodic::run(task, refresh, shutdown.clone()));
        (store, handle)
    }

    fn config(addr: String, format: Format) -> InventoryConfig {
        InventoryConfig {
            timeout: Duration::from_secs(2),
            max_bytes: DEFAULT_MAX_BYTES,
            ..InventoryConfig::new(addr, format, Duration::from_millis(50))
        }
    }

    fn status(store: &Store) -> InventoryStatus {
        store
            .load()
            .inventory_status
            .clone()
            .expect("status published")
    }

    fn assert_first_in_place(store: &Store) {
        assert_eq!(
            domain_of(store, "10.0.1.2").as_deref(),
            Some("xyz.service.consul|xyz")
        );
        assert_eq!(
            domain_of(store, "10.3.200.1").as_deref(),
            Some("|unknown-but-its-network-xyz")
        );
        assert_eq!(
            domain_of(store, "127.0.0.1").as_deref(),
            Some("localhost|localhost")
        );
    }

    /// Each bad answer fails the refresh with a recognisable reason and
    /// leaves the first inventory in place; then a good answer replaces it
    /// wholesale.
    #[tokio::test]
    async fn refresh_keeps_last_good_inventory() {
        let server = Server::start(Reply::Ok(good_body(FIRST))).await;
        let mut store = pipeline();
        let mut task = collector(config(server.url("/inventory"), Format::ArrayJson));

        assert_eq!(
            domain_of(&store, "10.0.1.2"),
            None,
            "empty before the first fetch"
        );
        assert_eq!(refresh(&mut task, &mut store).await.expect("good"), 4);
        assert_first_in_place(&store);
        let loaded = status(&store);
        assert_eq!((loaded.entries, loaded.failures), (4, 0));
        assert_eq!(store.load().inventory.skipped(), 0);
        assert!(loaded.last_success.is_some());

        let bad: Vec<(&str, Reply, &str)> = vec![
            (
                "html page with 200",
                Reply::Ok("<html><body>Bad Gateway</body></html>".into()),
                "cannot parse the inventory from http://127.0.0.1:",
            ),
            (
                "truncated json",
                Reply::Ok(r#"[{"ip_address":"10.0.1.2","dom"#.into()),
                "invalid arrayjson body: EOF while parsing",
            ),
            (
                "object instead of array",
                Reply::Ok(r#"{"ip_address":"10.0.1.2","domain":"x"}"#.into()),
                "expected a JSON array of host objects or null",
            ),
            (
                "empty body",
                Reply::Ok(String::new()),
                "empty arrayjson body",
            ),
            (
                "http 500",
                Reply::Status(500),
                "answered HTTP 500 Internal Server Error",
            ),
            (
                "http 404",
                Reply::Status(404),
                "answered HTTP 404 Not Found",
            ),
            (
                "50 MB declared",
                Reply::Huge {
                    size: 50_000_000,
                    declared: true,
                },
                "body is larger than the limit of 16777216 bytes",
            ),
            (
                "50 MB streamed",
                Reply::Huge {
                    size: 50_000_000,
                    declared: false,
                },
                "body is larger than the limit of 16777216 bytes",
            ),
            (
                "stalled body",
                Reply::Stall,
                "no complete response within 2s",
            ),
            (
                "redirect loop",
                Reply::Redirect("/inventory".into()),
                "HTTP request to http://127.0.0.1:",
            ),
        ];
        for (i, (name, reply, reason)) in bad.into_iter().enumerate() {
            server.set(reply);
            let started = Instant::now();
            let err = refresh(&mut task, &mut store).await.expect_err(name);
            let chain = errors::chain(&err);
            assert!(chain.contains(reason), "{name}: {chain}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{name} took {:?}",
                started.elapsed()
            );
            assert_first_in_place(&store);
            let now = status(&store);
            assert_eq!(now.failures, i as u64 + 1, "{name}");
            assert_eq!(now.entries, 4, "{name}");
            assert_eq!(now.last_success, loaded.last_success, "{name}");
            assert_eq!(now.last_error.as_deref(), Some(chain.as_str()), "{name}");
            let task_status = store.load().tasks[TASK_NAME].clone();
            assert!(!task_status.last_success);
            assert_eq!(task_status.runs, i as u64 + 2);
        }

        server.set(Reply::Ok(good_body(SECOND)));
        assert_eq!(refresh(&mut task, &mut store).await.expect("good again"), 3);
        assert_eq!(
            domain_of(&store, "10.0.1.2").as_deref(),
            Some("xyz2.service.consul|xyz2")
        );
        assert_eq!(
            domain_of(&store, "172.16.1.2"),
            None,
            "removed host disappears"
        );
        assert_eq!(
            domain_of(&store, "10.3.0.1"),
            None,
            "removed network disappears"
        );
        assert_eq!(domain_of(&store, "10.9.8.7").as_deref(), Some("|net-nine"));
        let last = status(&store);
        assert_eq!(last.entries, 3);
        assert_eq!(last.last_error, None);
        assert!(last.last_success > loaded.last_success);
        assert!(store.load().tasks[TASK_NAME].last_success);
    }

    #[tokio::test]
    async fn follows_redirects_and_reads_ndjson() {
        let body = "{\"ip_address\":\"10.0.0.1\",\"domain\":\"a\",\"hostgroup\":\"g\"}\n{\"ip_address\":\"10.0.0.2\",\"hostgroup\":\"h\"}\n{\"port\":1}\n";
        let server = Server::start(Reply::Ok(body.into())).await;
        let mut store = pipeline();
        let mut task = collector(config(server.url("/hop/10/inv"), Format::NdJson));
        assert_eq!(refresh(&mut task, &mut store).await.expect("ndjson"), 3);
        assert_eq!(
            server.requests.load(Ordering::SeqCst),
            11,
            "10 redirects followed"
        );
        assert_eq!(
            domain_of(&store, "10.0.0.2").as_deref(),
            Some("|h"),
            "no carry-over"
        );
        assert_eq!(store.load().inventory.skipped(), 1);

        // A syntax error ends the parse (planet-exporter spun forever).
        server.set(Reply::Ok(
            "{\"ip_address\":\"10.0.0.9\",\"domain\":\"z\"}\n<html>".into(),
        ));
        let err = refresh(&mut task, &mut store).await.expect_err("syntax");
        assert!(
            errors::chain(&err).contains("invalid ndjson body after 1 values"),
            "{err}"
        );
        assert_eq!(domain_of(&store, "10.0.0.9"), None);
        assert_eq!(domain_of(&store, "10.0.0.1").as_deref(), Some("a|g"));

        let requests = server.requests.load(Ordering::SeqCst);
        let mut far = collector(config(server.url("/hop/11/inv"), Format::NdJson));
        let err = refresh(&mut far, &mut store)
            .await
            .expect_err("11 redirects");
        assert!(
            errors::chain(&err).contains("redirect"),
            "{}",
            errors::chain(&err)
        );
        // The first request and 10 redirects; the 11th is not followed.
        assert_eq!(server.requests.load(Ordering::SeqCst) - requests, 11);
        assert_eq!(domain_of(&store, "10.0.0.1").as_deref(), Some("a|g"));
    }

    #[tokio::test]
    async fn unusable_addresses_fail_every_run() {
        let mut store = pipeline();
        for (addr, reason) in [
            ("", "inventory address is empty"),
            ("inventory.json", "unsupported inventory address"),
            // Nothing listens on port 1 of 127.0.0.1.
            (
                "http://127.0.0.1:1/inv",
                "HTTP request to http://127.0.0.1:1/inv failed",
            ),
            (
                "/nonexistent/planet/inventory.json",
                "cannot read /nonexistent/planet/inventory.json",
            ),
        ] {
            let mut task = collector(config(addr.into(), Format::ArrayJson));
            for run in 1..=2 {
                let err = refresh(&mut task, &mut store).await.expect_err(addr);
                assert!(
                    errors::chain(&err).contains(reason),
                    "{addr}: {}",
                    errors::chain(&err)
                );
                assert_eq!(status(&store).failures, run);
            }
        }
        assert!(
            store.load().inventory.is_empty(),
            "no localhost entry without a success"
        );
    }

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "planet-inventory-task-{}-{name}",
            std::process::id()
        ))
    }

    #[tokio::test]
    async fn file_inventory() {
        let path = temp_path("hosts.json");
        std::fs::write(&path, good_body(FIRST)).expect("write");
        let mut store = pipeline();
        for addr in [
            path.display().to_string(),
            format!("file://{}", path.display()),
        ] {
            let mut task = collector(config(addr.clone(), Format::ArrayJson));
            assert_eq!(refresh(&mut task, &mut store).await.expect(&addr), 4);
            assert_first_in_place(&store);
        }
        let mut small = collector(InventoryConfig {
            max_bytes: 16,
            ..config(path.display().to_string(), Format::ArrayJson)
        });
        let err = refresh(&mut small, &mut store)
            .await
            .expect_err("too large");
        assert!(
            matches!(err, RefreshError::Fetch(FetchError::TooLarge { limit: 16 })),
            "{err:?}"
        );
        std::fs::write(&path, "<html>").expect("write");
        let mut task = collector(config(path.display().to_string(), Format::ArrayJson));
        assert!(refresh(&mut task, &mut store).await.is_err());
        assert_first_in_place(&store);
        std::fs::remove_file(&path).expect("remove");
    }

    /// Polls `check` until it holds, for up to 10 s.
    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The loop: refreshes on its own, survives failures, replaces the
    /// inventory when the source recovers, stops on shutdown.
    #[tokio::test]
    async fn run_keeps_going_through_failures() {
        let server = Server::start(Reply::Ok(good_body(FIRST))).await;
        let shutdown = CancellationToken::new();
        let (store, handle) = spawn(
            config(server.url("/inventory"), Format::ArrayJson),
            &shutdown,
        );

        eventually("first load", || domain_of(&store, "10.0.1.2").is_some()).await;
        assert_first_in_place(&store);

        for reply in [
            Reply::Ok("<html>oops</html>".into()),
            Reply::Status(500),
            Reply::Stall,
            Reply::Huge {
                size: 50_000_000,
                declared: false,
            },
        ] {
            let before = status(&store).failures;
            server.set(reply.clone());
            eventually(&format!("two failures with {reply:?}"), || {
                status(&store).failures >= before + 2
            })
            .await;
            assert_first_in_place(&store);
        }

        server.set(Reply::Ok(good_body(SECOND)));
        eventually("second inventory", || {
            domain_of(&store, "172.16.1.2").is_none()
        })
        .await;
        assert_eq!(
            domain_of(&store, "10.0.1.2").as_deref(),
            Some("xyz2.service.consul|xyz2")
        );
        assert_eq!(
            store.load().inventory.lookup(ip("127.0.0.1")),
            Some(&Host::new("127.0.0.1", LOCALHOST, LOCALHOST))
        );

        // Shutdown ends the loop even while a fetch is hanging.
        server.set(Reply::Stall);
        tokio::time::sleep(Duration::from_millis(100)).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), handle)
            .await
            .expect("stops on shutdown")
            .expect("no panic");
    }

    #[tokio::test]
    async fn zero_refresh_does_not_spin() {
        let shutdown = CancellationToken::new();
        let (store, handle) = spawn(
            InventoryConfig {
                refresh: Duration::ZERO,
                ..config(String::new(), Format::ArrayJson)
            },
            &shutdown,
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        shutdown.cancel();
        handle.await.expect("no panic");
        let failures = status(&store).failures;
        assert!((1..=20).contains(&failures), "{failures} runs in 100 ms");
    }
}
