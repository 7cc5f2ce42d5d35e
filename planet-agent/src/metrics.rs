//! Renders the current [`Snapshot`] as Prometheus metric families on each
//! scrape. Rendering reads only the snapshot: no kernel or file access.

use std::{sync::Arc, time::UNIX_EPOCH};

use prometheus::{
    Registry,
    core::{Collector, Desc},
    proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType},
};

use crate::{
    flow::{Direction, Edge},
    snapshot::{ProbeState, Snapshot, Store},
};

/// Labels of `planet_upstream_bytes_total` / `planet_downstream_bytes_total`:
/// those of `planet_upstream` plus `direction`.
const EDGE_LABELS: [&str; 8] = [
    "local_hostgroup",
    "remote_hostgroup",
    "local_address",
    "remote_address",
    "port",
    "protocol",
    "process_name",
    "direction",
];

/// Labels of `planet_traffic_bytes_total`, as planet-exporter has them.
const TRAFFIC_LABELS: [&str; 6] = [
    "local_hostgroup",
    "direction",
    "remote_hostgroup",
    "remote_ip",
    "local_domain",
    "remote_domain",
];

struct Spec {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
}

const TRAFFIC: Spec = Spec {
    name: "planet_traffic_bytes_total",
    help: "Total network traffic with peers",
    kind: MetricType::COUNTER,
    labels: &TRAFFIC_LABELS,
};
const UPSTREAM_BYTES: Spec = Spec {
    name: "planet_upstream_bytes_total",
    help: "Bytes exchanged with upstream dependencies (connections this host opened), by the local process",
    kind: MetricType::COUNTER,
    labels: &EDGE_LABELS,
};
const DOWNSTREAM_BYTES: Spec = Spec {
    name: "planet_downstream_bytes_total",
    help: "Bytes exchanged with downstream dependents (connections this host accepted), by the local process",
    kind: MetricType::COUNTER,
    labels: &EDGE_LABELS,
};
const TASK_SUCCESS: Spec = Spec {
    name: "planet_task_last_run_success",
    help: "Whether the task's last run succeeded (1) or failed (0)",
    kind: MetricType::GAUGE,
    labels: &["task"],
};
const TASK_DURATION: Spec = Spec {
    name: "planet_task_last_run_duration_seconds",
    help: "Duration of the task's last run",
    kind: MetricType::GAUGE,
    labels: &["task"],
};
const TASK_TIMESTAMP: Spec = Spec {
    name: "planet_task_last_run_timestamp_seconds",
    help: "Unix time of the task's last run",
    kind: MetricType::GAUGE,
    labels: &["task"],
};
const TASK_RUNS: Spec = Spec {
    name: "planet_task_runs_total",
    help: "Runs of the task",
    kind: MetricType::COUNTER,
    labels: &["task"],
};
const TASK_FAILURES: Spec = Spec {
    name: "planet_task_failures_total",
    help: "Failed runs of the task",
    kind: MetricType::COUNTER,
    labels: &["task"],
};
const PROGRAMS_ATTACHED: Spec = Spec {
    name: "planet_flow_programs_attached",
    help: "Whether the in-process eBPF flow programs are attached (1) or not (0)",
    kind: MetricType::GAUGE,
    labels: &[],
};
const FLOW_MODE: Spec = Spec {
    name: "planet_flow_mode",
    help: "The probe mode the flow programs run in",
    kind: MetricType::GAUGE,
    labels: &["mode"],
};
const FLOW_MODE_REJECTED: Spec = Spec {
    name: "planet_flow_mode_rejected",
    help: "Probe modes that were tried and rejected on this kernel, with the reason",
    kind: MetricType::GAUGE,
    labels: &["mode", "reason"],
};
const LIVE_FLOWS: Spec = Spec {
    name: "planet_flow_live_flows",
    help: "Live TCP flows in the kernel flow map at the last drain",
    kind: MetricType::GAUGE,
    labels: &[],
};
const MAP_CAPACITY: Spec = Spec {
    name: "planet_flow_map_capacity",
    help: "Capacity of the kernel flow map",
    kind: MetricType::GAUGE,
    labels: &[],
};
const EDGES: Spec = Spec {
    name: "planet_flow_edges",
    help: "Edges (label sets) with byte counters",
    kind: MetricType::GAUGE,
    labels: &[],
};
const UNTRACKED_FLOWS: Spec = Spec {
    name: "planet_flow_untracked_flows_total",
    help: "New flows that did not fit in the kernel flow map",
    kind: MetricType::COUNTER,
    labels: &[],
};
const UNTRACKED_BYTES: Spec = Spec {
    name: "planet_flow_untracked_bytes_total",
    help: "Bytes of flows that did not fit in the kernel flow map",
    kind: MetricType::COUNTER,
    labels: &["direction"],
};
const CLOSE_RECORDS_LOST: Spec = Spec {
    name: "planet_flow_close_records_lost_total",
    help: "Close records lost to a full ring buffer (those flows' bytes since the previous drain are lost)",
    kind: MetricType::COUNTER,
    labels: &[],
};
const VANISHED: Spec = Spec {
    name: "planet_flow_vanished_total",
    help: "Flows that left the kernel map without a close record",
    kind: MetricType::COUNTER,
    labels: &[],
};
const READ_ERRORS: Spec = Spec {
    name: "planet_flow_kernel_read_errors_total",
    help: "Kernel memory reads that failed in the flow programs",
    kind: MetricType::COUNTER,
    labels: &[],
};

