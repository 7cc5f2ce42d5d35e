//! The one immutable snapshot scrapes read.
//!
//! Tasks publish their results into the [`Store`]; each publish swaps in a
//! new [`Snapshot`] (copy-on-write of a few `Arc`s). A scrape loads the
//! current snapshot without locks and renders it; it never touches the
//! kernel or the file system.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use arc_swap::ArcSwap;

use crate::{
    dependencies::{Dependencies, ObservedConnection},
    ebpf::ProbeMode,
    flow::{Edge, KernelStats, ProgramStats, Rates, SeriesReport},
    inventory::{Inventory, InventoryStatus},
    socket_table::OwnerMethod,
    traffic_sources::ExternalTraffic,
};

/// Result of the most recent flow drain.
#[derive(Clone, Debug, Default)]
pub struct FlowReport {
    /// Cumulative bytes per edge, sorted (edges idle for longer than the
    /// retention window are left out).
    pub edges: Vec<Edge>,
    /// The byte families, named and within the cardinality budget.
    pub series: SeriesReport,
    /// What the programs could not account for.
    pub kernel: KernelStats,
    /// Run statistics of the attached programs.
    pub programs: Vec<ProgramStats>,
    /// Live flows in the kernel map at the last drain.
    pub live_flows: usize,
    /// Capacity of the kernel flow map.
    pub capacity: u32,
    /// Flows that disappeared without a close record, since start.
    pub vanished_total: u64,
    /// Live connections at the last drain, for the dependency merge.
    pub observed: Vec<ObservedConnection>,
    /// When this drain ran; `None` before the first one.
    pub drained_at: Option<Instant>,
    /// Bytes per second of each edge since the previous drain; `None`
    /// until two drains have run.
    pub rates: Option<Rates>,
}

/// State of the in-process eBPF programs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProbeState {
    /// `-task-flow-enabled=false`.
    #[default]
    Disabled,
    Attached {
        mode: ProbeMode,
        rejected: Vec<(ProbeMode, String)>,
    },
    Failed {
        reason: String,
    },
}

/// Outcome of a task's runs.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskStatus {
    pub last_success: bool,
    pub last_duration: Duration,
    pub last_run: SystemTime,
    pub runs: u64,
    pub failures: u64,
    /// Time spent in all runs.
    pub total_duration: Duration,
}

/// Everything `/metrics` shows, as of the last publish.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub flows: Arc<FlowReport>,
    pub probe: ProbeState,
    pub tasks: BTreeMap<&'static str, TaskStatus>,
    /// The inventory in use (empty until the first successful fetch).
    pub inventory: Arc<Inventory>,
    /// `None` while the inventory task is disabled.
    pub inventory_status: Option<InventoryStatus>,
    /// `planet_upstream`, `planet_downstream`, `planet_server_process`.
    pub dependencies: Arc<Dependencies>,
    /// This host's address (routing table or `-local-address`).
    pub local_ip: Option<IpAddr>,
    /// How the socket table finds socket owners; `None` until its first
    /// collection (or while it is disabled).
    pub socket_owners: Option<OwnerMethod>,
    /// darkstat and ebpf_exporter numbers, and what picks the traffic source.
    pub external: Arc<ExternalTraffic>,
}

/// Holder of the current snapshot.
#[derive(Debug, Default)]
pub struct Store {
    current: ArcSwap<Snapshot>,
    /// Bumped by every publish; lets readers cache what they derive.
    version: AtomicU64,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes a new snapshot derived from the current one.
    pub fn update(&self, change: impl Fn(&mut Snapshot)) {
        self.current.rcu(|current| {
            let mut next = Snapshot::clone(current);
            change(&mut next);
            next
        });
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Changes whenever a new snapshot is published.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Records one run of `task`.
    pub fn task_ran(&self, task: &'static str, success: bool, duration: Duration) {
        self.publish(task, success, duration, |_| {});
    }

    /// Publishes a task's result and its run status as one new snapshot.
    pub fn publish(
        &self,
        task: &'static str,
        success: bool,
        duration: Duration,
        change: impl Fn(&mut Snapshot),
    ) {
        let now = SystemTime::now();
        self.update(|s| {
            change(s);
            let status = s.tasks.entry(task).or_insert(TaskStatus {
                last_success: success,
                last_duration: duration,
                last_run: now,
                runs: 0,
                failures: 0,
                total_duration: Duration::ZERO,
            });
            status.last_success = success;
            status.last_duration = duration;
            status.last_run = now;
            status.runs += 1;
            status.total_duration += duration;
            if !success {
                status.failures += 1;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_runs_accumulate() {
        let store = Store::new();
        store.task_ran("flow", true, Duration::from_millis(3));
        store.task_ran("flow", false, Duration::from_millis(5));
        let snap = store.load();
        let status = &snap.tasks["flow"];
        assert!(!status.last_success);
        assert_eq!(status.runs, 2);
        assert_eq!(status.failures, 1);
        assert_eq!(status.last_duration, Duration::from_millis(5));
        assert_eq!(status.total_duration, Duration::from_millis(8));
    }

    #[test]
    fn earlier_snapshots_are_immutable() {
        let store = Store::new();
        let before = store.load();
        store.update(|s| s.probe = ProbeState::Failed { reason: "x".into() });
        assert_eq!(before.probe, ProbeState::Disabled);
        assert_eq!(
            store.load().probe,
            ProbeState::Failed { reason: "x".into() }
        );
    }
}
