//! TCP sockets of this network namespace through netlink `sock_diag`
//! (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY`): one dump per address
//! family, binary records, no text parsing. This is what `ss` uses.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use super::TcpState;

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDR_LEN: usize = 16;
/// `struct inet_diag_msg`.
const DIAG_MSG_LEN: usize = 72;

/// One socket as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    /// 0 for sockets without a file (TIME_WAIT, request sockets).
    pub inode: u64,
    pub uid: u32,
}

/// Every TCP state, as a `sock_diag` state mask.
pub const ALL_STATES: u32 = u32::MAX;
/// Only listening sockets.
pub const LISTEN_ONLY: u32 = 1 << 10;

/// Dumps every TCP socket of both families.
pub fn dump_tcp() -> io::Result<Vec<RawSocket>> {
    dump_tcp_states(ALL_STATES)
}

/// Dumps the TCP sockets of both families whose state is in `states`
/// (a bit per kernel state number); the kernel does the filtering.
pub fn dump_tcp_states(states: u32) -> io::Result<Vec<RawSocket>> {
    let mut out = Vec::new();
    let socket = open()?;
    for family in [libc::AF_INET, libc::AF_INET6] {
        request(&socket, family as u8, states)?;
        receive(&socket, &mut out)?;
    }
    Ok(out)
}

fn open() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Encodes the dump request for `family` and the `states` mask (IPPROTO_TCP).
pub fn encode_request(family: u8, states: u32) -> [u8; NLMSG_HDR_LEN + 56] {
    let mut buf = [0u8; NLMSG_HDR_LEN + 56];
    let len = buf.len() as u32;
    buf[0..4].copy_from_slice(&len.to_ne_bytes());
    buf[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    buf[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    // seq 0, pid 0
    let req = &mut buf[NLMSG_HDR_LEN..];
    req[0] = family;
    req[1] = libc::IPPROTO_TCP as u8;
    // ext 0, pad 0, then the state mask.
    req[4..8].copy_from_slice(&states.to_ne_bytes());
    buf
}

fn request(socket: &OwnedFd, family: u8, states: u32) -> io::Result<()> {
    let buf = encode_request(family, states);
    // SAFETY: an all-zero sockaddr_nl addresses the kernel.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: buf and addr are valid for the lengths passed.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            0,
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn receive(socket: &OwnedFd, out: &mut Vec<RawSocket>) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        match parse_messages(&buf[..n as usize], out)? {
            Parsed::More => continue,
            Parsed::Done => return Ok(()),
        }
    }
}

/// Whether a datagram ended the dump.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    More,
    Done,
}

