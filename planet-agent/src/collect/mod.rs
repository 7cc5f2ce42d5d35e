//! Collectors: each reads one source and sends what it read to the model
//! as a [`Report`]. None reads another's output or the snapshot; naming,
//! direction, dependencies and budgets are the model's.
//!
//! - [`flows`]: the kernel's per-flow byte counters ([`ebpf`] loads the programs).
//! - [`socket_table`]: every TCP socket and its owner (planet-exporter's `socketstat`).
//! - [`inventory`]: IP/CIDR → hostgroup and domain.
//! - [`scrapes`]: darkstat and ebpf_exporter numbers.
//!
//! Every collector runs in the one periodic loop, [`planet_cli::periodic::run`].

pub mod ebpf;
pub mod flows;
pub mod inventory;
pub mod local_addr;
pub mod scrapes;
pub mod socket_table;

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use self::{
    flows::FlowDrain,
    inventory::{Inventory, InventoryStatus},
    scrapes::{ExternalReport, ScrapeKind},
    socket_table::{OwnerMethod, SocketTable},
};

/// State of the in-process eBPF programs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProbeState {
    /// `-task-flow-enabled=false`, or still loading.
    #[default]
    Disabled,
    Attached {
        mode: ebpf::ProbeMode,
        rejected: Vec<(ebpf::ProbeMode, String)>,
    },
    Failed {
        reason: String,
    },
}

/// One raw input.
#[derive(Debug)]
pub enum Input {
    /// The eBPF programs attached, or could not be.
    Probe(ProbeState),
    /// One drain of the kernel's flow maps.
    Flows(FlowDrain),
    /// One enumeration of the socket table, with this host's address.
    SocketTable {
        table: SocketTable,
        local_ip: Option<IpAddr>,
    },
    /// How the socket table finds owners (sent when it changes).
    OwnerMethod(OwnerMethod),
    /// This host's address, when the socket table does not run.
    LocalIp(Option<IpAddr>),
    /// A new inventory (`None`: the refresh failed, the old one stays) and
    /// the inventory task's status.
    Inventory {
        inventory: Option<Arc<Inventory>>,
        status: InventoryStatus,
    },
    /// The numbers of darkstat or ebpf_exporter.
    External {
        kind: ScrapeKind,
        report: ExternalReport,
    },
}

/// How one run of a collector went, for the task self-metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub success: bool,
    pub duration: Duration,
}

impl Run {
    /// A run that started at `started` and ended now.
    pub fn since(started: Instant, success: bool) -> Self {
        Self {
            success,
            duration: started.elapsed(),
        }
    }
}

/// What a collector sends: its input and/or the outcome of a run.
#[derive(Debug)]
pub struct Report {
    /// The task's name in self-metrics.
    pub task: &'static str,
    pub run: Option<Run>,
    pub input: Option<Input>,
}

impl Report {
    /// An input without a task run.
    pub fn input(task: &'static str, input: Input) -> Self {
        Self {
            task,
            run: None,
            input: Some(input),
        }
    }

    /// A run and what it read.
    pub fn ran(task: &'static str, run: Run, input: Option<Input>) -> Self {
        Self {
            task,
            run: Some(run),
            input,
        }
    }
}

/// Reports waiting for the model; collectors wait when it is full.
const REPORT_QUEUE: usize = 64;

/// Where collectors send their reports.
#[derive(Clone, Debug)]
pub struct Reports(mpsc::Sender<Report>);

impl Reports {
    /// The sending side and the model's receiving side.
    pub fn channel() -> (Self, mpsc::Receiver<Report>) {
        let (tx, rx) = mpsc::channel(REPORT_QUEUE);
        (Self(tx), rx)
    }

    /// Sends `report`; dropped (with a debug line) once the model has stopped.
    pub async fn send(&self, report: Report) {
        if self.0.send(report).await.is_err() {
            tracing::debug!("model stopped; report dropped");
        }
    }
}
