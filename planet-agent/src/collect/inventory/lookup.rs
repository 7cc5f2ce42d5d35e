//! The lookup structure: exact keys in hash maps, CIDR networks in one
//! path-compressed binary trie per address family. Lookups cost
//! O(address bits), whatever the inventory size.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use ipnet::IpNet;

use super::Host;

/// Domain and hostgroup of the synthetic entry for 127.0.0.1.
pub const LOCALHOST: &str = "localhost";

/// An immutable lookup structure built from one successful fetch.
///
/// See the [module documentation](super) for the matching rules.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    /// Accepted entries in input order; the maps and tries index into it.
    hosts: Vec<Host>,
    /// Exact keys that parse as IP addresses, canonicalised (IPv4-mapped
    /// IPv6 becomes IPv4). Last entry wins.
    exact_ip: HashMap<IpAddr, usize>,
    /// Exact keys that are not IP addresses, literally. Last entry wins.
    exact_str: HashMap<String, usize>,
    v4: PrefixTrie,
    v6: PrefixTrie,
    skipped: usize,
}

impl Inventory {
    /// Builds the lookup structure from `hosts`, in order.
    ///
    /// Hosts with neither domain nor hostgroup and invalid CIDRs are left
    /// out and counted in [`skipped`](Self::skipped).
    pub fn new(mut hosts: Vec<Host>) -> Self {
        let mut inventory = Self::default();
        // In place: a large inventory is not held twice while building.
        hosts.retain(|host| {
            let keep = usable(host);
            inventory.skipped += usize::from(!keep);
            keep
        });
        for (index, host) in hosts.iter().enumerate() {
            inventory.index(index, host);
        }
        inventory.hosts = hosts;
        inventory
    }

    /// [`new`](Self::new) with the synthetic `127.0.0.1 → localhost`
    /// entry appended after `hosts`, as every successful fetch does. Being
    /// last, it overrides an inventory entry for 127.0.0.1.
    pub fn with_localhost(mut hosts: Vec<Host>) -> Self {
        hosts.push(Host::new(
            Ipv4Addr::LOCALHOST.to_string(),
            LOCALHOST,
            LOCALHOST,
        ));
        Self::new(hosts)
    }

    /// Adds the usable `host`, at `index` of `hosts`, to the maps or a trie.
    fn index(&mut self, index: usize, host: &Host) {
        if host.ip_address.contains('/') {
            if let Ok(net) = IpNet::from_str(&host.ip_address) {
                let (family, key, len) = trie_key(net);
                match family {
                    Family::V4 => self.v4.insert(key, len, index),
                    Family::V6 => self.v6.insert(key, len, index),
                }
            }
        } else if let Ok(ip) = IpAddr::from_str(&host.ip_address) {
            self.exact_ip.insert(ip.to_canonical(), index);
        } else if let Some(slot) = self.exact_str.get_mut(&host.ip_address) {
            *slot = index;
        } else {
            self.exact_str.insert(host.ip_address.clone(), index);
        }
    }

    /// The entry for `ip`: the exact address first, then the longest
    /// matching network.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Host> {
        let ip = ip.to_canonical();
        let index = match self.exact_ip.get(&ip) {
            Some(&index) => Some(index),
            None => match ip {
                IpAddr::V4(v4) => self.v4.longest_match(v4_key(v4)),
                IpAddr::V6(v6) => self.v6.longest_match(u128::from(v6)),
            },
        };
        index.map(|i| &self.hosts[i])
    }

    /// The entry for `key` as written: first an exact key equal to `key`
    /// literally (planet-exporter's only exact rule), then, if `key` is an
    /// IP address, [`lookup`](Self::lookup).
    pub fn lookup_str(&self, key: &str) -> Option<&Host> {
        if let Some(&index) = self.exact_str.get(key) {
            return Some(&self.hosts[index]);
        }
        IpAddr::from_str(key).ok().and_then(|ip| self.lookup(ip))
    }

    /// Accepted entries, including shadowed duplicates and the localhost
    /// entry.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether no entry was accepted (also before the first fetch).
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Entries left out: neither domain nor hostgroup, or an invalid CIDR.
    /// For an inventory the task loaded, also the entries the parser
    /// skipped (undecodable, unknown field, wrong type).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Adds entries left out before the build (by the parser).
    pub(super) fn count_skipped(&mut self, entries: usize) {
        self.skipped += entries;
    }

    /// The accepted entries in input order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }
}

