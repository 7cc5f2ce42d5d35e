//! Byte families of the flow task, named by the inventory, and the flow
//! task's own health.

use std::sync::Arc;

use super::{
    Sink,
    family::{Family, Spec, single},
};
use crate::{
    collect::ProbeState,
    collect::flows::Counts,
    model::Snapshot,
    model::cardinality::OTHER,
    model::dependencies::{Dependency, name},
};

/// Labels of `planet_upstream` plus `direction`.
const EDGE_LABELS: &[&str] = &[
    "local_hostgroup",
    "remote_hostgroup",
    "local_address",
    "remote_address",
    "port",
    "protocol",
    "process_name",
    "direction",
];

pub const TRAFFIC: Spec = Spec::counter(
    "planet_traffic_bytes_total",
    "Total network traffic with peers",
    &[
        "local_hostgroup",
        "direction",
        "remote_hostgroup",
        "remote_ip",
        "local_domain",
        "remote_domain",
    ],
);
pub const UPSTREAM_BYTES: Spec = Spec::counter(
    "planet_upstream_bytes_total",
    "Bytes exchanged with upstream dependencies (connections this host opened), by the local process",
    EDGE_LABELS,
);
pub const DOWNSTREAM_BYTES: Spec = Spec::counter(
    "planet_downstream_bytes_total",
    "Bytes exchanged with downstream dependents (connections this host accepted), by the local process",
    EDGE_LABELS,
);
pub const LIVE_FLOWS: Spec = Spec::gauge(
    "planet_flow_live_flows",
    "Live TCP flows in the kernel flow map at the last drain",
    &[],
);
pub const MAP_CAPACITY: Spec = Spec::gauge(
    "planet_flow_map_capacity",
    "Capacity of the kernel flow map",
    &[],
);
pub const EDGES: Spec = Spec::gauge(
    "planet_flow_edges",
    "Edges (address-level label sets) with byte counters",
    &[],
);
pub const UNTRACKED_FLOWS: Spec = Spec::counter(
    "planet_flow_untracked_flows_total",
    "New flows that did not fit in the kernel flow map",
    &[],
);
pub const UNTRACKED_BYTES: Spec = Spec::counter(
    "planet_flow_untracked_bytes_total",
    "Bytes of flows that did not fit in the kernel flow map",
    &["direction"],
);
pub const CLOSE_RECORDS_LOST: Spec = Spec::counter(
    "planet_flow_close_records_lost_total",
    "Close records lost to a full ring buffer (those flows' bytes since the previous drain are lost)",
    &[],
);
pub const VANISHED: Spec = Spec::counter(
    "planet_flow_vanished_total",
    "Flows that left the kernel map without a close record",
    &[],
);
pub const READ_ERRORS: Spec = Spec::counter(
    "planet_flow_kernel_read_errors_total",
    "Kernel memory reads that failed in the flow programs",
    &[],
);
pub const PROGRAM_RUNS: Spec = Spec::counter(
    "planet_flow_program_runs_total",
    "Times each attached eBPF program ran (kernel BPF statistics)",
    &["program"],
);
pub const PROGRAM_RUN_SECONDS: Spec = Spec::counter(
    "planet_flow_program_run_seconds_total",
    "Time spent in each attached eBPF program (kernel BPF statistics)",
    &["program"],
);