const PROGRAM_RUNS: Spec = Spec {
    name: "planet_flow_program_runs_total",
    help: "Times each attached eBPF program ran (kernel BPF statistics)",
    kind: MetricType::COUNTER,
    labels: &["program"],
};
const PROGRAM_RUN_SECONDS: Spec = Spec {
    name: "planet_flow_program_run_seconds_total",
    help: "Time spent in each attached eBPF program (kernel BPF statistics)",
    kind: MetricType::COUNTER,
    labels: &["program"],
};

const SPECS: [&Spec; 21] = [
    &TRAFFIC,
    &UPSTREAM_BYTES,
    &DOWNSTREAM_BYTES,
    &TASK_SUCCESS,
    &TASK_DURATION,
    &TASK_TIMESTAMP,
    &TASK_RUNS,
    &TASK_FAILURES,
    &PROGRAMS_ATTACHED,
    &FLOW_MODE,
    &FLOW_MODE_REJECTED,
    &LIVE_FLOWS,
    &MAP_CAPACITY,
    &EDGES,
    &UNTRACKED_FLOWS,
    &UNTRACKED_BYTES,
    &CLOSE_RECORDS_LOST,
    &VANISHED,
    &READ_ERRORS,
    &PROGRAM_RUNS,
    &PROGRAM_RUN_SECONDS,
];

/// A family under construction.
struct Family<'s> {
    spec: &'s Spec,
    metrics: Vec<Metric>,
}

impl<'s> Family<'s> {
    fn new(spec: &'s Spec) -> Self {
        Self {
            spec,
            metrics: Vec::new(),
        }
    }

    /// Adds a sample; `values` follow `spec.labels` in order.
    fn push(&mut self, values: &[&str], value: f64) {
        debug_assert_eq!(values.len(), self.spec.labels.len(), "{}", self.spec.name);
        let mut labels: Vec<LabelPair> = self
            .spec
            .labels
            .iter()
            .zip(values)
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect();
        labels.sort_unstable_by(|a, b| a.name().cmp(b.name()));
        let mut metric = Metric::from_label(labels);
        match self.spec.kind {
            MetricType::COUNTER => {
                let mut c = Counter::default();
                c.set_value(value);
                metric.set_counter(c);
            }
            _ => {
                let mut g = Gauge::default();
                g.set_value(value);
                metric.set_gauge(g);
            }
        }
        self.metrics.push(metric);
    }

    fn finish(self) -> Option<MetricFamily> {
        if self.metrics.is_empty() {
            return None;
        }
        let mut mf = MetricFamily::default();
        mf.set_name(self.spec.name.to_owned());
        mf.set_help(self.spec.help.to_owned());
        mf.set_field_type(self.spec.kind);
        mf.set_metric(self.metrics);
        Some(mf)
    }
}

/// The Collector behind `/metrics`.
pub struct SnapshotCollector {
    store: Arc<Store>,
    descs: Vec<Desc>,
}

