//! darkstat's `planet_traffic_bytes_total` (when it is the selected
//! source), ebpf_exporter's `planet_ebpf_traffic_bytes_total`, which source
//! is in use, and the two tasks' scrape failures.
//!
//! Labels follow planet-exporter's darkstat and ebpf tasks (spec §4.3,
//! §5.3): this host's own address is skipped; `local_hostgroup` and
//! `local_domain` come from the inventory and default to this host's
//! address when it is not listed; the remote names come from the inventory
//! or are empty.

use std::time::UNIX_EPOCH;

use super::{
    Sink,
    family::{Family, Spec},
    flows::TRAFFIC,
};
use crate::{
    collect::scrapes::{ExternalReport, PeerBytes, ScrapeKind},
    model::snapshot::Snapshot,
    model::traffic_source::Source,
};

pub const EBPF_TRAFFIC: Spec = Spec::counter(
    "planet_ebpf_traffic_bytes_total",
    "Total network traffic with peers from ebpf_exporter",
    TRAFFIC.labels,
);
pub const TRAFFIC_SOURCE: Spec = Spec::gauge(
    "planet_traffic_source",
    "Which source feeds planet_traffic_bytes_total (1): flow (in-process eBPF), darkstat, or none",
    &["source"],
);
pub const SCRAPE_ERRORS: Spec = Spec::counter(
    "planet_scrape_errors_total",
    "Failed scrapes of darkstat or ebpf_exporter by reason; the last good numbers stay in use",
    &["task", "reason"],
);
pub const SCRAPE_LAST_SUCCESS: Spec = Spec::gauge(
    "planet_scrape_last_success_timestamp_seconds",
    "Unix time of the last successful scrape of darkstat or ebpf_exporter (0: never)",
    &["task"],
);
pub const DARKSTAT_FORMAT: Spec = Spec::gauge(
    "planet_darkstat_format",
    "The darkstat page in use (1): metrics (darkstat >= 3.0.720) or hosts_html (older)",
    &["format"],
);

pub const SPECS: [&Spec; 5] = [
    &EBPF_TRAFFIC,
    &TRAFFIC_SOURCE,
    &SCRAPE_ERRORS,
    &SCRAPE_LAST_SUCCESS,
    &DARKSTAT_FORMAT,
];

/// Every reason a scrape can fail, shown at 0 until it happens.
const REASONS: [&str; 8] = [
    "address",
    "connect",
    "timeout",
    "status",
    "too_large",
    "request",
    "parse",
    "content",
];

pub fn render(snapshot: &Snapshot, source: Source, out: &mut dyn Sink) {
    let ext = &snapshot.external;
    let mut selected = Family::new(&TRAFFIC_SOURCE);
    selected.push(&[source.as_str()], 1.0);
    out.family(selected);

    if source == Source::Darkstat
        && let Some(report) = &ext.darkstat
    {
        out.family(peer_family(&TRAFFIC, snapshot, &report.peers));
    }
    if let Some(report) = &ext.ebpf {
        out.family(peer_family(&EBPF_TRAFFIC, snapshot, &report.peers));
    }

    let mut errors = Family::new(&SCRAPE_ERRORS);
    let mut last_success = Family::new(&SCRAPE_LAST_SUCCESS);
    let mut format = Family::new(&DARKSTAT_FORMAT);
    for (task, report) in [
        (ScrapeKind::Darkstat.task(), &ext.darkstat),
        (ScrapeKind::EbpfExporter.task(), &ext.ebpf),
    ] {
        let Some(report) = report else { continue };
        task_health(task, report, &mut errors, &mut last_success);
        if let Some(f) = report.darkstat_format {
            format.push(&[f.as_str()], 1.0);
        }
    }
    for family in [errors, last_success, format] {
        out.family(family);
    }
}

