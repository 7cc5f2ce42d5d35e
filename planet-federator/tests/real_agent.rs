//! End to end with a REAL planet-agent: Prometheus 2.42 scrapes the agent
//! (built by cargo with its eBPF programs, see
//! `planet_testkit::agent::binary`), which watches known traffic between
//! the root namespace and a test namespace, named by an inventory file. The
//! federator binary runs its jobs into InfluxDB 1.6.7, and the rows are
//! read back with InfluxQL: exact tags, integer dependency fields, and
//! bandwidths within tolerance of the bytes the traffic generator sent.
//!
//! Needs root (eBPF, network namespaces); fails, never skips, without it.
//! The agent binary: `$PLANET_AGENT_BIN` (`cargo xtask test` points it at
//! the agent its `cargo test --workspace` builds), else `cargo build -p
//! planet-agent` into this test's target dir. Built with `AYA_BUILD_SKIP=1`
//! it has no eBPF programs and this test fails saying so.

pub mod common;

use std::{
    collections::BTreeMap,
    fs,
    net::{IpAddr, SocketAddr},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Influxd, Prometheus, TempDir};
use planet_testkit::{
    agent::{self, AgentProcess},
    netns::TestNet,
    prom::{self, Sample},
    traffic::{self, ClientOpts, ServerOpts},
};
use serde_json::Value;

const DB: &str = "planet";
const BIN: &str = env!("CARGO_BIN_EXE_planet-federator");

/// The paced upstream traffic: a connection every `PACE`, each sending
/// `SEND` bytes and reading a `REPLY`-byte answer, for `CONNS` connections.
const PACE: Duration = Duration::from_millis(250);
const CONNS: u64 = 80;
const SEND: u64 = 50_000;
const REPLY: u64 = 10_000;
/// Federator schedule step and query lag.
const STEP_S: i64 = 2;
const LAG_S: i64 = 3;

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

