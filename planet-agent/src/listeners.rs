//! Listening TCP ports of this network namespace, from `/proc/net/tcp{,6}`.
//! Used to classify flows that predate the eBPF programs.

use std::{collections::HashSet, fs, io};

/// `TCP_LISTEN` as `/proc/net/tcp` prints it.
const LISTEN: &str = "0A";

/// Local ports of listening sockets in one `/proc/net/tcp`-format table.
pub fn parse_listening_ports(table: &str) -> HashSet<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != LISTEN {
                return None;
            }
            let port = local.rsplit(':').next()?;
            u16::from_str_radix(port, 16).ok()
        })
        .collect()
}

/// Listening ports over IPv4 and IPv6.
pub fn listening_ports() -> io::Result<HashSet<u16>> {
    let mut ports = HashSet::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match fs::read_to_string(path) {
            Ok(table) => ports.extend(parse_listening_ports(&table)),
            // A kernel without IPv6 has no tcp6 table.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_listening_sockets_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:4A8C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
";
        assert_eq!(parse_listening_ports(table), HashSet::from([0x4A8C]));
    }

    #[test]
    fn reads_ipv6_rows_and_ignores_garbage() {
        let table = "header
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 0 0 0 0 0 0
 garbage
   2: short
";
        assert_eq!(parse_listening_ports(table), HashSet::from([22]));
    }
}
