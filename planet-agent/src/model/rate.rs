//! Current bytes per second of each edge, from two consecutive drains'
//! cumulative counters. Pure: the flow task calls [`between`] once per
//! drain and publishes the result, so readers never compute it.

use std::time::Duration;

use super::ledger::{Edge, EdgeKey};

/// Bytes per second of one edge over the last drain interval.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rate {
    /// Sent (egress) bytes per second.
    pub tx: f64,
    /// Received (ingress) bytes per second.
    pub rx: f64,
}

/// The rates of every edge that moved bytes over one interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rates {
    /// The interval the rates are averaged over.
    pub window: Duration,
    /// Edges with a non-zero rate, sorted by key.
    pub edges: Vec<(EdgeKey, Rate)>,
}

impl Rates {
    /// The rate of `key`; zero when it moved nothing over the window.
    pub fn get(&self, key: &EdgeKey) -> Rate {
        self.edges
            .binary_search_by(|(k, _)| k.cmp(key))
            .map_or_else(|_| Rate::default(), |i| self.edges[i].1)
    }
}

/// Rates from `before` and `after`, the cumulative edges of two drains
/// `elapsed` apart (both sorted by key, as [`super::Ledger::edges`]
/// returns them). An edge missing from `before` started at zero; edge
/// totals never shrink, and a total that did counts as zero. `None` for an
/// empty interval.
pub fn between(before: &[Edge], after: &[Edge], elapsed: Duration) -> Option<Rates> {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return None;
    }
    let mut earlier = before.iter().peekable();
    let mut edges = Vec::new();
    for edge in after {
        while earlier.next_if(|e| e.key < edge.key).is_some() {}
        let base = earlier
            .next_if(|e| e.key == edge.key)
            .map(|e| e.bytes)
            .unwrap_or_default();
        let tx = edge.bytes.tx.saturating_sub(base.tx);
        let rx = edge.bytes.rx.saturating_sub(base.rx);
        if tx == 0 && rx == 0 {
            continue;
        }
        edges.push((
            edge.key.clone(),
            Rate {
                tx: tx as f64 / seconds,
                rx: rx as f64 / seconds,
            },
        ));
    }
    Some(Rates {
        window: elapsed,
        edges,
    })
}

#[cfg(test)]
mod tests {
    use std::{net::IpAddr, sync::Arc};

    use super::*;
    use crate::{collect::flows::Counts, model::ledger::Direction};

    fn edge(port: u16, tx: u64, rx: u64) -> Edge {
        Edge {
            key: EdgeKey {
                direction: Direction::Upstream,
                local: IpAddr::from([10, 0, 0, 1]),
                remote: IpAddr::from([10, 0, 0, 2]),
                port,
                process: Arc::from("app"),
            },
            bytes: Counts { tx, rx },
        }
    }

    #[test]
    fn rates_are_deltas_over_the_interval() {
        let before = [edge(80, 1000, 100), edge(443, 5, 5), edge(5432, 7, 7)];
        let after = [
            edge(22, 300, 0),
            edge(80, 3000, 600),
            edge(443, 5, 5),
            edge(5432, 7, 7),
        ];
        let rates = between(&before, &after, Duration::from_secs(2)).unwrap();
        assert_eq!(rates.window, Duration::from_secs(2));
        let got: Vec<(u16, Rate)> = rates.edges.iter().map(|(k, r)| (k.port, *r)).collect();
        assert_eq!(
            got,
            vec![
                (22, Rate { tx: 150.0, rx: 0.0 }),
                (
                    80,
                    Rate {
                        tx: 1000.0,
                        rx: 250.0
                    }
                ),
            ],
            "new edges count from zero; idle edges are left out"
        );
        assert_eq!(rates.get(&edge(80, 0, 0).key).tx, 1000.0);
        assert_eq!(rates.get(&edge(443, 0, 0).key), Rate::default());
    }

    #[test]
    fn an_empty_interval_has_no_rates_and_shrinking_totals_count_as_zero() {
        assert_eq!(between(&[], &[edge(80, 1, 1)], Duration::ZERO), None);
        let rates = between(
            &[edge(80, 10, 10)],
            &[edge(80, 4, 12)],
            Duration::from_millis(500),
        )
        .unwrap();
        assert_eq!(rates.edges[0].1, Rate { tx: 0.0, rx: 4.0 });
    }
}
