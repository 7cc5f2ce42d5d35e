//! Loopback benchmarks: `bench-rr` (1-byte ping-pong, ops/s), `bench-bulk`
//! (one stream of 128 KiB writes, bytes/s) and `bench-conn` (connections
//! opened, used for one 1-byte exchange and closed, per second), each two
//! threads of one process which share the `--comm` name; and
//! `bench-empty-recv` (calls/s of a `recv` that finds no data), which
//! isolates what a probe on the receive path costs per call.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use planet_testkit::{
    load,
    report::{BulkReport, CallsReport, RrReport},
};

use crate::{emit, sys};

const BULK_BUF: usize = 128 * 1024;

#[derive(Debug, Args)]
pub struct RrArgs {
    /// How long to run.
    #[arg(long)]
    seconds: f64,
    /// Listen address of the responder.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Process name (comm) to set, at most 15 bytes.
    #[arg(long, default_value = "planet-bench")]
    comm: String,
    /// Run both ends on this CPU only. Two threads ping-ponging across
    /// CPUs pay for wake-ups and idle states that vary from run to run;
    /// on one CPU each hand-off is a plain context switch.
    #[arg(long)]
    cpu: Option<usize>,
}

#[derive(Debug, Args)]
pub struct BulkArgs {
    /// How long to run.
    #[arg(long)]
    seconds: f64,
    /// Listen address of the receiver.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Process name (comm) to set, at most 15 bytes.
    #[arg(long, default_value = "planet-bench")]
    comm: String,
    /// Run both ends on this CPU only. Two threads ping-ponging across
    /// CPUs pay for wake-ups and idle states that vary from run to run;
    /// on one CPU each hand-off is a plain context switch.
    #[arg(long)]
    cpu: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ConnArgs {
    /// How long to run.
    #[arg(long)]
    seconds: f64,
    /// Process name (comm) to set, at most 15 bytes.
    #[arg(long, default_value = "planet-bench")]
    comm: String,
    /// Run both ends on this CPU only.
    #[arg(long)]
    cpu: Option<usize>,
}

#[derive(Debug, Args)]
pub struct EmptyRecvArgs {
    /// How long to run.
    #[arg(long)]
    seconds: f64,
    /// Run on this CPU only.
    #[arg(long)]
    cpu: Option<usize>,
}

fn duration(seconds: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--seconds must be a positive number")
}

/// Runs `op` until `run_for` has passed, looking at the clock after every
/// `batch` runs; returns how many runs there were and how long they took.
fn repeat_for(
    run_for: Duration,
    batch: u64,
    mut op: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(u64, Duration)> {
    let mut runs = 0u64;
    let start = Instant::now();
    loop {
        for _ in 0..batch {
            op()?;
        }
        runs += batch;
        let elapsed = start.elapsed();
        if elapsed >= run_for {
            return Ok((runs, elapsed));
        }
    }
}

fn join<T>(handle: thread::JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("peer thread panicked"))?
}

pub fn run_rr(args: &RrArgs) -> anyhow::Result<()> {
    let run_for = duration(args.seconds)?;
    sys::set_comm(&args.comm)?;
    if let Some(cpu) = args.cpu {
        sys::pin_to_cpu(cpu)?;
    }
    let listener =
        TcpListener::bind(args.addr).with_context(|| format!("listen on {}", args.addr))?;
    let addr = listener.local_addr()?;
    let responder = thread::spawn(move || -> anyhow::Result<()> {
        let (mut stream, _) = listener.accept().context("accept")?;
        stream.set_nodelay(true)?;
        let mut byte = [0u8; 1];
        loop {
            if stream.read(&mut byte).context("responder read")? == 0 {
                return Ok(());
            }
            stream.write_all(&byte).context("responder write")?;
        }
    });

    let mut stream = TcpStream::connect(addr).context("connect")?;
    stream.set_nodelay(true)?;
    let mut byte = [1u8; 1];
    let (ops, elapsed) = repeat_for(run_for, 1, || {
        stream.write_all(&byte).context("request write")?;
        stream.read_exact(&mut byte).context("response read")?;
        Ok(())
    })?;
    drop(stream);
    join(responder)?;
    let seconds = elapsed.as_secs_f64();
    emit(&RrReport {
        mode: "rr".into(),
        ops_per_sec: ops as f64 / seconds,
        ops,
        seconds,
    })
}

pub fn run_bulk(args: &BulkArgs) -> anyhow::Result<()> {
    let run_for = duration(args.seconds)?;
    sys::set_comm(&args.comm)?;
    if let Some(cpu) = args.cpu {
        sys::pin_to_cpu(cpu)?;
    }
    let listener =
        TcpListener::bind(args.addr).with_context(|| format!("listen on {}", args.addr))?;
    let addr = listener.local_addr()?;
    let receiver = thread::spawn(move || -> anyhow::Result<u64> {
        let (mut stream, _) = listener.accept().context("accept")?;
        let mut buf = vec![0u8; BULK_BUF];
        let mut total = 0u64;
        loop {
            match stream.read(&mut buf).context("receiver read")? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });

    let mut stream = TcpStream::connect(addr).context("connect")?;
    let buf = vec![0x42u8; BULK_BUF];
    let start = Instant::now();
    while start.elapsed() < run_for {
        stream.write_all(&buf).context("sender write")?;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let bytes = join(receiver)?;
    let seconds = start.elapsed().as_secs_f64();
    emit(&BulkReport {
        mode: "bulk".into(),
        bytes_per_sec: bytes as f64 / seconds,
        bytes,
        seconds,
    })
}

/// `recv` on a connected non-blocking loopback socket that never gets data:
/// each call enters the socket layer (and fires `sock_recv_length`) and
/// returns `EAGAIN` without touching the network, so calls/s with and
/// without probes gives their cost per call with little else varying.
pub fn run_empty_recv(args: &EmptyRecvArgs) -> anyhow::Result<()> {
    /// Calls between two looks at the clock.
    const BATCH: u64 = 1024;
    let run_for = duration(args.seconds)?;
    if let Some(cpu) = args.cpu {
        sys::pin_to_cpu(cpu)?;
    }
    let listener = TcpListener::bind("127.0.0.1:0").context("listen on 127.0.0.1")?;
    let mut stream = TcpStream::connect(listener.local_addr()?).context("connect")?;
    let (_peer, _) = listener.accept().context("accept")?;
    stream.set_nonblocking(true)?;
    let mut byte = [0u8; 1];
    let (calls, elapsed) = repeat_for(run_for, BATCH, || match stream.read(&mut byte) {
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Ok(n) => anyhow::bail!("recv on the idle socket returned {n} bytes"),
        Err(err) => Err(err).context("recv"),
    })?;
    let seconds = elapsed.as_secs_f64();
    emit(&CallsReport {
        mode: "empty-recv".into(),
        calls_per_sec: calls as f64 / seconds,
        calls,
        seconds,
    })
}

/// Short connections on loopback: connect, one byte each way, close; the
/// server accepts, echoes the byte and closes. Each connection takes both
/// sockets through their whole lifecycle (every state change a probe sees).
/// The client closes first, so `TIME_WAIT` sockets pile up on its side;
/// it moves to a fresh 127.77.x.y source address every 10,000 connections
/// so no run runs out of ports.
pub fn run_conn(args: &ConnArgs) -> anyhow::Result<()> {
    /// Connections per source address before moving to the next.
    const PER_SOURCE: u64 = 10_000;
    let run_for = duration(args.seconds)?;
    sys::set_comm(&args.comm)?;
    if let Some(cpu) = args.cpu {
        sys::pin_to_cpu(cpu)?;
    }
    let listener = TcpListener::bind("127.0.0.1:0").context("listen on 127.0.0.1")?;
    let std::net::SocketAddr::V4(addr) = listener.local_addr()? else {
        anyhow::bail!("127.0.0.1 gave a non-IPv4 address");
    };
    // Blocked in accept() when the client is done; the process exit ends it.
    thread::spawn(move || -> anyhow::Result<()> {
        let mut byte = [0u8; 1];
        loop {
            let (mut stream, _) = listener.accept().context("accept")?;
            stream.read_exact(&mut byte).context("server read")?;
            stream.write_all(&byte).context("server write")?;
        }
    });

    let mut byte = [1u8; 1];
    let mut opened = 0u64;
    let (conns, elapsed) = repeat_for(run_for, 1, || {
        let source = load::source_address((opened / PER_SOURCE) as usize);
        let mut stream =
            load::connect_from(source, addr).with_context(|| format!("connect from {source}"))?;
        stream.write_all(&byte).context("client write")?;
        stream.read_exact(&mut byte).context("client read")?;
        opened += 1;
        Ok(())
    })?;
    let seconds = elapsed.as_secs_f64();
    emit(&CallsReport {
        mode: "conn".into(),
        calls_per_sec: conns as f64 / seconds,
        calls: conns,
        seconds,
    })
}
