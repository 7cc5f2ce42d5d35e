//! Probe mode `tracepoint`: `sock:sock_send_length`, `sock:sock_recv_length`
//! (Linux 6.3+) for exact byte counts from the syscalls' return values, and
//! `sock:inet_sock_set_state` for the connection lifecycle.
//!
//! The byte counts come from raw tracepoint programs where the kernel's BTF
//! tells where `sk_protocol` sits: a raw tracepoint hands the program the
//! event's arguments (`sk`, `ret`, `flags`) without first building the
//! trace record, which is most of a classic tracepoint's per-event cost.
//! Elsewhere the classic programs read the record.
//!
//! Field offsets come from the tracepoints' `format` files and the kernel's
//! BTF (via the `PLANET_CONFIG` global), not from the kernel the object was
//! built on.

use aya_ebpf::{
    EbpfContext,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use planet_common::{
    AF_INET, AF_INET6, FlowMeta, IPPROTO_TCP, MSG_PEEK, Origin,
    config::{LENGTH_LAYOUT, STATE_LAYOUT},
    tcp_state,
};

use crate::{
    config::layout,
    flow::{self, Birth, Dir},
};

#[tracepoint]
pub fn planet_tp_send(ctx: TracePointContext) -> u32 {
    let _ = on_length(&ctx, Dir::Tx);
    0
}

#[tracepoint]
pub fn planet_tp_recv(ctx: TracePointContext) -> u32 {
    let _ = on_length(&ctx, Dir::Rx);
    0
}

/// `sock_send_length(struct sock *sk, int ret, int flags)`, raw.
#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn planet_rtp_send(ctx: RawTracePointContext) -> i32 {
    on_raw_length(&ctx, Dir::Tx);
    0
}

/// `sock_recv_length(struct sock *sk, int ret, int flags)`, raw.
#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn planet_rtp_recv(ctx: RawTracePointContext) -> i32 {
    on_raw_length(&ctx, Dir::Rx);
    0
}

#[tracepoint]
pub fn planet_tp_state(ctx: TracePointContext) -> u32 {
    let _ = on_state(&ctx);
    0
}

#[inline(always)]
fn field<T>(ctx: &TracePointContext, offset: u16) -> Result<T, i32> {
    // SAFETY: `read_at` goes through bpf_probe_read_kernel, which checks the address.
    unsafe { ctx.read_at::<T>(offset as usize) }
}

/// Loads a field of the record directly. Only for offsets the loader
/// verified against the event's format (`len_fixed_layout`,
/// `state_fixed_layout`).
#[inline(always)]
fn load<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: the record is 8-byte aligned and every offset is a multiple of
    // its field's alignment; the verifier bounds-checks constant-offset
    // loads, and the loader sets the fixed-layout flags only after matching
    // the offsets against this kernel's format file.
    unsafe { ctx.as_ptr().cast::<u8>().add(offset).cast::<T>().read() }
}

#[inline(always)]
fn on_length(ctx: &TracePointContext, dir: Dir) -> Result<(), i32> {
    if layout!(len_fixed_layout) != 0 {
        let [sk_at, protocol_at, ret_at, flags_at] = LENGTH_LAYOUT;
        let ret: i32 = load(ctx, ret_at as usize);
        if ret <= 0 || load::<u16>(ctx, protocol_at as usize) != IPPROTO_TCP {
            return Ok(());
        }
        if let Dir::Rx = dir
            && load::<i32>(ctx, flags_at as usize) & MSG_PEEK != 0
        {
            return Ok(());
        }
        flow::account(load(ctx, sk_at as usize), dir, ret as u64);
        return Ok(());
    }
    let ret: i32 = field(ctx, layout!(len_ret))?;
    if ret <= 0 {
        return Ok(());
    }
    let protocol: u16 = field(ctx, layout!(len_protocol))?;
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    if let Dir::Rx = dir {
        let flags: i32 = field(ctx, layout!(len_flags))?;
        if flags & MSG_PEEK != 0 {
            return Ok(());
        }
    }
    let sk: u64 = field(ctx, layout!(len_sk))?;
    flow::account(sk, dir, ret as u64);
    Ok(())
}

#[inline(always)]
fn on_raw_length(ctx: &RawTracePointContext, dir: Dir) {
    let ret = ctx.arg::<u64>(1) as i32;
    if ret <= 0 {
        return;
    }
    if let Dir::Rx = dir
        && ctx.arg::<u64>(2) as i32 & MSG_PEEK != 0
    {
        return;
    }
    // The event fires for every socket family and protocol; the flow map
    // holds only TCP sockets, and a socket it does not hold yet is checked.
    flow::account_any(ctx.arg::<u64>(0), dir, ret as u64);
}

