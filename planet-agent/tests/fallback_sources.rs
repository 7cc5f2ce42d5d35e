//! The fallback traffic sources against real programs: the agent binary
//! with `-task-flow-enabled=false` reads a real darkstat (Debian's 3.0.719,
//! HTML hosts table; 3.0.721 built from source by `cargo xtask setup`,
//! `/metrics`) capturing on `lo`, and ebpf_exporter expositions served by a
//! local HTTP server that can also misbehave.
//!
//! darkstat needs root (packet capture); these tests fail without it.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use planet_testkit::{
    agent::AgentProcess,
    prom::{self, Sample},
    require_root,
    traffic::{ClientOpts, ServerOpts, run_client, spawn_server},
};

const AGENT: &str = env!("CARGO_BIN_EXE_planet-agent");
const TRAFFIC: &str = "planet_traffic_bytes_total";
const EBPF_TRAFFIC: &str = "planet_ebpf_traffic_bytes_total";
const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

// ---------------------------------------------------------------- darkstat

/// Debian's package (3.0.719) or the one `cargo xtask setup` builds.
fn darkstat_binary(version: &str) -> PathBuf {
    match version {
        "3.0.719" => PathBuf::from("/usr/sbin/darkstat"),
        // CARGO_TARGET_TMPDIR is <target>/tmp; xtask builds into <target>.
        _ => Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .join(format!("darkstat-{version}/darkstat")),
    }
}

/// A darkstat capturing on `lo`, serving on 127.0.0.1, killed on drop.
struct Darkstat {
    child: Child,
    port: u16,
    _chroot: TempDir,
}

impl Darkstat {
    fn start(version: &str, filter: &str) -> anyhow::Result<Self> {
        let binary = darkstat_binary(version);
        let out = Command::new(&binary)
            .arg("--version")
            .output()
            .with_context(|| {
                format!(
                    "run {} (darkstat {version}; `cargo xtask setup` installs it)",
                    binary.display()
                )
            })?;
        let shown = String::from_utf8_lossy(&out.stdout);
        if !shown.starts_with(&format!("darkstat {version} ")) {
            bail!("{} is not darkstat {version}: {shown}", binary.display());
        }
        let chroot = TempDir::new("darkstat-chroot")?;
        let port = free_port();
        let child = Command::new(&binary)
            .args(["-i", "lo", "-b", "127.0.0.1", "-p", &port.to_string()])
            .args([
                "--no-daemon",
                "--no-dns",
                "--no-promisc",
                "--user",
                "nobody",
            ])
            .arg("--chroot")
            .arg(&chroot.0)
            .args(["-f", filter])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {}", binary.display()))?;
        let darkstat = Self {
            child,
            port,
            _chroot: chroot,
        };
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("darkstat {version} never listened on 127.0.0.1:{port}");
            }
            thread::sleep(Duration::from_millis(100));
        }
        Ok(darkstat)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Darkstat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> anyhow::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback address of this test alone, so darkstat's filter sees only
/// this test's traffic (other tests use 127.0.0.1).
fn test_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 83, (std::process::id() % 250) as u8 + 1, n)
}

fn series<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.matches(name, labels)).collect()
}

fn traffic_value(samples: &[Sample], name: &str, remote: &str, direction: &str) -> Option<f64> {
    prom::value(
        samples,
        name,
        &[("remote_ip", remote), ("direction", direction)],
    )
}

