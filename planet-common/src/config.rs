//! Layout facts about the running kernel that the loader measures and hands
//! to the programs as a read-only global, so no program hard-codes offsets
//! from the kernel it was built against.

use core::mem::size_of;

/// Byte offsets of the fields the programs read.
///
/// Tracepoint offsets come from each event's `format` file in tracefs;
/// socket offsets beyond `sock_common`'s stable prefix come from the
/// kernel's BTF. An offset of 0 means "unknown on this kernel" for the
/// socket fields (offset 0 is `skc_daddr`, never an IPv6 field).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// `sock:sock_{send,recv}_length`: `sk`.
    pub len_sk: u16,
    /// `sock:sock_{send,recv}_length`: `protocol` (`__u16`).
    pub len_protocol: u16,
    /// `sock:sock_{send,recv}_length`: `ret` (`int`).
    pub len_ret: u16,
    /// `sock:sock_{send,recv}_length`: `flags` (`int`).
    pub len_flags: u16,
    /// `sock:inet_sock_set_state`: `skaddr`.
    pub state_skaddr: u16,
    pub state_oldstate: u16,
    pub state_newstate: u16,
    pub state_sport: u16,
    pub state_dport: u16,
    pub state_family: u16,
    pub state_protocol: u16,
    pub state_saddr: u16,
    pub state_daddr: u16,
    pub state_saddr_v6: u16,
    pub state_daddr_v6: u16,
    /// `struct sock_common`: `skc_v6_daddr` (0 = unknown).
    pub sock_v6_daddr: u16,
    /// `struct sock_common`: `skc_v6_rcv_saddr` (0 = unknown).
    pub sock_v6_rcv_saddr: u16,
    /// `tcp:tcp_destroy_sock`: `skaddr` (0 = event not used).
    pub destroy_skaddr: u16,
    /// 1 when the length tracepoints have exactly [`LENGTH_LAYOUT`]: the
    /// programs then load the fields straight from the record instead of
    /// through a helper call each (measured, not assumed).
    pub len_fixed_layout: u16,
    /// `struct sock`: `sk_protocol` (`u16`, from BTF; 0 = unknown). The raw
    /// length programs, which see only the socket pointer, check it for
    /// sockets they have not seen yet.
    pub sock_protocol: u16,
    /// 1 when `sock:inet_sock_set_state` has exactly [`STATE_LAYOUT`]: the
    /// lifecycle program then loads its fields straight from the record.
    pub state_fixed_layout: u16,
    pub reserved: u16,
}
const _: () = assert!(size_of::<ProbeConfig>() == 44);

impl ProbeConfig {
    /// All offsets unknown; what the object holds before the loader fills it.
    pub const UNSET: Self = Self {
        len_sk: 0,
        len_protocol: 0,
        len_ret: 0,
        len_flags: 0,
        state_skaddr: 0,
        state_oldstate: 0,
        state_newstate: 0,
        state_sport: 0,
        state_dport: 0,
        state_family: 0,
        state_protocol: 0,
        state_saddr: 0,
        state_daddr: 0,
        state_saddr_v6: 0,
        state_daddr_v6: 0,
        sock_v6_daddr: 0,
        sock_v6_rcv_saddr: 0,
        destroy_skaddr: 0,
        len_fixed_layout: 0,
        sock_protocol: 0,
        state_fixed_layout: 0,
        reserved: 0,
    };
}

/// The `sock:sock_{send,recv}_length` layout of Linux 6.3 onwards:
/// offsets of `sk`, `protocol`, `ret` and `flags`.
pub const LENGTH_LAYOUT: [u16; 4] = [8, 18, 20, 24];

/// Offsets of the `sock:inet_sock_set_state` record's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateLayout {
    pub skaddr: u16,
    pub oldstate: u16,
    pub newstate: u16,
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    pub protocol: u16,
    pub saddr: u16,
    pub daddr: u16,
    pub saddr_v6: u16,
    pub daddr_v6: u16,
}

/// The `sock:inet_sock_set_state` layout since Linux 4.16, when the event
/// moved to the `sock` system with its `protocol` field.
pub const STATE_LAYOUT: StateLayout = StateLayout {
    skaddr: 8,
    oldstate: 16,
    newstate: 20,
    sport: 24,
    dport: 26,
    family: 28,
    protocol: 30,
    saddr: 32,
    daddr: 36,
    saddr_v6: 40,
    daddr_v6: 56,
};

/// Offsets inside `struct sock_common` that have not moved since Linux 2.6
/// (`include/net/sock.h`): the first 20 bytes. Anything else is measured.
pub mod sock_common {
    /// `skc_daddr`: remote IPv4 address, network order.
    pub const DADDR: usize = 0;
    /// `skc_rcv_saddr`: local IPv4 address, network order.
    pub const RCV_SADDR: usize = 4;
    /// `skc_dport`: remote port, network order.
    pub const DPORT: usize = 12;
    /// `skc_num`: local port, host order.
    pub const NUM: usize = 14;
    /// `skc_family`.
    pub const FAMILY: usize = 16;
}
