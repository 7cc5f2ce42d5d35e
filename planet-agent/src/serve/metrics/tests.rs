use std::{net::IpAddr, sync::Arc, time::Duration};

use prometheus::{Encoder, Registry, TextEncoder, proto::MetricFamily};

use super::Exporter;
use crate::{
    collect::ebpf::ProbeMode,
    collect::inventory::{Host, Inventory, InventoryStatus},
    collect::socket_table::OwnerMethod,
    collect::{ProbeState, flows::Counts},
    model::dependencies::{Dependencies, Dependency, ServerProcess},
    model::ledger::{Direction, Edge, EdgeKey},
    model::series::SeriesReport,
    model::snapshot::{FlowReport, Store},
};

fn registry(store: Arc<Store>) -> Result<Registry, prometheus::Error> {
    Ok(Exporter::new(store)?.registry().clone())
}

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
    use crate::model::cardinality::{Budget, FoldStatus};
    use crate::model::series::FlowSeries;
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
        s.probe = crate::collect::ProbeState::Attached {
            mode: crate::collect::ebpf::ProbeMode::Tracepoint,
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

/// Splits an exposition into its families' blocks by name, each block
/// from its `# HELP` line to the next family's; fails if a family's
/// `# HELP` or `# TYPE` line appears twice.
fn blocks(text: &str) -> std::collections::BTreeMap<String, Vec<&str>> {
    let mut blocks = std::collections::BTreeMap::<String, Vec<&str>>::new();
    let mut types = std::collections::BTreeSet::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            current = rest.split(' ').next().unwrap().to_owned();
            assert!(!blocks.contains_key(&current), "second HELP: {line}");
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert_eq!(name, current, "TYPE without its HELP: {line}");
            assert!(types.insert(name.to_owned()), "second TYPE: {line}");
        }
        blocks.entry(current.clone()).or_default().push(line);
    }
    blocks
}

/// A snapshot with many series in several big families, label values
/// that need escaping, ports that sort differently as text and as
/// numbers, and equal label sets.
fn busy_store() -> Arc<Store> {
    let store = Arc::new(Store::new());
    store.update(|s| {
        s.inventory = inventory();
        s.local_ip = Some("10.0.0.1".parse().unwrap());
        let dep = |i: usize| Dependency {
            local_hostgroup: "me".into(),
            remote_hostgroup: if i.is_multiple_of(3) {
                "lan".into()
            } else {
                String::new()
            },
            local_address: "me.service.consul".into(),
            remote_address: format!("10.{}.{}.{}", i % 7, (i / 7) % 250, i % 250),
            port: [22, 443, 8080, 9][i % 4],
            protocol: "tcp",
            process_name: Arc::from(["app", "a\"b\\c\nd", "srv\u{fffd}"][i % 3]),
        };
        s.dependencies = Arc::new(Dependencies {
            upstream: (0..2500).map(dep).collect(),
            downstream: (0..1500).map(|i| dep(i + 7)).collect(),
            servers: (0..40)
                .map(|i| ServerProcess {
                    bind: format!("0.0.0.0:{}", 1000 + i * 37),
                    port: 1000 + i * 37,
                    process_name: Arc::from("sshd"),
                })
                .collect(),
            ..Default::default()
        });
    });
    let edges = (0..3000u16)
        .map(|i| {
            let direction = if i.is_multiple_of(2) {
                Direction::Upstream
            } else {
                Direction::Downstream
            };
            let remote = format!("10.{}.{}.{}", i % 5, i / 250, i % 250);
            let process = ["curl", "db\\x", "web\"1\""][usize::from(i % 3)];
            edge(
                direction,
                &remote,
                1 + i % 17 * 1000,
                process,
                u64::from(i) * 3,
                7,
            )
        })
        .collect();
    attached(&store, edges);
    store.task_ran("flow", true, Duration::from_millis(2));
    store.task_ran("socketstat", false, Duration::from_millis(5));
    store
}