/// Sends known traffic between 127.0.0.1 (client) and `server_ip`, and
/// checks the agent's darkstat-fed `planet_traffic_bytes_total` for
/// `server_ip` against it.
///
/// darkstat counts whole frames as captured on `lo`: per frame 14 bytes of
/// Ethernet header, 20 of IPv4 and 32 of TCP with timestamps (40 with the
/// SYN's options), i.e. 66-74 bytes on top of the payload, plus frames
/// with no payload at all (handshake, ACKs, FIN). So the counts are bounded
/// below by the payload each way, and above by payload plus that overhead:
/// at most 2 % of the payload (i.e. frames, ACKs included, average at
/// least 3.7 KB of payload; on `lo`, whose MTU is 64 KiB, segments carry
/// tens of KiB: measured about 26 KB per frame) plus 2 KiB per connection
/// (handshake and teardown take under 10 frames, 740 bytes).
fn darkstat_counts_loopback_traffic(version: &str, format: &str, n: u8) -> anyhow::Result<()> {
    require_root()?;
    let server_ip = test_ip(n);
    let darkstat = Darkstat::start(version, &format!("host {server_ip}"))?;
    let agent = AgentProcess::start(
        AGENT,
        "1s",
        &[
            "-task-flow-enabled=false",
            "-task-socketstat-enabled=false",
            "-local-address",
            "127.0.0.1",
            "-task-darkstat-enabled",
            "-task-darkstat-addr",
            // planet-exporter's form of the address; 3.0.719 has no
            // /metrics and the agent falls back to the hosts table.
            &darkstat.url("/metrics"),
        ],
    )?;

    let (conns, sent_each, reply_each) = (4u64, 512 * 1024, 128 * 1024);
    let mut server_opts = ServerOpts::new(SocketAddr::new(server_ip.into(), 0), "ds-server");
    server_opts.expect_conns = conns;
    server_opts.reply_bytes = reply_each;
    let server = spawn_server(&server_opts, None)?;
    let mut client_opts = ClientOpts::new(server.addr(), "ds-client", sent_each);
    client_opts.conns = conns;
    client_opts.read_reply = true;
    let client = run_client(&client_opts, None, WAIT)?;
    let served = server.wait(WAIT)?;
    assert_eq!(client.sent, sent_each * conns);
    assert_eq!(client.received, reply_each * conns);
    assert_eq!(served.received, client.sent);

    let remote = server_ip.to_string();
    let (egress_min, ingress_min) = (client.sent as f64, client.received as f64);
    let samples = agent.wait_for(
        |s| {
            traffic_value(s, TRAFFIC, &remote, "egress").is_some_and(|v| v >= egress_min)
                && traffic_value(s, TRAFFIC, &remote, "ingress").is_some_and(|v| v >= ingress_min)
        },
        WAIT,
    )?;
    // darkstat may still be counting the last frames: read it once more
    // after another task interval.
    thread::sleep(Duration::from_millis(2500));
    let samples = agent.scrape().unwrap_or(samples);
    let egress = traffic_value(&samples, TRAFFIC, &remote, "egress").unwrap_or(0.0);
    let ingress = traffic_value(&samples, TRAFFIC, &remote, "ingress").unwrap_or(0.0);
    let payload = egress_min + ingress_min;
    let overhead = egress + ingress - payload;
    let bound = 0.02 * payload + 2048.0 * conns as f64;
    eprintln!(
        "darkstat {version}: egress {egress} (payload {egress_min}), ingress {ingress} \
         (payload {ingress_min}), wire overhead {overhead} bytes, bound {bound}"
    );
    assert!(egress >= egress_min && ingress >= ingress_min);
    assert!(
        overhead <= bound,
        "darkstat counted {overhead} bytes beyond the payload, more than {bound}"
    );

    // This host (the client side, 127.0.0.1) is skipped; labels as planet-exporter.
    assert!(
        series(&samples, TRAFFIC, &[("remote_ip", "127.0.0.1")]).is_empty(),
        "this host's own address must be skipped"
    );
    let pair = series(&samples, TRAFFIC, &[("remote_ip", &remote)]);
    assert_eq!(pair.len(), 2, "{pair:?}");
    for s in pair {
        assert_eq!(s.label("local_hostgroup"), Some("127.0.0.1"));
        assert_eq!(s.label("local_domain"), Some("127.0.0.1"));
        assert_eq!(s.label("remote_hostgroup"), Some(""));
    }
    let one = |name: &str, labels: &[(&str, &str)]| prom::value(&samples, name, labels);
    assert_eq!(
        one("planet_traffic_source", &[("source", "darkstat")]),
        Some(1.0)
    );
    assert_eq!(
        one("planet_darkstat_format", &[("format", format)]),
        Some(1.0)
    );
    assert_eq!(
        one("planet_task_last_run_success", &[("task", "darkstat")]),
        Some(1.0)
    );

    if format == "metrics" {
        // The agent passes darkstat's counters through unchanged.
        let (status, body) = planet_testkit_get(&darkstat.url("/metrics"))?;
        assert_eq!(status, 200);
        let own = prom::parse(&body)?;
        let theirs = |dir| {
            prom::value(
                &own,
                "host_bytes_total",
                &[("ip", remote.as_str()), ("dir", dir)],
            )
        };
        assert_eq!(theirs("in"), Some(egress), "darkstat's in is our egress");
        assert_eq!(
            theirs("out"),
            Some(ingress),
            "darkstat's out is our ingress"
        );
    }
    let logs = agent.logs();
    assert!(
        logs.contains("planet_traffic_bytes_total source") && logs.contains("darkstat"),
        "{logs}"
    );
    agent.stop()?;
    Ok(())
}