/// Parses one datagram of netlink messages, appending sockets to `out`.
pub fn parse_messages(mut data: &[u8], out: &mut Vec<RawSocket>) -> io::Result<Parsed> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {what}"));
    while data.len() >= NLMSG_HDR_LEN {
        let len = u32::from_ne_bytes(data[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(data[4..6].try_into().expect("2 bytes"));
        if len < NLMSG_HDR_LEN || len > data.len() {
            return Err(bad("truncated message"));
        }
        let payload = &data[NLMSG_HDR_LEN..len];
        match kind {
            NLMSG_DONE => return Ok(Parsed::Done),
            NLMSG_ERROR => {
                let errno = payload
                    .get(0..4)
                    .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
                    .unwrap_or(0);
                if errno == 0 {
                    return Ok(Parsed::Done);
                }
                return Err(io::Error::from_raw_os_error(-errno));
            }
            SOCK_DIAG_BY_FAMILY => {
                if let Some(socket) = parse_diag_msg(payload) {
                    out.push(socket);
                }
            }
            _ => {}
        }
        // Messages are 4-byte aligned.
        let advance = (len + 3) & !3;
        data = data.get(advance..).unwrap_or_default();
    }
    Ok(Parsed::More)
}

/// Decodes a `struct inet_diag_msg`.
pub fn parse_diag_msg(msg: &[u8]) -> Option<RawSocket> {
    if msg.len() < DIAG_MSG_LEN {
        return None;
    }
    let family = i32::from(msg[0]);
    let state = TcpState::from_kernel(msg[1]);
    let sport = u16::from_be_bytes([msg[4], msg[5]]);
    let dport = u16::from_be_bytes([msg[6], msg[7]]);
    let src: [u8; 16] = msg[8..24].try_into().ok()?;
    let dst: [u8; 16] = msg[24..40].try_into().ok()?;
    let word = |at: usize| u32::from_ne_bytes(msg[at..at + 4].try_into().expect("4 bytes"));
    let uid = word(64);
    let inode = u64::from(word(68));
    let ip = |raw: [u8; 16]| -> IpAddr {
        if family == libc::AF_INET {
            IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
        } else {
            let v6 = Ipv6Addr::from(raw);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
    };
    Some(RawSocket {
        local: SocketAddr::new(ip(src), sport),
        remote: SocketAddr::new(ip(dst), dport),
        state,
        inode,
        uid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag_msg(
        family: u8,
        state: u8,
        src: [u8; 16],
        sport: u16,
        dst: [u8; 16],
        dport: u16,
        inode: u32,
    ) -> Vec<u8> {
        let mut m = vec![0u8; DIAG_MSG_LEN];
        m[0] = family;
        m[1] = state;
        m[4..6].copy_from_slice(&sport.to_be_bytes());
        m[6..8].copy_from_slice(&dport.to_be_bytes());
        m[8..24].copy_from_slice(&src);
        m[24..40].copy_from_slice(&dst);
        m[64..68].copy_from_slice(&1000u32.to_ne_bytes());
        m[68..72].copy_from_slice(&inode.to_ne_bytes());
        m
    }

    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDR_LEN + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn decodes_ipv4_and_mapped_ipv6() {
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut peer = [0u8; 16];
        peer[..4].copy_from_slice(&[10, 0, 0, 2]);
        let s = parse_diag_msg(&diag_msg(2, 1, v4, 8080, peer, 41000, 77)).unwrap();
        assert_eq!(s.local, "10.0.0.1:8080".parse().unwrap());
        assert_eq!(s.remote, "10.0.0.2:41000".parse().unwrap());
        assert_eq!(s.state, TcpState::Established);
        assert_eq!((s.inode, s.uid), (77, 1000));

        let mapped = "::ffff:192.0.2.1".parse::<Ipv6Addr>().unwrap().octets();
        let v6 = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
        let s = parse_diag_msg(&diag_msg(10, 10, mapped, 22, v6, 0, 5)).unwrap();
        assert_eq!(s.local, "192.0.2.1:22".parse().unwrap());
        assert_eq!(s.remote, "[fd00::2]:0".parse().unwrap());
        assert_eq!(s.state, TcpState::Listen);
    }

    #[test]
    fn parses_a_dump_until_done() {
        let mut data = message(
            SOCK_DIAG_BY_FAMILY,
            &diag_msg(2, 1, [0; 16], 1, [0; 16], 2, 3),
        );
        data.extend(message(
            SOCK_DIAG_BY_FAMILY,
            &diag_msg(2, 6, [0; 16], 1, [0; 16], 2, 0),
        ));
        let mut out = Vec::new();
        assert_eq!(parse_messages(&data, &mut out).unwrap(), Parsed::More);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].state, TcpState::TimeWait);
        data.extend(message(NLMSG_DONE, &[0; 4]));
        out.clear();
        assert_eq!(parse_messages(&data, &mut out).unwrap(), Parsed::Done);
    }

    #[test]
    fn reports_kernel_errors_and_truncation() {
        let err = parse_messages(
            &message(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes()),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        let mut truncated = message(SOCK_DIAG_BY_FAMILY, &[0; 72]);
        truncated[0] = 200;
        assert!(parse_messages(&truncated, &mut Vec::new()).is_err());
    }

    #[test]
    fn request_asks_for_a_tcp_dump() {
        let req = encode_request(libc::AF_INET6 as u8, LISTEN_ONLY);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 72);
        assert_eq!(req[16], libc::AF_INET6 as u8);
        assert_eq!(req[17], libc::IPPROTO_TCP as u8);
        assert_eq!(u32::from_ne_bytes(req[20..24].try_into().unwrap()), 1 << 10);
    }

    #[test]
    fn listen_only_dump_has_only_listeners() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let sockets = dump_tcp_states(LISTEN_ONLY).expect("sock_diag dump");
        assert!(sockets.iter().any(|s| s.local == addr), "{addr} missing");
        assert!(
            sockets.iter().all(|s| s.state == TcpState::Listen),
            "{sockets:?}"
        );
    }

    #[test]
    fn dumps_this_namespace() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sockets = dump_tcp().expect("sock_diag dump");
        assert!(
            sockets
                .iter()
                .any(|s| s.local == addr && s.state == TcpState::Listen && s.inode != 0),
            "{addr} not in {} sockets",
            sockets.len()
        );
    }
}
