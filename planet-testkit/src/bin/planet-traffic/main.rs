//! `planet-traffic`: a TCP traffic generator that reports exactly how many bytes
//! it sent and received (the sum of successful syscall return values), for
//! checking the agent's per-flow byte counters, plus loopback benchmarks.
//!
//! Every mode first renames its process (`prctl(PR_SET_NAME)`) to `--comm`, so
//! tests can find its flows by `process_name`, and ends by printing one JSON
//! line on stdout (see `planet_testkit::report`).

mod bench;
mod client;
mod server;
mod sys;

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(
    name = "planet-traffic",
    about = "TCP traffic generator with exact byte accounting"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Accept connections, read each until EOF, optionally reply.
    Server(server::ServerArgs),
    /// Open short-lived connections and send a fixed number of bytes on each.
    Client(client::ClientArgs),
    /// 1-byte request/response ping-pong over one loopback connection.
    BenchRr(bench::RrArgs),
    /// One connection, the sender writes 128 KiB buffers as fast as it can.
    BenchBulk(bench::BulkArgs),
    /// Short connections: connect, 1 byte each way, close, as fast as it can.
    BenchConn(bench::ConnArgs),
    /// `recv` on an idle non-blocking socket in a loop (EAGAIN every call).
    BenchEmptyRecv(bench::EmptyRecvArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.mode {
        Mode::Server(args) => server::run(&args),
        Mode::Client(args) => client::run(&args),
        Mode::BenchRr(args) => bench::run_rr(&args),
        Mode::BenchBulk(args) => bench::run_bulk(&args),
        Mode::BenchConn(args) => bench::run_conn(&args),
        Mode::BenchEmptyRecv(args) => bench::run_empty_recv(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("planet-traffic: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints `value` as one JSON line on stdout and flushes it.
fn emit<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let line = serde_json::to_string(value)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// `ip:port`, with brackets for IPv6 and IPv4-mapped IPv6 shown as such.
fn addr_string(addr: SocketAddr) -> String {
    addr.to_string()
}