fn planet_testkit_get(url: &str) -> anyhow::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").context("http URL")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    planet_testkit::http::get(host.parse()?, path, Duration::from_secs(5))
}

#[test]
fn darkstat_3_0_719_hosts_table() -> anyhow::Result<()> {
    darkstat_counts_loopback_traffic("3.0.719", "hosts_html", 7)
}

#[test]
fn darkstat_3_0_721_metrics() -> anyhow::Result<()> {
    darkstat_counts_loopback_traffic("3.0.721", "metrics", 8)
}

/// With the flow task enabled it wins the selection when its programs
/// attach (the CI build embeds them); otherwise darkstat takes over.
#[test]
fn flow_task_wins_over_darkstat_when_it_runs() -> anyhow::Result<()> {
    require_root()?;
    let server_ip = test_ip(9);
    let darkstat = Darkstat::start("3.0.721", &format!("host {server_ip}"))?;
    let agent = AgentProcess::start(
        AGENT,
        "1s",
        &[
            "-task-socketstat-enabled=false",
            "-task-darkstat-enabled",
            "-task-darkstat-addr",
            &darkstat.url("/"),
        ],
    )?;
    let samples = agent.wait_for(
        |s| {
            prom::value(s, "planet_task_last_run_success", &[("task", "darkstat")]) == Some(1.0)
                && prom::value(s, "planet_task_runs_total", &[("task", "flow")]).is_some()
        },
        WAIT,
    )?;
    let attached = prom::value(&samples, "planet_flow_programs_attached", &[]);
    let expected = if attached == Some(1.0) {
        "flow"
    } else {
        "darkstat"
    };
    eprintln!("flow programs attached: {attached:?}; expected source {expected}");
    assert_eq!(
        prom::value(&samples, "planet_traffic_source", &[("source", expected)]),
        Some(1.0),
        "flow programs attached: {attached:?}"
    );
    assert_eq!(
        series(&samples, "planet_traffic_source", &[]).len(),
        1,
        "exactly one source"
    );
    agent.stop()?;
    Ok(())
}

// ----------------------------------------------------------- ebpf_exporter

/// What the fake ebpf_exporter answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    Ipv4,
    Ipv4Ipv6,
    Garbage,
    /// A complete HTTP answer whose exposition stops mid-line.
    Truncated,
    /// 4 MiB of valid-looking samples, chunked, past the 1 MiB limit.
    Huge,
    /// Accepts and reads the request, never answers.
    Hang,
    Status500,
}

const IPV4: &str = include_str!("../src/collect/scrapes/testdata/ebpf-exporter-ipv4.txt");
const IPV4_IPV6: &str = include_str!("../src/collect/scrapes/testdata/ebpf-exporter-ipv4-ipv6.txt");

