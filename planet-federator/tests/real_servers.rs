//! End to end with real servers on loopback: Prometheus 2.42 scrapes a fake
//! planet-agent every second, the federator binary runs its jobs on a cron
//! schedule into InfluxDB 1.6.7, and the rows are read back with InfluxQL
//! (the README's dashboard queries included). Then the outage test: InfluxDB
//! stopped while a job runs loses nothing within the buffer bound. The
//! fleet map is drawn from what a federated fleet of fake agents left in
//! InfluxDB. `tests/real_agent.rs` does the same with a real planet-agent.

pub mod common;

use std::{
    collections::BTreeMap,
    fs,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use common::{FakeAgent, Influxd, Prometheus, Series, TempDir};
use planet_federator::{
    bigquery::schema,
    history::History,
    influx::{ApiChoice, InfluxClient, InfluxConfig, Writer, WriterConfig},
    jobs::{self, Context, JobKind, Queries},
    metrics::{DropReason, Metrics},
    prom::{FakeProm, Sample},
    promql::{Exclusions, Preset, Windows},
};
use serde_json::Value;

const DB: &str = "planet";
const BIN: &str = env!("CARGO_BIN_EXE_planet-federator");

fn traffic(
    direction: &str,
    remote_ip: &str,
    remote_group: &str,
    remote_domain: &str,
    bytes_per_sec: f64,
) -> Series {
    Series::new(
        "planet_traffic_bytes_total",
        &[
            ("direction", direction),
            ("local_hostgroup", "web"),
            ("local_domain", "web-1.example"),
            ("remote_ip", remote_ip),
            ("remote_hostgroup", remote_group),
            ("remote_domain", remote_domain),
        ],
        5_000_000.0,
        bytes_per_sec,
    )
}

fn dependency(
    family: &'static str,
    remote_group: &str,
    remote_addr: &str,
    port: &str,
    process: &str,
) -> Series {
    Series::new(
        family,
        &[
            ("local_hostgroup", "web"),
            ("remote_hostgroup", remote_group),
            ("local_address", "web-1.example"),
            ("remote_address", remote_addr),
            ("port", port),
            ("protocol", "tcp"),
            ("process_name", process),
        ],
        1.0,
        0.0,
    )
}

/// What the fake agent serves, and what should come out of it.
fn agent_series() -> Vec<Series> {
    vec![
        // Two remote IPs of db-1: summed. 150 000 B/s = 1.2 Mbit/s.
        traffic("ingress", "10.0.0.5", "db", "db-1.example", 125_000.0),
        traffic("ingress", "10.0.0.7", "db", "db-1.example", 25_000.0),
        // 12 500 B/s = 100 kbit/s.
        traffic("egress", "10.0.0.5", "db", "db-1.example", 12_500.0),
        // Excluded by the original's address preset (192.168.*).
        traffic(
            "ingress",
            "192.168.1.10",
            "cache",
            "cache-1.example",
            125_000.0,
        ),
        // Below 1 kbit/s: filtered by `> 1000`.
        traffic("egress", "10.0.0.9", "ntp", "ntp-1.example", 100.0),
        // No remote hostgroup: filtered.
        traffic("egress", "10.0.0.10", "", "unknown.example", 125_000.0),
        dependency("planet_upstream", "db", "db-1.example", "5432", "nginx"),
        // Excluded: port 22 (preset), digit-leading address, localhost.
        dependency(
            "planet_upstream",
            "bastion",
            "bastion-1.example",
            "22",
            "ssh",
        ),
        dependency("planet_upstream", "db", "10.0.0.9", "5432", "nginx"),
        dependency("planet_upstream", "localhost", "localhost", "8080", "nginx"),
        dependency("planet_downstream", "lb", "lb-1.example", "443", "nginx"),
    ]
}

fn tags(series: &Value) -> BTreeMap<String, String> {
    series["tags"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Values of `column` over all rows of `series`.
fn column(series: &Value, name: &str) -> Vec<Value> {
    let idx = series["columns"]
        .as_array()
        .and_then(|c| c.iter().position(|c| c == name))
        .unwrap_or_else(|| panic!("no column {name} in {series}"));
    series["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[idx].clone())
        .collect()
}

fn run_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run planet-federator");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federates_agent_metrics_from_real_prometheus_into_real_influxdb() {
    let agent = FakeAgent::start(agent_series()).await;
    let prometheus = Prometheus::start(&[agent.addr], "1s");
    let influx = Influxd::start();
    influx.create_database(DB).await;
    // irate needs two scrapes inside the window at the evaluation time
    // (job time - 2 s query lag).
    prometheus
        .wait_for(
            "count_over_time(planet_traffic_bytes_total[30s] offset 3s) >= 3",
            Duration::from_secs(30),
        )
        .await;

    let metrics_port = common::free_port();
    let logs = TempDir::new("federator-log");
    let log_path = logs.path().join("federator.log");
    let log = fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .args([
            "-prometheus-addr",
            &prometheus.url(),
            "-influxdb-addr",
            &influx.url(),
            "-influxdb-bucket",
            DB,
            "-cron-job-schedule",
            "*/2 * * * * *",
            "-query-lag",
            "2s",
            "-cron-job-timeout-second",
            "10",
            "-listen-address",
            &format!("127.0.0.1:{metrics_port}"),
            "-log-disable-colors",
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("start planet-federator");

    // Let it run three or four scheduled rounds.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let own = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .expect("federator /metrics")
        .text()
        .await
        .unwrap();
    for job in ["traffic", "upstream", "downstream"] {
        let line = own
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "planet_federator_job_runs_total{{job=\"{job}\",outcome=\"success\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("no success counter for {job} in\n{own}"));
        let runs: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(
            runs >= 2.0,
            "{line}\n{}",
            fs::read_to_string(&log_path).unwrap_or_default()
        );
        assert!(
            own.contains(&format!("planet_federator_job_success{{job=\"{job}\"}} 1")),
            "{own}"
        );
    }
    assert!(
        own.contains("planet_federator_job_duration_seconds_bucket"),
        "{own}"
    );
    // The fleet map page, from what the first runs stored.
    let page = reqwest::get(format!(
        "http://127.0.0.1:{metrics_port}/map?since=1h&format=json"
    ))
    .await
    .expect("federator /map");
    assert_eq!(page.status(), 200);
    let page: Value = page.json().await.unwrap();
    let pairs: Vec<(&str, &str)> = page["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["from"].as_str().unwrap(), d["to"].as_str().unwrap()))
        .collect();
    assert_eq!(pairs, [("lb", "web"), ("web", "db")], "{page}");
    let svg = reqwest::get(format!("http://127.0.0.1:{metrics_port}/map"))
        .await
        .unwrap();
    assert_eq!(
        svg.headers()["content-type"],
        "image/svg+xml; charset=utf-8"
    );
    assert!(
        svg.text()
            .await
            .unwrap()
            .contains(r#"data-from="web" data-to="db""#)
    );
    for bad in [
        "min_bandwidth=fast",
        "service=nope",
        "since=yesterday",
        "format=png",
    ] {
        let r = reqwest::get(format!("http://127.0.0.1:{metrics_port}/map?{bad}"))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }

    // SIGTERM: pending writes are flushed and it exits 0.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log_text = fs::read_to_string(&log_path).unwrap_or_default();
    eprintln!("federator log:\n{log_text}");
    assert!(status.success(), "exit {status}\n{log_text}");
    assert!(log_text.contains("SIGTERM received"), "{log_text}");
    assert!(
        log_text.contains("api=v1"),
        "API detected from /ping:\n{log_text}"
    );

    // Traffic: one series per direction and remote service, exact tags.
    let ingress = influx
        .series(DB, "SELECT * FROM \"ingress\" GROUP BY *")
        .await;
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    assert_eq!(
        tags(&ingress[0]),
        map(&[
            ("address", "web-1.example"),
            ("remote_address", "db-1.example"),
            ("remote_service", "db"),
            ("service", "web"),
        ])
    );
    let values = column(&ingress[0], "bandwidth_bps");
    assert!(values.len() >= 2, "{values:?}");
    for v in &values {
        let bps = v.as_f64().unwrap();
        assert!(
            (bps - 1_200_000.0).abs() / 1_200_000.0 < 0.1,
            "ingress {bps} bps"
        );
    }
    // Points carry the scheduled job time (even seconds).
    for t in column(&ingress[0], "time") {
        assert_eq!(t.as_i64().unwrap() % 2_000_000_000, 0, "time {t}");
    }
    let egress = influx
        .series(DB, "SELECT * FROM \"egress\" GROUP BY *")
        .await;
    assert_eq!(egress.len(), 1, "only db passes the filters: {egress:?}");
    assert_eq!(tags(&egress[0])["remote_service"], "db");
    for v in column(&egress[0], "bandwidth_bps") {
        let bps = v.as_f64().unwrap();
        assert!(
            (bps - 100_000.0).abs() / 100_000.0 < 0.1,
            "egress {bps} bps"
        );
    }

    // Dependencies: exact tags, integer 1.
    let up = influx
        .series(DB, "SELECT * FROM \"upstream\" GROUP BY *")
        .await;
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(
        tags(&up[0]),
        map(&[
            ("address", "web-1.example"),
            ("process_name", "nginx"),
            ("protocol", "tcp"),
            ("service", "web"),
            ("upstream_address", "db-1.example"),
            ("upstream_port", "5432"),
            ("upstream_service", "db"),
        ])
    );
    assert!(column(&up[0], "service_dependency").iter().all(|v| v == 1));
    let field_types = influx.series(DB, "SHOW FIELD KEYS").await;
    let types: BTreeMap<String, String> = field_types
        .iter()
        .flat_map(|s| {
            let m = s["name"].as_str().unwrap().to_owned();
            s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |r| {
                    (
                        format!("{m}.{}", r[0].as_str().unwrap()),
                        r[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(types["upstream.service_dependency"], "integer");
    assert_eq!(types["downstream.service_dependency"], "integer");
    assert_eq!(types["ingress.bandwidth_bps"], "float");
    assert_eq!(types["service_edge.first_seen"], "integer");

    let down = influx
        .series(DB, "SELECT * FROM \"downstream\" GROUP BY *")
        .await;
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(
        tags(&down[0]),
        map(&[
            ("address", "web-1.example"),
            ("downstream_address", "lb-1.example"),
            ("downstream_service", "lb"),
            ("port", "443"),
            ("process_name", "nginx"),
            ("protocol", "tcp"),
            ("service", "web"),
        ])
    );

    // The README's example InfluxQL, with Grafana's variables filled in.
    let bandwidth = influx
        .series(
            DB,
            "SELECT SUM(\"bandwidth_bps\") FROM \"ingress\" WHERE (\"service\" = 'web') AND time > now() - 1h \
             GROUP BY time(1h), \"service\", \"remote_service\", \"remote_address\"",
        )
        .await;
    assert_eq!(bandwidth.len(), 1);
    assert_eq!(tags(&bandwidth[0])["remote_address"], "db-1.example");
    let sums: f64 = column(&bandwidth[0], "sum")
        .iter()
        .filter_map(Value::as_f64)
        .sum();
    assert!(sums > 1_000_000.0, "{sums}");
    let runs = up
        .first()
        .map(|s| column(s, "service_dependency").len())
        .unwrap();
    let upstream_table = influx
        .series(
            DB,
            "SELECT SUM(\"service_dependency\") FROM (SELECT * FROM \"upstream\" WHERE (\"service\" = 'web') AND Time > now() - 7d) \
             GROUP BY \"upstream_service\", \"upstream_address\", \"process_name\", \"upstream_port\", \"protocol\", time(10000d)",
        )
        .await;
    assert_eq!(upstream_table.len(), 1, "{upstream_table:?}");
    assert_eq!(tags(&upstream_table[0])["upstream_service"], "db");
    let total: i64 = column(&upstream_table[0], "sum")
        .iter()
        .filter_map(Value::as_i64)
        .sum();
    assert_eq!(total, i64::try_from(runs).unwrap());
    let downstream_table = influx
        .series(
            DB,
            "SELECT SUM(\"service_dependency\") FROM (SELECT * FROM \"downstream\" WHERE (\"service\" = 'web') AND Time > now() - 7d) \
             GROUP BY \"downstream_service\", \"downstream_address\", \"process_name\", \"port\", \"protocol\", time(10000d)",
        )
        .await;
    assert_eq!(downstream_table.len(), 1);
    assert_eq!(tags(&downstream_table[0])["port"], "443");

    // Dependency history: one row per edge, time = first seen.
    let edges = influx
        .series(DB, "SELECT * FROM \"service_edge\" GROUP BY *")
        .await;
    assert_eq!(edges.len(), 2, "{edges:?}");
    for e in &edges {
        let rows = column(e, "time");
        assert_eq!(rows.len(), 1, "one row per edge: {e}");
        let first = column(e, "first_seen")[0].as_i64().unwrap();
        let last = column(e, "last_seen")[0].as_i64().unwrap();
        assert_eq!(rows[0].as_i64().unwrap(), first * 1_000_000_000);
        assert!(last > first, "last_seen written at shutdown: {e}");
    }

    // `edges`: the dependency list as JSON and as a table.
    let influx_url = influx.url();
    let (ok, out, err) = run_cli(&[
        "edges",
        "-influxdb-addr",
        &influx_url,
        "-influxdb-bucket",
        DB,
        "-format",
        "json",
        "-since",
        "1h",
    ]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["dependencies"].as_array().unwrap().len(),
        2,
        "{report}"
    );
    assert_eq!(report["appeared"].as_array().unwrap().len(), 2, "{report}");
    assert!(report["disappeared"].as_array().unwrap().is_empty());
    let remotes: Vec<&str> = report["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["remote_service"].as_str().unwrap())
        .collect();
    assert!(
        remotes.contains(&"db") && remotes.contains(&"lb"),
        "{remotes:?}"
    );
    let (ok, out, err) = run_cli(&[
        "edges",
        "-influxdb-addr",
        &influx_url,
        "-influxdb-bucket",
        DB,
        "-service",
        "web",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("dependencies (2):") && out.contains("REMOTE_SERVICE"),
        "{out}"
    );

    // BigQuery export from the same data: every row conforms to its schema.
    let bq = TempDir::new("bq");
    let (ok, _, err) = run_cli(&[
        "bigquery",
        "-influxdb-addr",
        &influx_url,
        "-influxdb-database",
        DB,
        "-once",
        "all",
        "-bq-output-dir",
        bq.path().to_str().unwrap(),
        "-log-disable-colors",
    ]);
    assert!(ok, "{err}");
    let mut seen = BTreeMap::new();
    for entry in fs::read_dir(bq.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let text = fs::read_to_string(&path).unwrap();
        if name.ends_with(".schema.json") {
            let file: Value = serde_json::from_str(&text).unwrap();
            let expected = if name.starts_with("planet_exporter_traffic") {
                schema::schema_json(schema::TRAFFIC)
            } else {
                schema::schema_json(schema::DEPENDENCY)
            };
            assert_eq!(file, expected, "{name}");
            continue;
        }
        assert!(name.ends_with(".ndjson"), "{name}");
        let columns = if name.starts_with("planet_exporter_traffic") {
            schema::TRAFFIC
        } else {
            schema::DEPENDENCY
        };
        let rows: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for (i, row) in rows.iter().enumerate() {
            schema::validate_row(columns, row)
                .unwrap_or_else(|v| panic!("{name} row {i}: {v}: {row}"));
        }
        seen.insert(name, rows);
    }
    let traffic = seen
        .iter()
        .find(|(n, _)| n.starts_with("planet_exporter_traffic-"))
        .map(|(_, r)| r)
        .expect("traffic file");
    assert_eq!(traffic.len(), 2, "ingress and egress rows: {traffic:?}");
    let ingress_row = traffic
        .iter()
        .find(|r| r["traffic_direction"] == "ingress")
        .unwrap();
    let avg = ingress_row["traffic_bandwidth_bits_avg_1h"]
        .as_i64()
        .unwrap();
    assert!((avg - 1_200_000).abs() < 60_000, "{ingress_row}");
    assert!(
        ingress_row["inventory_date"]
            .as_str()
            .unwrap()
            .ends_with(" UTC")
    );
    let deps = seen
        .iter()
        .find(|(n, _)| n.starts_with("planet_exporter_dependency-"))
        .map(|(_, r)| r)
        .expect("dependency file");
    assert_eq!(deps.len(), 2, "{deps:?}");
    let up_row = deps
        .iter()
        .find(|r| r["dependency_direction"] == "upstream")
        .unwrap();
    assert_eq!(up_row["remote_hostgroup_address_port"], "5432");
    assert_eq!(up_row["local_hostgroup_process_name"], "nginx");
}

fn fake_traffic(n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            let remote = format!("svc-{i:03}");
            Sample::new(
                [
                    ("direction", "egress"),
                    ("local_hostgroup", "web"),
                    ("local_domain", "web-1.example"),
                    ("remote_hostgroup", remote.as_str()),
                    ("remote_domain", "x.example"),
                ],
                10_000.0 + i as f64,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_outage_loses_no_points_within_the_buffer_bound() {
    let mut influx = Influxd::start();
    influx.create_database(DB).await;
    let client = InfluxClient::connect(&InfluxConfig {
        addr: influx.url(),
        api: ApiChoice::Auto,
        token: String::new(),
        org: String::new(),
        bucket: DB.into(),
        database: None,
        retention_policy: None,
        username: None,
        password: None,
        timeout: Duration::from_secs(2),
    })
    .await
    .expect("influxd healthy");
    assert_eq!(client.api(), ApiChoice::V1, "1.6.7 detected as v1");

    let metrics = Arc::new(Metrics::new());
    let writer = Writer::start(
        client,
        WriterConfig {
            batch_size: 7,
            capacity: 50,
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_millis(400),
        },
        Arc::clone(&metrics),
    );
    let ctx = Context {
        prom: FakeProm::new().answer("planet_traffic_bytes_total", fake_traffic(40)),
        writer: writer.handle(),
        metrics: Arc::clone(&metrics),
        queries: Queries::new(
            &Exclusions::new(Preset::PlanetExporter, &[], &[]).unwrap(),
            Windows::default(),
        ),
        query_lag: Duration::from_secs(15),
        history: Some(Arc::new(History::new(Duration::from_secs(300)))),
    };

    // InfluxDB goes away; a job runs and its 40 points stay buffered.
    influx.stop();
    let at1 = jiff::Timestamp::from_second(1_764_064_800).unwrap();
    let r = jobs::run_recorded(JobKind::Traffic, &ctx, at1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!((r.points, r.dropped), (40, 0));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(metrics.points_written.get(), 0);
    assert!(metrics.points_retried.get() > 0, "writes were retried");
    assert_eq!(metrics.buffer_points.get(), 40);

    // A second run while still down: only 10 more fit (capacity 50); the
    // rest is dropped at the job's deadline and counted.
    let at2 = jiff::Timestamp::from_second(1_764_064_830).unwrap();
    let r = jobs::run_recorded(JobKind::Traffic, &ctx, at2, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!((r.points, r.dropped), (10, 30));
    assert_eq!(metrics.dropped_count(DropReason::BufferFull), 30);

    // InfluxDB is back: everything buffered is written, nothing else lost.
    influx.restart();
    let left = writer
        .handle()
        .flush(tokio::time::Instant::now() + Duration::from_secs(30))
        .await;
    assert_eq!(left, 0);
    assert_eq!(metrics.points_written.get(), 50);
    let counts = influx
        .series(
            DB,
            "SELECT COUNT(\"bandwidth_bps\") FROM \"egress\" WHERE time >= 1764064800000000000 \
             AND time <= 1764064830000000000 GROUP BY time(30s) fill(none)",
        )
        .await;
    let per_run: Vec<i64> = column(&counts[0], "count")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert_eq!(
        per_run,
        [40, 10],
        "first run whole, second run up to the bound"
    );
    assert_eq!(metrics.dropped_count(DropReason::Rejected), 0);
    assert_eq!(
        writer
            .close(tokio::time::Instant::now() + Duration::from_secs(5))
            .await,
        0
    );
}

#[test]
fn startup_failures_are_clear() {
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let (ok, _, err) = run_cli(&[
        "-prometheus-addr",
        &dead,
        "-listen-address",
        "",
        "-log-disable-colors",
    ]);
    assert!(!ok);
    assert!(
        err.contains("startup check of Prometheus failed")
            && err.contains("cannot reach Prometheus"),
        "{err}"
    );

    let (ok, _, err) = run_cli(&["-cron-job-schedule", "0 */30 * * * * 2026"]);
    assert!(!ok);
    assert!(err.contains("expected exactly 6"), "{err}");

    let (ok, _, err) = run_cli(&["-exclude-address", "(", "-listen-address", ""]);
    assert!(!ok);
    assert!(err.contains("invalid exclusion regex"), "{err}");

    let (ok, out, _) = run_cli(&["-version"]);
    assert!(ok && out.starts_with("planet-federator v"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_fails_clearly_when_influxdb_is_unreachable_or_database_missing() {
    let agent = FakeAgent::start(agent_series()).await;
    let prometheus = Prometheus::start(&[agent.addr], "1s");
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let prom_url = prometheus.url();
    let (ok, _, err) = run_cli(&[
        "-prometheus-addr",
        &prom_url,
        "-influxdb-addr",
        &dead,
        "-listen-address",
        "",
        "-log-disable-colors",
    ]);
    assert!(!ok);
    assert!(
        err.contains("startup check of InfluxDB failed") && err.contains("unreachable"),
        "{err}"
    );

    let influx = Influxd::start();
    let influx_url = influx.url();
    let (ok, _, err) = run_cli(&[
        "-prometheus-addr",
        &prom_url,
        "-influxdb-addr",
        &influx_url,
        "-influxdb-bucket",
        "nope",
        "-listen-address",
        "",
        "-log-disable-colors",
    ]);
    assert!(!ok);
    assert!(err.contains("database \"nope\" does not exist"), "{err}");
}

/// A call: `(callee, port, egress B/s, ingress B/s)`.
type Call = (&'static str, &'static str, f64, f64);

/// A fleet of fake agents, one per service: `(service, calls)`. The callee's agent reports
/// the same dependency as a downstream, so both views meet in one link.
const FLEET: &[(&str, &[Call])] = &[
    (
        "lb",
        &[
            ("web", "443", 250_000.0, 2_000_000.0),
            ("static", "80", 5_000.0, 400_000.0),
        ],
    ),
    (
        "web",
        &[
            ("api", "8080", 60_000.0, 500_000.0),
            ("cache", "6379", 20_000.0, 90_000.0),
            ("search", "9200", 4_000.0, 30_000.0),
        ],
    ),
    (
        "api",
        &[
            ("db", "5432", 40_000.0, 300_000.0),
            ("queue", "5672", 25_000.0, 1_000.0),
            ("auth", "8443", 2_000.0, 3_000.0),
        ],
    ),
    ("auth", &[("db", "5432", 1_000.0, 6_000.0)]),
    (
        "worker",
        &[
            ("queue", "5672", 1_000.0, 25_000.0),
            ("db", "5432", 30_000.0, 10_000.0),
            ("storage", "9000", 700_000.0, 1_000.0),
        ],
    ),
    ("search", &[("storage", "9000", 2_000.0, 150_000.0)]),
    ("db", &[]),
    ("cache", &[]),
    ("queue", &[]),
    ("static", &[]),
    ("storage", &[]),
];

fn fleet_agent_series(service: &str) -> Vec<Series> {
    let domain = |s: &str| format!("{s}-1.example");
    let ip = |s: &str| {
        let i = FLEET.iter().position(|(n, _)| *n == s).unwrap();
        format!("10.20.0.{}", i + 1)
    };
    let mut out = Vec::new();
    let (_, calls) = FLEET.iter().find(|(n, _)| *n == service).unwrap();
    for &(callee, port, egress, ingress) in *calls {
        for (direction, rate) in [("egress", egress), ("ingress", ingress)] {
            out.push(Series::new(
                "planet_traffic_bytes_total",
                &[
                    ("direction", direction),
                    ("local_hostgroup", service),
                    ("local_domain", &domain(service)),
                    ("remote_ip", &ip(callee)),
                    ("remote_hostgroup", callee),
                    ("remote_domain", &domain(callee)),
                ],
                1_000_000.0,
                rate,
            ));
        }
        out.push(Series::new(
            "planet_upstream",
            &[
                ("local_hostgroup", service),
                ("remote_hostgroup", callee),
                ("local_address", &domain(service)),
                ("remote_address", &domain(callee)),
                ("port", port),
                ("protocol", "tcp"),
                ("process_name", service),
            ],
            1.0,
            0.0,
        ));
    }
    // Downstreams: the callers of this service, as its agent sees them.
    for (caller, calls) in FLEET {
        for &(callee, port, _, _) in *calls {
            if callee == service {
                out.push(Series::new(
                    "planet_downstream",
                    &[
                        ("local_hostgroup", service),
                        ("remote_hostgroup", caller),
                        ("local_address", &domain(service)),
                        ("remote_address", &domain(caller)),
                        ("port", port),
                        ("protocol", "tcp"),
                        ("process_name", callee),
                    ],
                    1.0,
                    0.0,
                ));
            }
        }
    }
    out
}

/// Where test artifacts go: `<target dir>/test-artifacts/`.
fn artifacts_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    // <target>/<profile>/deps/<test binary>
    let dir = exe.ancestors().nth(3).unwrap().join("test-artifacts");
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Renders an SVG to PNG with librsvg's `rsvg-convert` (Debian
/// `librsvg2-bin`); fails the test if it is missing or the SVG is invalid.
fn svg_to_png(svg: &std::path::Path, png: &std::path::Path) {
    let tool = common::require("/usr/bin/rsvg-convert", "librsvg2-bin");
    let out = Command::new(tool)
        .args(["--background-color", "white", "--zoom", "1.5", "-o"])
        .arg(png)
        .arg(svg)
        .output()
        .expect("run rsvg-convert");
    assert!(
        out.status.success(),
        "rsvg-convert: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = fs::read(png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_map_from_federated_history() {
    let mut agents = Vec::new();
    for (service, _) in FLEET {
        agents.push(FakeAgent::start(fleet_agent_series(service)).await);
    }
    let addrs: Vec<_> = agents.iter().map(|a| a.addr).collect();
    let prometheus = Prometheus::start(&addrs, "1s");
    let influx = Influxd::start();
    influx.create_database(DB).await;
    prometheus
        .wait_for(
            "count(count_over_time(planet_traffic_bytes_total[30s] offset 3s) >= 3) >= 12",
            Duration::from_secs(30),
        )
        .await;
    let (prom_url, influx_url) = (prometheus.url(), influx.url());
    let (ok, _, err) = run_cli(&[
        "-prometheus-addr",
        &prom_url,
        "-influxdb-addr",
        &influx_url,
        "-influxdb-bucket",
        DB,
        "-query-lag",
        "2s",
        "-listen-address",
        "",
        "-once",
        "-log-disable-colors",
    ]);
    assert!(ok, "{err}");

    let links: Vec<(&str, &str, &str, f64)> = FLEET
        .iter()
        .flat_map(|(caller, calls)| {
            calls
                .iter()
                .map(move |&(callee, port, e, i)| (*caller, callee, port, 8.0 * (e + i)))
        })
        .collect();
    let map = |extra: &[&str]| {
        let mut args = vec![
            "map",
            "-influxdb-addr",
            &influx_url,
            "-influxdb-bucket",
            DB,
            "-since",
            "1h",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = run_cli(&args);
        assert!(ok, "map {extra:?}: {err}");
        out
    };

    // SVG: every service a node, every dependency an edge with its port
    // and the bandwidth of the traffic generated.
    let artifacts = artifacts_dir();
    let svg_path = artifacts.join("fleet-map.svg");
    map(&["-format", "svg", "-o", svg_path.to_str().unwrap()]);
    let svg = fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the map is well-formed XML");
    let class_is = |n: &roxmltree::Node<'_, '_>, c: &str| {
        n.attribute("class")
            .is_some_and(|v| v.split(' ').next() == Some(c))
    };
    let nodes: std::collections::BTreeSet<&str> = doc
        .descendants()
        .filter(|n| class_is(n, "node"))
        .map(|n| {
            assert!(n.children().any(|c| c.has_tag_name("rect")));
            let text = n
                .children()
                .find(|c| c.has_tag_name("text"))
                .and_then(|t| t.text());
            assert_eq!(text, n.attribute("data-service"));
            n.attribute("data-service").unwrap()
        })
        .collect();
    let services: std::collections::BTreeSet<&str> = FLEET.iter().map(|(s, _)| *s).collect();
    assert_eq!(nodes, services);
    let edges: BTreeMap<(&str, &str), roxmltree::Node<'_, '_>> = doc
        .descendants()
        .filter(|n| class_is(n, "edge"))
        .map(|n| {
            (
                (
                    n.attribute("data-from").unwrap(),
                    n.attribute("data-to").unwrap(),
                ),
                n,
            )
        })
        .collect();
    assert_eq!(
        edges.len(),
        links.len(),
        "{:?}",
        edges.keys().collect::<Vec<_>>()
    );
    for &(from, to, port, bps) in &links {
        let e = edges
            .get(&(from, to))
            .unwrap_or_else(|| panic!("no edge {from} -> {to}"));
        assert_eq!(e.attribute("class"), Some("edge"), "{from} -> {to} active");
        assert_eq!(
            e.attribute("data-ports"),
            Some(format!("{port}/tcp").as_str())
        );
        let drawn: f64 = e.attribute("data-bandwidth-bps").unwrap().parse().unwrap();
        assert!(
            (drawn - bps).abs() / bps < 0.1,
            "{from} -> {to}: {drawn} vs {bps}"
        );
        let path = e.children().find(|c| c.has_tag_name("path")).unwrap();
        assert!(path.attribute("d").unwrap().starts_with('M'));
    }
    svg_to_png(&svg_path, &artifacts.join("fleet-map.png"));
    eprintln!("fleet map: {}", artifacts.join("fleet-map.png").display());

    // JSON, DOT and Mermaid carry the same graph.
    let json: Value = serde_json::from_str(&map(&["-format", "json"])).unwrap();
    assert_eq!(json["services"].as_array().unwrap().len(), services.len());
    assert_eq!(json["dependencies"].as_array().unwrap().len(), links.len());
    let dot = map(&["-format", "dot"]);
    let mermaid = map(&["-format", "mermaid"]);
    for &(from, to, _, _) in &links {
        assert!(dot.contains(&format!("\"{from}\" -> \"{to}\" [")), "{dot}");
    }
    assert_eq!(
        mermaid.matches(" --> ").count() + mermaid.matches("-->|").count(),
        links.len(),
        "{mermaid}"
    );

    // Filters: api's neighbourhood; only the links above 1 Mbit/s.
    let near: Value = serde_json::from_str(&map(&["-format", "json", "-service", "api"])).unwrap();
    let near_services: Vec<&str> = near["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(near_services, ["api", "auth", "db", "queue", "web"]);
    let big: Value =
        serde_json::from_str(&map(&["-format", "json", "-min-bandwidth", "1M"])).unwrap();
    let mut big_links: Vec<(String, String)> = big["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["from"].as_str().unwrap().to_owned(),
                d["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    big_links.sort();
    let mut expected: Vec<(String, String)> = links
        .iter()
        .filter(|l| l.3 >= 1_000_000.0)
        .map(|l| (l.0.to_owned(), l.1.to_owned()))
        .collect();
    expected.sort();
    assert_eq!(big_links, expected);
    let (ok, _, err) = run_cli(&[
        "map",
        "-influxdb-addr",
        &influx_url,
        "-influxdb-bucket",
        DB,
        "-service",
        "nope",
    ]);
    assert!(
        !ok && err.contains("service \"nope\" has no dependencies"),
        "{err}"
    );
}
