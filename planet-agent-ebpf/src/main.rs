//! Planet's kernel programs.
//!
//! Every probe mode ends in the same few calls of [`flow`]: `account` for
//! bytes a process moved, `open` when a connection starts and `close` when
//! it ends. A mode module ([`tracepoint`], [`fentry`], [`kprobe`]) does
//! nothing but extract those facts from its hooks' arguments; every mode
//! shares the `inet_sock_set_state` lifecycle program of [`tracepoint`].
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "atomic add on map values needs core::intrinsics on bpf"
)]

mod config;
mod fentry;
mod flow;
mod global;
mod kprobe;
mod maps;
mod object;
mod tracepoint;
