//! Upstream and downstream dependencies of this host, as planet-exporter
//! names them (`planet_upstream`, `planet_downstream`,
//! `planet_server_process`), from the socket table, the flow task's view
//! of connections and the inventory. Pure: no I/O.
//!
//! The rules are planet-exporter's (upstream-spec §2.3), with these
//! improvements:
//! - direction comes from who opened the connection when the eBPF
//!   programs saw it open; the listening-port rule is only the fallback for
//!   sockets that predate the agent;
//! - connections the flow task saw that are no longer in the socket table
//!   (opened and closed between two collections) still count;
//! - a connection without a process takes the flow task's owner, and a
//!   downstream still without one takes its listener's name.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Instant,
};

use planet_common::Origin;

pub use super::naming::{Dependency, PeerPort, name, shown_local};
use super::{
    cardinality::{Budget, FoldStatus, FoldTracker, OTHER, split_heaviest},
    series::SeriesReport,
};
use crate::collect::{
    inventory::Inventory,
    socket_table::{Listener, SocketTable},
};

/// A connection the flow collector saw during its recent drains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedConnection {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub origin: Origin,
    pub process: Arc<str>,
}

/// At most this many closed connections stay visible as edges; the oldest
/// beyond it are forgotten (they only add edges, never bytes).
const RECENTLY_CLOSED_CAPACITY: usize = 65_536;

/// Closed connections kept visible as edges for a retention window, so a
/// connection that lived for milliseconds is still on `/metrics` when
/// Prometheus next scrapes (the original showed such connections only
/// while their TIME_WAIT socket lasted, about a minute, and only on the
/// side that closed first).
#[derive(Debug)]
pub struct RecentlyClosed {
    retention: std::time::Duration,
    by_tuple: HashMap<(SocketAddr, SocketAddr), (std::time::Instant, ObservedConnection)>,
}

impl RecentlyClosed {
    pub fn new(retention: std::time::Duration) -> Self {
        Self {
            retention,
            by_tuple: HashMap::new(),
        }
    }

    /// Adds connections that closed at `now`, forgets expired ones, and
    /// returns those still within the window.
    pub fn update(
        &mut self,
        now: std::time::Instant,
        closed: impl IntoIterator<Item = ObservedConnection>,
    ) -> Vec<ObservedConnection> {
        self.record(now, closed);
        self.by_tuple.values().map(|(_, c)| c.clone()).collect()
    }

    /// Adds connections that closed at `now` and forgets expired ones.
    pub fn record(
        &mut self,
        now: std::time::Instant,
        closed: impl IntoIterator<Item = ObservedConnection>,
    ) {
        for c in closed {
            self.by_tuple.insert((c.local, c.remote), (now, c));
        }
        let retention = self.retention;
        self.by_tuple
            .retain(|_, (at, _)| now.saturating_duration_since(*at) <= retention);
        if self.by_tuple.len() > RECENTLY_CLOSED_CAPACITY {
            // Keep the newest; an edge storm must not grow memory unbounded.
            let mut ages: Vec<std::time::Instant> =
                self.by_tuple.values().map(|(at, _)| *at).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() - RECENTLY_CLOSED_CAPACITY];
            self.by_tuple.retain(|_, (at, _)| *at >= cutoff);
        }
    }
}

/// One `planet_server_process` series (without `local_hostgroup`, which is
/// looked up when rendering).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerProcess {
    /// `ip:port` without IPv6 brackets, as planet-exporter prints it.
    pub bind: String,
    pub port: u16,
    pub process_name: Arc<str>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dependencies {
    pub upstream: Vec<Dependency>,
    pub downstream: Vec<Dependency>,
    pub servers: Vec<ServerProcess>,
    /// Series of `upstream` folded by the cardinality budget.
    pub upstream_folds: FoldStatus,
    /// Series of `downstream` folded by the cardinality budget.
    pub downstream_folds: FoldStatus,
}

/// `bind` as planet-exporter formats it: no brackets around IPv6.
pub fn bind_label(addr: SocketAddr) -> String {
    format!("{}:{}", addr.ip(), addr.port())
}