pub const SPECS: [&Spec; 13] = [
    &TRAFFIC,
    &UPSTREAM_BYTES,
    &DOWNSTREAM_BYTES,
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

/// The byte families, as the flow task named and budgeted them; folded
/// series show as one series with [`OTHER`] remote labels and process and
/// port 0. `planet_traffic_bytes_total` only when the flow task is its
/// source (`traffic_source`).
pub fn render(snapshot: &Snapshot, traffic_source: bool, out: &mut dyn Sink) {
    let report = &snapshot.flows;
    let (local_address, local_hostgroup) = snapshot
        .local_ip
        .map(|ip| name(&snapshot.inventory, ip))
        .unwrap_or_default();
    for (spec, budgeted) in [
        (&UPSTREAM_BYTES, &report.series.upstream),
        (&DOWNSTREAM_BYTES, &report.series.downstream),
    ] {
        let mut family = Family::new(spec);
        let mut push = |s: &Dependency, bytes: Counts| {
            let port = s.port.to_string();
            for (direction, value) in [("egress", bytes.tx), ("ingress", bytes.rx)] {
                family.push(
                    &[
                        &s.local_hostgroup,
                        &s.remote_hostgroup,
                        &s.local_address,
                        &s.remote_address,
                        &port,
                        s.protocol,
                        &s.process_name,
                        direction,
                    ],
                    value as f64,
                );
            }
        };
        for (series, bytes) in &budgeted.series {
            push(series, *bytes);
        }
        if let Some(bytes) = budgeted.other {
            push(
                &Dependency {
                    local_hostgroup: local_hostgroup.clone(),
                    remote_hostgroup: OTHER.to_owned(),
                    local_address: local_address.clone(),
                    remote_address: OTHER.to_owned(),
                    port: 0,
                    protocol: "tcp",
                    process_name: Arc::from(OTHER),
                },
                bytes,
            );
        }
        out.family(family);
    }

    let local = snapshot
        .local_ip
        .and_then(|ip| snapshot.inventory.lookup(ip));
    let (local_hostgroup, local_domain) =
        local.map_or(("", ""), |h| (h.hostgroup.as_str(), h.domain.as_str()));
    let mut traffic = Family::new(&TRAFFIC);
    let mut push = |remote: &str, remote_hostgroup: &str, remote_domain: &str, bytes: Counts| {
        for (direction, value) in [("egress", bytes.tx), ("ingress", bytes.rx)] {
            traffic.push(
                &[
                    local_hostgroup,
                    direction,
                    remote_hostgroup,
                    remote,
                    local_domain,
                    remote_domain,
                ],
                value as f64,
            );
        }
    };
    if traffic_source {
        for (remote, bytes) in &report.series.traffic.series {
            let host = snapshot.inventory.lookup(*remote);
            let (remote_hostgroup, remote_domain) =
                host.map_or(("", ""), |h| (h.hostgroup.as_str(), h.domain.as_str()));
            push(&remote.to_string(), remote_hostgroup, remote_domain, *bytes);
        }
        if let Some(bytes) = report.series.traffic.other {
            push(OTHER, OTHER, OTHER, bytes);
        }
    }
    out.family(traffic);

    if !matches!(snapshot.probe, ProbeState::Attached { .. }) {
        return;
    }
    let stat = |name| report.kernel.counters.get(name).copied().unwrap_or(0) as f64;
    let mut runs = Family::new(&PROGRAM_RUNS);
    let mut run_seconds = Family::new(&PROGRAM_RUN_SECONDS);
    for program in &report.programs {
        runs.push(&[&program.name], program.runs as f64);
        run_seconds.push(&[&program.name], program.run_time.as_secs_f64());
    }
    let mut untracked_bytes = Family::new(&UNTRACKED_BYTES);
    untracked_bytes.push(&["egress"], stat("tx_bytes_not_tracked"));
    untracked_bytes.push(&["ingress"], stat("rx_bytes_not_tracked"));
    for family in [
        runs,
        run_seconds,
        single(&LIVE_FLOWS, report.live_flows as f64),
        single(&MAP_CAPACITY, f64::from(report.capacity)),
        single(&EDGES, report.edges.len() as f64),
        single(&UNTRACKED_FLOWS, stat("flows_not_tracked")),
        untracked_bytes,
        single(&CLOSE_RECORDS_LOST, stat("close_records_lost")),
        single(&VANISHED, report.vanished_total as f64),
        single(&READ_ERRORS, stat("read_errors")),
    ] {
        out.family(family);
    }
}
