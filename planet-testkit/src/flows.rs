//! Reads the agent's per-flow byte counters out of a scrape:
//! `planet_upstream_bytes_total` (flows a local process connected) and
//! `planet_downstream_bytes_total` (flows a local process accepted), each with
//! `direction` `egress` (bytes the process sent) or `ingress` (received).

use std::fmt;
use std::net::IpAddr;

use crate::prom::{self, Sample};

pub const UPSTREAM: &str = "planet_upstream_bytes_total";
pub const DOWNSTREAM: &str = "planet_downstream_bytes_total";
pub const TRAFFIC: &str = "planet_traffic_bytes_total";

/// Which counter a flow is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The local process connected.
    Upstream,
    /// The local process accepted.
    Downstream,
}

impl Side {
    pub fn metric(self) -> &'static str {
        match self {
            Self::Upstream => UPSTREAM,
            Self::Downstream => DOWNSTREAM,
        }
    }
}

/// Egress and ingress bytes of a flow or a set of flows.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bytes {
    pub egress: f64,
    pub ingress: f64,
}

impl Bytes {
    /// From what an application reported it sent and received.
    pub fn sent_received(sent: u64, received: u64) -> Self {
        Self {
            egress: sent as f64,
            ingress: received as f64,
        }
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "egress={} ingress={}", self.egress, self.ingress)
    }
}

/// The labels that identify one flow's series (besides `direction`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowKey {
    pub side: Side,
    pub process_name: String,
    pub local_address: IpAddr,
    pub remote_address: IpAddr,
    /// The remote port for upstream flows, the local (listening) port for downstream.
    pub port: u16,
}

impl FlowKey {
    /// The exact label set, with addresses as the agent writes them.
    pub fn labels(&self) -> Vec<(&'static str, String)> {
        vec![
            ("local_hostgroup", String::new()),
            ("remote_hostgroup", String::new()),
            ("local_address", ip_label(self.local_address)),
            ("remote_address", ip_label(self.remote_address)),
            ("port", self.port.to_string()),
            ("protocol", "tcp".to_owned()),
            ("process_name", self.process_name.clone()),
        ]
    }

    /// The bytes of this exact flow in `samples` (0 for a missing series).
    pub fn bytes(&self, samples: &[Sample]) -> Bytes {
        let labels = self.labels();
        let get = |direction: &str| {
            let mut filter: Vec<(&str, &str)> = vec![("direction", direction)];
            filter.extend(labels.iter().map(|(k, v)| (*k, v.as_str())));
            prom::sum(samples, self.side.metric(), &filter)
        };
        Bytes {
            egress: get("egress"),
            ingress: get("ingress"),
        }
    }
}

/// An address as the agent labels it: IPv4-mapped IPv6 as dotted IPv4, IPv6
/// in RFC 5952 form.
pub fn ip_label(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

/// The bytes of all `side` series of process `comm`, whatever their other labels.
pub fn process_bytes(samples: &[Sample], side: Side, comm: &str) -> Bytes {
    let get = |direction: &str| {
        prom::sum(
            samples,
            side.metric(),
            &[("process_name", comm), ("direction", direction)],
        )
    };
    Bytes {
        egress: get("egress"),
        ingress: get("ingress"),
    }
}

/// `planet_traffic_bytes_total` for one remote IP, summed over the other labels.
pub fn traffic_bytes(samples: &[Sample], remote_ip: IpAddr) -> Bytes {
    let ip = ip_label(remote_ip);
    let get = |direction: &str| {
        prom::sum(
            samples,
            TRAFFIC,
            &[("remote_ip", ip.as_str()), ("direction", direction)],
        )
    };
    Bytes {
        egress: get("egress"),
        ingress: get("ingress"),
    }
}

/// Every upstream/downstream series of process `comm`, one per line, for
/// failure messages.
pub fn describe_process(samples: &[Sample], comm: &str) -> String {
    let lines: Vec<String> = samples
        .iter()
        .filter(|s| s.name == UPSTREAM || s.name == DOWNSTREAM)
        .filter(|s| s.label("process_name") == Some(comm))
        .map(|s| format!("  {s}"))
        .collect();
    if lines.is_empty() {
        format!("  <no flow series with process_name={comm:?}>")
    } else {
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
planet_upstream_bytes_total{direction="egress",local_hostgroup="",remote_hostgroup="",local_address="10.231.1.2",remote_address="10.231.1.1",port="4000",protocol="tcp",process_name="pt-c"} 100
planet_upstream_bytes_total{direction="ingress",local_hostgroup="",remote_hostgroup="",local_address="10.231.1.2",remote_address="10.231.1.1",port="4000",protocol="tcp",process_name="pt-c"} 7
planet_upstream_bytes_total{direction="egress",local_hostgroup="",remote_hostgroup="",local_address="10.231.1.2",remote_address="10.231.1.9",port="4000",protocol="tcp",process_name="pt-c"} 5
planet_downstream_bytes_total{direction="ingress",local_hostgroup="",remote_hostgroup="",local_address="fd00:231:1::1",remote_address="fd00:231:1::2",port="4000",protocol="tcp",process_name="pt-s"} 100
planet_traffic_bytes_total{direction="egress",local_hostgroup="",local_domain="",remote_ip="10.231.1.1",remote_hostgroup="",remote_domain=""} 105
"#;

    #[test]
    fn reads_exact_flows_and_process_totals() {
        let samples = prom::parse(TEXT).unwrap();
        let client = FlowKey {
            side: Side::Upstream,
            process_name: "pt-c".into(),
            local_address: "10.231.1.2".parse().unwrap(),
            remote_address: "10.231.1.1".parse().unwrap(),
            port: 4000,
        };
        assert_eq!(client.bytes(&samples), Bytes::sent_received(100, 7));
        assert_eq!(
            process_bytes(&samples, Side::Upstream, "pt-c"),
            Bytes::sent_received(105, 7)
        );
        assert_eq!(
            process_bytes(&samples, Side::Downstream, "pt-c"),
            Bytes::default()
        );
        let server = FlowKey {
            side: Side::Downstream,
            process_name: "pt-s".into(),
            local_address: "fd00:231:1::1".parse().unwrap(),
            remote_address: "fd00:231:1::2".parse().unwrap(),
            port: 4000,
        };
        assert_eq!(server.bytes(&samples), Bytes::sent_received(0, 100));
        let host = "10.231.1.1".parse().unwrap();
        assert_eq!(traffic_bytes(&samples, host), Bytes::sent_received(105, 0));
        assert!(describe_process(&samples, "pt-s").contains("fd00:231:1::2"));
    }

    #[test]
    fn labels_mapped_addresses_as_ipv4() {
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(ip_label(mapped), "10.1.2.3");
        assert_eq!(ip_label("fd00:231:0a::2".parse().unwrap()), "fd00:231:a::2");
    }
}
