//! Runs the `planet-traffic` binary as a child process, in the root network
//! namespace or inside a [`TestNet`], and parses its JSON reports.
//!
//! [`binary`] finds the generator: `$PLANET_TRAFFIC_BIN` if set, otherwise it
//! runs `cargo build --bin planet-traffic` once per process into the target
//! directory of the running test executable (a no-op when it is up to date),
//! because another package's tests cannot name this package's binaries.

mod child;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use self::child::TrafficChild;
use crate::netns::TestNet;
use crate::report::{BulkReport, ClientReport, Listening, RrReport, ServerReport};

/// How the server reads (`--recv-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecvMode {
    /// recv() into a 64 KiB buffer.
    #[default]
    Plain,
    /// recv(MSG_WAITALL) into a 1 MiB buffer.
    Waitall,
    /// recv(MSG_PEEK) before each recv(); peeked bytes are not counted.
    PeekThenRead,
}

impl RecvMode {
    fn arg(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Waitall => "waitall",
            Self::PeekThenRead => "peek-then-read",
        }
    }
}

/// How the client writes (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendMode {
    /// Blocking send().
    #[default]
    Blocking,
    /// O_NONBLOCK with a 4 KiB SO_SNDBUF and 1 MiB writes, so writes are partial.
    Nonblocking,
    /// sendfile(2) from a temporary file.
    Sendfile,
}

impl SendMode {
    fn arg(self) -> &'static str {
        match self {
            Self::Blocking => "blocking",
            Self::Nonblocking => "nonblocking",
            Self::Sendfile => "sendfile",
        }
    }
}

/// Options of `planet-traffic server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOpts {
    /// Port 0 picks a free port; see [`ServerProcess::addr`].
    pub listen: SocketAddr,
    /// Process name, at most 15 bytes.
    pub comm: String,
    pub expect_conns: u64,
    pub recv_mode: RecvMode,
    /// Bytes sent back on each connection after reading it to EOF.
    pub reply_bytes: u64,
}

impl ServerOpts {
    /// One connection, plain reads, no reply.
    pub fn new(listen: impl Into<SocketAddr>, comm: impl Into<String>) -> Self {
        Self {
            listen: listen.into(),
            comm: comm.into(),
            expect_conns: 1,
            recv_mode: RecvMode::Plain,
            reply_bytes: 0,
        }
    }
}

/// Options of `planet-traffic client`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOpts {
    pub connect: SocketAddr,
    /// Process name, at most 15 bytes.
    pub comm: String,
    /// Bytes sent on each connection.
    pub bytes: u64,
    pub conns: u64,
    pub mode: SendMode,
    /// Bytes per write call; `None` for the mode's default.
    pub chunk: Option<usize>,
    /// Read the server's reply until EOF after shutdown(SHUT_WR).
    pub read_reply: bool,
}

impl ClientOpts {
    /// One blocking connection that sends `bytes` and reads no reply.
    pub fn new(connect: SocketAddr, comm: impl Into<String>, bytes: u64) -> Self {
        Self {
            connect,
            comm: comm.into(),
            bytes,
            conns: 1,
            mode: SendMode::Blocking,
            chunk: None,
            read_reply: false,
        }
    }
}

/// The `planet-traffic` binary: `$PLANET_TRAFFIC_BIN`, or built by cargo
/// (see [`crate::cargo_bin`]).
pub fn binary() -> anyhow::Result<std::path::PathBuf> {
    crate::cargo_bin::binary("planet-testkit", "planet-traffic", "PLANET_TRAFFIC_BIN")
}

fn traffic_command(net: Option<&TestNet>) -> anyhow::Result<Command> {
    let bin = binary()?;
    Ok(match net {
        Some(net) => net.command(bin),
        None => Command::new(bin),
    })
}

/// A running `planet-traffic server`.
#[derive(Debug)]
pub struct ServerProcess {
    child: TrafficChild,
    addr: SocketAddr,
}

