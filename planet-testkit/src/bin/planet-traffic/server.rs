//! `planet-traffic server`: accepts connections one after another, reads each
//! until EOF, optionally replies, and reports what it sent and received.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use planet_testkit::report::{ConnReport, Listening, ServerReport};

use crate::{addr_string, emit, sys};

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on; port 0 picks a free port (printed first).
    #[arg(long)]
    listen: SocketAddr,
    /// Process name (comm) to set, at most 15 bytes.
    #[arg(long)]
    comm: String,
    /// Number of connections to accept before reporting.
    #[arg(long, default_value_t = 1)]
    expect_conns: u64,
    /// How to read.
    #[arg(long, value_enum, default_value_t = RecvMode::Plain)]
    recv_mode: RecvMode,
    /// Bytes to send back on each connection after reading it to EOF.
    #[arg(long, default_value_t = 0)]
    reply_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecvMode {
    /// recv() into a 64 KiB buffer.
    Plain,
    /// recv(MSG_WAITALL) into a 1 MiB buffer.
    Waitall,
    /// recv(MSG_PEEK) before each recv(); peeked bytes are not counted.
    PeekThenRead,
}

pub fn run(args: &ServerArgs) -> anyhow::Result<()> {
    sys::set_comm(&args.comm)?;
    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    emit(&Listening {
        listening: addr_string(local),
    })?;

    let mut report = ServerReport {
        pid: std::process::id(),
        sent: 0,
        received: 0,
        conns: 0,
        connections: Vec::new(),
    };
    for _ in 0..args.expect_conns {
        let (stream, remote) = listener.accept().context("accept")?;
        let conn =
            serve(&stream, remote, args).with_context(|| format!("connection from {remote}"))?;
        report.sent += conn.sent;
        report.received += conn.received;
        report.conns += 1;
        report.connections.push(conn);
    }
    emit(&report)
}

fn serve(stream: &TcpStream, remote: SocketAddr, args: &ServerArgs) -> anyhow::Result<ConnReport> {
    let local = addr_string(stream.local_addr()?);
    let fd = stream.as_raw_fd();
    let received = match args.recv_mode {
        RecvMode::Plain => read_to_eof(fd, 64 * 1024, 0)?,
        RecvMode::Waitall => read_to_eof(fd, 1024 * 1024, libc::MSG_WAITALL)?,
        RecvMode::PeekThenRead => peek_then_read(fd)?,
    };
    let sent = send_reply(fd, args.reply_bytes)?;
    Ok(ConnReport {
        local,
        remote: addr_string(remote),
        sent,
        received,
    })
}

fn read_to_eof(fd: i32, buf_len: usize, flags: i32) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; buf_len];
    let mut total = 0u64;
    loop {
        let n = sys::recv(fd, &mut buf, flags).context("recv")?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

fn peek_then_read(fd: i32) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let peeked = sys::recv(fd, &mut buf, libc::MSG_PEEK).context("recv(MSG_PEEK)")?;
        if peeked == 0 {
            return Ok(total);
        }
        let n = sys::recv(fd, &mut buf, 0).context("recv")?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

fn send_reply(fd: i32, bytes: u64) -> anyhow::Result<u64> {
    let buf = vec![0x5au8; 64 * 1024];
    let mut sent = 0u64;
    while sent < bytes {
        let want = usize::try_from(bytes - sent)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = sys::send(fd, &buf[..want], 0).context("send reply")?;
        sent += n as u64;
    }
    Ok(sent)
}
