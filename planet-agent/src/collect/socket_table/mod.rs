//! The socket table (planet-exporter's `socketstat` task): every TCP socket
//! of this network namespace, IPv4 and IPv6, with its owning process.
//!
//! Sockets come from netlink `sock_diag` ([`diag`]); their owners from an
//! eBPF `task_file` iterator ([`iter`]) where the kernel and privileges
//! allow it, else from a `/proc/<pid>/fd` walk that stops once every socket
//! is attributed ([`owners`]). [`source`] picks one. The choice is measured
//! against `ss -tanp` in `BENCHMARKS.md`.

mod collector;
pub mod diag;
pub mod iter;
pub mod owners;
pub mod source;

use std::{net::SocketAddr, path::Path, sync::Arc};

pub use collector::{SocketTableCollector, TASK_NAME};
pub use owners::OwnerCache;
pub use source::{OwnerMethod, OwnerRequest, OwnerSource};

/// TCP states as the kernel numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    Unknown(u8),
}

impl TcpState {
    pub fn from_kernel(value: u8) -> Self {
        match value {
            1 => Self::Established,
            2 => Self::SynSent,
            3 => Self::SynRecv,
            4 => Self::FinWait1,
            5 => Self::FinWait2,
            6 => Self::TimeWait,
            7 => Self::Close,
            8 => Self::CloseWait,
            9 => Self::LastAck,
            10 => Self::Listen,
            11 => Self::Closing,
            12 => Self::NewSynRecv,
            other => Self::Unknown(other),
        }
    }
}

/// A listening socket and its process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    /// The owner's comm; empty when no process could be found.
    pub process: Arc<str>,
}

/// An established (or TIME_WAIT) connection and its process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    /// The owner's comm; empty for TIME_WAIT and unreadable processes.
    pub process: Arc<str>,
}

/// One enumeration of the socket table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketTable {
    pub listeners: Vec<Listener>,
    pub connections: Vec<Connection>,
    /// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`),
    /// when it could be read.
    pub ephemeral_ports: Option<std::ops::RangeInclusive<u16>>,
}

/// Parses `/proc/sys/net/ipv4/ip_local_port_range` ("32768\t60999").
pub fn parse_port_range(text: &str) -> Option<std::ops::RangeInclusive<u16>> {
    let mut parts = text.split_whitespace().map(str::parse::<u16>);
    let (Some(Ok(low)), Some(Ok(high))) = (parts.next(), parts.next()) else {
        return None;
    };
    (low <= high).then_some(low..=high)
}

/// Local ports with a listening socket, IPv4 or IPv6 (no process lookup).
pub fn listening_ports() -> std::io::Result<std::collections::HashSet<u16>> {
    Ok(diag::dump_tcp_states(diag::LISTEN_ONLY)?
        .into_iter()
        .map(|s| s.local.port())
        .collect())
}

/// Enumerates TCP sockets and their owners, from scratch, with the `/proc`
/// walk.
pub fn collect(proc_root: &Path) -> std::io::Result<SocketTable> {
    collect_with(proc_root, &mut OwnerSource::proc_walk())
}

/// Enumerates TCP sockets, their owners coming from `owners` (which may
/// keep what it found for later collections).
pub fn collect_with(proc_root: &Path, owners: &mut OwnerSource) -> std::io::Result<SocketTable> {
    let sockets = diag::dump_tcp_states(REPORTED_STATES)?;
    let wanted = sockets
        .iter()
        .filter(|s| s.inode != 0 && matters(s.state))
        .map(|s| s.inode)
        .collect();
    let owners = owners.resolve(proc_root, &wanted)?;
    let process = |inode: u64| {
        owners
            .get(&inode)
            .map_or_else(|| Arc::from(""), |o| o.comm.clone())
    };
    let mut table = SocketTable {
        ephemeral_ports: std::fs::read_to_string(
            proc_root.join("sys/net/ipv4/ip_local_port_range"),
        )
        .ok()
        .as_deref()
        .and_then(parse_port_range),
        ..SocketTable::default()
    };
    for s in sockets {
        match s.state {
            TcpState::Listen => table.listeners.push(Listener {
                addr: s.local,
                process: process(s.inode),
            }),
            TcpState::Established | TcpState::TimeWait => table.connections.push(Connection {
                local: s.local,
                remote: s.remote,
                state: s.state,
                process: process(s.inode),
            }),
            _ => {}
        }
    }
    Ok(table)
}

/// [`matters`] as a `sock_diag` state mask: the kernel leaves the rest out.
const REPORTED_STATES: u32 = 1 << 1 | 1 << 6 | 1 << 10;

/// The states planet-exporter reports: listeners and peered sockets.
fn matters(state: TcpState) -> bool {
    matches!(
        state,
        TcpState::Listen | TcpState::Established | TcpState::TimeWait
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_state_mask_is_the_reported_states() {
        for n in 0..32u8 {
            assert_eq!(
                REPORTED_STATES & (1 << n) != 0,
                matters(TcpState::from_kernel(n)),
                "state {n}"
            );
        }
    }

    #[test]
    fn parses_the_ephemeral_port_range() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some(32768..=60999));
        assert_eq!(parse_port_range("60999 32768"), None);
        assert_eq!(parse_port_range("garbage"), None);
    }

    #[test]
    fn collects_listeners_and_connections_with_processes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        client.write_all(b"x").unwrap();
        let table = collect(Path::new("/proc")).unwrap();
        let me = owners::parse_comm(&std::fs::read("/proc/self/comm").unwrap());
        assert!(
            table
                .listeners
                .iter()
                .any(|l| l.addr == addr && l.process == me),
            "{:?}",
            table.listeners
        );
        let conn = table
            .connections
            .iter()
            .find(|c| c.local == peer && c.remote == addr)
            .expect("client side listed");
        assert_eq!(conn.process, me);
        assert_eq!(conn.state, TcpState::Established);
        assert!(table.ephemeral_ports.is_some(), "ip_local_port_range read");
    }
}
