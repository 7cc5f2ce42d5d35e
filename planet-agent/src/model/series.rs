//! The byte families' series, kept by the flow task: each drain's
//! credited bytes are named by the inventory of that moment and added to
//! budgeted counters ([`crate::model::cardinality::Book`]), so a scrape renders
//! series that are already named and within budget, and a series never
//! shrinks when one of the addresses behind it goes idle or is folded
//! (each series holds what was credited to it, not a sum recomputed from
//! edges).

use std::{collections::HashMap, net::IpAddr, time::Instant};

use super::ledger::{Direction, Edge, EdgeKey};
use crate::collect::flows::Counts;
use crate::{
    collect::inventory::Inventory,
    model::cardinality::{Book, Budget, Budgeted},
    model::naming::{Dependency, name, shown_local},
};

/// `planet_upstream_bytes_total`, `planet_downstream_bytes_total` (keyed by
/// their labels but `direction`, which are `planet_upstream`'s) and
/// `planet_traffic_bytes_total` (keyed by remote address) as of a drain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesReport {
    pub upstream: Budgeted<Dependency>,
    pub downstream: Budgeted<Dependency>,
    pub traffic: Budgeted<IpAddr>,
}

/// The flow task's byte series.
#[derive(Debug, Default)]
pub struct FlowSeries {
    upstream: Book<Dependency>,
    downstream: Book<Dependency>,
    traffic: Book<IpAddr>,
}

impl FlowSeries {
    /// Credits one drain's changes (see [`super::Ledger::take_changes`]).
    pub fn credit(
        &mut self,
        changes: HashMap<EdgeKey, Counts>,
        inventory: &Inventory,
        local_ip: Option<IpAddr>,
        now: Instant,
    ) {
        // Edges of one drain share few addresses: name each once.
        let mut names: HashMap<IpAddr, (String, String)> = HashMap::new();
        let mut named = |ip: IpAddr| {
            names
                .entry(ip)
                .or_insert_with(|| name(inventory, ip))
                .clone()
        };
        for (key, delta) in changes {
            self.traffic.credit(key.remote, delta, now);
            let (local_address, local_hostgroup) = named(shown_local(key.local, local_ip));
            let (remote_address, remote_hostgroup) = named(key.remote);
            let series = Dependency {
                local_hostgroup,
                remote_hostgroup,
                local_address,
                remote_address,
                port: key.port,
                protocol: "tcp",
                process_name: key.process,
            };
            match key.direction {
                Direction::Upstream => self.upstream.credit(series, delta, now),
                Direction::Downstream => self.downstream.credit(series, delta, now),
            }
        }
    }

    /// Applies the budget and returns the families.
    pub fn settle(&mut self, now: Instant, budget: Budget) -> SeriesReport {
        self.upstream.settle(now, budget);
        self.downstream.settle(now, budget);
        self.traffic.settle(now, budget);
        SeriesReport {
            upstream: self.upstream.report(),
            downstream: self.downstream.report(),
            traffic: self.traffic.report(),
        }
    }
}

impl SeriesReport {
    /// The families of `edges` credited at once, without budget pressure
    /// (tests and benchmarks build snapshots with it).
    pub fn from_edges(edges: &[Edge], inventory: &Inventory, local_ip: Option<IpAddr>) -> Self {
        let now = Instant::now();
        let mut series = FlowSeries::default();
        series.credit(
            edges.iter().map(|e| (e.key.clone(), e.bytes)).collect(),
            inventory,
            local_ip,
            now,
        );
        series.settle(now, Budget::default())
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::collect::inventory::Host;

    fn key(remote: &str, port: u16, process: &str) -> EdgeKey {
        EdgeKey {
            direction: Direction::Upstream,
            local: "127.0.0.1".parse().unwrap(),
            remote: remote.parse().unwrap(),
            port,
            process: Arc::from(process),
        }
    }

    fn db_inventory() -> Inventory {
        Inventory::with_localhost(
            ["10.9.0.2", "10.9.0.3"]
                .into_iter()
                .map(|ip| Host {
                    ip_address: ip.into(),
                    domain: "db.service.consul".into(),
                    hostgroup: "db".into(),
                })
                .collect(),
        )
    }

    #[test]
    fn edges_are_named_when_credited_and_summed_per_series() {
        let edges = [
            Edge {
                key: key("10.9.0.2", 5432, "app"),
                bytes: Counts { tx: 10, rx: 20 },
            },
            Edge {
                key: key("10.9.0.3", 5432, "app"),
                bytes: Counts { tx: 1, rx: 2 },
            },
        ];
        let host = Some("10.0.0.1".parse().unwrap());
        let report = SeriesReport::from_edges(&edges, &db_inventory(), host);
        assert_eq!(report.upstream.series.len(), 1);
        let (series, bytes) = &report.upstream.series[0];
        assert_eq!(series.remote_address, "db.service.consul");
        assert_eq!(
            series.local_address, "10.0.0.1",
            "loopback shown as the host"
        );
        assert_eq!(*bytes, Counts { tx: 11, rx: 22 });
        assert_eq!(report.traffic.series.len(), 2, "traffic stays per address");
        assert!(report.downstream.series.is_empty());
    }

    #[test]
    fn a_named_series_does_not_shrink_when_one_address_goes_idle() {
        let inventory = db_inventory();
        let mut series = FlowSeries::default();
        let budget = Budget {
            max_series: 100,
            retention: Duration::from_secs(60),
        };
        let t0 = Instant::now();
        let changes =
            |remote: &str, tx| HashMap::from([(key(remote, 5432, "app"), Counts { tx, rx: 0 })]);
        series.credit(changes("10.9.0.2", 100), &inventory, None, t0);
        series.settle(t0, budget);
        // Only the other replica talks from now on; the first goes idle.
        for s in 1..=20 {
            let now = t0 + Duration::from_secs(s * 7);
            series.credit(changes("10.9.0.3", 1), &inventory, None, now);
            let report = series.settle(now, budget);
            assert_eq!(report.upstream.series[0].1.tx, 100 + s, "step {s}");
        }
    }
}