impl SnapshotCollector {
    pub fn new(store: Arc<Store>) -> Result<Self, prometheus::Error> {
        let mut descs = Vec::new();
        for spec in SPECS {
            descs.push(Desc::new(
                spec.name.to_owned(),
                spec.help.to_owned(),
                spec.labels.iter().map(|l| (*l).to_owned()).collect(),
                Default::default(),
            )?);
        }
        Ok(Self { store, descs })
    }
}

impl Collector for SnapshotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        render(&self.store.load())
    }
}

/// A registry with Planet's collector (and nothing global).
pub fn registry(store: Arc<Store>) -> Result<Registry, prometheus::Error> {
    let registry = Registry::new();
    registry.register(Box::new(SnapshotCollector::new(store)?))?;
    Ok(registry)
}

/// Renders a snapshot. Pure: the same snapshot gives the same families.
pub fn render(snapshot: &Snapshot) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    render_flows(snapshot, &mut out);
    render_tasks(snapshot, &mut out);
    render_probe(snapshot, &mut out);
    out
}

fn render_flows(snapshot: &Snapshot, out: &mut Vec<MetricFamily>) {
    let report = &snapshot.flows;
    let mut upstream = Family::new(&UPSTREAM_BYTES);
    let mut downstream = Family::new(&DOWNSTREAM_BYTES);
    for Edge { key, bytes } in &report.edges {
        let family = match key.direction {
            Direction::Upstream => &mut upstream,
            Direction::Downstream => &mut downstream,
        };
        let local = key.local.to_string();
        let remote = key.remote.to_string();
        let port = key.port.to_string();
        for (direction, value) in [("egress", bytes.tx), ("ingress", bytes.rx)] {
            // Until the inventory task lands, hostgroups are empty.
            family.push(
                &[
                    "",
                    "",
                    &local,
                    &remote,
                    &port,
                    "tcp",
                    &key.process,
                    direction,
                ],
                value as f64,
            );
        }
    }
    let mut traffic = Family::new(&TRAFFIC);
    for (remote, bytes) in &report.traffic {
        let remote = remote.to_string();
        for (direction, value) in [("egress", bytes.tx), ("ingress", bytes.rx)] {
            traffic.push(&["", direction, "", &remote, "", ""], value as f64);
        }
    }
    out.extend(
        [traffic, upstream, downstream]
            .into_iter()
            .filter_map(Family::finish),
    );

    if !matches!(snapshot.probe, ProbeState::Attached { .. }) {
        return;
    }
    let stat = |name| report.kernel.counters.get(name).copied().unwrap_or(0) as f64;
    let single = |spec, value: f64| {
        let mut f = Family::new(spec);
        f.push(&[], value);
        f.finish()
    };
    let mut runs = Family::new(&PROGRAM_RUNS);
    let mut run_seconds = Family::new(&PROGRAM_RUN_SECONDS);
    for program in &report.programs {
        runs.push(&[&program.name], program.runs as f64);
        run_seconds.push(&[&program.name], program.run_time.as_secs_f64());
    }
    out.extend([runs, run_seconds].into_iter().filter_map(Family::finish));
    let mut untracked_bytes = Family::new(&UNTRACKED_BYTES);
    untracked_bytes.push(&["egress"], stat("tx_bytes_not_tracked"));
    untracked_bytes.push(&["ingress"], stat("rx_bytes_not_tracked"));
    out.extend(
        [
            single(&LIVE_FLOWS, report.live_flows as f64),
            single(&MAP_CAPACITY, f64::from(report.capacity)),
            single(&EDGES, report.edges.len() as f64),
            single(&UNTRACKED_FLOWS, stat("flows_not_tracked")),
            untracked_bytes.finish(),
            single(&CLOSE_RECORDS_LOST, stat("close_records_lost")),
            single(&VANISHED, report.vanished_total as f64),
            single(&READ_ERRORS, stat("read_errors")),
        ]
        .into_iter()
        .flatten(),
    );
}

fn render_tasks(snapshot: &Snapshot, out: &mut Vec<MetricFamily>) {
    let mut success = Family::new(&TASK_SUCCESS);
    let mut duration = Family::new(&TASK_DURATION);
    let mut timestamp = Family::new(&TASK_TIMESTAMP);
    let mut runs = Family::new(&TASK_RUNS);
    let mut failures = Family::new(&TASK_FAILURES);
    for (task, status) in &snapshot.tasks {
        let task = [*task];
        success.push(&task, if status.last_success { 1.0 } else { 0.0 });
        duration.push(&task, status.last_duration.as_secs_f64());
        let unix = status
            .last_run
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        timestamp.push(&task, unix);
        runs.push(&task, status.runs as f64);
        failures.push(&task, status.failures as f64);
    }
    out.extend(
        [success, duration, timestamp, runs, failures]
            .into_iter()
            .filter_map(Family::finish),
    );
}

