//! `/api/v1/dependencies`: the snapshot's dependencies as JSON, for the
//! agent page and for tools. The schema is documented in `docs/api.md`;
//! a unit test pins it.
//!
//! Edges are exactly `planet_upstream` / `planet_downstream` (the same
//! [`crate::model::dependencies::build`] output, in the same order). Each edge's
//! bytes per second are the flow task's per-edge rates
//! ([`crate::flow::rate`], computed once per drain from two drains'
//! cumulative counters) summed over the flows that share the edge's
//! de-duplication key ([`PeerPort`]: peer names and service port). Pure:
//! built from a [`Snapshot`], no kernel walk.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{
    collect::ProbeState,
    model::Snapshot,
    model::dependencies::{Dependency, PeerPort, name},
    model::{ledger::Direction, rate::Rate},
};

/// Bumped on any incompatible change of [`Dependencies`].
pub const SCHEMA_VERSION: u32 = 1;

/// The document `/api/v1/dependencies` serves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dependencies {
    pub schema_version: u32,
    /// Changes whenever the agent publishes a new snapshot.
    pub snapshot: u64,
    pub host: HostInfo,
    pub rates: RateStatus,
    /// Services this host connects to (`planet_upstream`).
    pub upstream: Vec<Edge>,
    /// Clients that connect to this host (`planet_downstream`).
    pub downstream: Vec<Edge>,
    /// Listening sockets (`planet_server_process`).
    pub listeners: Vec<Listener>,
}

/// This host, named by the inventory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    /// The kernel hostname; empty if it cannot be read.
    pub hostname: String,
    /// The host's IP (routing table or `-local-address`); `null` until known.
    pub ip: Option<String>,
    /// The inventory domain of `ip`, else `ip`; empty while `ip` is unknown.
    pub address: String,
    /// The inventory hostgroup of `ip`; may be empty.
    pub hostgroup: String,
}

/// Whether edges carry byte rates, and over which interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateStatus {
    pub available: bool,
    /// Seconds between the two flow drains the rates come from.
    pub window_seconds: Option<f64>,
    /// Why rates are unavailable; `null` when they are available.
    pub reason: Option<String>,
}

/// One dependency: the labels of its `planet_upstream` / `planet_downstream`
/// series and its current bytes per second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub remote_address: String,
    pub remote_hostgroup: String,
    pub local_address: String,
    pub local_hostgroup: String,
    /// The service port: the remote port upstream, the local port downstream.
    pub port: u16,
    pub protocol: String,
    pub process_name: String,
    /// `null` when [`RateStatus::available`] is false.
    pub bytes_per_second: Option<ByteRate>,
}

/// Bytes per second each way, seen from this host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ByteRate {
    /// Sent by this host.
    pub egress: f64,
    /// Received by this host.
    pub ingress: f64,
}

/// A listening socket and its process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Listener {
    /// `ip:port` without IPv6 brackets, as `planet_server_process` has it.
    pub bind: String,
    pub port: u16,
    pub process_name: String,
}

/// Builds the document from `snapshot` (published as `version`);
/// `hostname` is the kernel hostname.
pub fn dependencies(snapshot: &Snapshot, version: u64, hostname: String) -> Dependencies {
    let (address, hostgroup) = match snapshot.local_ip {
        Some(ip) => name(&snapshot.inventory, ip),
        None => (String::new(), String::new()),
    };
    let rates = rate_status(snapshot);
    let by_key = rates.available.then(|| rates_by_key(snapshot));
    let edges = |list: &[Dependency], direction| -> Vec<Edge> {
        list.iter()
            .map(|d| Edge {
                remote_address: d.remote_address.clone(),
                remote_hostgroup: d.remote_hostgroup.clone(),
                local_address: d.local_address.clone(),
                local_hostgroup: d.local_hostgroup.clone(),
                port: d.port,
                protocol: d.protocol.to_owned(),
                process_name: d.process_name.to_string(),
                bytes_per_second: by_key.as_ref().map(|by_key| {
                    by_key
                        .get(&(direction, d.peer_port()))
                        .copied()
                        .unwrap_or_default()
                }),
            })
            .collect()
    };
    let deps = &snapshot.dependencies;
    Dependencies {
        schema_version: SCHEMA_VERSION,
        snapshot: version,
        host: HostInfo {
            hostname,
            ip: snapshot.local_ip.map(|ip| ip.to_string()),
            address,
            hostgroup,
        },
        upstream: edges(&deps.upstream, Direction::Upstream),
        downstream: edges(&deps.downstream, Direction::Downstream),
        listeners: deps
            .servers
            .iter()
            .map(|s| Listener {
                bind: s.bind.clone(),
                port: s.port,
                process_name: s.process_name.to_string(),
            })
            .collect(),
        rates,
    }
}