fn task_health(
    task: &str,
    report: &ExternalReport,
    errors: &mut Family<'_>,
    last_success: &mut Family<'_>,
) {
    for reason in REASONS {
        let count = report.errors.get(reason).copied().unwrap_or(0);
        errors.push(&[task, reason], count as f64);
    }
    let seconds = report
        .last_success
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    last_success.push(&[task], seconds);
}

/// A traffic family from peer counters, as planet-exporter's darkstat and
/// ebpf tasks labelled them. Peers are already one per (direction, address).
fn peer_family<'s>(spec: &'s Spec, snapshot: &Snapshot, peers: &[PeerBytes]) -> Family<'s> {
    let inventory = &snapshot.inventory;
    let local_ip = snapshot.local_ip;
    let local_text = local_ip.map(|ip| ip.to_string()).unwrap_or_default();
    let (local_hostgroup, local_domain) = match local_ip.and_then(|ip| inventory.lookup(ip)) {
        Some(host) => (host.hostgroup.as_str(), host.domain.as_str()),
        None => (local_text.as_str(), local_text.as_str()),
    };
    let mut family = Family::new(spec);
    for peer in peers {
        if local_ip.is_some_and(|ip| ip.to_canonical() == peer.remote.to_canonical()) {
            continue;
        }
        let (remote_hostgroup, remote_domain) = inventory
            .lookup(peer.remote)
            .map_or(("", ""), |h| (h.hostgroup.as_str(), h.domain.as_str()));
        let remote = peer.remote.to_string();
        family.push(
            &[
                local_hostgroup,
                peer.direction.as_str(),
                remote_hostgroup,
                &remote,
                local_domain,
                remote_domain,
            ],
            peer.bytes,
        );
    }
    family
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use prometheus::{Encoder as _, TextEncoder};

    use super::*;
    use crate::{
        collect::ProbeState,
        collect::inventory::{Host, Inventory},
        collect::scrapes::{Direction, darkstat::Format},
        model::traffic_source::ExternalTraffic,
        serve::metrics::render as render_all,
    };

    fn peer(ip: &str, direction: Direction, bytes: f64) -> PeerBytes {
        PeerBytes {
            remote: ip.parse().expect(ip),
            direction,
            bytes,
        }
    }

    fn text(snapshot: &Snapshot) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&render_all(snapshot), &mut buf)
            .expect("encode");
        String::from_utf8(buf).expect("utf-8")
    }

    fn report(peers: Vec<PeerBytes>) -> ExternalReport {
        ExternalReport {
            peers: Arc::new(peers),
            last_success: Some(UNIX_EPOCH + Duration::from_secs(50)),
            errors: [("timeout", 3)].into_iter().collect(),
            darkstat_format: None,
        }
    }

    #[test]
    fn darkstat_feeds_traffic_when_flow_is_off_and_skips_this_host() {
        let mut darkstat = report(vec![
            peer("10.0.0.1", Direction::Egress, 7.0),
            peer("10.0.0.9", Direction::Egress, 100.0),
            peer("10.0.0.9", Direction::Ingress, 2000.0),
        ]);
        darkstat.darkstat_format = Some(Format::HostsHtml);
        let snapshot = Snapshot {
            local_ip: Some("10.0.0.1".parse().expect("ip")),
            inventory: Arc::new(Inventory::with_localhost(vec![Host::new(
                "10.0.0.9",
                "db.consul",
                "db",
            )])),
            external: Arc::new(ExternalTraffic {
                flow_enabled: false,
                interval: Duration::from_secs(7),
                darkstat: Some(darkstat),
                ebpf: Some(report(vec![peer("10.0.0.9", Direction::Ingress, 5.0)])),
            }),
            ..Snapshot::default()
        };
        let out = text(&snapshot);
        for line in [
            // This host is not in the inventory: its address names it (spec §4.3).
            r#"planet_traffic_bytes_total{direction="egress",local_domain="10.0.0.1",local_hostgroup="10.0.0.1",remote_domain="db.consul",remote_hostgroup="db",remote_ip="10.0.0.9"} 100"#,
            r#"planet_traffic_bytes_total{direction="ingress",local_domain="10.0.0.1",local_hostgroup="10.0.0.1",remote_domain="db.consul",remote_hostgroup="db",remote_ip="10.0.0.9"} 2000"#,
            r#"planet_ebpf_traffic_bytes_total{direction="ingress",local_domain="10.0.0.1",local_hostgroup="10.0.0.1",remote_domain="db.consul",remote_hostgroup="db",remote_ip="10.0.0.9"} 5"#,
            r#"planet_traffic_source{source="darkstat"} 1"#,
            r#"planet_scrape_errors_total{reason="timeout",task="darkstat"} 3"#,
            r#"planet_scrape_errors_total{reason="parse",task="ebpf"} 0"#,
            r#"planet_scrape_last_success_timestamp_seconds{task="ebpf"} 50"#,
            r#"planet_darkstat_format{format="hosts_html"} 1"#,
        ] {
            assert!(out.contains(line), "missing {line}\n{out}");
        }
        assert!(!out.contains(r#"remote_ip="10.0.0.1""#), "{out}");
    }

    /// Through the store, as the tasks publish: the flow task attaches and
    /// drains, then a drain fails: darkstat takes over at once; a good
    /// drain brings the flow task back.
    #[test]
    fn a_failing_flow_task_hands_over_to_darkstat_and_back() {
        let store = crate::model::snapshot::Store::new();
        store.update(|s| {
            s.external = Arc::new(ExternalTraffic {
                flow_enabled: true,
                interval: Duration::from_secs(7),
                darkstat: Some(report(vec![peer("10.0.0.9", Direction::Egress, 100.0)])),
                ebpf: None,
            });
            s.probe = ProbeState::Attached {
                mode: crate::collect::ebpf::ProbeMode::Tracepoint,
                rejected: vec![],
            };
        });
        let source = |store: &crate::model::snapshot::Store| {
            let out = text(&store.load());
            let darkstat_series = out.contains(r#"remote_ip="10.0.0.9""#);
            let selected = Source::ALL
                .into_iter()
                .filter(|s| {
                    out.contains(&format!(
                        "planet_traffic_source{{source=\"{}\"}} 1",
                        s.as_str()
                    ))
                })
                .collect::<Vec<_>>();
            (selected, darkstat_series)
        };
        let flow_task = crate::collect::flows::TASK_NAME;
        store.task_ran(flow_task, true, Duration::from_millis(1));
        assert_eq!(source(&store), (vec![Source::Flow], false));
        store.task_ran(flow_task, false, Duration::ZERO);
        assert_eq!(source(&store), (vec![Source::Darkstat], true));
        store.task_ran(flow_task, true, Duration::from_millis(1));
        assert_eq!(source(&store), (vec![Source::Flow], false));
    }

    #[test]
    fn flow_keeps_the_traffic_family_and_darkstat_is_not_shown() {
        let snapshot = Snapshot {
            probe: ProbeState::Attached {
                mode: crate::collect::ebpf::ProbeMode::Tracepoint,
                rejected: vec![],
            },
            external: Arc::new(ExternalTraffic {
                flow_enabled: true,
                interval: Duration::from_secs(7),
                darkstat: Some(report(vec![peer("10.0.0.9", Direction::Egress, 100.0)])),
                ebpf: None,
            }),
            ..Snapshot::default()
        };
        let out = text(&snapshot);
        assert!(
            out.contains(r#"planet_traffic_source{source="flow"} 1"#),
            "{out}"
        );
        assert!(!out.contains(r#"remote_ip="10.0.0.9""#), "{out}");
        assert!(!out.contains("planet_ebpf_traffic_bytes_total"), "{out}");
        assert!(!out.contains(r#"task="ebpf""#), "{out}");
    }
}
