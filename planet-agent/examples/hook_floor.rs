//! Attaches the hook floor (`planet-hook-floor`: raw tracepoint programs
//! that return at once on `sock_send_length` and `sock_recv_length`), says
//! `attached` on stdout, and holds them until SIGTERM or SIGINT.
//!
//! For `cargo xtask bench-overhead` only: the traffic rate with these
//! attached is the best any program on the flow task's per-call events can
//! do on the running kernel.

use anyhow::{Context as _, Result, bail};
use aya::{Ebpf, programs::RawTracePoint};
use planet_common::names::hook_floor;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/planet-hook-floor"));

const PROGRAMS: [(&str, &str); 2] = [
    (hook_floor::SEND, "sock_send_length"),
    (hook_floor::RECV, "sock_recv_length"),
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    if OBJECT.is_empty() {
        bail!("built with AYA_BUILD_SKIP: no eBPF object to load");
    }
    let mut ebpf = Ebpf::load(OBJECT).context("load planet-hook-floor")?;
    for (name, event) in PROGRAMS {
        let program: &mut RawTracePoint = ebpf
            .program_mut(name)
            .with_context(|| format!("{name} is not in the object"))?
            .try_into()?;
        program.load().with_context(|| format!("load {name}"))?;
        program
            .attach(event)
            .with_context(|| format!("attach {name} to {event}"))?;
    }
    println!("attached");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(ebpf);
    Ok(())
}
