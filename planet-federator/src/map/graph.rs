//! The service graph of a time window: stored dependency history
//! ([`crate::history::Edge`]) folded into caller → callee links between
//! services, joined with the traffic measurements, then filtered. Pure.
//!
//! Direction: an upstream edge (`service` → `remote_service`) and a
//! downstream edge seen from the other end (`remote_service` calls
//! `service`) both become the link caller → callee, so one dependency seen
//! by both ends' agents is one link.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use jiff::Timestamp;
use serde::Serialize;
use thiserror::Error;

use crate::{aggregate::Direction, history::Edge, influx::query::Series};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GraphError {
    #[error("service {0:?} has no dependencies in the window (after the bandwidth filter)")]
    UnknownService(String),
}

/// One caller → callee dependency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Link {
    pub from: String,
    pub to: String,
    /// `port/protocol` of the callee, sorted.
    pub ports: Vec<String>,
    /// Bits per second between the two services (see [`bandwidth_from_series`]);
    /// `None` when the traffic job stored nothing for the pair.
    pub bandwidth_bps: Option<f64>,
    pub first_seen: String,
    pub last_seen: String,
    /// `active` when seen within the stale time of the window's end, else `gone`.
    pub status: &'static str,
}

impl Link {
    pub(crate) fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// The services and links of a window, both sorted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct ServiceGraph {
    pub nodes: Vec<String>,
    pub links: Vec<Link>,
}

/// Total bits per second between two services as one side's agents saw
/// it, keyed (service, remote service).
pub(crate) type Bandwidth = BTreeMap<(String, String), f64>;

#[derive(Debug, Default)]
struct Acc {
    ports: BTreeSet<String>,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
}

impl ServiceGraph {
    /// The links seen in `[since, until]` (first seen by `until`, last seen
    /// from `since` on). A link is `active` when last seen within
    /// `stale_after` of `until`.
    pub(crate) fn from_edges(
        edges: &[Edge],
        since: Timestamp,
        until: Timestamp,
        stale_after: jiff::SignedDuration,
    ) -> Self {
        let cutoff = until.checked_sub(stale_after).unwrap_or(Timestamp::MIN);
        let mut merged: BTreeMap<(String, String), Acc> = BTreeMap::new();
        for e in edges {
            if e.first_seen > until || e.last_seen < since {
                continue;
            }
            let k = &e.key;
            let (from, to) = match k.direction {
                Direction::Upstream => (&k.service, &k.remote_service),
                Direction::Downstream => (&k.remote_service, &k.service),
            };
            if from.is_empty() || to.is_empty() {
                continue;
            }
            let acc = merged.entry((from.clone(), to.clone())).or_default();
            let port = match (k.port.as_str(), k.protocol.as_str()) {
                ("", _) => None,
                (p, "") => Some(p.to_owned()),
                (p, proto) => Some(format!("{p}/{proto}")),
            };
            acc.ports.extend(port);
            acc.first = Some(acc.first.map_or(e.first_seen, |f| f.min(e.first_seen)));
            acc.last = Some(acc.last.map_or(e.last_seen, |l| l.max(e.last_seen)));
        }
        let mut nodes = BTreeSet::new();
        let links = merged
            .into_iter()
            .map(|((from, to), acc)| {
                nodes.insert(from.clone());
                nodes.insert(to.clone());
                let last = acc.last.unwrap_or(Timestamp::MIN);
                Link {
                    from,
                    to,
                    ports: sort_ports(acc.ports),
                    bandwidth_bps: None,
                    first_seen: acc.first.unwrap_or(Timestamp::MIN).to_string(),
                    last_seen: last.to_string(),
                    status: if last >= cutoff { "active" } else { "gone" },
                }
            })
            .collect();
        Self {
            nodes: nodes.into_iter().collect(),
            links,
        }
    }