fn render_probe(snapshot: &Snapshot, out: &mut Vec<MetricFamily>) {
    let mut attached = Family::new(&PROGRAMS_ATTACHED);
    let mut mode = Family::new(&FLOW_MODE);
    let mut rejected = Family::new(&FLOW_MODE_REJECTED);
    match &snapshot.probe {
        ProbeState::Disabled => attached.push(&[], 0.0),
        ProbeState::Failed { reason } => {
            attached.push(&[], 0.0);
            rejected.push(&["all", reason], 1.0);
        }
        ProbeState::Attached {
            mode: active,
            rejected: tried,
        } => {
            attached.push(&[], 1.0);
            mode.push(&[active.as_str()], 1.0);
            for (m, reason) in tried {
                rejected.push(&[m.as_str(), reason], 1.0);
            }
        }
    }
    out.extend(
        [attached, mode, rejected]
            .into_iter()
            .filter_map(Family::finish),
    );
}

#[cfg(test)]
mod tests {
    use std::{net::IpAddr, time::Duration};

    use prometheus::{Encoder, TextEncoder};

    use super::*;
    use crate::{
        ebpf::ProbeMode,
        flow::{Counts, EdgeKey, ledger::traffic_by_remote},
        snapshot::FlowReport,
    };

    fn text(registry: &Registry) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut buf)
            .unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn edge(
        direction: Direction,
        remote: &str,
        port: u16,
        process: &str,
        tx: u64,
        rx: u64,
    ) -> Edge {
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

    #[test]
    fn renders_edges_with_the_original_labels() {
        let store = Arc::new(Store::new());
        let edges = vec![
            edge(Direction::Upstream, "10.0.0.2", 443, "curl", 100, 2000),
            edge(Direction::Downstream, "fd00::9", 8080, "srv\u{fffd}", 5, 6),
        ];
        store.update(|s| {
            s.flows = Arc::new(FlowReport {
                traffic: traffic_by_remote(&edges),
                edges: edges.clone(),
                ..Default::default()
            });
            s.probe = ProbeState::Attached {
                mode: ProbeMode::Tracepoint,
                rejected: vec![],
            };
        });
        store.task_ran("flow", true, Duration::from_millis(2));
        let out = text(&registry(store).unwrap());
        assert!(
            out.contains("# TYPE planet_upstream_bytes_total counter"),
            "{out}"
        );
        assert!(out.contains(
            r#"planet_upstream_bytes_total{direction="egress",local_address="10.0.0.1",local_hostgroup="",port="443",process_name="curl",protocol="tcp",remote_address="10.0.0.2",remote_hostgroup=""} 100"#
        ), "{out}");
        assert!(out.contains(
            r#"planet_upstream_bytes_total{direction="ingress",local_address="10.0.0.1",local_hostgroup="",port="443",process_name="curl",protocol="tcp",remote_address="10.0.0.2",remote_hostgroup=""} 2000"#
        ), "{out}");
        assert!(out.contains(
            r#"planet_downstream_bytes_total{direction="egress",local_address="10.0.0.1",local_hostgroup="",port="8080",process_name="srv�",protocol="tcp",remote_address="fd00::9",remote_hostgroup=""} 5"#
        ), "{out}");
        assert!(out.contains(
            r#"planet_traffic_bytes_total{direction="ingress",local_domain="",local_hostgroup="",remote_domain="",remote_hostgroup="",remote_ip="10.0.0.2"} 2000"#
        ), "{out}");
        assert!(
            out.contains(r#"planet_task_last_run_success{task="flow"} 1"#),
            "{out}"
        );
        assert!(out.contains("planet_flow_programs_attached 1"), "{out}");
        assert!(
            out.contains(r#"planet_flow_mode{mode="tracepoint"} 1"#),
            "{out}"
        );
        assert!(out.contains("planet_flow_untracked_flows_total 0"), "{out}");
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
}
