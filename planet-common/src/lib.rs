//! Plain data shared by Planet's eBPF programs (`planet-agent-ebpf`) and the
//! user-space agent (`planet-agent`).
//!
//! Everything here is `#[repr(C)]`, free of padding and `bool`s, and checked
//! for size at compile time, because the kernel side writes these bytes and
//! the user side reads them back. Map and program names are defined once
//! here so both sides agree on them.
#![no_std]

pub mod config;
pub mod flow;
pub mod names;
pub mod sockets;
pub mod stats;

pub use config::ProbeConfig;
pub use flow::{ClosedFlow, FlowMeta, FlowValue, Origin};
pub use sockets::{SocketIterConfig, SocketOwnerRecord};
pub use stats::Stat;

/// `AF_INET` as the kernel numbers it.
pub const AF_INET: u16 = 2;
/// `AF_INET6` as the kernel numbers it.
pub const AF_INET6: u16 = 10;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;
/// `MSG_PEEK`: a peeking receive copies bytes without consuming them.
pub const MSG_PEEK: i32 = 2;

/// TCP states as `include/net/tcp_states.h` numbers them (a stable ABI).
pub mod tcp_state {
    pub const ESTABLISHED: i32 = 1;
    pub const SYN_SENT: i32 = 2;
    pub const SYN_RECV: i32 = 3;
    pub const CLOSE: i32 = 7;
    pub const LISTEN: i32 = 10;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type below is `#[repr(C)]`, `Copy`, has no padding
    // (checked by the size asserts next to each definition) and accepts any
    // bit pattern.
    unsafe impl aya::Pod for crate::FlowValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::FlowMeta {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::ClosedFlow {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::ProbeConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::SocketIterConfig {}
}