fn rate_status(snapshot: &Snapshot) -> RateStatus {
    let unavailable = |reason: String| RateStatus {
        available: false,
        window_seconds: None,
        reason: Some(reason),
    };
    match (&snapshot.probe, &snapshot.flows.rates) {
        (ProbeState::Attached { .. }, Some(rates)) => RateStatus {
            available: true,
            window_seconds: Some(rates.window.as_secs_f64()),
            reason: None,
        },
        (ProbeState::Attached { .. }, None) => {
            unavailable("waiting for the flow task's second drain".into())
        }
        (ProbeState::Disabled, _) => unavailable("the flow task is disabled".into()),
        (ProbeState::Failed { reason }, _) => {
            unavailable(format!("the flow task cannot run: {reason}"))
        }
    }
}

/// Flow rates summed per direction and de-duplication key.
fn rates_by_key(snapshot: &Snapshot) -> HashMap<(Direction, PeerPort), ByteRate> {
    let mut by_key: HashMap<(Direction, PeerPort), ByteRate> = HashMap::new();
    let Some(rates) = &snapshot.flows.rates else {
        return by_key;
    };
    for (key, Rate { tx, rx }) in &rates.edges {
        let sum = by_key
            .entry((
                key.direction,
                PeerPort::of(&snapshot.inventory, key.remote, key.port),
            ))
            .or_default();
        sum.egress += tx;
        sum.ingress += rx;
    }
    by_key
}

#[cfg(test)]
mod tests {
    use std::{net::IpAddr, sync::Arc, time::Duration};

