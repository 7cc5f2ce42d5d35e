//! Benchmark: one federator job over a synthetic fleet, and the README's
//! dashboard queries against raw Prometheus vs the federated InfluxDB.
//!
//! ```sh
//! cargo run --release -p planet-federator --example bench -- --hosts 1000 --edges 50
//! ```
//!
//! Everything runs on loopback: a synthetic agent serves one `/metrics`
//! per host (each a Prometheus target with its own `instance`), real
//! Prometheus 2.42 scrapes them, real InfluxDB 1.6.7 stores the federated
//! points. The federator runs as a child process (`--once`); its CPU time
//! and peak RSS come from `wait4`. To give InfluxDB the same time span as
//! Prometheus, the federator is run once per 30 s step of the span with a
//! negative `-cron-job-time-offset`, exactly as the scheduled federator
//! would have written it. Prints markdown tables.

#[path = "../tests/common/mod.rs"]
pub mod common;

use std::{
    fmt::Write as _,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Parser;
use common::{Influxd, Prometheus};

#[derive(Debug, Parser)]
struct Args {
    /// Hosts (each a scrape target)
    #[arg(long, default_value_t = 1000)]
    hosts: usize,
    /// Edges per host (half upstream, half downstream; two traffic series each)
    #[arg(long, default_value_t = 50)]
    edges: usize,
    /// Services (hostgroups) the hosts are spread over
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Prometheus scrape interval
    #[arg(long, default_value = "10s")]
    scrape_interval: String,
    /// How long Prometheus collects before the federator runs (the data span)
    #[arg(long, default_value_t = 180)]
    span_secs: u64,
    /// Repetitions of each dashboard query (the median is reported)
    #[arg(long, default_value_t = 5)]
    repeat: usize,
}

fn service(h: usize, services: usize) -> String {
    format!("svc-{:03}", h % services)
}

fn domain(h: usize, services: usize) -> String {
    format!("h{h:04}.{}.bench", service(h, services))
}

/// One host's exposition at `elapsed` seconds.
fn host_metrics(h: usize, a: &Args, elapsed: f64) -> String {
    let mut out = String::with_capacity(a.edges * 3 * 220);
    let (svc, dom) = (service(h, a.services), domain(h, a.services));
    out.push_str("# HELP planet_traffic_bytes_total Total network traffic with peers\n# TYPE planet_traffic_bytes_total counter\n");
    for e in 0..a.edges {
        let p = (h + 1 + e * 7) % a.hosts;
        let rate = 1000 + (h * 31 + e * 17) % 100_000;
        for (dir, k) in [("ingress", 1.0), ("egress", 0.5)] {
            let _ = writeln!(
                out,
                "planet_traffic_bytes_total{{direction=\"{dir}\",local_domain=\"{dom}\",local_hostgroup=\"{svc}\",remote_domain=\"{}\",remote_hostgroup=\"{}\",remote_ip=\"10.{}.{}.{}\"}} {}",
                domain(p, a.services),
                service(p, a.services),
                p / 65536,
                (p / 256) % 256,
                p % 256,
                (rate as f64 * k * elapsed).round()
            );
        }
    }
    for (family, range) in [
        ("planet_upstream", 0..a.edges / 2),
        ("planet_downstream", a.edges / 2..a.edges),
    ] {
        let _ = writeln!(out, "# HELP {family} dependency\n# TYPE {family} gauge");
        for e in range {
            let p = (h + 1 + e * 7) % a.hosts;
            let port = if family == "planet_upstream" {
                8000 + e % 10
            } else {
                9000 + e % 10
            };
            let _ = writeln!(
                out,
                "{family}{{local_address=\"{dom}\",local_hostgroup=\"{svc}\",port=\"{port}\",process_name=\"app\",protocol=\"tcp\",remote_address=\"{}\",remote_hostgroup=\"{}\"}} 1",
                domain(p, a.services),
                service(p, a.services),
            );
        }
    }
    out
}

async fn start_agent(a: Arc<Args>) -> std::net::SocketAddr {
    let start = Instant::now();
    let app = axum::Router::new().route(
        "/host/{id}/metrics",
        axum::routing::get(move |axum::extract::Path(id): axum::extract::Path<usize>| {
            let a = Arc::clone(&a);
            async move { host_metrics(id, &a, start.elapsed().as_secs_f64()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Prometheus config: one target per host with its own path and instance.
fn prometheus_config(agent: std::net::SocketAddr, a: &Args) -> String {
    let mut y = format!(
        "global:\n  scrape_interval: {i}\n  scrape_timeout: {i}\n  evaluation_interval: {i}\nscrape_configs:\n  - job_name: planet-agent\n    static_configs:\n",
        i = a.scrape_interval
    );
    for h in 0..a.hosts {
        let _ = writeln!(
            y,
            "      - targets: ['{agent}']\n        labels: {{__metrics_path__: '/host/{h}/metrics', instance: 'h{h:04}:19100'}}"
        );
    }
    y
}

struct Usage {
    wall: Duration,
    cpu: Duration,
    max_rss_kib: i64,
    ok: bool,
}

/// Runs the federator binary and measures it with `wait4`.
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped by libc::wait4, which also returns its rusage"
)]
fn run_measured(bin: &std::path::Path, args: &[String]) -> Usage {
    let start = Instant::now();
    let child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start planet-federator");
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unreaped child; `status` and `ru` are valid,
    // exclusively borrowed out-pointers for the duration of the call.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Usage {
        wall: start.elapsed(),
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        max_rss_kib: ru.ru_maxrss,
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    }
}

async fn timed<F, Fut>(repeat: usize, mut f: F) -> (Duration, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let rows = f().await; // warm-up
    let mut times = Vec::new();
    for _ in 0..repeat {
        let t = Instant::now();
        f().await;
        times.push(t.elapsed());
    }
    times.sort();
    (times[times.len() / 2], rows)
}

async fn prom_range(url: &str, q: &str, start: f64, end: f64) -> usize {
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/api/v1/query_range"))
        .form(&[
            ("query", q),
            ("start", &format!("{start:.3}")),
            ("end", &format!("{end:.3}")),
            ("step", "30"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "success", "{q}: {body}");
    body["data"]["result"].as_array().map_or(0, Vec::len)
}

async fn prom_instant(url: &str, q: &str) -> usize {
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/api/v1/query"))
        .form(&[("query", q)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "success", "{q}: {body}");
    body["data"]["result"].as_array().map_or(0, Vec::len)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = Arc::new(Args::parse());
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("planet-federator"))
        .filter(|p| p.exists())
        .expect("build the binary first: cargo build --release -p planet-federator");

    let agent = start_agent(Arc::clone(&a)).await;
    let influx = Influxd::start();
    influx.create_database("planet").await;
    let prometheus = Prometheus::start_with_config(&prometheus_config(agent, &a));
    let series = a.hosts * a.edges * 3;
    eprintln!(
        "bench: {} hosts x {} edges = {series} series; collecting for {} s",
        a.hosts, a.edges, a.span_secs
    );
    let collect_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.span_secs)).await;
    let scraped = prom_instant(&prometheus.url(), "planet_upstream").await
        + prom_instant(&prometheus.url(), "planet_downstream").await;
    eprintln!("bench: Prometheus holds {scraped} dependency series");

    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "-prometheus-addr",
            &prometheus.url(),
            "-influxdb-addr",
            &influx.url(),
            "-influxdb-bucket",
            "planet",
            "-listen-address",
            "",
            "-once",
            "-cron-job-timeout-second",
            "120",
            "-log-level",
            "warn",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    };

    // All three jobs together into an empty database (so its points can be
    // counted), then each job alone.
    let mut rows = String::new();
    let mut points = 0;
    for jobs in [
        "traffic,upstream,downstream",
        "traffic",
        "upstream",
        "downstream",
    ] {
        let u = run_measured(&bin, &base(&["-jobs", jobs, "-history=false"]));
        assert!(u.ok, "federator run ({jobs}) failed");
        let _ = writeln!(
            rows,
            "| {jobs} | {:.2} s | {:.2} s | {:.1} MiB |",
            u.wall.as_secs_f64(),
            u.cpu.as_secs_f64(),
            u.max_rss_kib as f64 / 1024.0
        );
        if points == 0 {
            let body = influx
                .query(
                    "planet",
                    "SELECT COUNT(\"bandwidth_bps\") FROM \"ingress\", \"egress\"; \
                     SELECT COUNT(\"service_dependency\") FROM \"upstream\", \"downstream\"",
                )
                .await;
            points = body["results"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r["series"].as_array().cloned().unwrap_or_default())
                .map(|s| s["values"][0][1].as_u64().unwrap_or(0) as usize)
                .sum();
        }
    }
    let per_run = points;

    // Start over and fill the span at the schedule's 30 s steps.
    influx
        .query("", "DROP DATABASE \"planet\"; CREATE DATABASE \"planet\"")
        .await;
    let span = collect_start.elapsed().as_secs();
    let steps = span / 30;
    let fill_start = Instant::now();
    for k in 0..steps {
        let offset = format!("-{}s", k * 30);
        let u = run_measured(
            &bin,
            &base(&["-cron-job-time-offset", &offset, "-history=false"]),
        );
        assert!(u.ok, "backfill run {offset} failed");
    }
    eprintln!("bench: filled {steps} runs in {:?}", fill_start.elapsed());

    // Dashboard queries for one service, over the collected span.
    let now = jiff::Timestamp::now().as_second() as f64;
    let start = now - span as f64;
    let svc = service(7, a.services);
    let p = prometheus.url();
    let raw_bw = format!(
        "sum(irate(planet_traffic_bytes_total{{local_hostgroup=\"{svc}\",direction=\"ingress\"}}[30s])) by (local_hostgroup, remote_hostgroup, remote_domain) * 8"
    );
    let raw_up = format!(
        "max(max_over_time(planet_upstream{{local_hostgroup=\"{svc}\"}}[{span}s])) by (remote_hostgroup, remote_address, process_name, port, protocol)"
    );
    let raw_down = format!(
        "max(max_over_time(planet_downstream{{local_hostgroup=\"{svc}\"}}[{span}s])) by (remote_hostgroup, remote_address, process_name, port, protocol)"
    );
    let flux_bw = format!(
        "SELECT SUM(\"bandwidth_bps\") FROM \"ingress\" WHERE (\"service\" = '{svc}') AND time > now() - {span}s GROUP BY time(30s), \"service\", \"remote_service\", \"remote_address\""
    );
    let flux_up = format!(
        "SELECT SUM(\"service_dependency\") FROM (SELECT * FROM \"upstream\" WHERE (\"service\" = '{svc}') AND Time > now() - 7d) GROUP BY \"upstream_service\", \"upstream_address\", \"process_name\", \"upstream_port\", \"protocol\", time(10000d)"
    );
    let flux_down = format!(
        "SELECT SUM(\"service_dependency\") FROM (SELECT * FROM \"downstream\" WHERE (\"service\" = '{svc}') AND Time > now() - 7d) GROUP BY \"downstream_service\", \"downstream_address\", \"process_name\", \"port\", \"protocol\", time(10000d)"
    );
    let influx_rows = |q: String| {
        let influx = &influx;
        async move {
            let body = influx.query("planet", &q).await;
            body["results"][0]["series"].as_array().map_or(0, Vec::len)
        }
    };
    let (rb, nrb) = timed(a.repeat, || prom_range(&p, &raw_bw, start, now)).await;
    let (ru, nru) = timed(a.repeat, || prom_instant(&p, &raw_up)).await;
    let (rd, nrd) = timed(a.repeat, || prom_instant(&p, &raw_down)).await;
    let (fb, nfb) = timed(a.repeat, || influx_rows(flux_bw.clone())).await;
    let (fu, nfu) = timed(a.repeat, || influx_rows(flux_up.clone())).await;
    let (fd, nfd) = timed(a.repeat, || influx_rows(flux_down.clone())).await;

    println!(
        "### Federator: one run over {} hosts x {} edges\n",
        a.hosts, a.edges
    );
    println!(
        "{series} agent series ({} traffic counters, {} dependency gauges) from {} scrape targets every {}; \
         ~{per_run} points per run of all three jobs. Federator measured as a child process with wait4 \
         (wall time includes the Prometheus query and writing to InfluxDB 1.6.7).\n",
        a.hosts * a.edges * 2,
        a.hosts * a.edges,
        a.hosts,
        a.scrape_interval
    );
    println!("| jobs | wall time | CPU time (user+sys) | peak RSS |\n|---|---|---|---|\n{rows}");
    println!(
        "### Dashboard queries for one service ({svc}) over {span} s of data, median of {}\n",
        a.repeat
    );
    println!(
        "| README query | raw Prometheus 2.42 | federated InfluxDB 1.6.7 | series returned (raw / federated) |"
    );
    println!("|---|---|---|---|");
    println!(
        "| ingress bandwidth by remote service, 30 s steps | {} | {} | {nrb} / {nfb} |",
        ms(rb),
        ms(fb)
    );
    println!(
        "| upstream table | {} | {} | {nru} / {nfu} |",
        ms(ru),
        ms(fu)
    );
    println!(
        "| downstream table | {} | {} | {nrd} / {nfd} |",
        ms(rd),
        ms(fd)
    );
    println!(
        "\nMachine: {} CPUs; Prometheus scrape interval {}; federated data: one point per 30 s run.",
        std::thread::available_parallelism().map_or(0, usize::from),
        a.scrape_interval
    );
}
