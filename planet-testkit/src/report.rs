//! The JSON lines printed by `planet-traffic`, shared by the binary (which
//! writes them) and the library (which reads them).

use serde::{Deserialize, Serialize};

/// First line of `planet-traffic server`: the address it really listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listening {
    pub listening: String,
}

/// What one connection carried, as the application saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnReport {
    /// Local `ip:port` (`[ip]:port` for IPv6).
    pub local: String,
    /// Remote `ip:port`.
    pub remote: String,
    pub sent: u64,
    pub received: u64,
}

/// Last line of `planet-traffic server`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerReport {
    pub pid: u32,
    /// Sum of successful send return values.
    pub sent: u64,
    /// Sum of successful (non-peek) receive return values.
    pub received: u64,
    pub conns: u64,
    pub connections: Vec<ConnReport>,
}

/// Last line of `planet-traffic client`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientReport {
    pub pid: u32,
    pub sent: u64,
    pub received: u64,
    pub conns: u64,
    /// Writes that returned fewer bytes than asked for.
    pub partial_writes: u64,
    pub connections: Vec<ConnReport>,
}

/// Line printed by `planet-traffic bench-rr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RrReport {
    pub mode: String,
    pub ops_per_sec: f64,
    pub ops: u64,
    pub seconds: f64,
}

/// Line printed by `planet-traffic bench-empty-recv` and `bench-conn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallsReport {
    pub mode: String,
    pub calls_per_sec: f64,
    pub calls: u64,
    pub seconds: f64,
}

/// Line printed by `planet-traffic bench-bulk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkReport {
    pub mode: String,
    pub bytes_per_sec: f64,
    pub bytes: u64,
    pub seconds: f64,
}