/// The budget of `planet_upstream` and `planet_downstream`, which are
/// rebuilt on every collection: the dependencies that moved the most bytes
/// (per [`SeriesReport`]) are kept, the rest become one dependency whose
/// remote labels and process are [`OTHER`] and port 0.
#[derive(Clone, Debug, Default)]
pub struct DependencyBudget {
    upstream: FoldTracker,
    downstream: FoldTracker,
}

impl DependencyBudget {
    pub fn apply(
        &mut self,
        deps: &mut Dependencies,
        bytes: &SeriesReport,
        budget: Budget,
        inventory: &Inventory,
        local_ip: Option<IpAddr>,
        now: Instant,
    ) {
        let local = local_ip.map(|ip| name(inventory, ip)).unwrap_or_default();
        for (list, bytes, tracker, status) in [
            (
                &mut deps.upstream,
                &bytes.upstream,
                &mut self.upstream,
                &mut deps.upstream_folds,
            ),
            (
                &mut deps.downstream,
                &bytes.downstream,
                &mut self.downstream,
                &mut deps.downstream_folds,
            ),
        ] {
            tracker.expire(now, budget.retention);
            if list.len() > budget.max_series {
                let mut weights: HashMap<(&str, &str, u16), u64> = HashMap::new();
                for (series, counts) in &bytes.series {
                    let weight = weights
                        .entry((
                            &series.remote_hostgroup,
                            &series.remote_address,
                            series.port,
                        ))
                        .or_default();
                    *weight = weight.saturating_add(counts.tx.saturating_add(counts.rx));
                }
                let weight = |d: &Dependency| {
                    weights
                        .get(&(
                            d.remote_hostgroup.as_str(),
                            d.remote_address.as_str(),
                            d.port,
                        ))
                        .copied()
                        .unwrap_or(0)
                };
                let (mut kept, folded) = split_heaviest(
                    std::mem::take(list),
                    budget.max_series - 1,
                    weight,
                    Dependency::cmp,
                );
                for dependency in &folded {
                    tracker.record(dependency, now);
                }
                kept.push(Dependency {
                    local_hostgroup: local.1.clone(),
                    remote_hostgroup: OTHER.to_owned(),
                    local_address: local.0.clone(),
                    remote_address: OTHER.to_owned(),
                    port: 0,
                    protocol: "tcp",
                    process_name: std::sync::Arc::from(OTHER),
                });
                kept.sort_unstable();
                *list = kept;
            }
            *status = tracker.status();
        }
    }
}

/// For a socket nobody listens on any more (a TIME_WAIT left after its
/// listener closed): the peer's port is ephemeral and ours is not, so the
/// peer connected to us. Without this rule planet-exporter reported such
/// sockets as upstreams on the client's ephemeral port.
fn accepted_by_ports(
    local: u16,
    remote: u16,
    ephemeral: Option<&std::ops::RangeInclusive<u16>>,
) -> bool {
    ephemeral.is_some_and(|range| range.contains(&remote) && !range.contains(&local))
}

