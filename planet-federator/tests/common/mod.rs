//! Test harness: real Prometheus and InfluxDB (Debian packages) started on
//! loopback with free ports and temp dirs, killed on drop; a fake agent
//! serving planet-agent-style metrics; a recording fake HTTP server.
//!
//! A missing server binary FAILS the test with the package to install; it
//! never passes silently.

use std::{
    collections::BTreeMap,
    fs,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const INFLUXD: &str = "/usr/bin/influxd";

/// Panics (fails the test) when a server binary is missing.
pub fn require(binary: &str, package: &str) -> PathBuf {
    let path = PathBuf::from(binary);
    assert!(
        path.exists(),
        "{binary} not found: install the Debian package `{package}` \
         (apt-get install -y prometheus influxdb influxdb-client; `cargo xtask setup` does it)"
    );
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "planet-federator-{name}-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) on drop.
pub struct Server {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Server {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Self {
        let out = fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Self {
            child: Some(child),
            log,
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_http(url: &str, what: &str, server: &Server, within: Duration) {
    let start = Instant::now();
    loop {
        if get_ok(url) {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{what} did not come up at {url} within {within:?}; its log:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True when `url` (`http://host:port/path`) answers 2xx: a blocking
/// HTTP/1.0 GET over std, so readiness checks need no runtime.
fn get_ok(url: &str) -> bool {
    use std::{
        io::{Read, Write},
        net::TcpStream,
    };
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut s) = TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    let Ok(n) = s.read(&mut buf) else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..n]);
    head.starts_with("HTTP/1.1 2") || head.starts_with("HTTP/1.0 2")
}

/// InfluxDB 1.x (`influxd`), HTTP on a free loopback port.
pub struct Influxd {
    pub dir: TempDir,
    pub port: u16,
    config: PathBuf,
    server: Server,
}

impl Influxd {
    pub fn start() -> Self {
        let binary = require(INFLUXD, "influxdb");
        let dir = TempDir::new("influxd");
        let port = free_port();
        let rpc = free_port();
        let d = dir.path().display().to_string();
        let config = dir.path().join("influxdb.conf");
        fs::write(
            &config,
            format!(
                r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[retention]
  enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
"#
            ),
        )
        .expect("write influxdb.conf");
        let server = Server::spawn(
            Command::new(&binary).args(["run", "-config"]).arg(&config),
            dir.path().join("influxd.log"),
        );
        let mut me = Self {
            dir,
            port,
            config,
            server,
        };
        me.wait_ready();
        me
    }

    fn wait_ready(&mut self) {
        wait_http(
            &format!("{}/ping", self.url()),
            "influxd",
            &self.server,
            Duration::from_secs(30),
        );
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL: nothing is flushed that the WAL has not).
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.server.stop();
        self.server = Server::spawn(
            Command::new(INFLUXD)
                .args(["run", "-config"])
                .arg(&self.config),
            self.dir.path().join("influxd-2.log"),
        );
        self.wait_ready();
    }

    /// Runs InfluxQL (`db` may be empty) and returns the JSON answer.
    pub async fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let client = reqwest::Client::new();
        let resp = client
            .post(format!("{}/query", self.url()))
            .form(&[("db", db), ("q", q), ("epoch", "ns")])
            .send()
            .await
            .expect("influx query");
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.expect("influx json");
        assert!(status.is_success(), "{q}: {status} {body}");
        assert!(
            body["results"][0]["error"].is_null(),
            "{q}: {}",
            body["results"][0]["error"]
        );
        body
    }

    pub async fn create_database(&self, db: &str) {
        self.query("", &format!("CREATE DATABASE \"{db}\"")).await;
    }

    /// The series of the first statement of `q`.
    pub async fn series(&self, db: &str, q: &str) -> Vec<serde_json::Value> {
        let body = self.query(db, q).await;
        body["results"][0]["series"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Prometheus 2.x scraping `targets` every `interval`.
pub struct Prometheus {
    pub dir: TempDir,
    pub port: u16,
    server: Server,
}

impl Prometheus {
    pub fn start(targets: &[SocketAddr], interval: &str) -> Self {
        let dir = TempDir::new("prometheus");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  evaluation_interval: {interval}\n\
             scrape_configs:\n  - job_name: planet-agent\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        Self::start_in(dir, &config)
    }

    /// Starts with the given `prometheus.yml` text.
    pub fn start_with_config(config: &str) -> Self {
        Self::start_in(TempDir::new("prometheus"), config)
    }

    fn start_in(dir: TempDir, config_text: &str) -> Self {
        let binary = require(PROMETHEUS, "prometheus");
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        fs::write(&config, config_text).expect("write prometheus.yml");
        let server = Server::spawn(
            Command::new(&binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn"),
            dir.path().join("prometheus.log"),
        );
        let me = Self { dir, port, server };
        wait_http(
            &format!("{}/-/ready", me.url()),
            "prometheus",
            &me.server,
            Duration::from_secs(60),
        );
        me
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An instant query's result array.
    pub async fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/query", self.url()))
            .form(&[("query", q)])
            .send()
            .await
            .expect("prometheus query");
        let body: serde_json::Value = resp.json().await.expect("prometheus json");
        assert_eq!(body["status"], "success", "{q}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `q` returns at least one series.
    pub async fn wait_for(&self, q: &str, within: Duration) {
        let start = Instant::now();
        while self.query(q).await.is_empty() {
            assert!(
                start.elapsed() < within,
                "Prometheus has no result for {q} after {within:?}; log:\n{}",
                self.server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// One series the fake agent serves: value = `base + rate * seconds since start`.
#[derive(Debug, Clone)]
pub struct Series {
    pub family: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub base: f64,
    pub rate: f64,
}

impl Series {
    pub fn new(
        family: &'static str,
        labels: &[(&'static str, &str)],
        base: f64,
        rate: f64,
    ) -> Self {
        Self {
            family,
            labels: labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            base,
            rate,
        }
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders planet-agent's exposition (families typed as planet-agent types them).
pub fn exposition(series: &[Series], elapsed: f64) -> String {
    let mut by_family: BTreeMap<&str, Vec<&Series>> = BTreeMap::new();
    for s in series {
        by_family.entry(s.family).or_default().push(s);
    }
    let mut out = String::new();
    for (family, list) in by_family {
        let (kind, help) = match family {
            "planet_traffic_bytes_total" => ("counter", "Total network traffic with peers"),
            "planet_upstream" => ("gauge", "Upstream dependency of this machine"),
            "planet_downstream" => ("gauge", "Downstream dependency of this machine"),
            _ => ("gauge", "test series"),
        };
        out.push_str(&format!("# HELP {family} {help}\n# TYPE {family} {kind}\n"));
        for s in list {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let value = s.base + s.rate * elapsed;
            out.push_str(&format!("{family}{{{}}} {value}\n", labels.join(",")));
        }
    }
    out
}

/// An HTTP server on 127.0.0.1 serving `/metrics` from `series`; stops on drop.
pub struct FakeAgent {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAgent {
    pub async fn start(series: Vec<Series>) -> Self {
        let start = Instant::now();
        let series = Arc::new(series);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let series = Arc::clone(&series);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        exposition(&series, start.elapsed().as_secs_f64()),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake agent");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, task }
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request the recording server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// Answers by path: `(status, headers, body)`; a closure decides per request.
pub type Responder = dyn Fn(&Recorded, usize) -> (u16, Vec<(String, String)>, String) + Send + Sync;

/// A fake HTTP server on 127.0.0.1 that records every request.
pub struct Recorder {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub async fn start(respond: Arc<Responder>) -> Self {
        use axum::{body::Bytes, extract::Request, http::StatusCode, response::IntoResponse};
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let log = Arc::clone(&requests);
        let app = axum::Router::new().fallback(move |req: Request| {
            let log = Arc::clone(&log);
            let respond = Arc::clone(&respond);
            async move {
                let (parts, body) = req.into_parts();
                let body: Bytes = axum::body::to_bytes(body, 64 << 20)
                    .await
                    .unwrap_or_default();
                let rec = Recorded {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or("").to_owned(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let n = {
                    let mut l = log.lock().unwrap();
                    l.push(rec.clone());
                    l.iter().filter(|r| r.path == rec.path).count()
                };
                let (status, headers, body) = respond(&rec, n);
                let mut resp = (StatusCode::from_u16(status).unwrap(), body).into_response();
                for (k, v) in headers {
                    resp.headers_mut().insert(
                        axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        v.parse().unwrap(),
                    );
                }
                resp
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
