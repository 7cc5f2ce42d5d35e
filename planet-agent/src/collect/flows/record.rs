//! Kernel flow records decoded into user-space values.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use planet_common::{AF_INET, AF_INET6, FlowValue, Origin, flow::META_ADDR_MISSING};

/// Names one connection: the socket's kernel address plus the time the
/// programs first saw it (the kernel reuses socket memory, not this pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId {
    pub sock: u64,
    pub first_seen_ns: u64,
}

/// Byte counters of one flow, as the owning process saw them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Bytes sent (egress).
    pub tx: u64,
    /// Bytes received (ingress).
    pub rx: u64,
}

impl Counts {
    /// What `self` added since `earlier`. A counter that went backwards
    /// cannot happen for one flow id; treat it as a fresh flow.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            tx: self.tx.checked_sub(earlier.tx).unwrap_or(self.tx),
            rx: self.rx.checked_sub(earlier.rx).unwrap_or(self.rx),
        }
    }

    pub fn is_zero(self) -> bool {
        self.tx == 0 && self.rx == 0
    }
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Self) {
        self.tx = self.tx.saturating_add(other.tx);
        self.rx = self.rx.saturating_add(other.rx);
    }
}

/// A flow as user space sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub id: FlowId,
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    pub origin: Origin,
    /// Set when the kernel could not read the addresses (IPv6 socket that
    /// predates the programs on a kernel without BTF).
    pub addresses_missing: bool,
    pub tgid: u32,
    pub comm: Arc<str>,
    pub counts: Counts,
}

impl Flow {
    pub fn from_kernel(sock: u64, value: &FlowValue) -> Self {
        let meta = &value.meta;
        let (local, remote) = match meta.family {
            AF_INET => (v4(&meta.local_addr), v4(&meta.remote_addr)),
            AF_INET6 => (v6(meta.local_addr), v6(meta.remote_addr)),
            _ => (
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ),
        };
        Self {
            id: FlowId {
                sock,
                first_seen_ns: value.first_seen_ns,
            },
            local,
            local_port: meta.local_port,
            remote,
            remote_port: meta.remote_port,
            origin: meta.origin(),
            addresses_missing: meta.flags & META_ADDR_MISSING != 0,
            tgid: meta.tgid,
            comm: comm(&meta.comm),
            counts: Counts {
                tx: value.tx_bytes,
                rx: value.rx_bytes,
            },
        }
    }
}

fn v4(bytes: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
}

/// IPv6, with IPv4-mapped addresses (dual-stack sockets) shown as IPv4.
fn v6(bytes: [u8; 16]) -> IpAddr {
    let addr = Ipv6Addr::from(bytes);
    match addr.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(addr),
    }
}

/// The kernel `comm` as text: up to the first NUL, invalid UTF-8 replaced
/// (comm is user-settable and may hold any bytes).
pub fn comm(raw: &[u8; 16]) -> Arc<str> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    Arc::from(String::from_utf8_lossy(&raw[..end]).as_ref())
}

#[cfg(test)]
mod tests {
    use planet_common::FlowMeta;

    use super::*;

    fn value(family: u16, local: [u8; 16], remote: [u8; 16]) -> FlowValue {
        let mut meta = FlowMeta::ZERO;
        meta.family = family;
        meta.local_addr = local;
        meta.remote_addr = remote;
        meta.local_port = 40000;
        meta.remote_port = 443;
        meta.origin = Origin::Connected as u8;
        meta.tgid = 42;
        meta.comm[..4].copy_from_slice(b"curl");
        FlowValue {
            meta,
            first_seen_ns: 7,
            tx_bytes: 10,
            rx_bytes: 20,
        }
    }

    #[test]
    fn decodes_ipv4() {
        let mut l = [0; 16];
        l[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut r = [0; 16];
        r[..4].copy_from_slice(&[10, 0, 0, 2]);
        let flow = Flow::from_kernel(0xffff_8880_0000_1000, &value(AF_INET, l, r));
        assert_eq!(flow.local, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(flow.remote, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((flow.local_port, flow.remote_port), (40000, 443));
        assert_eq!(flow.origin, Origin::Connected);
        assert_eq!(&*flow.comm, "curl");
        assert_eq!(flow.counts, Counts { tx: 10, rx: 20 });
        assert_eq!(flow.id.first_seen_ns, 7);
    }

    #[test]
    fn shows_ipv4_mapped_ipv6_as_ipv4() {
        let mapped = "::ffff:192.0.2.7".parse::<Ipv6Addr>().unwrap().octets();
        let plain = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
        let flow = Flow::from_kernel(1, &value(AF_INET6, mapped, plain));
        assert_eq!(flow.local, "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(flow.remote, "fd00::2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn comm_survives_invalid_utf8_and_full_length() {
        let mut raw = [0u8; 16];
        raw[..3].copy_from_slice(&[b'a', 0xff, b'b']);
        assert_eq!(&*comm(&raw), "a\u{fffd}b");
        assert_eq!(&*comm(&[b'x'; 16]), "xxxxxxxxxxxxxxxx");
    }

    #[test]
    fn counts_since() {
        let now = Counts { tx: 10, rx: 5 };
        assert_eq!(now.since(Counts { tx: 4, rx: 5 }), Counts { tx: 6, rx: 0 });
        assert_eq!(
            now.since(Counts { tx: 11, rx: 0 }),
            Counts { tx: 10, rx: 5 }
        );
    }
}