/// Builds the dependency lists.
///
/// `local_ip` is the host's own address; a local `127.0.0.1` is shown as
/// it (planet-exporter's loopback rewrite).
pub fn build(
    table: &SocketTable,
    observed: &[ObservedConnection],
    inventory: &Inventory,
    local_ip: Option<IpAddr>,
) -> Dependencies {
    // Listening port -> listener; IPv6 listeners override IPv4 ones on the
    // same port, as in the original (the table lists IPv4 first).
    let mut listening: HashMap<u16, &Listener> = HashMap::new();
    for l in &table.listeners {
        listening.insert(l.addr.port(), l);
    }
    let observed_by_tuple: HashMap<(SocketAddr, SocketAddr), &ObservedConnection> =
        observed.iter().map(|o| ((o.local, o.remote), o)).collect();

    // Every connection once: the socket table's, then observed-only ones.
    let mut connections: Vec<(SocketAddr, SocketAddr, Arc<str>, Origin)> = table
        .connections
        .iter()
        .map(|c| {
            let seen = observed_by_tuple.get(&(c.local, c.remote));
            let origin = seen.map_or(Origin::Unknown, |o| o.origin);
            let process = if c.process.is_empty() {
                seen.map_or_else(|| c.process.clone(), |o| o.process.clone())
            } else {
                c.process.clone()
            };
            (c.local, c.remote, process, origin)
        })
        .collect();
    let in_table: HashSet<(SocketAddr, SocketAddr)> = table
        .connections
        .iter()
        .map(|c| (c.local, c.remote))
        .collect();
    connections.extend(
        observed
            .iter()
            .filter(|o| !in_table.contains(&(o.local, o.remote)))
            .map(|o| (o.local, o.remote, o.process.clone(), o.origin)),
    );
    // Deterministic "first socket wins" for the de-duplication below.
    connections.sort_unstable_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));

    let mut deps = Dependencies::default();
    let mut seen_up = HashSet::new();
    let mut seen_down = HashSet::new();
    for (local, remote, process, origin) in connections {
        let (local_address, local_hostgroup) = name(inventory, shown_local(local.ip(), local_ip));
        let downstream = match origin {
            Origin::Accepted => true,
            Origin::Connected => false,
            Origin::Unknown => {
                listening.contains_key(&local.port())
                    || accepted_by_ports(
                        local.port(),
                        remote.port(),
                        table.ephemeral_ports.as_ref(),
                    )
            }
        };
        let port = if downstream {
            local.port()
        } else {
            remote.port()
        };
        let key = PeerPort::of(inventory, remote.ip(), port);
        let PeerPort {
            remote_hostgroup,
            remote_address,
            ..
        } = key.clone();
        if downstream {
            if !seen_down.insert(key) {
                continue;
            }
            let process_name = if process.is_empty() {
                listening.get(&port).map_or(process, |l| l.process.clone())
            } else {
                process
            };
            deps.downstream.push(Dependency {
                local_hostgroup,
                remote_hostgroup,
                local_address,
                remote_address,
                port,
                protocol: "tcp",
                process_name,
            });
        } else {
            if remote_address == "localhost" || !seen_up.insert(key) {
                continue;
            }
            deps.upstream.push(Dependency {
                local_hostgroup,
                remote_hostgroup,
                local_address,
                remote_address,
                port,
                protocol: "tcp",
                process_name: process,
            });
        }
    }
    let mut servers: Vec<ServerProcess> = table
        .listeners
        .iter()
        .map(|l| ServerProcess {
            bind: bind_label(l.addr),
            port: l.addr.port(),
            process_name: l.process.clone(),
        })
        .collect();
    servers.sort_unstable();
    servers.dedup();
    deps.servers = servers;
    deps.upstream.sort_unstable();
    deps.downstream.sort_unstable();
    deps
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::collect::flows::Counts;
    use crate::{
        collect::inventory::Host,
        collect::socket_table::{Connection, TcpState},
    };

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn listener(addr: &str, process: &str) -> Listener {
        Listener {
            addr: sa(addr),
            process: Arc::from(process),
        }
    }

    fn conn(local: &str, remote: &str, state: TcpState, process: &str) -> Connection {
        Connection {
            local: sa(local),
            remote: sa(remote),
            state,
            process: Arc::from(process),
        }
    }

    fn inventory(hosts: &[(&str, &str, &str)]) -> Inventory {
        Inventory::with_localhost(
            hosts
                .iter()
                .map(|(ip, domain, hostgroup)| Host {
                    ip_address: (*ip).into(),
                    domain: (*domain).into(),
                    hostgroup: (*hostgroup).into(),
                })
                .collect(),
        )
    }

    fn host() -> Option<IpAddr> {
        Some("10.0.0.1".parse().unwrap())
    }

    #[test]
    fn listening_port_rule_for_sockets_that_predate_the_agent() {
        let table = SocketTable {
            listeners: vec![listener("0.0.0.0:22", "sshd")],
            connections: vec![
                conn(
                    "10.0.0.1:22",
                    "10.0.0.9:50000",
                    TcpState::Established,
                    "sshd",
                ),
                conn(
                    "10.0.0.1:41000",
                    "10.0.0.7:5432",
                    TcpState::Established,
                    "app",
                ),
            ],
            ephemeral_ports: None,
        };
        let deps = build(&table, &[], &Inventory::default(), host());
        assert_eq!(deps.downstream.len(), 1);
        let d = &deps.downstream[0];
        assert_eq!(
            (d.port, &*d.process_name, d.remote_address.as_str()),
            (22, "sshd", "10.0.0.9")
        );
        assert_eq!(deps.upstream.len(), 1);
        let u = &deps.upstream[0];
        assert_eq!(
            (u.port, &*u.process_name, u.remote_address.as_str()),
            (5432, "app", "10.0.0.7")
        );
        assert_eq!(u.protocol, "tcp");
    }

    #[test]
    fn listener_gone_ephemeral_peer_is_a_downstream() {
        let table = SocketTable {
            listeners: vec![],
            connections: vec![
                conn("10.0.0.1:8080", "10.0.0.9:50000", TcpState::TimeWait, ""),
                conn("10.0.0.1:41000", "10.0.0.7:5432", TcpState::TimeWait, ""),
                // Both ports ephemeral: ambiguous, the original's rule stands.
                conn("10.0.0.1:40000", "10.0.0.8:45000", TcpState::TimeWait, ""),
            ],
            ephemeral_ports: Some(32768..=60999),
        };
        let deps = build(&table, &[], &Inventory::default(), host());
        let down: Vec<u16> = deps.downstream.iter().map(|d| d.port).collect();
        let mut up: Vec<u16> = deps.upstream.iter().map(|d| d.port).collect();
        up.sort_unstable();
        assert_eq!(down, vec![8080]);
        assert_eq!(up, vec![5432, 45000]);
    }

    #[test]
    fn ebpf_origin_beats_the_listening_port_rule() {
        // An outgoing connection that happens to use a local port someone
        // listens on: the original called it a downstream.
        let table = SocketTable {
            listeners: vec![listener("0.0.0.0:8080", "web")],
            connections: vec![conn(
                "10.0.0.1:8080",
                "10.0.0.7:443",
                TcpState::Established,
                "curl",
            )],
            ephemeral_ports: None,
        };
        let observed = [ObservedConnection {
            local: sa("10.0.0.1:8080"),
            remote: sa("10.0.0.7:443"),
            origin: Origin::Connected,
            process: Arc::from("curl"),
        }];
        let deps = build(&table, &observed, &Inventory::default(), host());
        assert!(deps.downstream.is_empty());
        assert_eq!(deps.upstream[0].port, 443);
    }

    #[test]
    fn connections_closed_between_collections_still_count() {
        let observed = [ObservedConnection {
            local: sa("10.0.0.1:40000"),
            remote: sa("10.0.0.5:6379"),
            origin: Origin::Connected,
            process: Arc::from("worker"),
        }];
        let deps = build(
            &SocketTable::default(),
            &observed,
            &Inventory::default(),
            host(),
        );
        assert_eq!(deps.upstream.len(), 1);
        assert_eq!(&*deps.upstream[0].process_name, "worker");
    }

    #[test]
    fn closed_connections_stay_visible_for_the_retention_window() {
        use std::time::{Duration, Instant};
        let conn = |port| ObservedConnection {
            local: sa("10.0.0.1:40000"),
            remote: SocketAddr::new("10.0.0.5".parse().unwrap(), port),
            origin: Origin::Connected,
            process: Arc::from("worker"),
        };
        let mut recent = RecentlyClosed::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(recent.update(t0, [conn(1)]).len(), 1);
        assert_eq!(
            recent.update(t0 + Duration::from_secs(30), [conn(2)]).len(),
            2
        );
        let later = recent.update(t0 + Duration::from_secs(61), []);
        assert_eq!(
            later,
            vec![conn(2)],
            "the first expired, the second is kept"
        );
    }

    #[test]
    fn time_wait_downstream_takes_the_listener_name() {
        let table = SocketTable {
            listeners: vec![listener("[::]:80", "nginx")],
            connections: vec![conn("10.0.0.1:80", "10.0.0.9:1234", TcpState::TimeWait, "")],
            ephemeral_ports: None,
        };
        let deps = build(&table, &[], &Inventory::default(), host());
        assert_eq!(&*deps.downstream[0].process_name, "nginx");
    }

    #[test]
    fn upstream_without_process_takes_the_flow_owner() {
        let table = SocketTable {
            listeners: vec![],
            connections: vec![conn(
                "10.0.0.1:40000",
                "10.0.0.5:53",
                TcpState::Established,
                "",
            )],
            ephemeral_ports: None,
        };
        let observed = [ObservedConnection {
            local: sa("10.0.0.1:40000"),
            remote: sa("10.0.0.5:53"),
            origin: Origin::Unknown,
            process: Arc::from("resolver"),
        }];
        let deps = build(&table, &observed, &Inventory::default(), host());
        assert_eq!(&*deps.upstream[0].process_name, "resolver");
    }

    #[test]
    fn inventory_names_and_localhost_rules() {
        let inv = inventory(&[
            ("10.0.0.1", "me.service.consul", "me"),
            ("10.0.0.7", "db.service.consul", "db"),
            ("10.2.0.0/16", "", "net-xyz"),
        ]);
        let table = SocketTable {
            listeners: vec![listener("127.0.0.1:8500", "consul")],
            connections: vec![
                // Client side of a loopback connection: dropped (remote is "localhost").
                conn(
                    "127.0.0.1:50000",
                    "127.0.0.1:8500",
                    TcpState::Established,
                    "tmpl",
                ),
                // Server side: downstream from "localhost", local rewritten to the host.
                conn(
                    "127.0.0.1:8500",
                    "127.0.0.1:50000",
                    TcpState::Established,
                    "consul",
                ),
                conn(
                    "10.0.0.1:41000",
                    "10.0.0.7:5432",
                    TcpState::Established,
                    "app",
                ),
                conn(
                    "10.0.0.1:41001",
                    "10.2.3.4:443",
                    TcpState::Established,
                    "app",
                ),
            ],
            ephemeral_ports: None,
        };
        let deps = build(&table, &[], &inv, host());
        assert_eq!(deps.downstream.len(), 1);
        let d = &deps.downstream[0];
        assert_eq!(d.remote_address, "localhost");
        assert_eq!(d.remote_hostgroup, "localhost");
        assert_eq!(d.local_address, "me.service.consul");
        assert_eq!(d.local_hostgroup, "me");
        assert_eq!(d.port, 8500);
        let mut remotes: Vec<(&str, &str)> = deps
            .upstream
            .iter()
            .map(|u| (u.remote_address.as_str(), u.remote_hostgroup.as_str()))
            .collect();
        remotes.sort_unstable();
        assert_eq!(
            remotes,
            vec![("10.2.3.4", "net-xyz"), ("db.service.consul", "db")]
        );
    }

    #[test]
    fn loopback_upstreams_are_kept_without_inventory() {
        let table = SocketTable {
            listeners: vec![],
            connections: vec![conn(
                "127.0.0.1:50000",
                "127.0.0.1:9000",
                TcpState::Established,
                "c",
            )],
            ephemeral_ports: None,
        };
        let deps = build(&table, &[], &Inventory::default(), host());
        assert_eq!(deps.upstream[0].remote_address, "127.0.0.1");
        assert_eq!(deps.upstream[0].local_address, "10.0.0.1");
    }

    #[test]
    fn duplicates_collapse_on_the_original_keys() {
        let inv = inventory(&[("10.0.0.7", "db", "db"), ("10.0.0.8", "db", "db")]);
        let table = SocketTable {
            listeners: vec![],
            connections: vec![
                conn(
                    "10.0.0.1:41000",
                    "10.0.0.7:5432",
                    TcpState::Established,
                    "app",
                ),
                conn(
                    "10.0.0.1:41001",
                    "10.0.0.8:5432",
                    TcpState::Established,
                    "app",
                ),
                conn(
                    "10.0.0.1:41002",
                    "10.0.0.7:5432",
                    TcpState::Established,
                    "other",
                ),
            ],
            ephemeral_ports: None,
        };
        let deps = build(&table, &[], &inv, host());
        assert_eq!(deps.upstream.len(), 1);
        assert_eq!(&*deps.upstream[0].process_name, "app");
    }

    #[test]
    fn server_processes_bind_without_brackets() {
        let table = SocketTable {
            listeners: vec![
                listener("0.0.0.0:22", "sshd"),
                listener("[::]:22", "sshd"),
                listener("[::1]:631", "cupsd"),
            ],
            connections: vec![],
            ephemeral_ports: None,
        };
        let deps = build(&table, &[], &Inventory::default(), host());
        let mut binds: Vec<&str> = deps.servers.iter().map(|s| s.bind.as_str()).collect();
        binds.sort_unstable();
        assert_eq!(binds, vec!["0.0.0.0:22", "::1:631", ":::22"]);
    }

    #[test]
    fn ipv6_connections() {
        let table = SocketTable {
            listeners: vec![listener("[::]:443", "envoy")],
            connections: vec![conn(
                "[fd00::1]:443",
                "[fd00::9]:50000",
                TcpState::Established,
                "envoy",
            )],
            ephemeral_ports: None,
        };
        let deps = build(&table, &[], &Inventory::default(), host());
        assert_eq!(deps.downstream[0].remote_address, "fd00::9");
        assert_eq!(deps.downstream[0].local_address, "fd00::1");
    }

    #[test]
    fn dependencies_over_budget_keep_the_busiest() {
        use std::sync::Arc;
        let dep = |remote: &str, port| Dependency {
            local_hostgroup: "me".into(),
            remote_hostgroup: String::new(),
            local_address: "10.0.0.1".into(),
            remote_address: remote.into(),
            port,
            protocol: "tcp",
            process_name: Arc::from("app"),
        };
        let mut deps = Dependencies {
            upstream: (1..=5).map(|i| dep(&format!("10.1.0.{i}"), 443)).collect(),
            downstream: vec![dep("10.2.0.1", 22)],
            ..Default::default()
        };
        let mut bytes = SeriesReport::default();
        // 10.1.0.2 and 10.1.0.4 moved bytes; the others none.
        for (i, b) in [(2, 500), (4, 100)] {
            bytes
                .upstream
                .series
                .push((dep(&format!("10.1.0.{i}"), 443), Counts { tx: b, rx: b }));
        }
        let budget = Budget {
            max_series: 3,
            retention: Duration::from_secs(60),
        };
        let mut state = DependencyBudget::default();
        let now = Instant::now();
        state.apply(
            &mut deps,
            &bytes,
            budget,
            &Inventory::default(),
            Some("10.0.0.1".parse().unwrap()),
            now,
        );
        let mut remotes: Vec<&str> = deps
            .upstream
            .iter()
            .map(|d| d.remote_address.as_str())
            .collect();
        remotes.sort_unstable();
        assert_eq!(remotes, vec!["10.1.0.2", "10.1.0.4", OTHER]);
        let other = deps
            .upstream
            .iter()
            .find(|d| d.remote_address == OTHER)
            .unwrap();
        assert_eq!(
            (
                other.port,
                &*other.process_name,
                other.local_address.as_str()
            ),
            (0, OTHER, "10.0.0.1")
        );
        assert_eq!(
            deps.upstream_folds,
            FoldStatus {
                total: 3,
                current: 3
            }
        );
        assert_eq!(deps.downstream.len(), 1, "within budget: untouched");
        assert_eq!(deps.downstream_folds, FoldStatus::default());
        // The same dependencies folded again are not new folds; after the
        // window they are forgotten.
        let mut again = Dependencies {
            upstream: (1..=5).map(|i| dep(&format!("10.1.0.{i}"), 443)).collect(),
            ..Default::default()
        };
        state.apply(&mut again, &bytes, budget, &Inventory::default(), None, now);
        assert_eq!(
            again.upstream_folds,
            FoldStatus {
                total: 3,
                current: 3
            }
        );
        let mut later = Dependencies::default();
        state.apply(
            &mut later,
            &bytes,
            budget,
            &Inventory::default(),
            None,
            now + Duration::from_secs(61),
        );
        assert_eq!(
            later.upstream_folds,
            FoldStatus {
                total: 3,
                current: 0
            }
        );
    }
}
