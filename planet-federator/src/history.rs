//! Dependency history: when each service edge was first and last seen.
//!
//! An edge is (direction, service, remote service, port, protocol), taken
//! from the upstream and downstream jobs' results; the remote service
//! falls back to the remote address when the inventory gave no hostgroup.
//!
//! Storage: measurement `service_edge`, tags `direction`, `service`,
//! `remote_service`, `port`, `protocol`, integer fields `first_seen` and
//! `last_seen` (Unix seconds). The point's **time is the first-seen time**,
//! so every later write of the edge overwrites the same point: one row per
//! edge, and `SELECT * FROM service_edge WHERE time > now() - 7d` lists the
//! edges that appeared in the last week. `last_seen` is rewritten at most
//! once per `resolution` (and at shutdown). The measurement must live in a
//! retention policy that keeps data for as long as history should reach
//! back: when a row expires, a still-active edge is seen as new again.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Duration,
};

use jiff::Timestamp;
use serde::Serialize;

use crate::{
    aggregate::Direction,
    influx::{
        FieldValue, InfluxClient, Point,
        query::{QueryError, Series, literal},
    },
    prom::Sample,
};

pub(crate) const MEASUREMENT: &str = "service_edge";

/// A service-level dependency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeKey {
    pub direction: Direction,
    pub service: String,
    pub remote_service: String,
    pub port: String,
    pub protocol: String,
}

impl EdgeKey {
    fn from_sample(direction: Direction, s: &Sample) -> Option<Self> {
        let service = s.label("local_hostgroup");
        if service.is_empty() {
            return None;
        }
        let remote = match s.label("remote_hostgroup") {
            "" => s.label("remote_address"),
            r => r,
        };
        Some(Self {
            direction,
            service: service.to_owned(),
            remote_service: remote.to_owned(),
            port: s.label("port").to_owned(),
            protocol: s.label("protocol").to_owned(),
        })
    }

