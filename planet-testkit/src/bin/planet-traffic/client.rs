//! `planet-traffic client`: opens short-lived connections one after another
//! (connect, send, shutdown(SHUT_WR), optionally read the reply, close) and
//! reports what it sent and received.

use std::fs::File;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd as _, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use planet_testkit::report::{ClientReport, ConnReport};

use crate::{addr_string, emit, sys};

const IO_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(long)]
    connect: SocketAddr,
    /// Process name (comm) to set, at most 15 bytes.
    #[arg(long)]
    comm: String,
    /// Bytes to send on each connection.
    #[arg(long)]
    bytes: u64,
    /// Number of connections, opened one after another.
    #[arg(long, default_value_t = 1)]
    conns: u64,
    /// How to write.
    #[arg(long, value_enum, default_value_t = SendMode::Blocking)]
    mode: SendMode,
    /// Bytes per write call (default: 64 KiB, 1 MiB for nonblocking).
    #[arg(long)]
    chunk: Option<usize>,
    /// After shutdown(SHUT_WR), read the server's reply until EOF.
    #[arg(long)]
    read_reply: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SendMode {
    /// Blocking send().
    Blocking,
    /// O_NONBLOCK with a 4 KiB SO_SNDBUF, so writes are partial; poll() on EAGAIN.
    Nonblocking,
    /// sendfile(2) from a temporary file.
    Sendfile,
}

#[derive(Default)]
struct Counts {
    sent: u64,
    received: u64,
    partial_writes: u64,
}

pub fn run(args: &ClientArgs) -> anyhow::Result<()> {
    sys::set_comm(&args.comm)?;
    let chunk = args.chunk.unwrap_or(match args.mode {
        SendMode::Nonblocking => 1024 * 1024,
        SendMode::Blocking | SendMode::Sendfile => 64 * 1024,
    });
    anyhow::ensure!(chunk > 0, "--chunk must be positive");
    let source = match args.mode {
        SendMode::Sendfile => Some(TempSource::create(args.bytes)?),
        SendMode::Blocking | SendMode::Nonblocking => None,
    };
    let buf = vec![0xa5u8; chunk];

    let mut report = ClientReport {
        pid: std::process::id(),
        sent: 0,
        received: 0,
        conns: 0,
        partial_writes: 0,
        connections: Vec::new(),
    };
    for i in 0..args.conns {
        let conn = one_conn(args, &buf, source.as_ref())
            .with_context(|| format!("connection {i} to {}", args.connect))?;
        report.sent += conn.0.sent;
        report.received += conn.0.received;
        report.partial_writes += conn.1;
        report.conns += 1;
        report.connections.push(conn.0);
    }
    emit(&report)
}

fn one_conn(
    args: &ClientArgs,
    buf: &[u8],
    source: Option<&TempSource>,
) -> anyhow::Result<(ConnReport, u64)> {
    let stream = TcpStream::connect_timeout(&args.connect, IO_TIMEOUT).context("connect")?;
    // Once the peer has closed too, getpeername() fails with ENOTCONN.
    let local = addr_string(stream.local_addr()?);
    let remote = addr_string(stream.peer_addr()?);
    let fd = stream.as_raw_fd();
    let nonblocking = args.mode == SendMode::Nonblocking;
    if nonblocking {
        sys::set_sndbuf(fd, 4096).context("SO_SNDBUF")?;
        stream.set_nonblocking(true)?;
    }
    let mut counts = Counts::default();
    match source {
        Some(source) => send_file(fd, source, args.bytes, buf.len(), &mut counts)?,
        None => send_buf(fd, buf, args.bytes, nonblocking, &mut counts)?,
    }
    stream
        .shutdown(std::net::Shutdown::Write)
        .context("shutdown(SHUT_WR)")?;
    if args.read_reply {
        counts.received = read_to_eof(fd, nonblocking)?;
    }
    let conn = ConnReport {
        local,
        remote,
        sent: counts.sent,
        received: counts.received,
    };
    Ok((conn, counts.partial_writes))
}

fn send_buf(
    fd: RawFd,
    buf: &[u8],
    total: u64,
    nonblocking: bool,
    counts: &mut Counts,
) -> anyhow::Result<()> {
    while counts.sent < total {
        let want = usize::try_from(total - counts.sent)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        match sys::send(fd, &buf[..want], 0) {
            Ok(n) => {
                counts.sent += n as u64;
                if n < want {
                    counts.partial_writes += 1;
                }
            }
            Err(err) if nonblocking && sys::is_would_block(&err) => {
                sys::poll(fd, libc::POLLOUT, IO_TIMEOUT).context("poll(POLLOUT)")?;
            }
            Err(err) => return Err(err).context("send"),
        }
    }
    Ok(())
}

fn send_file(
    fd: RawFd,
    source: &TempSource,
    total: u64,
    chunk: usize,
    counts: &mut Counts,
) -> anyhow::Result<()> {
    let mut offset: libc::off_t = 0;
    while counts.sent < total {
        let want = usize::try_from(total - counts.sent)
            .unwrap_or(usize::MAX)
            .min(chunk);
        let n =
            sys::sendfile(fd, source.file.as_raw_fd(), &mut offset, want).context("sendfile")?;
        anyhow::ensure!(n > 0, "sendfile returned 0 with {want} bytes left to send");
        counts.sent += n as u64;
        if n < want {
            counts.partial_writes += 1;
        }
    }
    Ok(())
}

fn read_to_eof(fd: RawFd, nonblocking: bool) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match sys::recv(fd, &mut buf, 0) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(err) if nonblocking && sys::is_would_block(&err) => {
                sys::poll(fd, libc::POLLIN, IO_TIMEOUT).context("poll(POLLIN)")?;
            }
            Err(err) => return Err(err).context("recv reply"),
        }
    }
}

/// A temporary file holding the bytes to sendfile(), removed on drop.
struct TempSource {
    path: PathBuf,
    file: File,
}

impl TempSource {
    fn create(bytes: u64) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("planet-traffic-{}.src", std::process::id()));
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .with_context(|| format!("create {}", path.display()))?;
        let block = vec![0x3cu8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = usize::try_from(left).unwrap_or(usize::MAX).min(block.len());
            file.write_all(&block[..n])?;
            left -= n as u64;
        }
        file.flush()?;
        Ok(Self { path, file })
    }
}

impl Drop for TempSource {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
