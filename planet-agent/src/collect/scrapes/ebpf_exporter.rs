//! ebpf_exporter's tcptop counters (`setup/ebpf-exporter/`, spec §5.2):
//!
//! ```text
//! ebpf_exporter_ipv4_send_bytes{pid,saddr,daddr,lport,dport} <bytes>
//! ebpf_exporter_ipv4_recv_bytes{…}
//! ebpf_exporter_ipv6_send_bytes{…}   (optional)
//! ebpf_exporter_ipv6_recv_bytes{…}   (optional)
//! ```
//!
//! `send` is egress and `recv` ingress; the peer is `daddr`. Everything
//! else (pid, ports, local address) is dropped, so many flows land on one
//! (direction, peer): they are **summed**. planet-exporter kept one
//! arbitrary flow's counter instead, and failed outright unless all four
//! families were present, which its own config never produced (spec §5.4).
//! Here any subset of the families is accepted: ebpf_exporter leaves out a
//! family whose map is still empty.

use std::{collections::BTreeMap, net::IpAddr};

use thiserror::Error;

use super::{Direction, PeerBytes, exposition::Exposition};

/// The families read, with their direction.
pub const FAMILIES: [(&str, Direction); 4] = [
    ("ebpf_exporter_ipv4_send_bytes", Direction::Egress),
    ("ebpf_exporter_ipv4_recv_bytes", Direction::Ingress),
    ("ebpf_exporter_ipv6_send_bytes", Direction::Egress),
    ("ebpf_exporter_ipv6_recv_bytes", Direction::Ingress),
];

/// Prefix of every metric ebpf_exporter serves.
const PREFIX: &str = "ebpf_exporter_";

/// A body that is not ebpf_exporter's.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EbpfExporterError {
    #[error("no ebpf_exporter_* metric in the body: not an ebpf_exporter endpoint")]
    NotEbpfExporter,
}

/// Per-(direction, peer) sums, sorted, and the number of samples left out
/// (no parseable `daddr`, or a negative/NaN/infinite value).
pub fn from_exposition(exp: &Exposition) -> Result<(Vec<PeerBytes>, usize), EbpfExporterError> {
    let tcptop = FAMILIES.iter().any(|(name, _)| exp.has(name));
    if !tcptop && !exp.all().iter().any(|s| s.name.starts_with(PREFIX)) {
        return Err(EbpfExporterError::NotEbpfExporter);
    }
    let mut sums: BTreeMap<(Direction, IpAddr), f64> = BTreeMap::new();
    let mut skipped = 0;
    for (family, direction) in FAMILIES {
        for sample in exp.samples(family) {
            let daddr = sample.label("daddr").and_then(|d| d.parse::<IpAddr>().ok());
            match daddr {
                Some(ip) if sample.value.is_finite() && sample.value >= 0.0 => {
                    *sums.entry((direction, ip.to_canonical())).or_default() += sample.value;
                }
                _ => skipped += 1,
            }
        }
    }
    let peers = sums
        .into_iter()
        .map(|((direction, remote), bytes)| PeerBytes {
            remote,
            direction,
            bytes,
        })
        .collect();
    Ok((peers, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::scrapes::exposition::parse;

    fn peer(ip: &str, direction: Direction, bytes: f64) -> PeerBytes {
        PeerBytes {
            remote: ip.parse().expect(ip),
            direction,
            bytes,
        }
    }

    #[test]
    fn ipv4_only_output_is_accepted_and_flows_are_summed() {
        let exp = parse(include_bytes!("testdata/ebpf-exporter-ipv4.txt")).expect("parse");
        let (peers, skipped) = from_exposition(&exp).expect("tcptop");
        assert_eq!(skipped, 0);
        assert_eq!(
            peers,
            [
                peer("10.0.0.5", Direction::Egress, 1500.0 + 250.0),
                peer("192.168.1.9", Direction::Egress, 70_000.0),
                peer("10.0.0.5", Direction::Ingress, 4096.0 + 8192.0 + 1.0),
            ]
        );
    }

    #[test]
    fn ipv6_families_join_the_sums() {
        let exp = parse(include_bytes!("testdata/ebpf-exporter-ipv4-ipv6.txt")).expect("parse");
        let (peers, skipped) = from_exposition(&exp).expect("tcptop");
        assert_eq!(skipped, 1, "one sample has daddr=\"not-an-ip\"");
        assert_eq!(
            peers,
            [
                peer("10.0.0.5", Direction::Egress, 1750.0),
                peer("192.168.1.9", Direction::Egress, 70_000.0),
                peer("fd00::7", Direction::Egress, 300.0 + 700.0),
                peer("10.0.0.5", Direction::Ingress, 12_289.0 + 11.0),
                peer("fd00::7", Direction::Ingress, 2000.0),
            ]
        );
    }

    #[test]
    fn shipped_config_declares_every_family_read() {
        let config = include_str!("../../../../setup/ebpf-exporter/tcptop.yaml");
        for (family, _) in FAMILIES {
            let name = family.strip_prefix(PREFIX).expect("prefixed");
            assert!(
                config.contains(&format!("- name: {name}\n")),
                "{name} missing from setup/ebpf-exporter/tcptop.yaml"
            );
            assert!(config.contains(&format!("table: {name}\n")), "{name}");
            assert!(config.contains(&format!("BPF_HASH({name}, ")), "{name}");
        }
    }

    #[test]
    fn other_exporters_are_rejected_and_an_idle_one_is_empty() {
        let exp = parse(b"node_load1 0.5\n").expect("parse");
        assert_eq!(
            from_exposition(&exp),
            Err(EbpfExporterError::NotEbpfExporter)
        );
        let idle = parse(b"ebpf_exporter_enabled_programs{name=\"tcptop\"} 1\n").expect("parse");
        assert_eq!(from_exposition(&idle), Ok((vec![], 0)));
    }
}