impl ServerProcess {
    /// The address it listens on (with the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Waits up to `timeout` for the server to serve all its connections and
    /// returns its report.
    pub fn wait(self, timeout: Duration) -> anyhow::Result<ServerReport> {
        self.child.finish(Instant::now() + timeout)
    }
}

/// Starts `planet-traffic server` (inside `net` if given) and waits until it listens.
pub fn spawn_server(opts: &ServerOpts, net: Option<&TestNet>) -> anyhow::Result<ServerProcess> {
    let mut cmd = traffic_command(net)?;
    cmd.arg("server")
        .arg("--listen")
        .arg(opts.listen.to_string())
        .args(["--comm", &opts.comm])
        .args(["--expect-conns", &opts.expect_conns.to_string()])
        .args(["--recv-mode", opts.recv_mode.arg()])
        .args(["--reply-bytes", &opts.reply_bytes.to_string()]);
    let mut child = TrafficChild::spawn(cmd)?;
    let line = child.next_line(Instant::now() + Duration::from_secs(30))?;
    let listening: Listening = serde_json::from_str(&line)
        .with_context(|| format!("parse planet-traffic listening line {line:?}"))?;
    let addr = listening
        .listening
        .parse()
        .context("parse listening address")?;
    Ok(ServerProcess { child, addr })
}

/// Runs `planet-traffic client` (inside `net` if given) to completion.
pub fn run_client(
    opts: &ClientOpts,
    net: Option<&TestNet>,
    timeout: Duration,
) -> anyhow::Result<ClientReport> {
    let mut cmd = traffic_command(net)?;
    cmd.arg("client")
        .arg("--connect")
        .arg(opts.connect.to_string())
        .args(["--comm", &opts.comm])
        .args(["--bytes", &opts.bytes.to_string()])
        .args(["--conns", &opts.conns.to_string()])
        .args(["--mode", opts.mode.arg()]);
    if let Some(chunk) = opts.chunk {
        cmd.args(["--chunk", &chunk.to_string()]);
    }
    if opts.read_reply {
        cmd.arg("--read-reply");
    }
    TrafficChild::spawn(cmd)?.finish(Instant::now() + timeout)
}

fn bench_command(
    mode: &str,
    seconds: f64,
    addr: Option<SocketAddr>,
    comm: Option<&str>,
) -> anyhow::Result<Command> {
    if !(seconds > 0.0 && seconds.is_finite()) {
        bail!("bench seconds must be positive, got {seconds}");
    }
    let mut cmd = traffic_command(None)?;
    cmd.arg(mode).args(["--seconds", &seconds.to_string()]);
    if let Some(addr) = addr {
        cmd.arg("--addr").arg(addr.to_string());
    }
    if let Some(comm) = comm {
        cmd.args(["--comm", comm]);
    }
    Ok(cmd)
}

fn bench_deadline(seconds: f64) -> Instant {
    Instant::now() + Duration::from_secs_f64(seconds) + Duration::from_secs(30)
}

/// Runs `planet-traffic bench-rr` for `seconds` (on 127.0.0.1 unless `addr` is given).
pub fn run_bench_rr(
    seconds: f64,
    addr: Option<SocketAddr>,
    comm: Option<&str>,
) -> anyhow::Result<RrReport> {
    let cmd = bench_command("bench-rr", seconds, addr, comm)?;
    TrafficChild::spawn(cmd)?.finish(bench_deadline(seconds))
}

/// Runs `planet-traffic bench-bulk` for `seconds` (on 127.0.0.1 unless `addr` is given).
pub fn run_bench_bulk(
    seconds: f64,
    addr: Option<SocketAddr>,
    comm: Option<&str>,
) -> anyhow::Result<BulkReport> {
    let cmd = bench_command("bench-bulk", seconds, addr, comm)?;
    TrafficChild::spawn(cmd)?.finish(bench_deadline(seconds))
}
