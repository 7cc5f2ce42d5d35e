use std::{net::IpAddr, sync::Arc, time::Duration};

use prometheus::{Encoder, Registry, TextEncoder};

use super::registry;
use crate::{
    dependencies::{Dependencies, Dependency, ServerProcess},
    ebpf::ProbeMode,
    flow::{Counts, Direction, Edge, EdgeKey, SeriesReport},
    inventory::{Host, Inventory, InventoryStatus},
    snapshot::{FlowReport, ProbeState, Store},
    socket_table::OwnerMethod,
};

fn text(registry: &Registry) -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .unwrap();
    String::from_utf8(buf).unwrap()
}

fn edge(direction: Direction, remote: &str, port: u16, process: &str, tx: u64, rx: u64) -> Edge {
    Edge {
        key: EdgeKey {
            direction,
            local: "10.0.0.1".parse().unwrap(),
            remote: remote.parse::<IpAddr>().unwrap(),
            port,
            process: Arc::from(process),
        },
        bytes: Counts { tx, rx },
    }
}

/// Publishes `edges` as one drain named with the snapshot's inventory
/// and local address (set those first).
fn attached(store: &Store, edges: Vec<Edge>) {
    store.update(|s| {
        s.flows = Arc::new(FlowReport {
            series: SeriesReport::from_edges(&edges, &s.inventory, s.local_ip),
            edges: edges.clone(),
            ..Default::default()
        });
        s.probe = ProbeState::Attached {
            mode: ProbeMode::Tracepoint,
            rejected: vec![],
        };
    });
}

