//! Renders the current [`Snapshot`] as Prometheus metric families on each
//! scrape. Rendering reads only the snapshot (plus the hostname, as
//! planet-exporter did): no kernel walk, no file system.
//!
//! As in planet-exporter, two collectors report their own scrape:
//! `hostmeta` (`planet_hostname`) and `network_dependency` (dependencies
//! and traffic).

mod agent;
mod dependencies;
mod family;
mod flows;
mod traffic_sources;

use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

use prometheus::{
    Registry,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use crate::snapshot::{Snapshot, Store};

pub use dependencies::hostname;

/// The Collector behind `/metrics`.
pub struct SnapshotCollector {
    store: Arc<Store>,
    descs: Vec<Desc>,
}

impl SnapshotCollector {
    pub fn new(store: Arc<Store>) -> Result<Self, prometheus::Error> {
        let descs = flows::SPECS
            .iter()
            .chain(&dependencies::SPECS)
            .chain(&agent::SPECS)
            .chain(&traffic_sources::SPECS)
            .chain([&&dependencies::HOSTNAME])
            .map(|spec| spec.desc())
            .collect::<Result<_, _>>()?;
        Ok(Self { store, descs })
    }
}

impl Collector for SnapshotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        render(&self.store.load())
    }
}

/// `planet_exporter_build_info`, registered as its own collector as in the original.
struct BuildInfo {
    desc: Desc,
    family: Vec<MetricFamily>,
}

impl Collector for BuildInfo {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.family.clone()
    }
}

/// A registry with Planet's collectors (and nothing global).
pub fn registry(store: Arc<Store>) -> Result<Registry, prometheus::Error> {
    let registry = Registry::new();
    registry.register(Box::new(BuildInfo {
        desc: agent::BUILD_INFO.desc()?,
        family: agent::build_info().into_iter().collect(),
    }))?;
    registry.register(Box::new(SnapshotCollector::new(store)?))?;
    Ok(registry)
}

/// Renders a snapshot.
pub fn render(snapshot: &Snapshot) -> Vec<MetricFamily> {
    let mut out = Vec::new();

    let started = Instant::now();
    let hostmeta_ok = match dependencies::render_hostmeta(snapshot, &mut out) {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(error = %err, "hostmeta collector failed: cannot read the hostname");
            false
        }
    };
    let hostmeta = ("hostmeta", started.elapsed(), hostmeta_ok);

    let started = Instant::now();
    dependencies::render(snapshot, &mut out);
    let source = crate::traffic_sources::select(snapshot, SystemTime::now());
    flows::render(
        snapshot,
        source == crate::traffic_sources::Source::Flow,
        &mut out,
    );
    traffic_sources::render(snapshot, source, &mut out);
    let network = ("network_dependency", started.elapsed(), true);

    agent::render(snapshot, &mut out);
    out.extend(agent::scrape_metrics(&[hostmeta, network]));
    out
}

#[cfg(test)]
mod tests;
