//! The model: one pure step from the collectors' reports to the next
//! immutable [`Snapshot`]. No I/O; every clock reading is an argument.
//!
//! - [`ledger`]: per-flow kernel counters → per-edge cumulative bytes.
//! - [`naming`]: peers and edges named by the inventory.
//! - [`series`]: the byte families, named by the inventory, budgeted.
//! - [`dependencies`]: the `planet_upstream`, `planet_downstream` and
//!   `planet_server_process` series.
//! - [`cardinality`]: the series budget of every family.
//! - [`rate`]: bytes per second between two drains.
//! - [`traffic_source`]: which source feeds `planet_traffic_bytes_total`.
//! - [`snapshot`]: what serving reads.

pub mod cardinality;
pub mod dependencies;
pub mod ledger;
pub mod naming;
pub mod rate;
pub mod series;
pub mod snapshot;
pub mod traffic_source;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use planet_common::Origin;
use tokio::sync::mpsc;

pub use snapshot::{FlowReport, Snapshot, Store, TaskStatus};

use self::{
    cardinality::Budget,
    dependencies::{DependencyBudget, ObservedConnection, RecentlyClosed},
    ledger::Ledger,
    series::FlowSeries,
    traffic_source::ExternalTraffic,
};
use crate::collect::{
    Input, Report, Run,
    flows::{Flow, FlowDrain},
    socket_table::SocketTable,
};

/// What the model needs to know of the configuration.
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    /// Series limit and retention of every family.
    pub budget: Budget,
    /// `-task-flow-enabled`.
    pub flow_enabled: bool,
    /// `-task-interval`.
    pub interval: Duration,
    /// `-task-darkstat-enabled`, `-task-ebpf-enabled`.
    pub darkstat_enabled: bool,
    pub ebpf_enabled: bool,
    /// `-task-inventory-enabled`.
    pub inventory_enabled: bool,
    /// Whether a socket table collector runs (dependencies wait for it).
    pub socket_table_enabled: bool,
}

/// The state between snapshots, and the current snapshot.
#[derive(Debug)]
pub struct Model {
    config: Config,
    snapshot: Snapshot,
    ledger: Ledger,
    series: FlowSeries,
    vanished_total: u64,
    /// Live connections at the last drain.
    live: Vec<ObservedConnection>,
    recently_closed: RecentlyClosed,
    /// The last socket table.
    table: Option<SocketTable>,
    dependency_budget: DependencyBudget,
}