/// `(time ns, value)` rows of `field` in `series`.
fn rows(series: &Value, field: &str) -> Vec<(i64, Value)> {
    let cols = series["columns"].as_array().unwrap();
    let t = cols.iter().position(|c| c == "time").unwrap();
    let f = cols
        .iter()
        .position(|c| c == field)
        .unwrap_or_else(|| panic!("no {field} in {series}"));
    series["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[t].as_i64().unwrap(), r[f].clone()))
        .collect()
}

/// The federator process, killed if the test fails before stopping it.
struct Federator(std::process::Child);

impl Drop for Federator {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn comm(role: &str) -> String {
    let name = format!("pf-{role}{}", std::process::id() % 10_000);
    assert!(name.len() <= 15);
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federates_a_real_agent_scraped_by_real_prometheus() {
    if let Err(err) = planet_testkit::require_root() {
        panic!("the real-agent federation test cannot run: {err:#}");
    }
    let agent_bin = agent::binary().unwrap_or_else(|e| panic!("{e:#}"));
    let net = TestNet::new().expect("test network namespace");
    let (host, ns) = (net.host_v4().to_string(), net.ns_v4().to_string());

    // The inventory names both ends; the federator's queries drop peers
    // without a hostgroup and addresses that start with a digit.
    let dir = TempDir::new("real-agent");
    let inventory = dir.path().join("inventory.json");
    fs::write(
        &inventory,
        format!(
            r#"[{{"ip_address": "{host}", "domain": "host.planet.test", "hostgroup": "hostsvc"}},
{{"ip_address": "{ns}", "domain": "client.planet.test", "hostgroup": "nsclient"}}]"#
        ),
    )
    .unwrap();
    let agent = AgentProcess::start(
        &agent_bin,
        "250ms",
        &[
            "-task-inventory-enabled",
            "-task-inventory-addr",
            inventory.to_str().unwrap(),
            "-task-inventory-interval",
            "1s",
            "-local-address",
            &host,
        ],
    )
    .unwrap_or_else(|e| panic!("start {}: {e:#}", agent_bin.display()));
    let ready = |s: &[Sample]| {
        prom::value(s, "planet_task_last_run_success", &[("task", "inventory")]) == Some(1.0)
            && prom::value(s, "planet_task_last_run_success", &[("task", "socketstat")])
                == Some(1.0)
            && prom::value(s, "planet_flow_programs_attached", &[]) == Some(1.0)
    };
    if let Err(e) = agent.wait_for(ready, Duration::from_secs(30)) {
        panic!(
            "agent not ready (inventory loaded, socket table read, eBPF flow programs attached; \
             an agent built with AYA_BUILD_SKIP=1 has no programs): {e:#}\n{}",
            agent.logs()
        );
    }

    let prometheus = Prometheus::start(&[agent.addr()], "2s");
    prometheus
        .wait_for("up{job=\"planet-agent\"} == 1", Duration::from_secs(30))
        .await;
    let influx = Influxd::start();
    influx.create_database(DB).await;
    let logs = TempDir::new("real-agent-federator");
    let log_path = logs.path().join("federator.log");
    let log = fs::File::create(&log_path).unwrap();
    let mut federator = Federator(
        Command::new(BIN)
            .args([
                "-prometheus-addr",
                &prometheus.url(),
                "-influxdb-addr",
                &influx.url(),
                "-influxdb-bucket",
                DB,
                "-cron-job-schedule",
                &format!("*/{STEP_S} * * * * *"),
                "-query-lag",
                &format!("{LAG_S}s"),
                "-cron-job-timeout-second",
                "10",
                "-listen-address",
                "",
                "-log-disable-colors",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start planet-federator"),
    );

    // Downstream: a server in the root namespace, a few connections from
    // the test namespace.
    let (down_s, down_c) = (comm("ds"), comm("dc"));
    let mut opts = ServerOpts::new(
        SocketAddr::new(IpAddr::V4(net.host_v4()), 0),
        down_s.clone(),
    );
    opts.expect_conns = 3;
    let down_server = traffic::spawn_server(&opts, None).expect("downstream server");
    let down_port = down_server.addr().port();
    let mut client = ClientOpts::new(down_server.addr(), down_c.clone(), 1000);
    client.conns = 3;
    traffic::run_client(&client, Some(&net), Duration::from_secs(30)).expect("downstream client");
    down_server
        .wait(Duration::from_secs(30))
        .expect("downstream server done");

    // Upstream with known bandwidth: a client in the root namespace calls a
    // server in the test namespace, paced.
    let (up_s, up_c) = (comm("us"), comm("uc"));
    let mut opts = ServerOpts::new(SocketAddr::new(IpAddr::V4(net.ns_v4()), 0), up_s.clone());
    opts.expect_conns = CONNS;
    opts.reply_bytes = REPLY;
    let up_server = traffic::spawn_server(&opts, Some(&net)).expect("upstream server");
    let up_port = up_server.addr().port();
    let mut client = ClientOpts::new(up_server.addr(), up_c.clone(), SEND);
    client.read_reply = true;
    let started = jiff::Timestamp::now();
    let start = Instant::now();
    let (mut sent, mut received) = (0, 0);
    for k in 0..CONNS {
        let due = start + PACE * u32::try_from(k).unwrap();
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let r =
            traffic::run_client(&client, None, Duration::from_secs(10)).expect("upstream client");
        sent += r.sent;
        received += r.received;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ended = jiff::Timestamp::now();
    up_server
        .wait(Duration::from_secs(30))
        .expect("upstream server done");
    assert_eq!((sent, received), (CONNS * SEND, CONNS * REPLY));
    let egress_bps = sent as f64 * 8.0 / elapsed;
    let ingress_bps = received as f64 * 8.0 / elapsed;

    // A few more rounds, then SIGTERM: pending writes are flushed.
    tokio::time::sleep(Duration::from_secs(6)).await;
    agent.ensure_running().expect("agent alive");
    assert!(
        Command::new("kill")
            .args(["-TERM", &federator.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = federator.0.wait().unwrap();
    let log_text = fs::read_to_string(&log_path).unwrap_or_default();
    assert!(status.success(), "federator exit {status}\n{log_text}");

    // Traffic: the rows of hostsvc with nsclient. Rows whose irate window
    // lies inside the paced traffic are compared with what was sent.
    let inside = |t: i64| {
        let eval = t / 1_000_000_000 - LAG_S;
        eval >= started.as_second() + 3 && eval < ended.as_second()
    };
    for (measurement, expected) in [("egress", egress_bps), ("ingress", ingress_bps)] {
        let series = influx
            .series(
                DB,
                &format!(
                    "SELECT * FROM \"{measurement}\" WHERE \"remote_service\" = 'nsclient' GROUP BY *"
                ),
            )
            .await;
        assert_eq!(series.len(), 1, "{measurement}: {series:?}\n{log_text}");
        assert_eq!(
            tags(&series[0]),
            map(&[
                ("address", "host.planet.test"),
                ("remote_address", "client.planet.test"),
                ("remote_service", "nsclient"),
                ("service", "hostsvc"),
            ]),
            "{measurement}"
        );
        let values: Vec<f64> = rows(&series[0], "bandwidth_bps")
            .into_iter()
            .filter(|(t, _)| inside(*t))
            .map(|(_, v)| v.as_f64().unwrap())
            .collect();
        assert!(
            values.len() >= 5,
            "{measurement}: {} rows inside the traffic window: {series:?}",
            values.len()
        );
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        eprintln!(
            "{measurement}: generated {expected:.0} bps, stored mean {mean:.0} bps over {} rows: {values:?}",
            values.len()
        );
        assert!(
            (mean - expected).abs() / expected < 0.15,
            "{measurement}: mean {mean} vs {expected}: {values:?}"
        );
        for v in &values {
            assert!(
                (v - expected).abs() / expected < 0.5,
                "{measurement}: row {v} vs {expected}: {values:?}"
            );
        }
    }

    // Dependencies: exact tags and integer 1, for the root namespace's
    // processes (the agent also sees the test namespace's ends).
    let up = influx
        .series(
            DB,
            &format!("SELECT * FROM \"upstream\" WHERE \"process_name\" = '{up_c}' GROUP BY *"),
        )
        .await;
    assert_eq!(up.len(), 1, "{up:?}\n{log_text}");
    let up_port_s = up_port.to_string();
    assert_eq!(
        tags(&up[0]),
        map(&[
            ("address", "host.planet.test"),
            ("process_name", &up_c),
            ("protocol", "tcp"),
            ("service", "hostsvc"),
            ("upstream_address", "client.planet.test"),
            ("upstream_port", &up_port_s),
            ("upstream_service", "nsclient"),
        ])
    );
    let ones = rows(&up[0], "service_dependency");
    assert!(ones.len() >= 5, "{ones:?}");
    assert!(ones.iter().all(|(_, v)| v == 1), "{ones:?}");
    let down = influx
        .series(
            DB,
            &format!("SELECT * FROM \"downstream\" WHERE \"process_name\" = '{down_s}' GROUP BY *"),
        )
        .await;
    assert_eq!(down.len(), 1, "{down:?}\n{log_text}");
    let down_port_s = down_port.to_string();
    assert_eq!(
        tags(&down[0]),
        map(&[
            ("address", "host.planet.test"),
            ("downstream_address", "client.planet.test"),
            ("downstream_service", "nsclient"),
            ("port", &down_port_s),
            ("process_name", &down_s),
            ("protocol", "tcp"),
            ("service", "hostsvc"),
        ])
    );
    assert!(
        rows(&down[0], "service_dependency")
            .iter()
            .all(|(_, v)| v == 1)
    );
    // The server of the upstream is no upstream of this host, nor the
    // client of the downstream a downstream.
    for (m, p) in [
        ("upstream", &up_s),
        ("downstream", &down_c),
        ("upstream", &down_s),
        ("downstream", &up_c),
    ] {
        let s = influx
            .series(
                DB,
                &format!(
                    "SELECT * FROM \"{m}\" WHERE \"process_name\" = '{p}' AND \"service\" = 'hostsvc' GROUP BY *"
                ),
            )
            .await;
        assert!(s.is_empty(), "{m} {p}: {s:?}");
    }
    let types = influx.series(DB, "SHOW FIELD KEYS FROM \"upstream\"").await;
    assert_eq!(
        types[0]["values"][0],
        serde_json::json!(["service_dependency", "integer"])
    );

    // The history has both service edges, and the map draws them.
    let edges = influx
        .series(
            DB,
            "SELECT * FROM \"service_edge\" WHERE \"service\" = 'hostsvc' GROUP BY *",
        )
        .await;
    let keys: Vec<(String, String, String)> = edges
        .iter()
        .map(|e| {
            let t = tags(e);
            (
                t["direction"].clone(),
                t["remote_service"].clone(),
                t["port"].clone(),
            )
        })
        .collect();
    assert!(
        keys.contains(&("upstream".into(), "nsclient".into(), up_port_s.clone())),
        "{keys:?}"
    );
    assert!(
        keys.contains(&("downstream".into(), "nsclient".into(), down_port_s.clone())),
        "{keys:?}"
    );
    drop(agent);
}
