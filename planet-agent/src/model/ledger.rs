//! Turning kernel flow counters into per-edge cumulative byte counters.
//!
//! # Strategy
//!
//! The kernel keeps one entry per live TCP socket with *cumulative*
//! counters, and when a socket closes it moves the final counters into a
//! ring-buffer record and deletes the entry. Nothing in user space ever
//! writes or deletes kernel entries, so the kernel side needs no locking
//! protocol with us.
//!
//! Each drain, [`Ledger::drain`] gets the close records that arrived since
//! the previous drain and a walk of the live map. For every flow it keeps
//! the counters it last credited (`seen`), keyed by [`FlowId`] (socket
//! address + first-seen time, so a reused socket is a new flow), and
//! credits only the difference to the flow's edge:
//!
//! - **No double counting.** A flow's bytes are credited as `now - seen`.
//!   A close record removes the flow from `seen` and tombstones its id for
//!   two drains, so a live-map walk that still sees the entry (the kernel
//!   submits the record just before it deletes the entry) skips it.
//! - **No lost tail.** A flow that closed between two drains is credited
//!   `final - seen` from its close record, so the bytes it moved after the
//!   last walk are counted.
//! - **Forgetting.** Closed flows leave `seen` as soon as their record is
//!   credited. A flow missing from two walks in a row without a record (its
//!   record was lost to a full ring, which the kernel counts) is dropped
//!   and counted in [`DrainStats::vanished`]; one missed walk is tolerated
//!   because the record may still be in flight.
//!
//! Edge totals only grow, so they can be exposed as Prometheus counters.
//! An edge without new bytes for the retention window is forgotten
//! ([`Ledger::forget_idle`]); what each drain credited is also handed out
//! as changes ([`Ledger::take_changes`]) for the byte families, which keep
//! their own budgeted counters (see [`crate::model::cardinality`]).

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use planet_common::Origin;

use crate::collect::flows::{Counts, Flow, FlowId};
use crate::model::cardinality::{Book, Budget};

/// Which side of the dependency this host is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// This host connected to the peer: the peer is an upstream.
    Upstream,
    /// The peer connected to this host: the peer is a downstream.
    Downstream,
}

impl Direction {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
        }
    }
}

/// The label identity bytes are credited to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeKey {
    pub direction: Direction,
    pub local: IpAddr,
    pub remote: IpAddr,
    /// The service port: the remote port upstream, the local port downstream.
    pub port: u16,
    pub process: Arc<str>,
}

/// Cumulative bytes of one edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    pub key: EdgeKey,
    pub bytes: Counts,
}

/// What one drain did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainStats {
    pub closed: usize,
    pub live: usize,
    /// Flows dropped without a close record (their final bytes are lost).
    pub vanished: usize,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    counts: Counts,
    /// Consecutive walks of the live map that did not show the flow.
    missed: u8,
}

/// Per-edge cumulative counters built from successive drains.
#[derive(Debug, Default)]
pub struct Ledger {
    seen: HashMap<FlowId, Seen>,
    closed_now: HashSet<FlowId>,
    closed_before: HashSet<FlowId>,
    totals: Book<EdgeKey>,
    /// Bytes credited since the last [`Ledger::take_changes`].
    changes: HashMap<EdgeKey, Counts>,
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Credits one drain. `listening(port)` tells whether a local port has
    /// a listener; it classifies flows that predate the programs.
    pub fn drain(
        &mut self,
        closed: impl IntoIterator<Item = Flow>,
        live: impl IntoIterator<Item = Flow>,
        listening: impl Fn(u16) -> bool,
    ) -> DrainStats {
        let mut stats = DrainStats::default();
        let now = Instant::now();
        for flow in closed {
            stats.closed += 1;
            let before = self.seen.remove(&flow.id).map(|s| s.counts);
            self.credit(&flow, before, &listening, now);
            self.closed_now.insert(flow.id);
        }
        let mut walked = HashSet::new();
        for flow in live {
            if self.closed_now.contains(&flow.id) || self.closed_before.contains(&flow.id) {
                continue;
            }
            stats.live += 1;
            walked.insert(flow.id);
            let before = self
                .seen
                .insert(
                    flow.id,
                    Seen {
                        counts: flow.counts,
                        missed: 0,
                    },
                )
                .map(|s| s.counts);
            self.credit(&flow, before, &listening, now);
        }
        self.seen.retain(|id, seen| {
            if walked.contains(id) {
                return true;
            }
            seen.missed += 1;
            if seen.missed >= 2 {
                stats.vanished += 1;
                return false;
            }
            true
        });
        self.closed_before = std::mem::take(&mut self.closed_now);
        stats
    }