/// Reads the fields of an `inet_sock_set_state` record: straight from the
/// record where the loader matched the event's format against
/// [`STATE_LAYOUT`] (`state_fixed_layout`), through the checked helper at
/// the measured offsets elsewhere.
struct StateRecord<'a> {
    ctx: &'a TracePointContext,
    fixed: bool,
}

impl StateRecord<'_> {
    /// The scalar field at `fixed_at` in [`STATE_LAYOUT`], `measured_at`
    /// otherwise. (Arrays go through [`Self::ipv4`] and [`Self::ipv6`]: the
    /// verifier allows only constant-offset scalar loads from the record.)
    #[inline(always)]
    fn get<T: Copy>(&self, fixed_at: u16, measured_at: u16) -> Result<T, i32> {
        if self.fixed {
            Ok(load(self.ctx, fixed_at as usize))
        } else {
            field(self.ctx, measured_at)
        }
    }

    /// A 4-byte address field, as one 4-byte load when the layout is fixed.
    #[inline(always)]
    fn ipv4(&self, fixed_at: u16, measured_at: u16) -> Result<[u8; 4], i32> {
        if self.fixed {
            Ok(load::<u32>(self.ctx, fixed_at as usize).to_ne_bytes())
        } else {
            field(self.ctx, measured_at)
        }
    }

    /// A 16-byte address field, as two 8-byte loads when the layout is fixed.
    #[inline(always)]
    fn ipv6(&self, fixed_at: u16, measured_at: u16) -> Result<[u8; 16], i32> {
        if self.fixed {
            let high = load::<u64>(self.ctx, fixed_at as usize).to_ne_bytes();
            let low = load::<u64>(self.ctx, fixed_at as usize + 8).to_ne_bytes();
            let mut address = [0u8; 16];
            address[..8].copy_from_slice(&high);
            address[8..].copy_from_slice(&low);
            Ok(address)
        } else {
            field(self.ctx, measured_at)
        }
    }
}

#[inline(always)]
fn on_state(ctx: &TracePointContext) -> Result<(), i32> {
    let record = StateRecord {
        ctx,
        fixed: layout!(state_fixed_layout) != 0,
    };
    let protocol: u16 = record.get(STATE_LAYOUT.protocol, layout!(state_protocol))?;
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    let sk: u64 = record.get(STATE_LAYOUT.skaddr, layout!(state_skaddr))?;
    let old: i32 = record.get(STATE_LAYOUT.oldstate, layout!(state_oldstate))?;
    let new: i32 = record.get(STATE_LAYOUT.newstate, layout!(state_newstate))?;
    match new {
        tcp_state::SYN_SENT => {
            flow::open(sk, endpoints(&record)?, Origin::Connected, Birth::New, true)
        }
        tcp_state::SYN_RECV => {
            flow::open(sk, endpoints(&record)?, Origin::Accepted, Birth::New, false)
        }
        tcp_state::ESTABLISHED if old == tcp_state::SYN_RECV => flow::open(
            sk,
            endpoints(&record)?,
            Origin::Accepted,
            Birth::Established,
            false,
        ),
        tcp_state::CLOSE => flow::closing(sk),
        _ => {}
    }
    Ok(())
}

#[tracepoint]
pub fn planet_tp_destroy(ctx: TracePointContext) -> u32 {
    let offset = layout!(destroy_skaddr);
    if offset != 0
        && let Ok(sk) = field::<u64>(&ctx, offset)
    {
        flow::destroyed(sk);
    }
    0
}

/// The socket's endpoints as the tracepoint reports them (ports in host order).
#[inline(always)]
fn endpoints(record: &StateRecord<'_>) -> Result<FlowMeta, i32> {
    let mut meta = FlowMeta::ZERO;
    meta.family = record.get(STATE_LAYOUT.family, layout!(state_family))?;
    meta.local_port = record.get(STATE_LAYOUT.sport, layout!(state_sport))?;
    meta.remote_port = record.get(STATE_LAYOUT.dport, layout!(state_dport))?;
    if meta.family == AF_INET {
        let local = record.ipv4(STATE_LAYOUT.saddr, layout!(state_saddr))?;
        let remote = record.ipv4(STATE_LAYOUT.daddr, layout!(state_daddr))?;
        meta.local_addr[..4].copy_from_slice(&local);
        meta.remote_addr[..4].copy_from_slice(&remote);
    } else if meta.family == AF_INET6 {
        meta.local_addr = record.ipv6(STATE_LAYOUT.saddr_v6, layout!(state_saddr_v6))?;
        meta.remote_addr = record.ipv6(STATE_LAYOUT.daddr_v6, layout!(state_daddr_v6))?;
    }
    Ok(meta)
}