impl Model {
    pub fn new(config: Config) -> Self {
        let snapshot = Snapshot {
            external: Arc::new(ExternalTraffic {
                flow_enabled: config.flow_enabled,
                interval: config.interval,
                darkstat: config.darkstat_enabled.then(Default::default),
                ebpf: config.ebpf_enabled.then(Default::default),
            }),
            inventory_status: config.inventory_enabled.then(Default::default),
            ..Snapshot::default()
        };
        Self {
            config,
            snapshot,
            ledger: Ledger::new(),
            series: FlowSeries::default(),
            vanished_total: 0,
            live: Vec::new(),
            recently_closed: RecentlyClosed::new(config.budget.retention),
            table: None,
            dependency_budget: DependencyBudget::default(),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Takes in one report received at `now` (`wall`: the same instant on
    /// the wall clock). A task's run time includes what the model spent on
    /// its input.
    pub fn apply(&mut self, report: Report, now: Instant, wall: SystemTime) {
        let started = Instant::now();
        let s = &mut self.snapshot;
        let mut dependencies_changed = false;
        match report.input {
            None => {}
            Some(Input::Probe(probe)) => s.probe = probe,
            Some(Input::Flows(drain)) => {
                self.drain(drain, now);
                dependencies_changed = !self.config.socket_table_enabled;
            }
            Some(Input::SocketTable { table, local_ip }) => {
                s.local_ip = local_ip;
                self.table = Some(table);
                dependencies_changed = true;
            }
            Some(Input::OwnerMethod(method)) => s.socket_owners = Some(method),
            Some(Input::LocalIp(ip)) => s.local_ip = ip,
            Some(Input::Inventory { inventory, status }) => {
                if let Some(inventory) = inventory {
                    s.inventory = inventory;
                }
                s.inventory_status = Some(status);
            }
            Some(Input::External { kind, report }) => {
                *Arc::make_mut(&mut s.external).slot(kind) = Some(report);
            }
        }
        if dependencies_changed {
            self.build_dependencies(now);
        }
        if let Some(run) = report.run {
            let run = Run {
                duration: run.duration + started.elapsed(),
                ..run
            };
            self.snapshot.record_run(report.task, run, wall);
        }
    }

    /// Credits one drain: ledger, byte families, rates.
    fn drain(&mut self, drain: FlowDrain, now: Instant) {
        let FlowDrain {
            closed,
            live,
            listening,
            kernel,
            programs,
            capacity,
        } = drain;
        // A flow older than the programs takes the listener rule here as in
        // the ledger, so its dependency and its bytes agree on direction.
        let observed = |flow: &Flow| {
            let accepted = flow.origin == Origin::Unknown && listening.contains(&flow.local_port);
            ObservedConnection {
                local: SocketAddr::new(flow.local, flow.local_port),
                remote: SocketAddr::new(flow.remote, flow.remote_port),
                origin: if accepted {
                    Origin::Accepted
                } else {
                    flow.origin
                },
                process: flow.comm.clone(),
            }
        };
        self.live = live.iter().map(observed).collect();
        self.recently_closed
            .record(now, closed.iter().map(observed));
        let stats = self
            .ledger
            .drain(closed, live, |port| listening.contains(&port));
        self.vanished_total += stats.vanished as u64;
        let budget = self.config.budget;
        self.ledger.forget_idle(now, budget.retention);
        let edges = self.ledger.edges();
        let s = &mut self.snapshot;
        self.series
            .credit(self.ledger.take_changes(), &s.inventory, s.local_ip, now);
        let previous = &s.flows;
        let rates = previous.drained_at.and_then(|at| {
            rate::between(&previous.edges, &edges, now.saturating_duration_since(at))
        });
        s.flows = Arc::new(FlowReport {
            series: self.series.settle(now, budget),
            edges,
            kernel,
            programs,
            live_flows: stats.live,
            capacity,
            vanished_total: self.vanished_total,
            drained_at: Some(now),
            rates,
        });
    }

    /// Dependencies from the last socket table (if one runs), the flows'
    /// connections (live and recently closed) and the inventory, budgeted.
    fn build_dependencies(&mut self, now: Instant) {
        let mut seen = self.live.clone();
        seen.extend(self.recently_closed.update(now, []));
        let s = &mut self.snapshot;
        let empty = SocketTable::default();
        let table = self.table.as_ref().unwrap_or(&empty);
        let mut deps = dependencies::build(table, &seen, &s.inventory, s.local_ip);
        self.dependency_budget.apply(
            &mut deps,
            &s.flows.series,
            self.config.budget,
            &s.inventory,
            s.local_ip,
            now,
        );
        s.dependencies = Arc::new(deps);
    }
}

/// The model task: applies reports as they come and publishes a snapshot
/// after each, until every collector has stopped.
pub async fn run(mut model: Model, mut reports: mpsc::Receiver<Report>, store: Arc<Store>) {
    while let Some(report) = reports.recv().await {
        model.apply(report, Instant::now(), SystemTime::now());
        store.publish(model.snapshot().clone());
    }
}

#[cfg(test)]
mod tests;

/// The model as the agent runs it, for tests of collectors.
#[cfg(test)]
pub(crate) mod testing {
    use std::{
        ops::Deref,
        sync::Arc,
        time::{Instant, SystemTime},
    };

    use super::{Config, Model, Store};
    use crate::collect::{Report, Reports};

    /// A model and the store it publishes into, applied by hand.
    pub(crate) struct Pipeline {
        model: Model,
        store: Store,
    }

    impl Pipeline {
        pub(crate) fn new(config: Config) -> Self {
            let model = Model::new(config);
            let store = Store::new();
            store.publish(model.snapshot().clone());
            Self { model, store }
        }

        pub(crate) fn apply(&mut self, report: Report) {
            self.model.apply(report, Instant::now(), SystemTime::now());
            self.store.publish(self.model.snapshot().clone());
        }
    }

    impl Deref for Pipeline {
        type Target = Store;

        fn deref(&self) -> &Store {
            &self.store
        }
    }

    /// A running model task: collectors send to the returned [`Reports`].
    pub(crate) fn spawn(config: Config) -> (Reports, Arc<Store>) {
        let (reports, received) = Reports::channel();
        let model = Model::new(config);
        let store = Arc::new(Store::new());
        store.publish(model.snapshot().clone());
        tokio::spawn(super::run(model, received, store.clone()));
        (reports, store)
    }
}