    fn credit(
        &mut self,
        flow: &Flow,
        before: Option<Counts>,
        listening: &impl Fn(u16) -> bool,
        now: Instant,
    ) {
        let delta = flow.counts.since(before.unwrap_or_default());
        // Nothing new, or a connection with no bytes whose owner is not
        // known yet (accepted, not read from): no edge to show yet.
        if delta.is_zero() && (before.is_some() || flow.tgid == 0) {
            return;
        }
        let direction = match flow.origin {
            Origin::Connected => Direction::Upstream,
            Origin::Accepted => Direction::Downstream,
            Origin::Unknown if listening(flow.local_port) => Direction::Downstream,
            Origin::Unknown => Direction::Upstream,
        };
        let port = match direction {
            Direction::Upstream => flow.remote_port,
            Direction::Downstream => flow.local_port,
        };
        let key = EdgeKey {
            direction,
            local: flow.local,
            remote: flow.remote,
            port,
            process: flow.comm.clone(),
        };
        *self.changes.entry(key.clone()).or_default() += delta;
        self.totals.credit(key, delta, now);
    }

    /// Bytes credited per edge since the previous call.
    pub fn take_changes(&mut self) -> HashMap<EdgeKey, Counts> {
        std::mem::take(&mut self.changes)
    }

    /// Forgets edges without new bytes for longer than `retention`.
    pub fn forget_idle(&mut self, now: Instant, retention: Duration) {
        self.totals.settle(
            now,
            Budget {
                max_series: usize::MAX,
                retention,
            },
        );
    }

    /// Flows currently tracked between drains.
    pub fn tracked_flows(&self) -> usize {
        self.seen.len()
    }

