//! Probe mode `fentry`: fexit programs on the TCP send and receive
//! functions. An fexit program sees the arguments and the return value
//! together, so counts are exact from the return value alone (partial,
//! failed and peeking calls included) with no state between programs.
//!
//! The return value sits in the context slot after the last argument; it
//! is read there rather than with `bpf_get_func_ret` (Linux 5.17+), so the
//! mode works from Linux 5.5 on. Lifecycle events come from the shared
//! `inet_sock_set_state` tracepoint program.

use aya_ebpf::{macros::fexit, programs::FExitContext};
use planet_common::MSG_PEEK;

use crate::flow::{self, Dir};

/// `int tcp_sendmsg(struct sock *sk, struct msghdr *msg, size_t size)`.
#[fexit]
pub fn planet_fx_send(ctx: FExitContext) -> u32 {
    count(ctx.arg(0), Dir::Tx, ctx.arg::<i64>(3) as i32);
    0
}

/// `int tcp_sendpage(struct sock *sk, struct page *page, int offset, size_t size, int flags)`.
#[fexit]
pub fn planet_fx_sendpage(ctx: FExitContext) -> u32 {
    count(ctx.arg(0), Dir::Tx, ctx.arg::<i64>(5) as i32);
    0
}

/// `int tcp_recvmsg(struct sock *sk, struct msghdr *msg, size_t len, int flags)`.
#[fexit]
pub fn planet_fx_recv4(ctx: FExitContext) -> u32 {
    if (ctx.arg::<i64>(3) as i32) & MSG_PEEK == 0 {
        count(ctx.arg(0), Dir::Rx, ctx.arg::<i64>(4) as i32);
    }
    0
}

/// `int tcp_recvmsg(struct sock *sk, struct msghdr *msg, size_t len, int flags, int *addr_len)`.
#[fexit]
pub fn planet_fx_recv5(ctx: FExitContext) -> u32 {
    if (ctx.arg::<i64>(3) as i32) & MSG_PEEK == 0 {
        count(ctx.arg(0), Dir::Rx, ctx.arg::<i64>(5) as i32);
    }
    0
}

/// `int tcp_recvmsg(struct sock *sk, struct msghdr *msg, size_t len, int nonblock, int flags, int *addr_len)`.
#[fexit]
pub fn planet_fx_recv6(ctx: FExitContext) -> u32 {
    if (ctx.arg::<i64>(4) as i32) & MSG_PEEK == 0 {
        count(ctx.arg(0), Dir::Rx, ctx.arg::<i64>(6) as i32);
    }
    0
}

#[inline(always)]
fn count(sk: u64, dir: Dir, ret: i32) {
    if ret > 0 {
        flow::account(sk, dir, ret as u64);
    }
}
