//! Every query of the Grafana dashboard in `setup/grafana/` returns data
//! from a real Prometheus (the Debian package, 2.x) that scraped a real
//! agent with the shipped `setup/prometheus/` configuration and alert rules.
//!
//! Traffic makes the test host group `planet-web` both a client
//! (`planet-web -> planet-db`) and a server (`planet-client -> planet-web`),
//! named by a file inventory. The dashboard's template variables are
//! substituted as Grafana would, then each expression is run as an instant
//! query and must return at least one series.
//!
//! Needs root (eBPF, network namespaces) and fails, never skips, without it.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use planet_testkit::agent::AgentProcess;
use planet_testkit::netns::TestNet;
use planet_testkit::prom::{self, Sample};
use planet_testkit::prometheus::Prometheus;
use planet_testkit::traffic::{self, ClientOpts, ServerOpts};
use serde_json::Value;

const AGENT: &str = env!("CARGO_BIN_EXE_planet-agent");
const SERVICE: &str = "planet-web";
const TIMEOUT: Duration = Duration::from_secs(60);

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// Every `expr` in the dashboard's panels (rows included), with the panel title.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_else(|| {
                    panic!("panel {title:?} has a target without expr: {target}")
                });
                let ref_id = target["refId"].as_str().unwrap_or("?");
                out.push((format!("{title} [{ref_id}]"), expr.to_owned()));
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// `label_values(<selector>, <label>)` of each query variable.
fn variable_queries(dashboard: &Value) -> Vec<(String, String, String)> {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let name = v["name"].as_str().expect("variable name").to_owned();
            let query = v["query"]["query"].as_str().expect("variable query");
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("variable {name}: not label_values(...): {query}"));
            let (selector, label) = inner
                .rsplit_once(',')
                .unwrap_or_else(|| panic!("variable {name}: no label in {query}"));
            (name, selector.trim().to_owned(), label.trim().to_owned())
        })
        .collect()
}

/// Replaces Grafana's variables; panics on any variable it does not know
/// (`$1` and friends in `label_replace` replacements are not variables).
fn substitute(expr: &str, instance: &str) -> String {
    let out = expr
        .replace("$__rate_interval", "15s")
        .replace("$service", SERVICE)
        .replace("$instance", instance);
    let mut rest = out.as_str();
    while let Some(at) = rest.find('$') {
        let after = &rest[at + 1..];
        assert!(
            after.starts_with(|c: char| c.is_ascii_digit()),
            "unknown variable in {expr:?} at {after:?}"
        );
        rest = after;
    }
    out
}

fn inventory(net: &TestNet) -> String {
    format!(
        r#"[
  {{"ip_address": "{web4}", "domain": "web.planet.test", "hostgroup": "{SERVICE}"}},
  {{"ip_address": "{web6}", "domain": "web.planet.test", "hostgroup": "{SERVICE}"}},
  {{"ip_address": "{client}", "domain": "client.planet.test", "hostgroup": "planet-client"}},
  {{"ip_address": "{db}", "domain": "db.planet.test", "hostgroup": "planet-db"}}
]"#,
        web4 = net.host_v4(),
        web6 = net.host_v6(),
        client = net.ns_v4(),
        db = net.ns_v6(),
    )
}

/// One connection from `client_net` to a server in `server_net`, bytes both ways.
fn exchange(
    net: &TestNet,
    server_ip: IpAddr,
    server_in_ns: bool,
    server_comm: &str,
    client_comm: &str,
) {
    let opts = ServerOpts {
        reply_bytes: 300_000,
        ..ServerOpts::new(SocketAddr::new(server_ip, 0), server_comm)
    };
    let server_net = server_in_ns.then_some(net);
    let client_net = (!server_in_ns).then_some(net);
    let server = traffic::spawn_server(&opts, server_net).expect("traffic server");
    let client = ClientOpts {
        read_reply: true,
        ..ClientOpts::new(server.addr(), client_comm, 200_000)
    };
    traffic::run_client(&client, client_net, TIMEOUT).expect("traffic client");
    server.wait(TIMEOUT).expect("traffic server finished");
}

