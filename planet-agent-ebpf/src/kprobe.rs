//! Probe mode `kprobe`: for kernels without the length tracepoints and
//! without BTF trampolines.
//!
//! Sends: a kprobe on `tcp_sendmsg` (and `tcp_sendpage`, which carries
//! `sendfile` before Linux 6.5) remembers the socket; a kretprobe counts
//! the bytes the call returned. The `size` argument is not used: a
//! non-blocking or interrupted send queues less than it asks for.
//!
//! Receives: a kprobe on `tcp_recvmsg` remembers the socket and whether the
//! call peeks; `tcp_cleanup_rbuf(sk, copied)` reports the running total of
//! bytes copied, once or several times per call (`MSG_WAITALL`,
//! `SO_RCVLOWAT`), so only its growth is counted; a kretprobe on
//! `tcp_recvmsg` forgets the call. Lifecycle events come from the shared
//! `inet_sock_set_state` tracepoint program.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{kprobe, kretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use planet_common::MSG_PEEK;

use crate::{
    flow::{self, Dir},
    maps::{PLANET_CALLS, ProbeCall},
};

#[kprobe]
pub fn planet_kp_send(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg::<u64>(0) {
        remember(sk, false);
    }
    0
}

#[kretprobe]
pub fn planet_krp_send(ctx: RetProbeContext) -> u32 {
    let key = bpf_get_current_pid_tgid();
    let ret = ctx.ret::<i64>() as i32;
    // SAFETY: the value is copied out before the entry is removed.
    if let Some(call) = unsafe { PLANET_CALLS.get(key) }.copied() {
        let _ = PLANET_CALLS.remove(key);
        if ret > 0 {
            flow::account(call.sk, Dir::Tx, ret as u64);
        }
    }
    0
}

/// `tcp_recvmsg(sk, msg, len, flags, ...)` (Linux 5.19+).
#[kprobe]
pub fn planet_kp_recv(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(flags)) = (ctx.arg::<u64>(0), ctx.arg::<i64>(3)) {
        remember(sk, (flags as i32) & MSG_PEEK != 0);
    }
    0
}

/// `tcp_recvmsg(sk, msg, len, nonblock, flags, addr_len)` (before 5.19).
/// A program of its own: choosing the register at run time makes LLVM
/// compute the context offset, which the verifier refuses.
#[kprobe]
pub fn planet_kp_recv_nb(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(flags)) = (ctx.arg::<u64>(0), ctx.arg::<i64>(4)) {
        remember(sk, (flags as i32) & MSG_PEEK != 0);
    }
    0
}

#[kprobe]
pub fn planet_kp_rbuf(ctx: ProbeContext) -> u32 {
    let (Some(sk), Some(copied)) = (ctx.arg::<u64>(0), ctx.arg::<i64>(1)) else {
        return 0;
    };
    let copied = copied as i32;
    let key = bpf_get_current_pid_tgid();
    let Some(call) = PLANET_CALLS.get_ptr_mut(key) else {
        // Not inside tcp_recvmsg (splice, sockmap): not a receive the
        // other modes count either.
        return 0;
    };
    // SAFETY: pointer from a successful lookup of this thread's own entry;
    // no other thread writes it.
    unsafe {
        if (*call).sk != sk || (*call).peek != 0 || copied <= 0 {
            return 0;
        }
        let copied = copied as u32;
        if copied > (*call).counted {
            flow::account(sk, Dir::Rx, u64::from(copied - (*call).counted));
            (*call).counted = copied;
        }
    }
    0
}

#[kretprobe]
pub fn planet_krp_recv(_ctx: RetProbeContext) -> u32 {
    let _ = PLANET_CALLS.remove(bpf_get_current_pid_tgid());
    0
}

#[inline(always)]
fn remember(sk: u64, peek: bool) {
    let call = ProbeCall {
        sk,
        counted: 0,
        peek: u32::from(peek),
    };
    let _ = PLANET_CALLS.insert(bpf_get_current_pid_tgid(), call, 0);
}
