//! The hook floor (object `planet-hook-floor`), for benchmarks only: raw
//! tracepoint programs on the flow task's two per-call events,
//! `sock_send_length` and `sock_recv_length`, that return at once.
//!
//! Whatever they cost is the price of having any program on those events
//! (the kernel's tracepoint dispatch and BPF run wrapper), which no program
//! of ours can go below. `cargo xtask bench-overhead` measures the traffic
//! with them attached beside "detached" and "attached" (the real agent), so
//! the agent's own share of the overhead is the difference to this floor.
#![no_std]
#![no_main]

mod object;

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn planet_floor_send(_ctx: RawTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn planet_floor_recv(_ctx: RawTracePointContext) -> i32 {
    0
}