    /// Sets each link's bandwidth: the larger of the two ends' views (each
    /// end's agents see the same bytes; taking one avoids counting twice).
    pub(crate) fn join_bandwidth(&mut self, bandwidth: &Bandwidth) {
        for l in &mut self.links {
            let seen = |a: &str, b: &str| bandwidth.get(&(a.to_owned(), b.to_owned())).copied();
            l.bandwidth_bps = match (seen(&l.from, &l.to), seen(&l.to, &l.from)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }

    /// Keeps the links carrying at least `min_bps` (links without traffic
    /// data carry 0) and the services they join.
    pub(crate) fn min_bandwidth(&mut self, min_bps: f64) {
        if min_bps <= 0.0 {
            return;
        }
        self.links
            .retain(|l| l.bandwidth_bps.unwrap_or(0.0) >= min_bps);
        self.nodes = self
            .links
            .iter()
            .flat_map(|l| [l.from.clone(), l.to.clone()])
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
    }

    /// Keeps `service` and every service within `depth` links of it (either
    /// direction), and the links among them.
    pub(crate) fn neighbourhood(&mut self, service: &str, depth: usize) -> Result<(), GraphError> {
        if self
            .nodes
            .binary_search_by(|n| n.as_str().cmp(service))
            .is_err()
        {
            return Err(GraphError::UnknownService(service.to_owned()));
        }
        let mut adjacent: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for l in &self.links {
            adjacent.entry(&l.from).or_default().push(&l.to);
            adjacent.entry(&l.to).or_default().push(&l.from);
        }
        let mut distance: BTreeMap<&str, usize> = BTreeMap::from([(service, 0)]);
        let mut queue = VecDeque::from([service]);
        while let Some(n) = queue.pop_front() {
            let d = distance[n];
            if d == depth {
                continue;
            }
            for &m in adjacent.get(n).into_iter().flatten() {
                if !distance.contains_key(m) {
                    distance.insert(m, d + 1);
                    queue.push_back(m);
                }
            }
        }
        let keep: BTreeSet<String> = distance.keys().map(|s| (*s).to_owned()).collect();
        self.links
            .retain(|l| keep.contains(&l.from) && keep.contains(&l.to));
        self.nodes.retain(|n| keep.contains(n));
        Ok(())
    }
}

/// Ports numerically where they are numbers.
fn sort_ports(ports: BTreeSet<String>) -> Vec<String> {
    let mut v: Vec<String> = ports.into_iter().collect();
    v.sort_by_key(|p| {
        let (n, rest) = p.split_once('/').unwrap_or((p, ""));
        (
            n.parse::<u32>().unwrap_or(u32::MAX),
            n.to_owned(),
            rest.to_owned(),
        )
    });
    v
}

/// Bandwidth between services from
/// `SELECT mean("bandwidth_bps") FROM "ingress", "egress" ... GROUP BY
/// "service", "remote_service", "address", "remote_address"`: each host
/// pair's mean while the traffic job saw it, summed over host pairs and
/// both directions.
pub(crate) fn bandwidth_from_series(series: &[Series]) -> Bandwidth {
    let mut out = Bandwidth::new();
    for s in series {
        let (Some(service), Some(remote)) = (s.tags.get("service"), s.tags.get("remote_service"))
        else {
            continue;
        };
        let Some(col) = s.column("mean") else {
            continue;
        };
        let total: f64 = s
            .values
            .iter()
            .filter_map(|row| row.get(col).and_then(serde_json::Value::as_f64))
            .filter(|v| v.is_finite())
            .sum();
        *out.entry((service.clone(), remote.clone())).or_default() += total;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::EdgeKey;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn edge(
        dir: Direction,
        service: &str,
        remote: &str,
        port: &str,
        first: i64,
        last: i64,
    ) -> Edge {
        Edge {
            key: EdgeKey {
                direction: dir,
                service: service.into(),
                remote_service: remote.into(),
                port: port.into(),
                protocol: "tcp".into(),
            },
            first_seen: ts(first),
            last_seen: ts(last),
        }
    }

    fn graph() -> ServiceGraph {
        let edges = [
            edge(Direction::Upstream, "web", "db", "5432", 100, 1000),
            // The same dependency seen by db's agent: one link.
            edge(Direction::Downstream, "db", "web", "5432", 50, 990),
            edge(Direction::Upstream, "web", "cache", "6379", 100, 1000),
            edge(Direction::Upstream, "web", "cache", "11211", 100, 400),
            edge(Direction::Downstream, "web", "lb", "443", 100, 1000),
            edge(Direction::Upstream, "batch", "db", "5432", 100, 300),
            // Outside the window.
            edge(Direction::Upstream, "old", "db", "5432", 1, 20),
        ];
        ServiceGraph::from_edges(
            &edges,
            ts(100),
            ts(1000),
            jiff::SignedDuration::from_secs(60),
        )
    }

    #[test]
    fn links_are_caller_to_callee_and_merged() {
        let g = graph();
        assert_eq!(g.nodes, ["batch", "cache", "db", "lb", "web"]);
        let pairs: Vec<(&str, &str)> = g
            .links
            .iter()
            .map(|l| (l.from.as_str(), l.to.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("batch", "db"),
                ("lb", "web"),
                ("web", "cache"),
                ("web", "db")
            ]
        );
        let cache = &g.links[2];
        assert_eq!(cache.ports, ["6379/tcp", "11211/tcp"]);
        let db = &g.links[3];
        assert_eq!(db.ports, ["5432/tcp"]);
        assert_eq!(db.first_seen, ts(50).to_string());
        assert_eq!(db.status, "active");
        assert_eq!(g.links[0].status, "gone");
    }

    #[test]
    fn bandwidth_join_and_filter() {
        let mut g = graph();
        let bw: Bandwidth = [
            (("web".into(), "db".into()), 2_000_000.0),
            (("db".into(), "web".into()), 1_900_000.0),
            (("lb".into(), "web".into()), 500.0),
            (("cache".into(), "web".into()), 80_000.0),
        ]
        .into();
        g.join_bandwidth(&bw);
        let bw_of = |g: &ServiceGraph, f: &str, t: &str| {
            g.links
                .iter()
                .find(|l| l.from == f && l.to == t)
                .and_then(|l| l.bandwidth_bps)
        };
        assert_eq!(bw_of(&g, "web", "db"), Some(2_000_000.0));
        assert_eq!(
            bw_of(&g, "web", "cache"),
            Some(80_000.0),
            "the callee's view"
        );
        assert_eq!(bw_of(&g, "batch", "db"), None);
        g.min_bandwidth(10_000.0);
        assert_eq!(g.nodes, ["cache", "db", "web"]);
        assert_eq!(g.links.len(), 2);
    }

    #[test]
    fn neighbourhood_by_depth() {
        let mut g = graph();
        g.neighbourhood("lb", 1).unwrap();
        assert_eq!(g.nodes, ["lb", "web"]);
        assert_eq!(g.links.len(), 1);
        let mut g = graph();
        g.neighbourhood("lb", 2).unwrap();
        assert_eq!(g.nodes, ["cache", "db", "lb", "web"]);
        let mut g = graph();
        g.neighbourhood("lb", 3).unwrap();
        assert_eq!(g.nodes.len(), 5);
        let mut g = graph();
        assert_eq!(
            g.neighbourhood("nope", 1),
            Err(GraphError::UnknownService("nope".into()))
        );
    }

    #[test]
    fn bandwidth_sums_host_pairs_and_directions() {
        let s = |m: &str, addr: &str, v: f64| Series {
            name: m.into(),
            tags: [
                ("service", "web"),
                ("remote_service", "db"),
                ("remote_address", addr),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            columns: vec!["time".into(), "mean".into()],
            values: vec![vec![0.into(), v.into()]],
        };
        let bw = bandwidth_from_series(&[
            s("ingress", "db-1", 1000.0),
            s("ingress", "db-2", 500.0),
            s("egress", "db-1", 250.0),
        ]);
        assert_eq!(bw[&("web".to_owned(), "db".to_owned())], 1750.0);
    }
}