/// Removes a file when the test ends, passed or not.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn every_dashboard_query_returns_data() {
    if let Err(err) = planet_testkit::require_root() {
        panic!("dashboard test cannot run: {err:#}");
    }
    let dashboard: Value =
        serde_json::from_str(&repo_file("setup/grafana/planet-dependencies.json"))
            .expect("dashboard JSON");

    let net = TestNet::new().expect("test network namespace");
    let inventory_path = std::env::temp_dir().join(format!(
        "planet-dashboard-inventory-{}.json",
        std::process::id()
    ));
    std::fs::write(&inventory_path, inventory(&net)).expect("write inventory");
    let _remove_inventory = RemoveOnDrop(inventory_path.clone());
    let inventory_arg = inventory_path.display().to_string();
    let web4 = net.host_v4().to_string();
    let agent = AgentProcess::start(
        AGENT,
        "1s",
        &[
            "-task-inventory-enabled",
            "-task-inventory-addr",
            &inventory_arg,
            "-task-inventory-interval",
            "1s",
            "-local-address",
            &web4,
            // The cost panels show the kernel's BPF statistics.
            "-task-flow-program-stats",
        ],
    )
    .expect("start agent");
    let ready = |s: &[Sample]| {
        prom::value(s, "planet_flow_programs_attached", &[]) == Some(1.0)
            && prom::value(s, "planet_task_last_run_success", &[("task", "inventory")]) == Some(1.0)
    };
    agent.wait_for(ready, TIMEOUT).expect("agent ready");

    // The shipped configuration, scraping every 2 s instead of 15 s (a
    // 2 s time limit leaves a debug-build agent room on a loaded machine).
    let config = repo_file("setup/prometheus/prometheus.yml")
        .replace("scrape_interval: 15s", "scrape_interval: 2s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("scrape_timeout: 10s", "scrape_timeout: 2s");
    assert!(config.contains("scrape_interval: 2s"), "{config}");
    let targets = format!(r#"[{{"targets": ["{}"]}}]"#, agent.addr());
    let prometheus = Prometheus::start(
        &[
            ("prometheus.yml", config),
            (
                "planet-alerts.yml",
                repo_file("setup/prometheus/planet-alerts.yml"),
            ),
            ("targets/planet-agent.json", targets),
        ],
        "prometheus.yml",
    )
    .expect("start prometheus");
    prometheus
        .wait_for(r#"up{job="planet-agent"} == 1"#, TIMEOUT)
        .expect("Prometheus scrapes the agent");

    let pid = std::process::id() % 10_000;
    // planet-client -> planet-web, then planet-web -> planet-db.
    exchange(
        &net,
        net.host_v4().into(),
        false,
        &format!("pg-web-s{pid}"),
        &format!("pg-cli-c{pid}"),
    );
    exchange(
        &net,
        net.ns_v6().into(),
        true,
        &format!("pg-db-s{pid}"),
        &format!("pg-web-c{pid}"),
    );
    for family in [
        "planet_upstream_bytes_total",
        "planet_downstream_bytes_total",
    ] {
        let expr = format!(r#"{family}{{local_hostgroup="{SERVICE}"}}"#);
        prometheus
            .wait_for(&expr, TIMEOUT)
            .unwrap_or_else(|err| panic!("{err:#}\nagent log:\n{}", agent.logs()));
    }
    // A few more scrapes, so every rate() window holds several samples.
    std::thread::sleep(Duration::from_secs(6));

    let instance = agent.addr().to_string();
    let mut empty = Vec::new();
    let queries = panel_queries(&dashboard);
    assert!(
        queries.len() >= 10,
        "too few dashboard queries: {queries:?}"
    );
    for (what, expr) in &queries {
        let expr = substitute(expr, &instance);
        match prometheus.query(&expr) {
            Ok(result) if !result.is_empty() => {}
            Ok(_) => empty.push(format!("{what}: no data for\n  {expr}")),
            Err(err) => empty.push(format!("{what}: {err:#}")),
        }
    }
    for (name, selector, label) in variable_queries(&dashboard) {
        let result = prometheus.query(&selector).expect("variable query");
        let values: Vec<&str> = result
            .iter()
            .filter_map(|s| s["metric"][label.as_str()].as_str())
            .collect();
        let want = if name == "service" {
            SERVICE
        } else {
            instance.as_str()
        };
        if !values.contains(&want) {
            empty.push(format!(
                "variable {name}: {label} of {selector} is {values:?}, not {want}"
            ));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data:\n{}\nagent log:\n{}",
        empty.join("\n"),
        agent.logs()
    );

    // The node graph's edges name both directions around the service.
    let (_, edges) = queries
        .iter()
        .find(|(what, _)| what.ends_with("[edges]"))
        .expect("a node graph edges query");
    let result = prometheus
        .query(&substitute(edges, &instance))
        .expect("edges query");
    let pairs: Vec<(String, String)> = result
        .iter()
        .map(|s| {
            let label = |k: &str| s["metric"][k].as_str().unwrap_or_default().to_owned();
            (label("source"), label("target"))
        })
        .collect();
    for edge in [(SERVICE, "planet-db"), ("planet-client", SERVICE)] {
        assert!(
            pairs.contains(&(edge.0.to_owned(), edge.1.to_owned())),
            "node graph lacks edge {edge:?}: {pairs:?}"
        );
    }

    // Prometheus loaded the shipped alert rules and evaluates them cleanly.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let rules = prometheus.api("rules").expect("rules API");
        let all: Vec<&Value> = rules["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let healthy = !all.is_empty() && all.iter().all(|r| r["health"] == "ok");
        if healthy {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alert rules not all healthy: {rules}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
