//! planet-agent: tells a Linux host its network dependencies.
//!
//! Data flows one way, through three layers:
//!
//! ```text
//!  collect                        model                         serve
//!  (raw inputs, one task each)    (one pure step)               (reads snapshots)
//!
//!  flows ─────────┐
//!  socket_table ──┤  Report       Model::apply ─► Snapshot ─►   /metrics
//!  inventory ─────┼─► channel ──► ledger, naming, direction, ─► /api/v1/dependencies
//!  scrapes ───────┘               dependencies, budget, rates   / (page)
//! ```
//!
//! - [`collect`]: each collector reads one source (the kernel's flow maps,
//!   the socket table, the inventory, darkstat/ebpf_exporter) and sends
//!   what it read as a [`collect::Report`]; no collector reads another's
//!   output or the snapshot.
//! - [`model`]: [`model::Model`] turns reports into the next immutable
//!   [`model::Snapshot`]; pure, so it is tested on scripted inputs.
//! - [`serve`]: HTTP; a scrape renders the current snapshot and never
//!   touches the kernel.
//! - [`cli`], [`app`]: flags and wiring.

pub mod allocator;
pub mod app;
pub mod cli;
pub mod collect;
pub mod model;
pub mod privileges;
pub mod serve;
