//! Per-flow records written by the kernel programs.

use core::mem::size_of;

/// Who opened a connection, seen from this host.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The flow predates the programs (first seen on a send or receive).
    Unknown = 0,
    /// A local process called `connect()`: this host depends on the peer.
    Connected = 1,
    /// A local listener accepted it: the peer depends on this host.
    Accepted = 2,
}

impl Origin {
    /// Decodes the byte the kernel stored; unknown values read as [`Origin::Unknown`].
    pub const fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Connected,
            2 => Self::Accepted,
            _ => Self::Unknown,
        }
    }
}

/// [`FlowMeta::flags`]: the IPv6 addresses could not be read (the kernel's
/// layout of `struct sock_common` was unknown); user space fills them in.
pub const META_ADDR_MISSING: u8 = 1;

/// Identity of a flow: endpoints, family, origin and owning process.
///
/// Addresses are raw network-order bytes; IPv4 uses the first four. Ports
/// are host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowMeta {
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// An [`Origin`] as `u8`.
    pub origin: u8,
    /// `META_*` bits.
    pub flags: u8,
    /// Thread-group id (the user-visible pid) of the process doing I/O; 0 until known.
    pub tgid: u32,
    pub _reserved: u32,
    /// The kernel `comm` of that process, NUL padded (may hold any bytes).
    pub comm: [u8; 16],
}
const _: () = assert!(size_of::<FlowMeta>() == 64);

impl FlowMeta {
    pub const ZERO: Self = Self {
        local_addr: [0; 16],
        remote_addr: [0; 16],
        local_port: 0,
        remote_port: 0,
        family: 0,
        origin: 0,
        flags: 0,
        tgid: 0,
        _reserved: 0,
        comm: [0; 16],
    };

    pub const fn origin(&self) -> Origin {
        Origin::from_u8(self.origin)
    }
}

/// Value of the live-flow map: identity plus cumulative byte counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowValue {
    pub meta: FlowMeta,
    /// `bpf_ktime_get_ns()` when the programs first saw the flow. Together
    /// with the socket address it names one connection: the kernel reuses
    /// socket memory, never this pair.
    pub first_seen_ns: u64,
    /// Bytes the owning process sent (successful `sendmsg` returns).
    pub tx_bytes: u64,
    /// Bytes the owning process received (successful, non-peeking `recvmsg` returns).
    pub rx_bytes: u64,
}
const _: () = assert!(size_of::<FlowValue>() == 88);

/// Ring-buffer record of a flow that reached `TCP_CLOSE`, with its final counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClosedFlow {
    /// The `struct sock *` the flow was keyed by.
    pub sock: u64,
    pub flow: FlowValue,
}
const _: () = assert!(size_of::<ClosedFlow>() == 96);
