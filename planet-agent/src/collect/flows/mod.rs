//! The flow task: drains the eBPF maps every task interval into per-edge
//! byte counters (see [`ledger`] for the accounting strategy).

pub mod ledger;
pub mod rate;
pub mod record;
pub mod series;
pub mod source;
mod task;

pub use ledger::{Direction, Edge, EdgeKey, Ledger};
pub use rate::{Rate, Rates};
pub use record::{Counts, Flow, FlowId};
pub use series::{FlowSeries, SeriesReport};
pub use source::{KernelFlows, KernelStats, ProgramStats};
pub use task::{FlowTask, TASK_NAME};