/// The page written family by family is the registry's gathered
/// exposition: the same families, each with one `# HELP` and `# TYPE` and
/// the same samples in the same order. Only what changes between two
/// renders by itself (the process's figures and the collectors'
/// durations) is compared by series, not value.
#[test]
fn the_streamed_page_is_the_gathered_exposition() {
    let exporter = Exporter::new(busy_store()).unwrap();
    let mut page = Vec::new();
    exporter.write_text(&mut page).unwrap();
    let page = String::from_utf8(page).unwrap();
    let gathered = text(exporter.registry());
    assert!(gathered.lines().count() > 15_000, "{}", gathered.len());

    let (page, gathered) = (blocks(&page), blocks(&gathered));
    assert_eq!(
        page.keys().collect::<Vec<_>>(),
        gathered.keys().collect::<Vec<_>>()
    );
    for (name, lines) in &page {
        let other = &gathered[name];
        let volatile =
            name.starts_with("process_") || name == "planet_scrape_collector_duration_seconds";
        if volatile {
            let series = |lines: &[&str]| -> Vec<String> {
                lines
                    .iter()
                    .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
                    .collect()
            };
            assert_eq!(series(lines), series(other), "{name}");
        } else {
            assert_eq!(lines, other, "{name}");
        }
    }
    for name in [
        "planet_upstream",
        "planet_downstream_bytes_total",
        "planet_exporter_build_info",
        "process_resident_memory_bytes",
    ] {
        assert!(page.contains_key(name), "{name}");
    }
    assert!(page["planet_upstream"].len() > 2000);
    assert!(
        page["planet_upstream"]
            .iter()
            .any(|l| l.contains(r#"process_name="a\"b\\c\nd""#)),
        "escaped"
    );
}

#[test]
fn a_family_rendered_twice_is_an_error_not_a_second_block() {
    let spec = super::family::Spec::gauge("planet_twice", "Twice", &["x"]);
    let family = || {
        let mut f = super::Family::new(&spec);
        f.push(&["a"], 1.0);
        f
    };
    let mut out = Vec::new();
    let mut sink = super::TextSink::new(&mut out);
    super::Sink::family(&mut sink, family());
    super::Sink::family(&mut sink, family());
    let err = sink.finish().unwrap_err();
    assert!(err.to_string().contains("planet_twice"), "{err}");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "# HELP planet_twice Twice\n# TYPE planet_twice gauge\nplanet_twice{x=\"a\"} 1\n"
    );
}

/// A family's compact form, written directly, is the `TextEncoder`'s
/// text of its proto form: escaping in help and values, values that
/// `Display` writes specially, equal label sets kept in push order.
#[test]
fn a_family_writes_what_the_text_encoder_writes() {
    let spec = super::family::Spec::counter(
        "planet_test_total",
        "Help with \\ and\nnewline \"quoted\"",
        &["zeta", "alpha", "mid"],
    );
    let mut family = super::Family::new(&spec);
    for (i, (z, a, m, v)) in [
        ("1", "b", "", 1.5),
        ("10", "b", "x\"y", f64::NAN),
        ("9", "a\\", "line\nbreak", f64::INFINITY),
        ("1", "b", "", 2.0),
        ("", "", "", -0.0),
        ("1", "a", "z", 1e21),
    ]
    .into_iter()
    .enumerate()
    {
        family.push(&[z, a, m], v + i as f64 * 0.0);
    }
    let mut direct = Vec::new();
    family.write_text(&mut direct).unwrap();
    let mut gathered = Vec::new();
    let registry = Registry::new();
    struct One(prometheus::core::Desc, MetricFamily);
    impl prometheus::core::Collector for One {
        fn desc(&self) -> Vec<&prometheus::core::Desc> {
            vec![&self.0]
        }
        fn collect(&self) -> Vec<MetricFamily> {
            vec![self.1.clone()]
        }
    }
    registry
        .register(Box::new(One(
            spec.desc().unwrap(),
            family.into_proto().unwrap(),
        )))
        .unwrap();
    TextEncoder::new()
        .encode(&registry.gather(), &mut gathered)
        .unwrap();
    assert_eq!(
        String::from_utf8(direct).unwrap(),
        String::from_utf8(gathered).unwrap()
    );
}
