//! Byte families of the flow task, named by the inventory, and the flow
//! task's own health.

use std::{collections::HashMap, sync::Arc};

use prometheus::proto::MetricFamily;

use super::family::{Family, Spec, single};
use crate::{
    dependencies::{name, shown_local},
    flow::{Counts, Direction},
    snapshot::{ProbeState, Snapshot},
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

/// Label values of one byte series, before `direction`.
type EdgeLabels = (String, String, String, String, u16, Arc<str>);

/// The byte families. Edges whose addresses the inventory maps to the same
/// names are summed, so a renamed peer never yields duplicate series.
/// `planet_traffic_bytes_total` only when the flow task is its source.
pub fn render(snapshot: &Snapshot, traffic_source: bool, out: &mut Vec<MetricFamily>) {
    let report = &snapshot.flows;
    let mut by_labels: [HashMap<EdgeLabels, Counts>; 2] = Default::default();
    for edge in &report.edges {
        let key = &edge.key;
        let local = shown_local(key.local, snapshot.local_ip);
        let (local_address, local_hostgroup) = name(&snapshot.inventory, local);
        let (remote_address, remote_hostgroup) = name(&snapshot.inventory, key.remote);
        let slot = match key.direction {
            Direction::Upstream => 0,
            Direction::Downstream => 1,
        };
        *by_labels[slot]
            .entry((
                local_hostgroup,
                remote_hostgroup,
                local_address,
                remote_address,
                key.port,
                key.process.clone(),
            ))
            .or_default() += edge.bytes;
    }
    for (spec, series) in [
        (&UPSTREAM_BYTES, &by_labels[0]),
        (&DOWNSTREAM_BYTES, &by_labels[1]),
    ] {
        let mut family = Family::new(spec);
        for ((lh, rh, la, ra, port, process), bytes) in series {
            let port = port.to_string();
            for (direction, value) in [("egress", bytes.tx), ("ingress", bytes.rx)] {
                family.push(
                    &[lh, rh, la, ra, &port, "tcp", process, direction],
                    value as f64,
                );
            }
        }
        out.extend(family.finish());
    }

    let local = snapshot
        .local_ip
        .and_then(|ip| snapshot.inventory.lookup(ip));
    let (local_hostgroup, local_domain) =
        local.map_or(("", ""), |h| (h.hostgroup.as_str(), h.domain.as_str()));
    let mut traffic = Family::new(&TRAFFIC);
    let traffic_rows = if traffic_source {
        &report.traffic[..]
    } else {
        &[]
    };
    for (remote, bytes) in traffic_rows {
        let host = snapshot.inventory.lookup(*remote);
        let (remote_hostgroup, remote_domain) =
            host.map_or(("", ""), |h| (h.hostgroup.as_str(), h.domain.as_str()));
        let remote = remote.to_string();
        for (direction, value) in [("egress", bytes.tx), ("ingress", bytes.rx)] {
            traffic.push(
                &[
                    local_hostgroup,
                    direction,
                    remote_hostgroup,
                    &remote,
                    local_domain,
                    remote_domain,
                ],
                value as f64,
            );
        }
    }
    out.extend(traffic.finish());

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
    out.extend(
        [
            runs.finish(),
            run_seconds.finish(),
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
