//! The real agent under load: RSS with 10k live flows, and `/metrics`
//! latency with those flows' series (well over 10k) under 20 concurrent
//! scrapers. Prints a markdown
//! table. As root: `cargo bench -p planet-agent --bench agent_footprint`.
//!
//! Every connection comes from its own loopback source address
//! (127.77.x.y), so each is a distinct downstream edge and remote IP: the
//! series count grows with the connection count.

use planet_testkit::load::HeldConnections;
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

const AGENT: &str = env!("CARGO_BIN_EXE_planet-agent");
/// Both ends are in this host: 5,000 connections are 10,000 flows.
const CONNECTIONS: usize = 5_000;
const SCRAPERS: usize = 20;
const SCRAPE_SECONDS: u64 = 10;

/// Raises the soft descriptor limit to the hard one.
fn raise_nofile() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit use a valid rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

fn get(port: u16) -> Option<(Duration, String)> {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some((start.elapsed(), body))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One agent with `connections` held connections, then 20 scrapers.
fn run_case(connections: usize, scrape_seconds: u64) -> Row {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let agent = Agent(
        Command::new(AGENT)
            .args(["-listen-address", &format!("127.0.0.1:{port}")])
            .args(["-task-interval", "2s", "-log-level", "warn"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start planet-agent"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !get(port).is_some_and(|(_, b)| b.contains("planet_flow_programs_attached 1")) {
        assert!(Instant::now() < deadline, "agent did not attach");
        thread::sleep(Duration::from_millis(200));
    }
    let rss_idle = rss_kib(agent.0.id());

    let held = HeldConnections::open(connections).expect("open connections");
    // Two task intervals: every flow drained and merged.
    thread::sleep(Duration::from_secs(5));
    let (_, body) = get(port).unwrap();
    let series = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    let live: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("planet_flow_live_flows "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let rss_loaded = rss_kib(agent.0.id());

    let latencies = Arc::new(Mutex::new(Vec::new()));
    let stop = Instant::now() + Duration::from_secs(scrape_seconds);
    let workers: Vec<_> = (0..SCRAPERS)
        .map(|_| {
            let latencies = latencies.clone();
            thread::spawn(move || {
                while Instant::now() < stop {
                    if let Some((took, _)) = get(port) {
                        latencies.lock().unwrap().push(took);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let rss_after = rss_kib(agent.0.id());
    let mut l = latencies.lock().unwrap().clone();
    l.sort_unstable();
    let pct = |p: f64| l[((l.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1000.0;
    drop(held);
    Row {
        connections,
        live,
        series,
        rss_idle,
        rss_loaded,
        rss_after,
        scrapes: l.len(),
        p50: pct(0.50),
        p99: pct(0.99),
        max: pct(1.0),
    }
}

struct Row {
    connections: usize,
    live: f64,
    series: usize,
    rss_idle: u64,
    rss_loaded: u64,
    rss_after: u64,
    scrapes: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

fn main() {
    // Under `cargo test` (no `--bench`), a small smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    raise_nofile();
    // 5,000 connections are the 10,000 flows of the RSS target; about 1,430
    // connections give the 10,000 series of the latency target.
    let cases: &[usize] = if full { &[CONNECTIONS, 1_430] } else { &[200] };
    let scrape_seconds = if full { SCRAPE_SECONDS } else { 1 };
    println!(
        "| connections (flows) | live flows | series | RSS idle MiB | RSS loaded MiB | RSS after scrapes MiB | scrapes in {scrape_seconds}s ({SCRAPERS} scrapers) | p50 ms | p99 ms | max ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &connections in cases {
        let r = run_case(connections, scrape_seconds);
        let mib = |k: u64| k as f64 / 1024.0;
        println!(
            "| {} ({}) | {} | {} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {:.1} |",
            r.connections,
            r.connections * 2,
            r.live,
            r.series,
            mib(r.rss_idle),
            mib(r.rss_loaded),
            mib(r.rss_after),
            r.scrapes,
            r.p50,
            r.p99,
            r.max
        );
    }
    println!(
        "Targets: RSS ≤ 30 MiB at 10k flows; /metrics p99 ≤ 20 ms at 10k series under {SCRAPERS} scrapers."
    );
}
