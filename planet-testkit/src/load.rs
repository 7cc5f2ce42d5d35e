//! Many established loopback connections held open for load tests: each
//! client binds its own source address (127.77.x.y), so every connection is
//! a distinct peer and edge for the agent. Both ends live in this process,
//! so `n` connections are `2n` flows.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::FromRawFd as _;

use anyhow::{Context as _, bail};

/// The source address of the `i`-th connection (up to 62,500 distinct).
pub fn source_address(i: usize) -> Ipv4Addr {
    let third = u8::try_from(i / 250).unwrap_or(u8::MAX);
    let fourth = u8::try_from(i % 250 + 1).unwrap_or(u8::MAX);
    Ipv4Addr::new(127, 77, third, fourth)
}

/// `n` connections to one local listener, each end kept open.
#[derive(Debug)]
pub struct HeldConnections {
    /// Client and accepted ends, alternating.
    pub streams: Vec<TcpStream>,
    pub server: SocketAddr,
}

impl HeldConnections {
    /// Opens `n` connections; each exchanges `ping`/`pong` once so both
    /// directions carry bytes. Needs about `2n` descriptors.
    pub fn open(n: usize) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("listen")?;
        let server = listener.local_addr()?;
        let SocketAddr::V4(to) = server else {
            bail!("loopback listener is not IPv4: {server}");
        };
        let mut streams = Vec::with_capacity(2 * n);
        for i in 0..n {
            let source = source_address(i);
            let mut client =
                connect_from(source, to).with_context(|| format!("connect from {source}"))?;
            let (mut accepted, _) = listener.accept().context("accept")?;
            let mut buf = [0u8; 4];
            client.write_all(b"ping")?;
            accepted.read_exact(&mut buf)?;
            accepted.write_all(b"pong")?;
            client.read_exact(&mut buf)?;
            streams.push(client);
            streams.push(accepted);
        }
        Ok(Self { streams, server })
    }

    /// Sends `bytes` from the client end of connection `i` and reads them at
    /// the accepted end.
    pub fn exchange(&mut self, i: usize, bytes: &[u8]) -> anyhow::Result<()> {
        let [client, accepted] = self
            .streams
            .get_mut(2 * i..2 * i + 2)
            .context("no such connection")?
        else {
            bail!("connection {i} is not a pair");
        };
        client.write_all(bytes)?;
        let mut buf = vec![0u8; bytes.len()];
        accepted.read_exact(&mut buf)?;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.streams.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

/// A TCP connection to `to` from `source` (port chosen by the kernel).
pub fn connect_from(source: Ipv4Addr, to: SocketAddrV4) -> std::io::Result<TcpStream> {
    let sockaddr = |addr: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own; the stream closes it on drop,
    // also on the error paths below.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let local = sockaddr(SocketAddrV4::new(source, 0));
    let remote = sockaddr(to);
    // SAFETY: valid fd and sockaddr_in of the given length.
    if unsafe { libc::bind(fd, (&raw const local).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::connect(fd, (&raw const remote).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_are_distinct() {
        assert_eq!(source_address(0), Ipv4Addr::new(127, 77, 0, 1));
        assert_eq!(source_address(249), Ipv4Addr::new(127, 77, 0, 250));
        assert_eq!(source_address(250), Ipv4Addr::new(127, 77, 1, 1));
    }

    #[test]
    fn holds_and_exchanges() -> anyhow::Result<()> {
        let mut held = HeldConnections::open(3)?;
        assert_eq!(held.len(), 3);
        held.exchange(2, b"hello")?;
        let peer = held.streams[0].local_addr()?;
        assert_eq!(peer.ip(), std::net::IpAddr::V4(source_address(0)));
        Ok(())
    }
}
