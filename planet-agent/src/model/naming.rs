//! How peers and edges are named: the labels of planet-exporter's
//! dependency series, from the inventory (upstream-spec §2.3).

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use crate::collect::inventory::Inventory;

const LOCALHOST_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// One `planet_upstream` / `planet_downstream` series.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dependency {
    pub local_hostgroup: String,
    pub remote_hostgroup: String,
    pub local_address: String,
    pub remote_address: String,
    pub port: u16,
    pub protocol: &'static str,
    pub process_name: Arc<str>,
}

/// The `(address, hostgroup)` labels of an IP: the inventory domain when it
/// has one, else the IP itself.
pub fn name(inventory: &Inventory, ip: IpAddr) -> (String, String) {
    match inventory.lookup(ip) {
        Some(host) => (
            if host.domain.is_empty() {
                ip.to_string()
            } else {
                host.domain.clone()
            },
            host.hostgroup.clone(),
        ),
        None => (ip.to_string(), String::new()),
    }
}

/// What planet-exporter de-duplicates dependencies on: the peer's names
/// and the service port. Flow byte counters join dependencies on it too.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerPort {
    pub remote_hostgroup: String,
    pub remote_address: String,
    pub port: u16,
}

impl PeerPort {
    /// The key of a connection to `remote` on service `port`.
    pub fn of(inventory: &Inventory, remote: IpAddr, port: u16) -> Self {
        let (remote_address, remote_hostgroup) = name(inventory, remote);
        Self {
            remote_hostgroup,
            remote_address,
            port,
        }
    }
}

impl Dependency {
    /// This dependency's de-duplication key.
    pub fn peer_port(&self) -> PeerPort {
        PeerPort {
            remote_hostgroup: self.remote_hostgroup.clone(),
            remote_address: self.remote_address.clone(),
            port: self.port,
        }
    }
}

/// The address a local socket is shown under: a local `127.0.0.1` is
/// shown as the host's address (planet-exporter's loopback rewrite).
pub fn shown_local(ip: IpAddr, host: Option<IpAddr>) -> IpAddr {
    match (ip, host) {
        (ip, Some(host)) if ip == LOCALHOST_V4 => host,
        (ip, _) => ip,
    }
}
