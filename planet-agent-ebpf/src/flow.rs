//! Mode-independent flow accounting: the only code that writes the maps.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
    bpf_probe_read_kernel_buf,
};
use planet_common::{
    AF_INET, AF_INET6, ClosedFlow, FlowMeta, FlowValue, IPPROTO_TCP, Origin, Stat,
    config::sock_common, flow::META_ADDR_MISSING, names::CLOSED_RING_BYTES,
};

use crate::{
    config::layout,
    maps::{PLANET_CLOSED, PLANET_CLOSING, PLANET_FLOWS, bump},
};

/// `BPF_NOEXIST`: insert only if the key is absent.
const BPF_NOEXIST: u64 = 1;
/// `-EEXIST`, returned by an insert that lost a race with another CPU.
const EEXIST: i32 = -17;

#[derive(Clone, Copy)]
pub enum Dir {
    Tx,
    Rx,
}

/// Counts `bytes` moved by the current process on socket `sk`.
///
/// Runs in the task that called `sendmsg`/`recvmsg`, so the current tgid is
/// the flow's owner. A socket the programs never saw open (it predates them)
/// gets an entry here, with its endpoints read from `struct sock_common`.
#[inline(always)]
pub fn account(sk: u64, dir: Dir, bytes: u64) {
    if !add_to_entry(sk, dir, bytes) {
        first_bytes(sk, dir, bytes);
    }
}

/// [`account`] for a socket of any protocol: a socket not in the flow map
/// is counted only if it is TCP (`sk_protocol`, at the offset the loader
/// measured).
#[inline(always)]
pub fn account_any(sk: u64, dir: Dir, bytes: u64) {
    if add_to_entry(sk, dir, bytes) {
        return;
    }
    let offset = layout!(sock_protocol) as usize;
    if offset == 0 || read_kernel::<u16>(sk, offset) != Some(IPPROTO_TCP) {
        return;
    }
    let family = read_kernel::<u16>(sk, sock_common::FAMILY);
    if family != Some(AF_INET) && family != Some(AF_INET6) {
        return;
    }
    first_bytes(sk, dir, bytes);
}

/// The first bytes seen on a TCP socket not in the flow map.
#[inline(always)]
fn first_bytes(sk: u64, dir: Dir, bytes: u64) {
    // Bytes read after the socket reached TCP_CLOSE (the peer's data and FIN
    // arrived before the owner read them) belong to the flow that closed.
    let meta = match PLANET_CLOSING.get_ptr(sk) {
        // SAFETY: pointer from a successful lookup; FlowMeta is plain data.
        Some(closed) => unsafe { *closed },
        None => read_sock_meta(sk),
    };
    let mut value = FlowValue {
        meta,
        first_seen_ns: now(),
        tx_bytes: 0,
        rx_bytes: 0,
    };
    set_owner(&mut value.meta);
    match dir {
        Dir::Tx => value.tx_bytes = bytes,
        Dir::Rx => value.rx_bytes = bytes,
    }
    match PLANET_FLOWS.insert(sk, value, BPF_NOEXIST) {
        Ok(()) => {}
        Err(EEXIST) => {
            add_to_entry(sk, dir, bytes);
        }
        Err(_) => not_tracked(dir, bytes),
    }
}

/// How a lifecycle event relates to an entry that may already exist.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Birth {
    /// `connect()` or a new child socket: any existing entry for this
    /// address belongs to an earlier socket whose memory was reused.
    New,
    /// The handshake of an accepted socket completed: an existing entry is
    /// this same connection (created at `SYN_RECV`).
    Established,
}

/// Records that `sk` started a connection of the given origin.
///
/// `owned_by_current` is true where the hook runs in the owning task
/// (`connect()`); accepted sockets are born in softirq context and get
/// their owner on the first send or receive.
#[inline(always)]
pub fn open(sk: u64, mut meta: FlowMeta, origin: Origin, birth: Birth, owned_by_current: bool) {
    if let Some(value) = PLANET_FLOWS.get_ptr_mut(sk) {
        if birth == Birth::Established {
            // Some kernels (6.12) announce SYN_RECV before the child socket
            // has its peer's address; by ESTABLISHED it has.
            // SAFETY: pointer from a successful lookup; plain data.
            unsafe {
                (*value).meta.family = meta.family;
                (*value).meta.local_port = meta.local_port;
                (*value).meta.remote_port = meta.remote_port;
                (*value).meta.local_addr = meta.local_addr;
                (*value).meta.remote_addr = meta.remote_addr;
            }
            return;
        }
        // The old flow ended without us seeing it go: report it first.
        close(sk);
    }
    let _ = PLANET_CLOSING.remove(sk);
    meta.origin = origin as u8;
    if owned_by_current {
        set_owner(&mut meta);
    }
    let value = FlowValue {
        meta,
        first_seen_ns: now(),
        tx_bytes: 0,
        rx_bytes: 0,
    };
    if PLANET_FLOWS.insert(sk, value, BPF_NOEXIST).is_err() && PLANET_FLOWS.get_ptr(sk).is_none() {
        bump(Stat::FlowsNotTracked, 1);
    }
}

/// The socket reached `TCP_CLOSE`: emit its counters, but remember its
/// identity in case its owner still reads queued bytes.
#[inline(always)]
pub fn closing(sk: u64) {
    if let Some(value) = PLANET_FLOWS.get_ptr(sk) {
        // SAFETY: pointer from a successful lookup; FlowMeta is plain data.
        let meta = unsafe { (*value).meta };
        let _ = PLANET_CLOSING.insert(sk, meta, 0);
    }
    close(sk);
}

