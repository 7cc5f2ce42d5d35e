//! The flow task's loop: collect close records as they arrive, drain the
//! live map every interval, publish a [`FlowReport`].

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use planet_common::Origin;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{FlowSeries, KernelFlows, Ledger, rate, record::Flow};
use crate::{
    cardinality::{Budget, DependencyBudget},
    dependencies::{self, ClosedLog, ObservedConnection, RecentlyClosed},
    snapshot::{FlowReport, Store},
    socket_table::{self, SocketTable},
};

/// Name of this task in self-metrics.
pub const TASK_NAME: &str = "flow";

pub struct FlowTask {
    source: KernelFlows,
    ledger: Ledger,
    /// The byte families, budgeted.
    series: FlowSeries,
    budget: Budget,
    /// With `closed_log` unset: the budget of the dependencies built here.
    dependency_budget: DependencyBudget,
    pending: Vec<Flow>,
    vanished_total: u64,
    /// Where closed connections go for the socket table task; `None` when
    /// that task is disabled and this one derives the dependencies itself.
    closed_log: Option<Arc<ClosedLog>>,
    /// With `closed_log` unset: closed connections still shown as edges.
    recently_closed: RecentlyClosed,
    store: Arc<Store>,
    interval: Duration,
}

impl FlowTask {
    pub fn new(source: KernelFlows, store: Arc<Store>, interval: Duration) -> Self {
        Self {
            source,
            ledger: Ledger::new(),
            series: FlowSeries::default(),
            budget: Budget::default(),
            dependency_budget: DependencyBudget::default(),
            pending: Vec::new(),
            vanished_total: 0,
            closed_log: None,
            recently_closed: RecentlyClosed::new(Budget::default().retention),
            store,
            interval,
        }
    }

    /// Hands closed connections to the socket table task through `log`.
    /// Without one, this task publishes dependencies from flows alone,
    /// keeping closed connections as edges for the budget's retention.
    /// The budget bounds the byte families (and those dependencies).
    pub fn with_closed_log(mut self, log: Option<Arc<ClosedLog>>, budget: Budget) -> Self {
        self.closed_log = log;
        self.recently_closed = RecentlyClosed::new(budget.retention);
        self.budget = budget;
        self
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => self.drain(),
                ready = self.source.wait_closed(&mut self.pending) => {
                    if let Err(err) = ready {
                        tracing::error!(error = %err, "close-record ring buffer failed; draining on the interval only");
                        self.store.task_ran(TASK_NAME, false, Duration::ZERO);
                        tokio::time::sleep(self.interval).await;
                    }
                }
            }
        }
        // Credit what is pending so a final scrape during shutdown sees it.
        self.drain();
    }

    fn drain(&mut self) {
        let started = Instant::now();
        self.source.poll_closed(&mut self.pending);
        let closed = std::mem::take(&mut self.pending);
        let live = self.source.live();
        let needs_listeners = closed
            .iter()
            .chain(&live)
            .any(|f| f.origin == Origin::Unknown);
        let listening = if needs_listeners {
            socket_table::listening_ports().unwrap_or_else(|err| {
                tracing::warn!(error = %err, "cannot read listening ports; flows that predate the agent count as upstream");
                Default::default()
            })
        } else {
            Default::default()
        };
        let live_now: Vec<ObservedConnection> = live.iter().map(observed).collect();
        let closed_now: Vec<ObservedConnection> = closed.iter().map(observed).collect();
        let stats = self
            .ledger
            .drain(closed, live, |port| listening.contains(&port));
        self.vanished_total += stats.vanished as u64;
        let now = Instant::now();
        self.ledger.forget_idle(now, self.budget.retention);
        let edges = self.ledger.edges();
        let snapshot = self.store.load();
        self.series.credit(
            self.ledger.take_changes(),
            &snapshot.inventory,
            snapshot.local_ip,
            now,
        );
        let previous = snapshot.flows.clone();
        let rates = previous.drained_at.and_then(|at| {
            rate::between(&previous.edges, &edges, now.saturating_duration_since(at))
        });
        let report = Arc::new(FlowReport {
            series: self.series.settle(now, self.budget),
            edges,
            kernel: self.source.stats(),
            programs: self.source.program_stats(),
            live_flows: stats.live,
            capacity: self.source.capacity,
            vanished_total: self.vanished_total,
            observed: live_now,
            drained_at: Some(now),
            rates,
        });
        let deps = match &self.closed_log {
            Some(log) => {
                log.record(closed_now);
                None
            }
            None => {
                let mut seen = report.observed.clone();
                seen.extend(self.recently_closed.update(now, closed_now));
                let mut deps = dependencies::build(
                    &SocketTable::default(),
                    &seen,
                    &snapshot.inventory,
                    snapshot.local_ip,
                );
                self.dependency_budget.apply(
                    &mut deps,
                    &report.series,
                    self.budget,
                    &snapshot.inventory,
                    snapshot.local_ip,
                    now,
                );
                Some(Arc::new(deps))
            }
        };
        let elapsed = started.elapsed();
        tracing::debug!(
            closed = stats.closed,
            live = stats.live,
            vanished = stats.vanished,
            edges = report.edges.len(),
            ?elapsed,
            "flow drain"
        );
        self.store.publish(TASK_NAME, true, elapsed, |s| {
            s.flows = report.clone();
            if let Some(deps) = &deps {
                s.dependencies = deps.clone();
            }
        });
    }
}

fn observed(flow: &Flow) -> ObservedConnection {
    ObservedConnection {
        local: SocketAddr::new(flow.local, flow.local_port),
        remote: SocketAddr::new(flow.remote, flow.remote_port),
        origin: flow.origin,
        process: flow.comm.clone(),
    }
}
