//! planet-agent: tells a Linux host its network dependencies.
//!
//! Data flows one way:
//!
//! ```text
//! kernel programs (planet-agent-ebpf) ─► bounded maps ─► flow task (drain each interval)
//!                                                           │
//!                                                           ▼
//!                     /metrics ◄─ SnapshotCollector ◄─ snapshot::Store (one immutable snapshot)
//! ```
//!
//! - [`ebpf`]: load the object, measure kernel layouts, attach one probe mode.
//! - [`flow`]: drain the maps into per-edge cumulative byte counters.
//! - [`traffic_sources`]: darkstat and ebpf_exporter, for hosts without the flow task.
//! - [`snapshot`]: the immutable snapshot tasks publish and scrapes read.
//! - [`metrics`]: render the snapshot as Prometheus families.
//! - [`api`]: the snapshot's dependencies as the `/api/v1/dependencies` document.
//! - [`web`]: the dependency page (embedded HTML/JS/CSS) and its API route.
//! - [`http`]: `/metrics` plus [`web`]'s routes.
//! - [`cli`], [`app`]: flags and wiring.

pub mod allocator;
pub mod api;
pub mod app;
pub mod cardinality;
pub mod cli;
pub mod dependencies;
pub mod ebpf;
pub mod flow;
pub mod http;
pub mod inventory;
pub mod local_addr;
pub mod metrics;
pub mod privileges;
pub mod snapshot;
pub mod socket_table;
pub mod traffic_sources;
pub mod web;
pub mod web_config;

/// `err` and its causes on one line: "a: b: c".
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
