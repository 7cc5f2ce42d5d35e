//! This host's own address: the primary address of the interface that
//! carries the default route (IPv4 first, then IPv6), read from the routing
//! table. Nothing is dialled. `-local-address` overrides it.

use std::{
    collections::HashMap,
    ffi::CStr,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// The interface of the IPv4 default route with the lowest metric, from
/// `/proc/net/route`.
pub fn default_route_v4(table: &str) -> Option<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            let (iface, dest, flags, metric, mask) =
                (f.first()?, f.get(1)?, f.get(3)?, f.get(6)?, f.get(7)?);
            let up = u32::from_str_radix(flags, 16).ok()? & 1 != 0;
            (up && *dest == "00000000" && *mask == "00000000")
                .then(|| Some((metric.parse::<u32>().ok()?, (*iface).to_owned())))?
        })
        .min()
        .map(|(_, iface)| iface)
}

/// The interface of the IPv6 default route with the lowest metric, from
/// `/proc/net/ipv6_route`.
pub fn default_route_v6(table: &str) -> Option<String> {
    table
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // dest plen src plen nexthop metric refcnt use flags iface
            let (dest, plen, metric, flags, iface) =
                (f.first()?, f.get(1)?, f.get(5)?, f.get(8)?, f.get(9)?);
            let up = u32::from_str_radix(flags, 16).ok()? & 1 != 0;
            let default = dest.chars().all(|c| c == '0') && *plen == "00";
            (up && default && *iface != "lo")
                .then(|| Some((u32::from_str_radix(metric, 16).ok()?, (*iface).to_owned())))?
        })
        .min()
        .map(|(_, iface)| iface)
}

/// Global-scope IPv6 addresses per interface, from `/proc/net/if_inet6`.
pub fn global_v6_addresses(table: &str) -> HashMap<String, Vec<Ipv6Addr>> {
    let mut out: HashMap<String, Vec<Ipv6Addr>> = HashMap::new();
    for line in table.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(hex), Some(scope), Some(iface)) = (f.first(), f.get(3), f.get(5)) else {
            continue;
        };
        if *scope != "00" || hex.len() != 32 {
            continue;
        }
        let Ok(bits) = u128::from_str_radix(hex, 16) else {
            continue;
        };
        out.entry((*iface).to_owned())
            .or_default()
            .push(Ipv6Addr::from(bits));
    }
    out
}

/// IPv4 addresses per interface (getifaddrs).
fn v4_addresses() -> HashMap<String, Vec<Ipv4Addr>> {
    let mut out: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills head with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: cursor walks the list getifaddrs returned.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() || entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: non-null ifa_addr points to a sockaddr of at least its family's size.
        if i32::from(unsafe { (*entry.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: AF_INET addresses are sockaddr_in.
        let sin = unsafe { &*entry.ifa_addr.cast::<libc::sockaddr_in>() };
        let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        // SAFETY: ifa_name is a NUL-terminated string.
        let name = unsafe { CStr::from_ptr(entry.ifa_name) }
            .to_string_lossy()
            .into_owned();
        out.entry(name).or_default().push(ip);
    }
    // SAFETY: head came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// The host's address per the routing table, if it has a default route.
pub fn detect() -> Option<IpAddr> {
    if let Some(iface) = fs::read_to_string("/proc/net/route")
        .ok()
        .as_deref()
        .and_then(default_route_v4)
        && let Some(ip) = v4_addresses().get(&iface).and_then(|a| a.first().copied())
    {
        return Some(IpAddr::V4(ip));
    }
    let iface = fs::read_to_string("/proc/net/ipv6_route")
        .ok()
        .as_deref()
        .and_then(default_route_v6)?;
    let addrs = global_v6_addresses(&fs::read_to_string("/proc/net/if_inet6").ok()?);
    addrs.get(&iface)?.first().copied().map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_lowest_metric_default_route() {
        let route =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0
eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";
        assert_eq!(default_route_v4(route).as_deref(), Some("eth0"));
        assert_eq!(default_route_v4("Iface Destination\n"), None);
    }

    #[test]
    fn ipv6_only_hosts() {
        let route = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo
";
        assert_eq!(default_route_v6(route).as_deref(), Some("eth0"));
        let if_inet6 = "fd000000000000000000000000000005 02 40 00 80 eth0
fe800000000000000000000000000005 02 40 20 80 eth0
00000000000000000000000000000001 01 80 10 80 lo
";
        let addrs = global_v6_addresses(if_inet6);
        assert_eq!(addrs["eth0"], vec!["fd00::5".parse::<Ipv6Addr>().unwrap()]);
        assert!(!addrs.contains_key("lo"));
    }
}