/// Whether `host` goes into the lookup structure: it has a domain or a
/// hostgroup, and a CIDR `ip_address` is valid.
fn usable(host: &Host) -> bool {
    if host.is_uninformative() {
        return false;
    }
    if host.ip_address.contains('/') && IpNet::from_str(&host.ip_address).is_err() {
        tracing::debug!(cidr = %host.ip_address, "skipping an invalid inventory CIDR");
        return false;
    }
    true
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// An IPv4 address left-aligned in 128 bits, so both families share one
/// trie implementation.
fn v4_key(ip: Ipv4Addr) -> u128 {
    u128::from(u32::from(ip)) << 96
}

/// The trie key of `net` with host bits masked. An IPv4-mapped IPv6
/// network of at least /96 is the IPv4 network it maps, as in Go.
fn trie_key(net: IpNet) -> (Family, u128, u32) {
    match net.trunc() {
        IpNet::V4(net) => (
            Family::V4,
            v4_key(net.network()),
            u32::from(net.prefix_len()),
        ),
        IpNet::V6(net) => {
            let len = u32::from(net.prefix_len());
            match net.network().to_ipv4_mapped() {
                Some(v4) if len >= 96 => (Family::V4, v4_key(v4), len - 96),
                _ => (Family::V6, u128::from(net.network()), len),
            }
        }
    }
}

/// Index of "no child": the root is never a child.
const NONE: usize = 0;

/// A path-compressed binary trie of prefixes over left-aligned 128-bit
/// keys. Every node is a prefix; internal nodes created by a split carry no
/// value. At most `2n` nodes for `n` prefixes, and a lookup visits at most
/// one node per key bit.
#[derive(Clone, Debug, Default)]
struct PrefixTrie {
    /// `nodes[0]` is the root, the empty prefix; created by the first
    /// insert.
    nodes: Vec<Node>,
}

#[derive(Clone, Debug)]
struct Node {
    /// The prefix bits, zero past `len`.
    key: u128,
    len: u32,
    value: Option<usize>,
    /// Children by the bit at position `len`; [`NONE`] if absent.
    children: [usize; 2],
}

impl Node {
    fn new(key: u128, len: u32, value: Option<usize>) -> Self {
        Self {
            key,
            len,
            value,
            children: [NONE; 2],
        }
    }
}

/// The bit of `key` at `position` (0 = most significant), as a child index.
fn bit(key: u128, position: u32) -> usize {
    usize::from(key >> (127 - position) & 1 == 1)
}

/// `key` with all bits from `len` on cleared.
fn mask(key: u128, len: u32) -> u128 {
    match len {
        0 => 0,
        128.. => key,
        _ => key & (u128::MAX << (128 - len)),
    }
}

/// Leading bits `a` and `b` share.
fn common_len(a: u128, b: u128) -> u32 {
    (a ^ b).leading_zeros()
}

impl PrefixTrie {
    /// Adds the prefix `key/len` (`key` masked, `len` ≤ 128) with `value`,
    /// unless that prefix is already present: the first listed wins.
    fn insert(&mut self, key: u128, len: u32, value: usize) {
        debug_assert!(len <= 128 && mask(key, len) == key);
        if self.nodes.is_empty() {
            self.nodes.push(Node::new(0, 0, None));
        }
        let mut current = 0;
        loop {
            let node = &self.nodes[current];
            // Invariant: `node` is a prefix of `key/len`, with node.len ≤ len.
            if node.len == len {
                self.nodes[current].value.get_or_insert(value);
                return;
            }
            let side = bit(key, node.len);
            let child = node.children[side];
            if child == NONE {
                let leaf = self.push(Node::new(key, len, Some(value)));
                self.nodes[current].children[side] = leaf;
                return;
            }
            let (child_key, child_len) = (self.nodes[child].key, self.nodes[child].len);
            let common = common_len(key, child_key).min(len).min(child_len);
            if common == child_len {
                current = child;
                continue;
            }
            let replacement = if common == len {
                // The new prefix sits between `current` and `child`.
                let mut middle = Node::new(key, len, Some(value));
                middle.children[bit(child_key, len)] = child;
                self.push(middle)
            } else {
                // They diverge at `common`: split.
                let leaf = self.push(Node::new(key, len, Some(value)));
                let mut split = Node::new(mask(key, common), common, None);
                split.children[bit(child_key, common)] = child;
                split.children[bit(key, common)] = leaf;
                self.push(split)
            };
            self.nodes[current].children[side] = replacement;
            return;
        }
    }

    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The value of the longest prefix containing the full-length `key`.
    fn longest_match(&self, key: u128) -> Option<usize> {
        let mut best = None;
        let mut current = 0;
        while let Some(node) = self.nodes.get(current) {
            if common_len(key, node.key) < node.len {
                break;
            }
            best = node.value.or(best);
            if node.len >= 128 {
                break;
            }
            current = match node.children[bit(key, node.len)] {
                NONE => break,
                child => child,
            };
        }
        best
    }
}

/// For the unit tests and the differential fuzz target: the matching rules
/// applied by a linear scan over `hosts`, independent of the trie.
#[doc(hidden)]
pub fn reference_lookup(hosts: &[Host], ip: IpAddr) -> Option<&Host> {
    let ip = ip.to_canonical();
    let usable = hosts.iter().filter(|h| !h.is_uninformative());
    let exact = usable.clone().rev().find(|h| {
        !h.ip_address.contains('/')
            && IpAddr::from_str(&h.ip_address).is_ok_and(|k| k.to_canonical() == ip)
    });
    if exact.is_some() {
        return exact;
    }
    let mut best: Option<(u32, &Host)> = None;
    for host in usable.filter(|h| h.ip_address.contains('/')) {
        let Ok(net) = IpNet::from_str(&host.ip_address) else {
            continue;
        };
        let (family, key, len) = trie_key(net);
        let address = match (family, ip) {
            (Family::V4, IpAddr::V4(v4)) => v4_key(v4),
            (Family::V6, IpAddr::V6(v6)) => u128::from(v6),
            _ => continue,
        };
        if mask(address, len) == key && best.is_none_or(|(best_len, _)| len > best_len) {
            best = Some((len, host));
        }
    }
    best.map(|(_, host)| host)
}

/// Addresses worth probing for `hosts`: each entry's address, the first
/// and last address of each network and their neighbours.
#[doc(hidden)]
pub fn probe_addresses(hosts: &[Host]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for host in hosts {
        if let Ok(ip) = IpAddr::from_str(&host.ip_address) {
            out.push(ip);
        } else if let Ok(net) = IpNet::from_str(&host.ip_address) {
            let (first, last) = (net.network(), net.broadcast());
            out.extend([net.addr(), first, last]);
            out.extend(neighbours(first).into_iter().chain(neighbours(last)));
        }
    }
    out
}

fn neighbours(ip: IpAddr) -> [IpAddr; 2] {
    match ip {
        IpAddr::V4(v4) => {
            let n = u32::from(v4);
            [
                IpAddr::V4(Ipv4Addr::from(n.wrapping_sub(1))),
                IpAddr::V4(Ipv4Addr::from(n.wrapping_add(1))),
            ]
        }
        IpAddr::V6(v6) => {
            let n = u128::from(v6);
            [
                IpAddr::V6(Ipv6Addr::from(n.wrapping_sub(1))),
                IpAddr::V6(Ipv6Addr::from(n.wrapping_add(1))),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(ip: &str, domain: &str, hostgroup: &str) -> Host {
        Host::new(ip, domain, hostgroup)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect(s)
    }

    /// (inventory, [(address, expected ip_address of the match or None)]).
    type Case = (
        &'static str,
        Vec<Host>,
        Vec<(&'static str, Option<&'static str>)>,
    );

    #[test]
    fn lookup_table() {
        let cases: Vec<Case> = vec![
            (
                "exact",
                vec![h("10.0.1.2", "xyz.service.consul", "xyz")],
                vec![("10.0.1.2", Some("10.0.1.2")), ("10.0.1.3", None)],
            ),
            (
                "planet-exporter GetHost tests",
                vec![
                    h("10.0.0.0/17", "", "net17"),
                    h("10.0.32.0/19", "", "net19"),
                    h("10.0.1.2", "xyz", "xyz"),
                ],
                vec![
                    ("10.0.31.1", Some("10.0.0.0/17")),
                    ("10.0.32.1", Some("10.0.32.0/19")),
                    ("10.0.1.2", Some("10.0.1.2")),
                    ("10.0.128.1", None),
                ],
            ),
            (
                "exact wins over a more specific network",
                vec![h("10.0.0.7", "exact", ""), h("10.0.0.7/32", "", "host-net")],
                vec![("10.0.0.7", Some("10.0.0.7")), ("10.0.0.8", None)],
            ),
            (
                "longest prefix, whatever the order",
                vec![
                    h("10.1.2.0/24", "", "24"),
                    h("10.0.0.0/8", "", "8"),
                    h("10.1.0.0/16", "", "16"),
                ],
                vec![
                    ("10.1.2.3", Some("10.1.2.0/24")),
                    ("10.1.3.3", Some("10.1.0.0/16")),
                    ("10.2.0.1", Some("10.0.0.0/8")),
                    ("11.0.0.1", None),
                ],
            ),
            (
                "host bits are masked",
                vec![h("10.1.2.3/16", "", "masked")],
                vec![
                    ("10.1.0.0", Some("10.1.2.3/16")),
                    ("10.1.255.255", Some("10.1.2.3/16")),
                    ("10.2.0.0", None),
                ],
            ),
            (
                "equal prefixes: first listed wins",
                vec![
                    h("10.1.0.0/16", "", "first"),
                    h("10.1.2.3/16", "", "second"),
                    h("10.1.0.0/16", "", "third"),
                ],
                vec![("10.1.9.9", Some("10.1.0.0/16"))],
            ),
            (
                "/0 matches its whole family only",
                vec![h("0.0.0.0/0", "", "all-v4"), h("10.0.0.0/8", "", "ten")],
                vec![
                    ("123.123.123.123", Some("0.0.0.0/0")),
                    ("10.9.9.9", Some("10.0.0.0/8")),
                    ("::1", None),
                    ("2001:db8::1", None),
                    ("::ffff:1.2.3.4", Some("0.0.0.0/0")),
                ],
            ),
            (
                "IPv6 /0 never matches IPv4 or mapped",
                vec![h("::/0", "", "all-v6")],
                vec![
                    ("2001:db8::1", Some("::/0")),
                    ("::1", Some("::/0")),
                    ("10.0.0.1", None),
                    ("::ffff:10.0.0.1", None),
                ],
            ),
            (
                "IPv6 networks and exact",
                vec![
                    h("2001:db8::/32", "", "doc"),
                    h("2001:db8:1::/48", "", "doc1"),
                    h("2001:db8:1::5", "five", ""),
                    h("fe80::/10", "", "link"),
                ],
                vec![
                    ("2001:db8:2::1", Some("2001:db8::/32")),
                    ("2001:db8:1::1", Some("2001:db8:1::/48")),
                    ("2001:db8:1::5", Some("2001:db8:1::5")),
                    (
                        "2001:0db8:0001:0000:0000:0000:0000:0005",
                        Some("2001:db8:1::5"),
                    ),
                    ("fe80::1234", Some("fe80::/10")),
                    ("febf::1", Some("fe80::/10")),
                    ("fec0::1", None),
                ],
            ),
            (
                "exact IPv6 keys are normalised",
                vec![h("::0001", "loop6", ""), h("2001:DB8::A", "upper", "")],
                vec![
                    ("::1", Some("::0001")),
                    ("2001:db8::a", Some("2001:DB8::A")),
                ],
            ),
            (
                "IPv4-mapped IPv6 is IPv4",
                vec![
                    h("10.0.0.1", "v4", ""),
                    h("::ffff:10.0.0.2", "mapped-key", ""),
                    h("::ffff:192.168.0.0/112", "", "mapped-net"),
                ],
                vec![
                    ("::ffff:10.0.0.1", Some("10.0.0.1")),
                    ("10.0.0.2", Some("::ffff:10.0.0.2")),
                    ("192.168.7.7", Some("::ffff:192.168.0.0/112")),
                    ("::ffff:192.168.7.7", Some("::ffff:192.168.0.0/112")),
                    ("192.169.0.1", None),
                ],
            ),
            (
                "mapped network shorter than /96 stays IPv6",
                vec![h("::ffff:0.0.0.0/80", "", "v6-80")],
                vec![("::1", Some("::ffff:0.0.0.0/80")), ("1.2.3.4", None)],
            ),
            (
                "invalid CIDRs are skipped",
                vec![
                    h("100.100.100.100/100", "", "bad"),
                    h("10.0.0.0/", "", "bad"),
                    h("10.0.0.0/-1", "", "bad"),
                    h("/8", "", "bad"),
                    h("foo/bar", "", "bad"),
                    h("::/129", "", "bad"),
                    h("10.0.0.0/8/8", "", "bad"),
                ],
                vec![("100.100.100.100", None), ("10.0.0.1", None), ("::1", None)],
            ),
            (
                "both empty is skipped",
                vec![h("10.0.0.1", "", ""), h("10.0.0.0/8", "", "")],
                vec![("10.0.0.1", None), ("10.9.9.9", None)],
            ),
            (
                "duplicates: last wins for exact keys",
                vec![h("10.0.0.1", "old", ""), h("10.0.0.1", "new", "")],
                vec![("10.0.0.1", Some("10.0.0.1"))],
            ),
            (
                "/32 and /128 networks",
                vec![h("10.0.0.1/32", "", "one"), h("::2/128", "", "two")],
                vec![
                    ("10.0.0.1", Some("10.0.0.1/32")),
                    ("10.0.0.0", None),
                    ("::2", Some("::2/128")),
                    ("::3", None),
                ],
            ),
        ];
        for (name, hosts, probes) in cases {
            let inventory = Inventory::new(hosts.clone());
            for (address, want) in probes {
                let got = inventory.lookup(ip(address)).map(|h| h.ip_address.as_str());
                assert_eq!(got, want, "{name}: {address}");
                let reference =
                    reference_lookup(&hosts, ip(address)).map(|h| h.ip_address.as_str());
                assert_eq!(reference, want, "{name}: reference for {address}");
            }
        }
    }

    #[test]
    fn matched_entry_is_returned_whole() {
        let inventory = Inventory::new(vec![
            h("10.0.0.1", "old", "g-old"),
            h("10.0.0.1", "new", "g-new"),
            h("10.3.0.0/16", "", "unknown-but-its-network-xyz"),
            h("10.3.0.0/16", "later", "ignored"),
        ]);
        assert_eq!(
            inventory.lookup(ip("10.0.0.1")),
            Some(&h("10.0.0.1", "new", "g-new"))
        );
        assert_eq!(
            inventory.lookup(ip("10.3.4.5")),
            Some(&h("10.3.0.0/16", "", "unknown-but-its-network-xyz"))
        );
        assert_eq!(inventory.len(), 4);
        assert_eq!(inventory.skipped(), 0);
    }

    #[test]
    fn counts() {
        let inventory = Inventory::new(vec![
            h("10.0.0.1", "a", ""),
            h("10.0.0.2", "", ""),
            h("10.0.0.0/33", "", "bad"),
            h("10.0.0.0/8", "", "ok"),
        ]);
        assert_eq!((inventory.len(), inventory.skipped()), (2, 2));
        assert!(!inventory.is_empty());
        assert!(Inventory::default().is_empty());
        assert_eq!(Inventory::default().lookup(ip("127.0.0.1")), None);
        assert_eq!(
            inventory.hosts(),
            &[h("10.0.0.1", "a", ""), h("10.0.0.0/8", "", "ok")]
        );
    }

    #[test]
    fn localhost_entry() {
        let local = h("127.0.0.1", LOCALHOST, LOCALHOST);
        // Appended after the fetched hosts: overrides an entry for 127.0.0.1.
        let inventory = Inventory::with_localhost(vec![
            h("127.0.0.1", "me.example", "mine"),
            h("127.0.0.0/8", "", "loopback-net"),
        ]);
        assert_eq!(inventory.lookup(ip("127.0.0.1")), Some(&local));
        assert_eq!(inventory.lookup(ip("::ffff:127.0.0.1")), Some(&local));
        assert_eq!(inventory.lookup_str("127.0.0.1"), Some(&local));
        // Only the literal 127.0.0.1: other loopback addresses and ::1 are not special.
        assert_eq!(
            inventory
                .lookup(ip("127.0.0.2"))
                .map(|h| h.hostgroup.as_str()),
            Some("loopback-net")
        );
        assert_eq!(inventory.lookup(ip("::1")), None);
        assert_eq!(inventory.len(), 3);
        // Even an empty fetch has it.
        let empty = Inventory::with_localhost(Vec::new());
        assert_eq!(empty.len(), 1);
        assert_eq!(empty.lookup(ip("127.0.0.1")), Some(&local));
    }

    #[test]
    fn lookup_str_keeps_literal_keys() {
        let inventory = Inventory::new(vec![
            h("db-primary", "db.example", "db"),
            h("", "empty-key", ""),
            h(" 10.0.0.9", "spaced", ""),
            h("10.0.0.9", "plain", ""),
            h("10.0.0.0/8", "", "ten"),
        ]);
        let domain = |key: &str| inventory.lookup_str(key).map(|h| h.domain.clone());
        assert_eq!(domain("db-primary").as_deref(), Some("db.example"));
        assert_eq!(domain("").as_deref(), Some("empty-key"));
        assert_eq!(domain(" 10.0.0.9").as_deref(), Some("spaced"));
        assert_eq!(domain("10.0.0.9").as_deref(), Some("plain"));
        assert_eq!(domain("::ffff:10.0.0.9").as_deref(), Some("plain"));
        // Not an exact key, but an IP: networks apply.
        assert_eq!(domain("10.1.1.1").as_deref(), Some(""));
        assert_eq!(domain("db-replica"), None);
        assert_eq!(domain("10.1.1.1/32"), None);
    }

    /// Tiny deterministic generator (xorshift), to avoid a dev-dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// The trie against the linear reference over random overlapping
    /// networks (few distinct high bits, so they nest and collide).
    #[test]
    fn trie_matches_reference() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..200 {
            let mut hosts = Vec::new();
            for i in 0..rng.below(40) {
                let v4 = rng.below(3) != 0;
                let text = if v4 {
                    let a =
                        Ipv4Addr::from(((rng.below(4) as u32) << 28) | rng.below(1 << 12) as u32);
                    match rng.below(4) {
                        0 => a.to_string(),
                        _ => format!("{a}/{}", rng.below(34)),
                    }
                } else {
                    let a = Ipv6Addr::from(
                        (u128::from(rng.below(4)) << 124) | u128::from(rng.below(1 << 12)),
                    );
                    match rng.below(5) {
                        0 => a.to_string(),
                        1 => format!(
                            "::ffff:{}/{}",
                            Ipv4Addr::from(rng.below(1 << 32) as u32),
                            90 + rng.below(40)
                        ),
                        _ => format!("{a}/{}", rng.below(130)),
                    }
                };
                let domain = if rng.below(8) == 0 { "" } else { "d" };
                hosts.push(h(&text, domain, &format!("g{i}")));
            }
            let inventory = Inventory::new(hosts.clone());
            let mut probes = probe_addresses(&hosts);
            for _ in 0..50 {
                probes.push(IpAddr::V4(Ipv4Addr::from(
                    ((rng.below(4) as u32) << 28) | rng.below(1 << 12) as u32,
                )));
                probes.push(IpAddr::V6(Ipv6Addr::from(
                    (u128::from(rng.below(4)) << 124) | u128::from(rng.below(1 << 12)),
                )));
            }
            for probe in probes {
                assert_eq!(
                    inventory.lookup(probe),
                    reference_lookup(&hosts, probe),
                    "round {round}: {probe} in {hosts:?}"
                );
            }
        }
    }

    #[test]
    fn trie_internals() {
        assert_eq!(mask(u128::MAX, 0), 0);
        assert_eq!(mask(u128::MAX, 128), u128::MAX);
        assert_eq!(mask(u128::MAX, 1), 1 << 127);
        assert_eq!(bit(1 << 127, 0), 1);
        assert_eq!(bit(1, 127), 1);
        assert_eq!(common_len(5, 5), 128);
        let mut trie = PrefixTrie::default();
        assert_eq!(trie.longest_match(0), None);
        // Insert deeper first, then shorter, so a middle node is created.
        trie.insert(v4_key(Ipv4Addr::new(10, 1, 0, 0)), 16, 0);
        trie.insert(v4_key(Ipv4Addr::new(10, 2, 0, 0)), 16, 1);
        trie.insert(v4_key(Ipv4Addr::new(10, 0, 0, 0)), 8, 2);
        trie.insert(0, 0, 3);
        trie.insert(0, 0, 4);
        assert!(trie.nodes.len() <= 2 * 4 + 1);
        assert_eq!(
            trie.longest_match(v4_key(Ipv4Addr::new(10, 1, 3, 4))),
            Some(0)
        );
        assert_eq!(
            trie.longest_match(v4_key(Ipv4Addr::new(10, 2, 3, 4))),
            Some(1)
        );
        assert_eq!(
            trie.longest_match(v4_key(Ipv4Addr::new(10, 3, 3, 4))),
            Some(2)
        );
        assert_eq!(
            trie.longest_match(v4_key(Ipv4Addr::new(11, 0, 0, 0))),
            Some(3)
        );
    }
}