/// A one-route HTTP server on 127.0.0.1 whose answer can be switched.
struct FakeExporter {
    addr: SocketAddr,
    reply: Arc<Mutex<Reply>>,
    stop: Arc<AtomicBool>,
}

impl FakeExporter {
    fn start(reply: Reply) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let reply = Arc::new(Mutex::new(reply));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping) = (reply.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let reply = *shared.lock().unwrap_or_else(PoisonError::into_inner);
                let stopping = stopping.clone();
                thread::spawn(move || serve(stream, reply, &stopping));
            }
        });
        Ok(Self { addr, reply, stop })
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap_or_else(PoisonError::into_inner) = reply;
    }

    fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }
}

impl Drop for FakeExporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(mut stream: TcpStream, reply: Reply, stop: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
        line.clear();
    }
    let answer = |stream: &mut TcpStream, status: &str, body: &[u8]| {
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(body);
    };
    match reply {
        Reply::Ipv4 => answer(&mut stream, "200 OK", IPV4.as_bytes()),
        Reply::Ipv4Ipv6 => answer(&mut stream, "200 OK", IPV4_IPV6.as_bytes()),
        Reply::Garbage => answer(
            &mut stream,
            "200 OK",
            b"<html><body>\x00\x01 not metrics {{{ \n</body></html>\n",
        ),
        Reply::Truncated => {
            let cut = IPV4_IPV6.len() - 20;
            answer(&mut stream, "200 OK", &IPV4_IPV6.as_bytes()[..cut]);
        }
        Reply::Status500 => answer(&mut stream, "500 Internal Server Error", b"boom\n"),
        Reply::Huge => {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                  Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            );
            let line = "ebpf_exporter_ipv4_send_bytes{daddr=\"10.1.1.1\",dport=\"1\",lport=\"2\",pid=\"3\",saddr=\"10.0.0.2\"} 1\n";
            let chunk = line.repeat(64 * 1024 / line.len());
            let mut sent = 0;
            while sent < 4 << 20 {
                if write!(stream, "{:x}\r\n{chunk}\r\n", chunk.len()).is_err() {
                    return;
                }
                sent += chunk.len();
            }
            let _ = stream.write_all(b"0\r\n\r\n");
        }
        Reply::Hang => {
            let mut sink = [0u8; 64];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            while !stop.load(Ordering::Relaxed) {
                if matches!(stream.read(&mut sink), Ok(0)) {
                    return;
                }
            }
        }
    }
}

fn ebpf_value(samples: &[Sample], remote: &str, direction: &str) -> Option<f64> {
    traffic_value(samples, EBPF_TRAFFIC, remote, direction)
}

fn errors(samples: &[Sample], reason: &str) -> f64 {
    prom::value(
        samples,
        "planet_scrape_errors_total",
        &[("task", "ebpf"), ("reason", reason)],
    )
    .unwrap_or(-1.0)
}

