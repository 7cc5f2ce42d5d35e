//! The socket table task's loop: enumerate every task interval, merge with
//! the flow task's view and the inventory, publish the dependencies.

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{OwnerMethod, OwnerSource};
use crate::{
    cardinality::{Budget, DependencyBudget},
    dependencies::{self, ClosedLog, RecentlyClosed},
    local_addr,
    snapshot::Store,
};

/// Name of this task in self-metrics (planet-exporter's name for it).
pub const TASK_NAME: &str = "socketstat";

pub struct SocketTableTask {
    pub store: Arc<Store>,
    pub interval: Duration,
    /// `-local-address`: overrides the routing-table lookup.
    pub local_override: Option<IpAddr>,
    pub proc_root: PathBuf,
    /// Connections the flow task saw close since the last collection.
    pub closed: Arc<ClosedLog>,
    /// Series limit of the dependency families, and how long a closed
    /// connection stays an edge.
    pub budget: Budget,
    /// Where socket owners come from (see [`OwnerSource::for_request`]).
    pub owners: OwnerSource,
}

impl SocketTableTask {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Shared with the blocking collection jobs; the task keeps an empty
        // walk cache in its place.
        let owners = std::mem::replace(&mut self.owners, OwnerSource::proc_walk());
        let owners = Arc::new(Mutex::new(owners));
        let mut recent = RecentlyClosed::new(self.budget.retention);
        let mut budget = DependencyBudget::default();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => self.collect_once(&owners, &mut recent, &mut budget).await,
            }
        }
    }

    async fn collect_once(
        &self,
        owners: &Arc<Mutex<OwnerSource>>,
        recent: &mut RecentlyClosed,
        budget: &mut DependencyBudget,
    ) {
        let started = Instant::now();
        let proc_root = self.proc_root.clone();
        let override_ip = self.local_override;
        let owners = owners.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut owners = owners
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let table = super::collect_with(&proc_root, &mut owners);
            let method = owners.method();
            let local_ip = override_ip.or_else(local_addr::detect);
            (table.map(|table| (table, local_ip)), method)
        })
        .await;
        if let Ok((_, method)) = &result {
            self.report_method(*method);
        }
        match result.map(|(table, _)| table) {
            Ok(Ok((table, local_ip))) => {
                let snapshot = self.store.load();
                let now = Instant::now();
                let mut observed = snapshot.flows.observed.clone();
                observed.extend(recent.update(now, self.closed.take()));
                tracing::debug!(
                    listeners = table.listeners.len(),
                    connections = table.connections.len(),
                    observed = observed.len(),
                    "socket table collected"
                );
                let mut deps =
                    dependencies::build(&table, &observed, &snapshot.inventory, local_ip);
                budget.apply(
                    &mut deps,
                    &snapshot.flows.series,
                    self.budget,
                    &snapshot.inventory,
                    local_ip,
                    now,
                );
                let deps = Arc::new(deps);
                self.store.publish(TASK_NAME, true, started.elapsed(), |s| {
                    s.dependencies = deps.clone();
                    s.local_ip = local_ip;
                });
            }
            Ok(Err(err)) => {
                tracing::error!(error = %err, "socketstat collect failed; keeping the previous dependencies");
                self.store.task_ran(TASK_NAME, false, started.elapsed());
            }
            Err(err) => {
                tracing::error!(error = %err, "socketstat collect panicked");
                self.store.task_ran(TASK_NAME, false, started.elapsed());
            }
        }
    }

    /// Publishes the owner method when it changes (at start, or when the
    /// iterator fails and the walk takes over).
    fn report_method(&self, method: OwnerMethod) {
        if self.store.load().socket_owners != Some(method) {
            self.store.update(|s| s.socket_owners = Some(method));
        }
    }
}
