//! Shared by the inventory fuzz targets: parse, build, look up, and check
//! the lookup structure against the linear reference.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use planet_agent::collect::inventory::{
    Format, Host, Inventory, LOCALHOST, parse, probe_addresses, reference_lookup,
};

/// Probes per input, so one input stays fast (the reference is linear).
const MAX_PROBES: usize = 256;

pub fn check(format: Format, data: &[u8]) {
    let Ok(parsed) = parse(format, data) else {
        return;
    };
    let mut hosts = parsed.hosts;
    assert!(hosts.iter().all(|h| !h.is_uninformative()));
    hosts.push(Host::new("127.0.0.1", LOCALHOST, LOCALHOST));
    let inventory = Inventory::new(hosts.clone());
    assert!(inventory.len() + inventory.skipped() == hosts.len());

    let fixed = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V4(Ipv4Addr::BROADCAST),
        IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        IpAddr::V6(Ipv4Addr::new(10, 0, 1, 2).to_ipv6_mapped()),
        IpAddr::V6(Ipv6Addr::from(u128::MAX)),
    ];
    let probes = probe_addresses(&hosts);
    for ip in fixed.into_iter().chain(probes).take(MAX_PROBES) {
        assert_eq!(
            inventory.lookup(ip),
            reference_lookup(&hosts, ip),
            "lookup of {ip}"
        );
    }
    assert_eq!(
        inventory
            .lookup(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .map(|h| h.domain.as_str()),
        Some(LOCALHOST)
    );
    for host in hosts.iter().take(MAX_PROBES) {
        let _ = inventory.lookup_str(&host.ip_address);
    }
}