/// The socket is being freed: emit whatever is left and forget it.
#[inline(always)]
pub fn destroyed(sk: u64) {
    close(sk);
    let _ = PLANET_CLOSING.remove(sk);
}

/// Emits the final counters of `sk`'s flow and forgets it.
#[inline(always)]
pub fn close(sk: u64) {
    let Some(value) = PLANET_FLOWS.get_ptr(sk) else {
        return;
    };
    match PLANET_CLOSED.reserve::<ClosedFlow>(0) {
        Some(mut entry) => {
            // SAFETY: pointer from a successful lookup; the copy is taken
            // before the entry is removed.
            let flow = unsafe { *value };
            entry.write(ClosedFlow { sock: sk, flow });
            let _ = PLANET_FLOWS.remove(sk);
            entry.submit(wakeup_flags());
        }
        None => {
            bump(Stat::CloseRecordsLost, 1);
            let _ = PLANET_FLOWS.remove(sk);
        }
    }
}

/// Unread close records at which user space is woken. Below it the flow
/// task reads them at its next interval drain: a wake-up per close costs
/// an interrupt (a VM exit on virtual machines) on every connection's end.
const WAKEUP_BYTES: u64 = CLOSED_RING_BYTES as u64 / 8;

#[inline(always)]
fn wakeup_flags() -> u64 {
    if PLANET_CLOSED.query(u64::from(BPF_RB_AVAIL_DATA)) >= WAKEUP_BYTES {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    }
}

/// Adds `bytes` to the flow map's entry of `sk`; false when it has none.
#[inline(always)]
fn add_to_entry(sk: u64, dir: Dir, bytes: u64) -> bool {
    match PLANET_FLOWS.get_ptr_mut(sk) {
        Some(value) => {
            add(value, dir, bytes);
            true
        }
        None => false,
    }
}

#[inline(always)]
fn add(value: *mut FlowValue, dir: Dir, bytes: u64) {
    // SAFETY: `value` comes from a successful map lookup; the counters are
    // only ever updated with atomic adds, from any CPU.
    unsafe {
        let counter = match dir {
            Dir::Tx => &raw mut (*value).tx_bytes,
            Dir::Rx => &raw mut (*value).rx_bytes,
        };
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, bytes);
        if (*value).meta.tgid == 0 {
            set_owner(&mut (*value).meta);
        }
    }
}

#[inline(always)]
fn not_tracked(dir: Dir, bytes: u64) {
    bump(Stat::FlowsNotTracked, 1);
    match dir {
        Dir::Tx => bump(Stat::TxBytesNotTracked, bytes),
        Dir::Rx => bump(Stat::RxBytesNotTracked, bytes),
    }
}

#[inline(always)]
fn set_owner(meta: &mut FlowMeta) {
    meta.tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    meta.comm = bpf_get_current_comm().unwrap_or([0; 16]);
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// Reads a field of the kernel object at `base + offset`.
#[inline(always)]
fn read_kernel<T>(base: u64, offset: usize) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel validates the address and fails cleanly.
    match unsafe { bpf_probe_read_kernel((base as usize + offset) as *const T) } {
        Ok(v) => Some(v),
        Err(_) => {
            bump(Stat::ReadErrors, 1);
            None
        }
    }
}

/// Copies `dst.len()` bytes of the kernel object at `base + offset` into
/// `dst`, straight into place: no `Option` of an array travels through
/// registers, which older verifiers (Linux 6.1) reject as reads of
/// uninitialised registers on paths LLVM knows to be dead.
#[inline(always)]
fn read_into(base: u64, offset: usize, dst: &mut [u8]) -> bool {
    // SAFETY: bpf_probe_read_kernel validates the address and fails cleanly.
    match unsafe { bpf_probe_read_kernel_buf((base as usize + offset) as *const u8, dst) } {
        Ok(()) => true,
        Err(_) => {
            bump(Stat::ReadErrors, 1);
            false
        }
    }
}

/// Endpoints of a socket first seen mid-flight, from `struct sock_common`.
#[inline(always)]
fn read_sock_meta(sk: u64) -> FlowMeta {
    let mut meta = FlowMeta::ZERO;
    meta.family = read_kernel::<u16>(sk, sock_common::FAMILY).unwrap_or(0);
    meta.remote_port = u16::from_be(read_kernel::<u16>(sk, sock_common::DPORT).unwrap_or(0));
    meta.local_port = read_kernel::<u16>(sk, sock_common::NUM).unwrap_or(0);
    let complete = if meta.family == AF_INET {
        read_into(sk, sock_common::RCV_SADDR, &mut meta.local_addr[..4])
            & read_into(sk, sock_common::DADDR, &mut meta.remote_addr[..4])
    } else if meta.family == AF_INET6 {
        let local = layout!(sock_v6_rcv_saddr) as usize;
        let remote = layout!(sock_v6_daddr) as usize;
        local != 0
            && remote != 0
            && read_into(sk, local, &mut meta.local_addr)
            && read_into(sk, remote, &mut meta.remote_addr)
    } else {
        true
    };
    if !complete {
        meta.local_addr = [0; 16];
        meta.remote_addr = [0; 16];
        meta.flags |= META_ADDR_MISSING;
    }
    meta
}
