//! Kernel flows: the eBPF maps' per-flow byte counters, drained every
//! task interval ([`collector`]) through the [`FlowSource`] seam, so the
//! model is tested on scripted drains without root.

mod collector;
mod record;
mod source;

pub use collector::{FlowCollector, FlowDrain, TASK_NAME};
pub use record::{Counts, Flow, FlowId, comm};
pub use source::{FlowSource, KernelFlows, KernelStats, ProgramStats, StatName, stat_name};
