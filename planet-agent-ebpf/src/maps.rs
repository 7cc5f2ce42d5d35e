//! The maps shared with user space. Their static names are the map names the
//! loader looks up (`planet_common::names`).

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use planet_common::{
    FlowMeta, FlowValue, Stat,
    names::{CALLS_MAX_ENTRIES, CLOSED_RING_BYTES, CLOSING_MAX_ENTRIES, FLOWS_MAX_ENTRIES},
};

/// Live flows keyed by `struct sock *`. See `planet_common::names::FLOWS_MAP`.
#[map]
pub static PLANET_FLOWS: HashMap<u64, FlowValue> = HashMap::with_max_entries(FLOWS_MAX_ENTRIES, 0);

/// Final counters of closed flows. See `planet_common::names::CLOSED_RING`.
#[map]
pub static PLANET_CLOSED: RingBuf = RingBuf::with_byte_size(CLOSED_RING_BYTES, 0);

/// Identity of sockets past `TCP_CLOSE` whose owner may still read queued
/// bytes. See `planet_common::names::CLOSING_MAP`.
#[map]
pub static PLANET_CLOSING: LruHashMap<u64, FlowMeta> =
    LruHashMap::with_max_entries(CLOSING_MAX_ENTRIES, 0);

/// Per-CPU counters of what could not be accounted for.
#[map]
pub static PLANET_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Stat::COUNT, 0);

/// Adds `n` to one of this CPU's stats slots.
#[inline(always)]
pub fn bump(stat: Stat, n: u64) {
    if let Some(slot) = PLANET_STATS.get_ptr_mut(stat.index()) {
        // SAFETY: the pointer comes from a successful lookup into a per-CPU
        // array, so it is valid and no other CPU writes this slot.
        unsafe { *slot += n };
    }
}

/// A TCP send or receive in flight on one thread, between the program that
/// sees its arguments and the one that sees its result (`kprobe` mode).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ProbeCall {
    /// `struct sock *` the call works on.
    pub sk: u64,
    /// Bytes of this call already counted (`tcp_cleanup_rbuf` reports a
    /// running total, possibly several times per receive).
    pub counted: u32,
    /// 1 for a `MSG_PEEK` receive, whose bytes stay queued and are not counted.
    pub peek: u32,
}
const _: () = assert!(core::mem::size_of::<ProbeCall>() == 16);

/// Calls in flight keyed by `pid_tgid`. See `planet_common::names::CALLS_MAP`.
/// LRU, so a call whose return was never seen (kretprobe instances ran out)
/// cannot fill the map.
#[map]
pub static PLANET_CALLS: LruHashMap<u64, ProbeCall> =
    LruHashMap::with_max_entries(CALLS_MAX_ENTRIES, 0);