    use super::*;
    use crate::{
        collect::ebpf::ProbeMode,
        collect::inventory::{Host, Inventory},
        model::dependencies::{self, ServerProcess},
        model::snapshot::FlowReport,
        model::{ledger::EdgeKey, rate::Rates},
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn dep(remote: &str, hostgroup: &str, port: u16, process: &str) -> Dependency {
        Dependency {
            local_hostgroup: "web".into(),
            remote_hostgroup: hostgroup.into(),
            local_address: "web.planet.test".into(),
            remote_address: remote.into(),
            port,
            protocol: "tcp",
            process_name: Arc::from(process),
        }
    }

    fn rate(
        direction: Direction,
        remote: &str,
        port: u16,
        process: &str,
        tx: f64,
    ) -> (EdgeKey, Rate) {
        (
            EdgeKey {
                direction,
                local: ip("10.0.0.1"),
                remote: ip(remote),
                port,
                process: Arc::from(process),
            },
            Rate { tx, rx: tx / 2.0 },
        )
    }

    fn snapshot() -> Snapshot {
        let inventory = Inventory::with_localhost(vec![
            Host {
                ip_address: "10.0.0.1".into(),
                domain: "web.planet.test".into(),
                hostgroup: "web".into(),
            },
            Host {
                ip_address: "10.0.0.7".into(),
                domain: "db.planet.test".into(),
                hostgroup: "db".into(),
            },
        ]);
        let mut rates = vec![
            // Two processes and two local addresses on one upstream edge: summed.
            rate(Direction::Upstream, "10.0.0.7", 5432, "app", 100.0),
            rate(Direction::Upstream, "10.0.0.7", 5432, "worker", 300.0),
            // Same peer and port, the other direction: a different edge.
            rate(Direction::Downstream, "10.0.0.7", 5432, "app", 1.0),
            rate(Direction::Downstream, "10.0.0.9", 80, "nginx", 8.0),
        ];
        rates.sort_by(|a, b| a.0.cmp(&b.0));
        Snapshot {
            flows: Arc::new(FlowReport {
                rates: Some(Rates {
                    window: Duration::from_millis(1500),
                    edges: rates,
                }),
                ..Default::default()
            }),
            probe: ProbeState::Attached {
                mode: ProbeMode::Tracepoint,
                rejected: vec![],
            },
            inventory: Arc::new(inventory),
            dependencies: Arc::new(dependencies::Dependencies {
                upstream: vec![dep("db.planet.test", "db", 5432, "app")],
                downstream: vec![
                    dep("10.0.0.9", "", 80, "nginx"),
                    dep("10.0.0.10", "", 80, "nginx"),
                ],
                servers: vec![ServerProcess {
                    bind: "0.0.0.0:80".into(),
                    port: 80,
                    process_name: Arc::from("nginx"),
                }],
                ..Default::default()
            }),
            local_ip: Some(ip("10.0.0.1")),
            ..Default::default()
        }
    }

    /// The documented schema (docs/api.md), field for field.
    #[test]
    fn schema_is_pinned() {
        let doc = dependencies(&snapshot(), 42, "web-1".into());
        let json = serde_json::to_value(&doc).unwrap();
        let edge = |remote: &str, hostgroup: &str, port: u16, process: &str, egress: f64| {
            serde_json::json!({
                "remote_address": remote,
                "remote_hostgroup": hostgroup,
                "local_address": "web.planet.test",
                "local_hostgroup": "web",
                "port": port,
                "protocol": "tcp",
                "process_name": process,
                "bytes_per_second": {"egress": egress, "ingress": egress / 2.0},
            })
        };
        assert_eq!(
            json,
            serde_json::json!({
                "schema_version": 1,
                "snapshot": 42,
                "host": {
                    "hostname": "web-1",
                    "ip": "10.0.0.1",
                    "address": "web.planet.test",
                    "hostgroup": "web",
                },
                "rates": {"available": true, "window_seconds": 1.5, "reason": null},
                "upstream": [edge("db.planet.test", "db", 5432, "app", 400.0)],
                "downstream": [
                    edge("10.0.0.9", "", 80, "nginx", 8.0),
                    edge("10.0.0.10", "", 80, "nginx", 0.0),
                ],
                "listeners": [{"bind": "0.0.0.0:80", "port": 80, "process_name": "nginx"}],
            })
        );
        let back: Dependencies = serde_json::from_value(json).unwrap();
        assert_eq!(back, doc, "the document round-trips");
    }

    #[test]
    fn without_flow_rates_edges_have_null_rates_and_a_reason() {
        let mut snap = snapshot();
        snap.probe = ProbeState::Failed {
            reason: "no BTF".into(),
        };
        let doc = dependencies(&snap, 1, String::new());
        assert_eq!(
            doc.rates,
            RateStatus {
                available: false,
                window_seconds: None,
                reason: Some("the flow task cannot run: no BTF".into()),
            }
        );
        assert!(
            doc.upstream
                .iter()
                .chain(&doc.downstream)
                .all(|e| e.bytes_per_second.is_none())
        );

        snap.probe = ProbeState::Attached {
            mode: ProbeMode::Tracepoint,
            rejected: vec![],
        };
        snap.flows = Arc::new(FlowReport::default());
        let doc = dependencies(&snap, 1, String::new());
        assert!(!doc.rates.available);
        assert_eq!(doc.upstream.len(), 1, "edges are shown without rates");
    }

    #[test]
    fn an_unknown_host_address_is_empty() {
        let doc = dependencies(&Snapshot::default(), 0, "h".into());
        assert_eq!(
            doc.host,
            HostInfo {
                hostname: "h".into(),
                ip: None,
                address: String::new(),
                hostgroup: String::new(),
            }
        );
        assert_eq!(
            doc.rates.reason.as_deref(),
            Some("the flow task is disabled")
        );
    }
}