#[test]
fn renders_edges_with_the_original_labels() {
    let store = Arc::new(Store::new());
    attached(
        &store,
        vec![
            edge(Direction::Upstream, "10.0.0.2", 443, "curl", 100, 2000),
            edge(Direction::Downstream, "fd00::9", 8080, "srv\u{fffd}", 5, 6),
        ],
    );
    store.task_ran("flow", true, Duration::from_millis(2));
    let out = text(&registry(store).unwrap());
    assert!(
        out.contains("# TYPE planet_upstream_bytes_total counter"),
        "{out}"
    );
    for line in [
        r#"planet_upstream_bytes_total{direction="egress",local_address="10.0.0.1",local_hostgroup="",port="443",process_name="curl",protocol="tcp",remote_address="10.0.0.2",remote_hostgroup=""} 100"#,
        r#"planet_upstream_bytes_total{direction="ingress",local_address="10.0.0.1",local_hostgroup="",port="443",process_name="curl",protocol="tcp",remote_address="10.0.0.2",remote_hostgroup=""} 2000"#,
        r#"planet_downstream_bytes_total{direction="egress",local_address="10.0.0.1",local_hostgroup="",port="8080",process_name="srv�",protocol="tcp",remote_address="fd00::9",remote_hostgroup=""} 5"#,
        r#"planet_traffic_bytes_total{direction="ingress",local_domain="",local_hostgroup="",remote_domain="",remote_hostgroup="",remote_ip="10.0.0.2"} 2000"#,
        r#"planet_task_last_run_success{task="flow"} 1"#,
        "planet_flow_programs_attached 1",
        r#"planet_flow_mode{mode="tracepoint"} 1"#,
        "planet_flow_untracked_flows_total 0",
        r#"planet_scrape_collector_success{collector="hostmeta"} 1"#,
        r#"planet_scrape_collector_success{collector="network_dependency"} 1"#,
    ] {
        assert!(out.contains(line), "missing {line}\n{out}");
    }
    assert!(out.contains("planet_exporter_build_info{branch="), "{out}");
    assert!(out.contains(r#"goos="linux""#), "{out}");
}

#[test]
fn failed_probe_is_visible() {
    let store = Arc::new(Store::new());
    store.update(|s| {
        s.probe = ProbeState::Failed {
            reason: "no root".into(),
        }
    });
    store.task_ran("flow", false, Duration::ZERO);
    let out = text(&registry(store).unwrap());
    assert!(out.contains("planet_flow_programs_attached 0"), "{out}");
    assert!(
        out.contains(r#"planet_flow_mode_rejected{mode="all",reason="no root"} 1"#),
        "{out}"
    );
    assert!(
        out.contains(r#"planet_task_last_run_success{task="flow"} 0"#),
        "{out}"
    );
}

#[test]
fn socket_owner_method_is_visible_once_chosen() {
    let store = Arc::new(Store::new());
    let registry = registry(store.clone()).unwrap();
    assert!(!text(&registry).contains("planet_socket_owner_method"));
    for method in [OwnerMethod::EbpfIter, OwnerMethod::ProcWalk] {
        store.update(|s| s.socket_owners = Some(method));
        let out = text(&registry);
        let line = format!("planet_socket_owner_method{{method=\"{method}\"}} 1");
        assert!(out.contains(&line), "missing {line}\n{out}");
        assert_eq!(
            out.matches("planet_socket_owner_method{").count(),
            1,
            "{out}"
        );
    }
}

fn inventory() -> Arc<Inventory> {
    Arc::new(Inventory::with_localhost(vec![
        Host {
            ip_address: "10.0.0.1".into(),
            domain: "me.service.consul".into(),
            hostgroup: "me".into(),
        },
        Host {
            ip_address: "10.0.0.0/24".into(),
            domain: "".into(),
            hostgroup: "lan".into(),
        },
    ]))
}

#[test]
fn inventory_names_every_family_and_collapsed_edges_are_summed() {
    let store = Arc::new(Store::new());
    store.update(|s| {
        s.inventory = inventory();
        s.local_ip = Some("10.0.0.1".parse().unwrap());
        s.inventory_status = Some(InventoryStatus {
            entries: 3,
            last_success: Some(std::time::UNIX_EPOCH + Duration::from_secs(1000)),
            failures: 2,
            last_error: None,
        });
    });
    attached(
        &store,
        vec![
            edge(Direction::Upstream, "10.0.0.2", 443, "curl", 10, 20),
            edge(Direction::Upstream, "10.0.0.3", 443, "curl", 1, 2),
        ],
    );
    let out = text(&registry(store).unwrap());
    for line in [
        // Both peers are only known by CIDR: same remote_hostgroup, but the
        // address stays the IP, so they remain separate series.
        r#"planet_upstream_bytes_total{direction="egress",local_address="me.service.consul",local_hostgroup="me",port="443",process_name="curl",protocol="tcp",remote_address="10.0.0.2",remote_hostgroup="lan"} 10"#,
        r#"planet_traffic_bytes_total{direction="egress",local_domain="me.service.consul",local_hostgroup="me",remote_domain="",remote_hostgroup="lan",remote_ip="10.0.0.3"} 1"#,
        r#"planet_hostname{domain="me.service.consul",hostname="#,
        "planet_inventory_entries 3",
        "planet_inventory_failures_total 2",
        "planet_inventory_last_success_timestamp_seconds 1000",
    ] {
        assert!(out.contains(line), "missing {line}\n{out}");
    }
}

#[test]
fn peers_sharing_a_domain_are_summed_not_duplicated() {
    let store = Arc::new(Store::new());
    store.update(|s| {
        s.inventory = Arc::new(Inventory::with_localhost(
            ["10.9.0.2", "10.9.0.3"]
                .into_iter()
                .map(|ip| Host {
                    ip_address: ip.into(),
                    domain: "db.service.consul".into(),
                    hostgroup: "db".into(),
                })
                .collect(),
        ));
    });
    attached(
        &store,
        vec![
            edge(Direction::Upstream, "10.9.0.2", 5432, "app", 10, 20),
            edge(Direction::Upstream, "10.9.0.3", 5432, "app", 1, 2),
        ],
    );
    let out = text(&registry(store).unwrap());
    let egress: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("planet_upstream_bytes_total{direction=\"egress\""))
        .collect();
    assert_eq!(egress.len(), 1, "{out}");
    assert!(egress[0].ends_with(" 11"), "{out}");
}

#[test]
fn dependency_families_match_planet_exporter() {
    let store = Arc::new(Store::new());
    let dep = |remote: &str, port| Dependency {
        local_hostgroup: "me".into(),
        remote_hostgroup: String::new(),
        local_address: "me.service.consul".into(),
        remote_address: remote.into(),
        port,
        protocol: "tcp",
        process_name: Arc::from("app"),
    };
    store.update(|s| {
        s.inventory = inventory();
        s.local_ip = Some("10.0.0.1".parse().unwrap());
        s.dependencies = Arc::new(Dependencies {
            upstream: vec![dep("10.1.1.1", 443)],
            downstream: vec![dep("10.2.2.2", 22)],
            servers: vec![ServerProcess {
                bind: ":::22".into(),
                port: 22,
                process_name: Arc::from("sshd"),
            }],
            ..Default::default()
        });
    });
    let out = text(&registry(store).unwrap());
    for line in [
        "# HELP planet_upstream Upstream dependency of this machine",
        "# TYPE planet_upstream gauge",
        r#"planet_upstream{local_address="me.service.consul",local_hostgroup="me",port="443",process_name="app",protocol="tcp",remote_address="10.1.1.1",remote_hostgroup=""} 1"#,
        r#"planet_downstream{local_address="me.service.consul",local_hostgroup="me",port="22",process_name="app",protocol="tcp",remote_address="10.2.2.2",remote_hostgroup=""} 1"#,
        "# HELP planet_server_process Server process that are listening on network interfaces",
        r#"planet_server_process{bind=":::22",local_hostgroup="me",port="22",process_name="sshd"} 1"#,
        "# HELP planet_hostname Hostname of the collected machine",
        r#"ip="10.0.0.1",local_hostgroup="me"} 1"#,
    ] {
        assert!(out.contains(line), "missing {line}\n{out}");
    }
}

#[test]
fn folded_series_render_as_other_with_their_bytes() {
    use crate::cardinality::{Budget, FoldStatus};
    use crate::flow::FlowSeries;
    let store = Arc::new(Store::new());
    let mut series = FlowSeries::default();
    let now = std::time::Instant::now();
    let changes = (1..=5u8)
        .map(|i| {
            let e = edge(
                Direction::Upstream,
                &format!("10.1.0.{i}"),
                443,
                "app",
                u64::from(i) * 100,
                1,
            );
            (e.key, e.bytes)
        })
        .collect();
    series.credit(changes, &Inventory::default(), None, now);
    let budget = Budget {
        max_series: 6,
        retention: Duration::from_secs(120),
    };
    let report = series.settle(now, budget);
    store.update(|s| {
        s.flows = Arc::new(FlowReport {
            series: report.clone(),
            ..Default::default()
        });
        // The flow task feeds planet_traffic_bytes_total while attached.
        s.probe = crate::snapshot::ProbeState::Attached {
            mode: crate::ebpf::ProbeMode::Tracepoint,
            rejected: vec![],
        };
    });
    let out = text(&registry(store).unwrap());
    for line in [
        r#"planet_upstream_bytes_total{direction="egress",local_address="",local_hostgroup="",port="0",process_name="other",protocol="tcp",remote_address="other",remote_hostgroup="other"} 600"#,
        r#"planet_upstream_bytes_total{direction="egress",local_address="10.0.0.1",local_hostgroup="",port="443",process_name="app",protocol="tcp",remote_address="10.1.0.5",remote_hostgroup=""} 500"#,
        r#"planet_traffic_bytes_total{direction="ingress",local_domain="",local_hostgroup="",remote_domain="other",remote_hostgroup="other",remote_ip="other"} 3"#,
        r#"planet_series_folded_total{family="planet_upstream_bytes_total"} 3"#,
        r#"planet_series_folded{family="planet_traffic_bytes_total"} 3"#,
        r#"planet_series_folded_total{family="planet_upstream"} 0"#,
    ] {
        assert!(out.contains(line), "missing {line}\n{out}");
    }
    assert_eq!(
        report.upstream.folds,
        FoldStatus {
            total: 3,
            current: 3
        }
    );
    let upstream_egress: f64 = out
        .lines()
        .filter(|l| l.starts_with(r#"planet_upstream_bytes_total{direction="egress""#))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(upstream_egress, 1500.0, "bytes preserved");
}

#[test]
fn self_cost_metrics() {
    let store = Arc::new(Store::new());
    store.task_ran("flow", true, Duration::from_millis(250));
    store.task_ran("flow", true, Duration::from_millis(750));
    let out = text(&registry(store).unwrap());
    assert!(
        out.contains(r#"planet_task_run_seconds_total{task="flow"} 1"#),
        "{out}"
    );
    for family in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            out.contains(&format!("# TYPE {family}")),
            "missing {family}\n{out}"
        );
    }
}