    /// Every edge with its cumulative bytes, sorted by key.
    pub fn edges(&self) -> Vec<Edge> {
        self.totals
            .report()
            .series
            .into_iter()
            .map(|(key, bytes)| Edge { key, bytes })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(sock: u64, origin: Origin, tx: u64, rx: u64) -> Flow {
        Flow {
            id: FlowId {
                sock,
                first_seen_ns: 1,
            },
            local: "10.0.0.1".parse().unwrap(),
            local_port: 40_000,
            remote: "10.0.0.2".parse().unwrap(),
            remote_port: 443,
            origin,
            addresses_missing: false,
            tgid: 9,
            comm: Arc::from("app"),
            counts: Counts { tx, rx },
        }
    }

    fn none(_: u16) -> bool {
        false
    }

    fn total(ledger: &Ledger) -> Counts {
        let mut sum = Counts::default();
        for e in ledger.edges() {
            sum += e.bytes;
        }
        sum
    }

    #[test]
    fn credits_only_growth_of_live_flows() {
        let mut l = Ledger::new();
        l.drain([], [flow(1, Origin::Connected, 100, 10)], none);
        l.drain([], [flow(1, Origin::Connected, 150, 10)], none);
        l.drain([], [flow(1, Origin::Connected, 150, 10)], none);
        assert_eq!(total(&l), Counts { tx: 150, rx: 10 });
        let edges = l.edges();
        assert_eq!(edges.len(), 1);
        assert_eq!(edges[0].key.direction, Direction::Upstream);
        assert_eq!(edges[0].key.port, 443);
    }

    #[test]
    fn close_record_credits_the_tail_once() {
        let mut l = Ledger::new();
        l.drain([], [flow(1, Origin::Connected, 100, 0)], none);
        // Closed after 60 more bytes; the kernel had not yet deleted the
        // entry when the map was walked.
        let stats = l.drain(
            [flow(1, Origin::Connected, 160, 5)],
            [flow(1, Origin::Connected, 160, 5)],
            none,
        );
        assert_eq!(stats.closed, 1);
        assert_eq!(stats.live, 0);
        // Still visible one drain later: still not counted again.
        l.drain([], [flow(1, Origin::Connected, 160, 5)], none);
        assert_eq!(total(&l), Counts { tx: 160, rx: 5 });
        assert_eq!(l.tracked_flows(), 0, "closed flows are forgotten");
    }

    #[test]
    fn flow_opened_and_closed_between_drains_counts_fully() {
        let mut l = Ledger::new();
        let closed: Vec<Flow> = (0..1000).map(|i| flow(i, Origin::Accepted, 7, 3)).collect();
        l.drain(closed, [], none);
        assert_eq!(total(&l), Counts { tx: 7000, rx: 3000 });
        let edges = l.edges();
        assert_eq!(edges.len(), 1);
        assert_eq!(edges[0].key.direction, Direction::Downstream);
        assert_eq!(
            edges[0].key.port, 40_000,
            "downstream port is the local port"
        );
    }

    #[test]
    fn record_arriving_after_the_entry_left_the_map_is_not_double_counted() {
        let mut l = Ledger::new();
        l.drain([], [flow(1, Origin::Connected, 100, 0)], none);
        // The entry is gone from the map but its record comes a drain later.
        l.drain([], [], none);
        l.drain([flow(1, Origin::Connected, 120, 0)], [], none);
        assert_eq!(total(&l), Counts { tx: 120, rx: 0 });
    }

    #[test]
    fn flow_missing_twice_without_record_is_forgotten_and_counted() {
        let mut l = Ledger::new();
        l.drain([], [flow(1, Origin::Connected, 100, 0)], none);
        assert_eq!(l.drain([], [], none).vanished, 0);
        assert_eq!(l.drain([], [], none).vanished, 1);
        assert_eq!(l.tracked_flows(), 0);
        assert_eq!(total(&l), Counts { tx: 100, rx: 0 });
    }

    #[test]
    fn reused_socket_address_is_a_new_flow() {
        let mut l = Ledger::new();
        l.drain([], [flow(1, Origin::Connected, 100, 0)], none);
        let mut again = flow(1, Origin::Connected, 30, 0);
        again.id.first_seen_ns = 2;
        l.drain([flow(1, Origin::Connected, 100, 0)], [again], none);
        assert_eq!(total(&l), Counts { tx: 130, rx: 0 });
    }

    #[test]
    fn flows_that_predate_the_programs_use_the_listening_port_rule() {
        let mut l = Ledger::new();
        l.drain(
            [],
            [flow(1, Origin::Unknown, 1, 1), {
                let mut f = flow(2, Origin::Unknown, 2, 2);
                f.local_port = 8080;
                f
            }],
            |port| port == 8080,
        );
        let edges = l.edges();
        assert_eq!(edges.len(), 2);
        assert_eq!(
            (edges[0].key.direction, edges[0].key.port),
            (Direction::Upstream, 443)
        );
        assert_eq!(
            (edges[1].key.direction, edges[1].key.port),
            (Direction::Downstream, 8080)
        );
    }

    #[test]
    fn changes_are_what_each_drain_credited() {
        let mut l = Ledger::new();
        let mut other = flow(2, Origin::Accepted, 5, 6);
        other.remote = "10.0.0.3".parse().unwrap();
        l.drain([], [flow(1, Origin::Connected, 10, 20), other], none);
        let first = l.take_changes();
        assert_eq!(first.len(), 2);
        assert_eq!(first.values().map(|c| c.tx).sum::<u64>(), 15);
        l.drain([], [flow(1, Origin::Connected, 12, 20)], none);
        let second: Vec<Counts> = l.take_changes().into_values().collect();
        assert_eq!(second, vec![Counts { tx: 2, rx: 0 }]);
        assert!(l.take_changes().is_empty());
    }

    #[test]
    fn idle_edges_are_forgotten_after_the_retention_window() {
        let mut l = Ledger::new();
        l.drain([flow(1, Origin::Connected, 10, 20)], [], none);
        let retention = Duration::from_secs(120);
        l.forget_idle(Instant::now(), retention);
        assert_eq!(l.edges().len(), 1);
        l.forget_idle(Instant::now() + retention * 2, retention);
        assert!(l.edges().is_empty());
    }

    #[test]
    fn flows_of_one_edge_are_summed() {
        let mut l = Ledger::new();
        let mut b = flow(2, Origin::Connected, 5, 5);
        b.local_port = 40_001;
        l.drain([], [flow(1, Origin::Connected, 10, 1), b], none);
        let edges = l.edges();
        assert_eq!(edges.len(), 1);
        assert_eq!(edges[0].bytes, Counts { tx: 15, rx: 6 });
    }
}
