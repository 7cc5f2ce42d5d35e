//! The one immutable snapshot scrapes read.
//!
//! The model publishes each new [`Snapshot`] into the [`Store`]
//! (copy-on-write of a few `Arc`s). A scrape loads the current snapshot
//! without locks and renders it; it never touches the kernel or the file
//! system.

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

use super::{
    dependencies::Dependencies, ledger::Edge, rate::Rates, series::SeriesReport,
    traffic_source::ExternalTraffic,
};
use crate::collect::{
    ProbeState, Run,
    flows::{KernelStats, ProgramStats},
    inventory::{Inventory, InventoryStatus},
    socket_table::OwnerMethod,
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
    /// When this drain ran; `None` before the first one.
    pub drained_at: Option<Instant>,
    /// Bytes per second of each edge since the previous drain; `None`
    /// until two drains have run.
    pub rates: Option<Rates>,
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

impl Snapshot {
    /// Records one run of `task`, ended at `at`.
    pub fn record_run(&mut self, task: &'static str, run: Run, at: SystemTime) {
        let status = self.tasks.entry(task).or_insert(TaskStatus {
            last_success: run.success,
            last_duration: run.duration,
            last_run: at,
            runs: 0,
            failures: 0,
            total_duration: Duration::ZERO,
        });
        status.last_success = run.success;
        status.last_duration = run.duration;
        status.last_run = at;
        status.runs += 1;
        status.total_duration += run.duration;
        if !run.success {
            status.failures += 1;
        }
    }
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Makes `snapshot` the current one.
    pub fn publish(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Publishes a changed copy of the current snapshot.
    pub fn update(&self, change: impl FnOnce(&mut Snapshot)) {
        let mut next = Snapshot::clone(&self.load());
        change(&mut next);
        self.publish(next);
    }

    /// Changes whenever a new snapshot is published.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

#[cfg(test)]
impl Store {
    /// Records one run of `task` in a new snapshot.
    pub(crate) fn task_ran(&self, task: &'static str, success: bool, duration: Duration) {
        self.update(|s| s.record_run(task, Run { success, duration }, SystemTime::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_runs_accumulate() {
        let mut snap = Snapshot::default();
        let run = |success, ms| Run {
            success,
            duration: Duration::from_millis(ms),
        };
        snap.record_run("flow", run(true, 3), SystemTime::now());
        snap.record_run("flow", run(false, 5), SystemTime::now());
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