/// IPv4-only output, then with IPv6; then every kind of bad answer while
/// the last good numbers stay, the agent keeps serving promptly, and each
/// failure is counted under its reason; then recovery.
#[test]
fn ebpf_exporter_good_and_bad_answers() -> anyhow::Result<()> {
    let exporter = FakeExporter::start(Reply::Ipv4)?;
    let agent = AgentProcess::start(
        AGENT,
        "300ms",
        &[
            "-task-flow-enabled=false",
            "-task-socketstat-enabled=false",
            // 192.168.1.9 is a peer in the fixtures: as this host, it is skipped.
            "-local-address",
            "192.168.1.9",
            "-task-ebpf-enabled",
            "-task-ebpf-addr",
            &exporter.url(),
            "-task-scrape-timeout=3s",
            "-task-scrape-max-bytes=1048576",
        ],
    )?;

    // Flows collapsing onto one (direction, peer) are summed.
    let samples = agent.wait_for(
        |s| ebpf_value(s, "10.0.0.5", "ingress") == Some(4096.0 + 8192.0 + 1.0),
        WAIT,
    )?;
    assert_eq!(ebpf_value(&samples, "10.0.0.5", "egress"), Some(1750.0));
    assert!(series(&samples, EBPF_TRAFFIC, &[("remote_ip", "192.168.1.9")]).is_empty());
    assert_eq!(
        prom::value(&samples, "planet_traffic_source", &[("source", "none")]),
        Some(1.0),
        "ebpf_exporter feeds its own family, never planet_traffic_bytes_total"
    );
    assert!(series(&samples, TRAFFIC, &[]).is_empty());
    for s in series(&samples, EBPF_TRAFFIC, &[("remote_ip", "10.0.0.5")]) {
        assert_eq!(s.label("local_hostgroup"), Some("192.168.1.9"));
    }

    exporter.set(Reply::Ipv4Ipv6);
    let good = agent.wait_for(|s| ebpf_value(s, "fd00::7", "egress") == Some(1000.0), WAIT)?;
    // ::ffff:10.0.0.5 in the IPv6 family is 10.0.0.5.
    assert_eq!(ebpf_value(&good, "10.0.0.5", "ingress"), Some(12_300.0));
    assert_eq!(ebpf_value(&good, "fd00::7", "ingress"), Some(2000.0));

    for (reply, reason) in [
        (Reply::Garbage, "parse"),
        (Reply::Truncated, "parse"),
        (Reply::Huge, "too_large"),
        (Reply::Status500, "status"),
        (Reply::Hang, "timeout"),
    ] {
        let before = errors(&agent.scrape()?, reason);
        exporter.set(reply);
        let samples = agent
            .wait_for(|s| errors(s, reason) >= before + 1.0, WAIT)
            .with_context(|| format!("{reply:?} counted as {reason}"))?;
        assert_eq!(
            prom::value(
                &samples,
                "planet_task_last_run_success",
                &[("task", "ebpf")]
            ),
            Some(0.0),
            "{reply:?}"
        );
        for (remote, direction) in [("fd00::7", "egress"), ("10.0.0.5", "ingress")] {
            assert_eq!(
                ebpf_value(&samples, remote, direction),
                ebpf_value(&good, remote, direction),
                "{reply:?}: last good numbers kept"
            );
        }
        // Scrapes read the snapshot only: a hanging target (held for the
        // 3 s scrape timeout) never slows them.
        let started = Instant::now();
        agent.scrape()?;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{reply:?}: /metrics took {:?}",
            started.elapsed()
        );
    }

    exporter.set(Reply::Ipv4);
    agent.wait_for(
        |s| {
            ebpf_value(s, "10.0.0.5", "ingress") == Some(12_289.0)
                && series(s, EBPF_TRAFFIC, &[("remote_ip", "fd00::7")]).is_empty()
        },
        WAIT,
    )?;
    assert!(
        agent.logs().contains("scrape works again"),
        "{}",
        agent.logs()
    );
    agent.stop()?;
    Ok(())
}

/// The agent checks the address itself and keeps serving.
#[test]
fn ebpf_exporter_unusable_addresses() -> anyhow::Result<()> {
    let port = free_port();
    for (addr, reason) in [
        ("", "address"),
        (
            format!("http://127.0.0.1:{port}/metrics").as_str(),
            "connect",
        ),
    ] {
        let agent = AgentProcess::start(
            AGENT,
            "300ms",
            &[
                "-task-flow-enabled=false",
                "-task-socketstat-enabled=false",
                "-task-ebpf-enabled",
                "-task-ebpf-addr",
                addr,
            ],
        )?;
        agent.wait_for(|s| errors(s, reason) >= 1.0, WAIT)?;
        assert!(
            agent
                .logs()
                .contains("scrape failed; keeping the last good numbers"),
            "{}",
            agent.logs()
        );
        agent.stop()?;
    }
    Ok(())
}