    fn from_tags(tags: &BTreeMap<String, String>) -> Option<Self> {
        let direction = match tags.get("direction").map(String::as_str) {
            Some("upstream") => Direction::Upstream,
            Some("downstream") => Direction::Downstream,
            _ => return None,
        };
        let get = |k: &str| tags.get(k).cloned().unwrap_or_default();
        Some(Self {
            direction,
            service: get("service"),
            remote_service: get("remote_service"),
            port: get("port"),
            protocol: get("protocol"),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    first: i64,
    last: i64,
    /// `last` as of the latest write; `None` when never written.
    written: Option<i64>,
}

/// The edges seen so far; shared by the two dependency jobs.
#[derive(Debug)]
pub struct History {
    edges: Mutex<HashMap<EdgeKey, Seen>>,
    resolution: Duration,
}

impl History {
    pub fn new(resolution: Duration) -> Self {
        Self {
            edges: Mutex::new(HashMap::new()),
            resolution,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EdgeKey, Seen>> {
        self.edges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a dependency run at `at`; returns the points to write (new
    /// edges, and edges whose stored `last_seen` is `resolution` old).
    pub fn observe(&self, direction: Direction, samples: &[Sample], at: Timestamp) -> Vec<Point> {
        let now = at.as_second();
        let resolution = i64::try_from(self.resolution.as_secs()).unwrap_or(i64::MAX);
        let mut edges = self.lock();
        let mut out = Vec::new();
        for key in samples
            .iter()
            .filter_map(|s| EdgeKey::from_sample(direction, s))
        {
            let seen = edges.entry(key.clone()).or_insert(Seen {
                first: now,
                last: now,
                written: None,
            });
            seen.last = seen.last.max(now);
            let due = match seen.written {
                None => true,
                Some(w) => seen.last - w >= resolution,
            };
            if due && !out_has(&out, &key) {
                seen.written = Some(seen.last);
                out.push(point(&key, *seen));
            }
        }
        out
    }

    /// Points for every edge whose latest `last_seen` is not stored yet
    /// (written at shutdown).
    pub fn pending_points(&self) -> Vec<Point> {
        let mut edges = self.lock();
        edges
            .iter_mut()
            .filter(|(_, s)| s.written != Some(s.last))
            .map(|(k, s)| {
                s.written = Some(s.last);
                point(k, *s)
            })
            .collect()
    }

    /// Seeds the state from stored edges (first-seen times survive restarts).
    pub fn seed(&self, stored: &[Edge]) {
        let mut edges = self.lock();
        for e in stored {
            let (first, last) = (e.first_seen.as_second(), e.last_seen.as_second());
            edges
                .entry(e.key.clone())
                .and_modify(|s| {
                    s.first = s.first.min(first);
                    s.last = s.last.max(last);
                })
                .or_insert(Seen {
                    first,
                    last,
                    written: Some(last),
                });
        }
    }
}

fn out_has(out: &[Point], key: &EdgeKey) -> bool {
    // Duplicates within one run are rare (same service edge from several
    // hosts); a linear check over this run's new points is enough.
    out.iter().any(|p| {
        p.get_tag("direction") == Some(key.direction.as_str())
            && p.get_tag("service") == Some(key.service.as_str())
            && p.get_tag("remote_service").unwrap_or("") == key.remote_service
            && p.get_tag("port").unwrap_or("") == key.port
            && p.get_tag("protocol").unwrap_or("") == key.protocol
    })
}

fn point(key: &EdgeKey, seen: Seen) -> Point {
    Point::new(MEASUREMENT)
        .tag("direction", key.direction.as_str())
        .tag("service", key.service.as_str())
        .tag("remote_service", key.remote_service.as_str())
        .tag("port", key.port.as_str())
        .tag("protocol", key.protocol.as_str())
        .field("first_seen", FieldValue::Integer(seen.first))
        .field("last_seen", FieldValue::Integer(seen.last))
        .timestamp_ns(seen.first.saturating_mul(1_000_000_000))
}

/// A stored edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub key: EdgeKey,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
}

/// Reads the stored edges (optionally of one service), merging duplicate
/// rows of an edge.
pub(crate) async fn load(
    client: &InfluxClient,
    service: Option<&str>,
) -> Result<Vec<Edge>, QueryError> {
    let filter = service
        .map(|s| format!(" WHERE \"service\" = {}", literal(s)))
        .unwrap_or_default();
    let q = format!(
        "SELECT min(\"first_seen\") AS \"first_seen\", max(\"last_seen\") AS \"last_seen\" \
         FROM \"{MEASUREMENT}\"{filter} GROUP BY *"
    );
    Ok(edges_from_series(&client.query_one(&q).await?))
}

/// The edges in `SELECT first_seen, last_seen ... GROUP BY *` results.
pub(crate) fn edges_from_series(series: &[Series]) -> Vec<Edge> {
    let mut merged: BTreeMap<EdgeKey, (i64, i64)> = BTreeMap::new();
    for s in series {
        let Some(key) = EdgeKey::from_tags(&s.tags) else {
            continue;
        };
        for row in s.rows() {
            let int = |name: &str| row.get(name).and_then(|v| v.as_i64());
            let (Some(first), Some(last)) = (int("first_seen"), int("last_seen")) else {
                continue;
            };
            merged
                .entry(key.clone())
                .and_modify(|(f, l)| {
                    *f = (*f).min(first);
                    *l = (*l).max(last);
                })
                .or_insert((first, last));
        }
    }
    merged
        .into_iter()
        .filter_map(|(key, (first, last))| {
            Some(Edge {
                key,
                first_seen: Timestamp::from_second(first).ok()?,
                last_seen: Timestamp::from_second(last).ok()?,
            })
        })
        .collect()
}

/// One row of the `edges` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct EdgeRow {
    pub direction: &'static str,
    pub service: String,
    pub remote_service: String,
    pub port: String,
    pub protocol: String,
    pub first_seen: String,
    pub last_seen: String,
    /// `active` when seen within `stale_after` of the window's end.
    pub status: &'static str,
}

/// What `planet-federator edges` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Report {
    pub since: String,
    pub until: String,
    pub stale_after_seconds: u64,
    /// Every edge active at `until`: the current dependency list.
    pub dependencies: Vec<EdgeRow>,
    /// First seen inside the window.
    pub appeared: Vec<EdgeRow>,
    /// Last seen inside the window, and not since.
    pub disappeared: Vec<EdgeRow>,
}

/// Sorts edges into the report for the window `[since, until]`.
pub(crate) fn report(
    edges: &[Edge],
    since: Timestamp,
    until: Timestamp,
    stale_after: Duration,
) -> Report {
    let stale = jiff::SignedDuration::try_from(stale_after).unwrap_or(jiff::SignedDuration::MAX);
    let cutoff = until.checked_sub(stale).unwrap_or(Timestamp::MIN);
    let active = |e: &Edge| e.last_seen >= cutoff && e.first_seen <= until;
    let row = |e: &Edge| EdgeRow {
        direction: e.key.direction.as_str(),
        service: e.key.service.clone(),
        remote_service: e.key.remote_service.clone(),
        port: e.key.port.clone(),
        protocol: e.key.protocol.clone(),
        first_seen: e.first_seen.to_string(),
        last_seen: e.last_seen.to_string(),
        status: if active(e) { "active" } else { "gone" },
    };
    Report {
        since: since.to_string(),
        until: until.to_string(),
        stale_after_seconds: stale_after.as_secs(),
        dependencies: edges.iter().filter(|e| active(e)).map(row).collect(),
        appeared: edges
            .iter()
            .filter(|e| e.first_seen >= since && e.first_seen <= until)
            .map(row)
            .collect(),
        disappeared: edges
            .iter()
            .filter(|e| e.last_seen >= since && e.last_seen < cutoff)
            .map(row)
            .collect(),
    }
}

/// Renders the report as aligned text tables.
pub(crate) fn render_table(r: &Report) -> String {
    let mut out = format!(
        "window {} .. {} (gone after {} s unseen)\n",
        r.since, r.until, r.stale_after_seconds
    );
    for (title, rows) in [
        ("dependencies", &r.dependencies),
        ("appeared", &r.appeared),
        ("disappeared", &r.disappeared),
    ] {
        out.push_str(&format!("\n{title} ({}):\n", rows.len()));
        if rows.is_empty() {
            continue;
        }
        let header = [
            "DIRECTION",
            "SERVICE",
            "REMOTE_SERVICE",
            "PORT",
            "PROTOCOL",
            "FIRST_SEEN",
            "LAST_SEEN",
            "STATUS",
        ];
        let cells: Vec<[&str; 8]> = rows
            .iter()
            .map(|e| {
                [
                    e.direction,
                    e.service.as_str(),
                    e.remote_service.as_str(),
                    e.port.as_str(),
                    e.protocol.as_str(),
                    e.first_seen.as_str(),
                    e.last_seen.as_str(),
                    e.status,
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for c in &cells {
            for (w, v) in widths.iter_mut().zip(c) {
                *w = (*w).max(v.chars().count());
            }
        }
        for line in std::iter::once(header).chain(cells) {
            let text: Vec<String> = line
                .iter()
                .zip(widths)
                .map(|(v, w)| format!("{v:<w$}"))
                .collect();
            out.push_str(text.join("  ").trim_end());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn sample(service: &str, remote: &str, port: &str) -> Sample {
        Sample::new(
            [
                ("local_hostgroup", service),
                ("remote_hostgroup", remote),
                ("remote_address", "x.example"),
                ("port", port),
                ("protocol", "tcp"),
            ],
            1.0,
        )
    }

    #[test]
    fn new_edges_are_written_then_throttled() {
        let h = History::new(Duration::from_secs(300));
        let s = [sample("web", "db", "5432"), sample("web", "db", "5432")];
        let p = h.observe(Direction::Upstream, &s, ts(1000));
        assert_eq!(p.len(), 1, "duplicates within a run collapse");
        assert_eq!(p[0].timestamp_ns, Some(1000 * 1_000_000_000));
        assert_eq!(p[0].get_tag("remote_service"), Some("db"));
        assert!(h.observe(Direction::Upstream, &s, ts(1030)).is_empty());
        let p = h.observe(Direction::Upstream, &s, ts(1300));
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].timestamp_ns,
            Some(1000 * 1_000_000_000),
            "time stays first-seen"
        );
        assert!(
            p[0].fields
                .contains(&("last_seen".into(), FieldValue::Integer(1300)))
        );
        assert!(
            p[0].fields
                .contains(&("first_seen".into(), FieldValue::Integer(1000)))
        );
        // Downstream is a different edge.
        assert_eq!(h.observe(Direction::Downstream, &s, ts(1310)).len(), 1);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn pending_points_flush_unwritten_last_seen() {
        let h = History::new(Duration::from_secs(300));
        let s = [sample("web", "db", "5432")];
        h.observe(Direction::Upstream, &s, ts(1000));
        h.observe(Direction::Upstream, &s, ts(1030));
        let p = h.pending_points();
        assert_eq!(p.len(), 1);
        assert!(
            p[0].fields
                .contains(&("last_seen".into(), FieldValue::Integer(1030)))
        );
        assert!(h.pending_points().is_empty());
    }

    #[test]
    fn seeded_first_seen_survives_restart() {
        let h = History::new(Duration::from_secs(300));
        let key = EdgeKey {
            direction: Direction::Upstream,
            service: "web".into(),
            remote_service: "db".into(),
            port: "5432".into(),
            protocol: "tcp".into(),
        };
        h.seed(&[Edge {
            key,
            first_seen: ts(500),
            last_seen: ts(900),
        }]);
        let s = [sample("web", "db", "5432")];
        assert!(
            h.observe(Direction::Upstream, &s, ts(1000)).is_empty(),
            "stored 100 s ago"
        );
        let p = h.observe(Direction::Upstream, &s, ts(1200));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].timestamp_ns, Some(500 * 1_000_000_000));
    }

    #[test]
    fn remote_falls_back_to_address() {
        let h = History::new(Duration::from_secs(300));
        let p = h.observe(Direction::Upstream, &[sample("web", "", "443")], ts(1));
        assert_eq!(p[0].get_tag("remote_service"), Some("x.example"));
    }

    fn edge(service: &str, first: i64, last: i64) -> Edge {
        Edge {
            key: EdgeKey {
                direction: Direction::Upstream,
                service: service.into(),
                remote_service: "db".into(),
                port: "5432".into(),
                protocol: "tcp".into(),
            },
            first_seen: ts(first),
            last_seen: ts(last),
        }
    }

    #[test]
    fn report_windows() {
        let edges = [
            edge("old-active", 0, 10_000),
            edge("new-active", 9_000, 10_000),
            edge("gone-in-window", 100, 9_100),
            edge("gone-before", 100, 200),
        ];
        let r = report(&edges, ts(8_000), ts(10_000), Duration::from_secs(600));
        let names = |rows: &[EdgeRow]| rows.iter().map(|r| r.service.clone()).collect::<Vec<_>>();
        assert_eq!(names(&r.dependencies), ["old-active", "new-active"]);
        assert_eq!(names(&r.appeared), ["new-active"]);
        assert_eq!(names(&r.disappeared), ["gone-in-window"]);
        assert_eq!(r.disappeared[0].status, "gone");
        let table = render_table(&r);
        assert!(table.contains("appeared (1):"), "{table}");
        assert!(table.contains("DIRECTION  SERVICE"), "{table}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["appeared"][0]["service"], "new-active");
        assert_eq!(json["appeared"][0]["first_seen"], "1970-01-01T02:30:00Z");
    }

    #[test]
    fn edges_from_stored_series_merge_duplicates() {
        let series = vec![Series {
            name: MEASUREMENT.into(),
            tags: [
                ("direction", "downstream"),
                ("service", "db"),
                ("remote_service", "web"),
                ("port", "5432"),
                ("protocol", "tcp"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            columns: vec!["time".into(), "first_seen".into(), "last_seen".into()],
            values: vec![
                vec![0.into(), 100.into(), 200.into()],
                vec![0.into(), 50.into(), 150.into()],
            ],
        }];
        let e = edges_from_series(&series);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].key.direction, Direction::Downstream);
        assert_eq!(e[0].first_seen, ts(50));
        assert_eq!(e[0].last_seen, ts(200));
    }
}
