//! Traffic numbers from outside the agent, for hosts where the in-process
//! eBPF flow task cannot run or that already run one of these tools:
//!
//! - **darkstat** (`-task-darkstat-enabled`, `-task-darkstat-addr`): per-host
//!   byte counters from its `/metrics` (darkstat ≥ 3.0.720) or, for the
//!   3.0.719 that distributions ship, its HTML hosts table. The task finds
//!   out which by itself ([`darkstat`]).
//! - **ebpf_exporter** (`-task-ebpf-enabled`, `-task-ebpf-addr`): the tcptop
//!   counters of `setup/ebpf-exporter/` ([`ebpf_exporter`]), shown as
//!   `planet_ebpf_traffic_bytes_total` as in planet-exporter.
//!
//! Both go through one [`scrape`] client (time limit, size limit, status
//! check, the [`exposition`] parser) and one task loop ([`task`]) that keeps
//! the last good numbers on failure and counts failures by reason.
//!
//! `planet_traffic_bytes_total` has one source at a time, which the model
//! picks ([`crate::model::traffic_source`]).

mod collector;
pub mod darkstat;
pub mod ebpf_exporter;
pub mod exposition;
pub mod scrape;

use std::{collections::BTreeMap, net::IpAddr, sync::Arc, time::SystemTime};

pub use collector::{DarkstatSource, EbpfExporterSource, ScrapeCollector, ScrapeSource, Scraped};

/// Which external source a report comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScrapeKind {
    Darkstat,
    EbpfExporter,
}

impl ScrapeKind {
    /// The task's name in self-metrics.
    pub const fn task(self) -> &'static str {
        match self {
            Self::Darkstat => "darkstat",
            Self::EbpfExporter => "ebpf",
        }
    }
}

/// Seen from this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Egress,
    Ingress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Egress => "egress",
            Self::Ingress => "ingress",
        }
    }
}

/// A cumulative byte counter with one peer in one direction.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerBytes {
    pub remote: IpAddr,
    pub direction: Direction,
    pub bytes: f64,
}

/// What one external task publishes.
#[derive(Clone, Debug, Default)]
pub struct ExternalReport {
    /// From the last successful scrape (kept through failures).
    pub peers: Arc<Vec<PeerBytes>>,
    /// When that scrape happened.
    pub last_success: Option<SystemTime>,
    /// Failed scrapes since start, by reason (see [`scrape::ScrapeError::reason`]).
    pub errors: BTreeMap<&'static str, u64>,
    /// darkstat only: which page the numbers come from.
    pub darkstat_format: Option<darkstat::Format>,
}
