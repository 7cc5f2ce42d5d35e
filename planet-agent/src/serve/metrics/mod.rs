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
    io::Write,
    sync::Arc,
    time::{Instant, SystemTime},
};

use prometheus::{
    Encoder as _, Registry, TextEncoder,
    core::{Collector, Desc},
    process_collector::ProcessCollector,
    proto::MetricFamily,
};

use crate::model::snapshot::{Snapshot, Store};

pub use dependencies::hostname;
pub use family::Family;

/// Where a render puts its families, each as soon as it is complete.
/// Empty families are left out, as `Registry::gather` prunes them.
pub trait Sink {
    fn family(&mut self, family: Family<'_>);
}

/// The `prometheus` model, for the [`Collector`].
impl Sink for Vec<MetricFamily> {
    fn family(&mut self, family: Family<'_>) {
        self.extend(family.into_proto());
    }
}

/// Writes each family as text as it comes, so a render holds one family at
/// a time. The first write error is kept and ends the writing.
struct TextSink<'w> {
    out: &'w mut dyn Write,
    /// Families written so far: a family must not appear twice.
    written: Vec<String>,
    error: Option<prometheus::Error>,
}

impl<'w> TextSink<'w> {
    fn new(out: &'w mut dyn Write) -> Self {
        Self {
            out,
            written: Vec::new(),
            error: None,
        }
    }

    /// Records `name` as written; an error if it already was (`gather`
    /// would have merged the two; no renderer emits a family twice).
    fn claim(&mut self, name: &str) -> Result<(), prometheus::Error> {
        if self.written.iter().any(|n| n == name) {
            return Err(prometheus::Error::Msg(format!(
                "metric family {name} rendered twice"
            )));
        }
        self.written.push(name.to_owned());
        Ok(())
    }

    /// Families from other collectors, in the `prometheus` model.
    fn proto(&mut self, families: &[MetricFamily]) {
        for mf in families.iter().filter(|mf| !mf.get_metric().is_empty()) {
            if self.error.is_some() {
                return;
            }
            if let Err(err) = self
                .claim(mf.name())
                .and_then(|()| TextEncoder::new().encode(std::slice::from_ref(mf), &mut self.out))
            {
                self.error = Some(err);
            }
        }
    }

    fn finish(self) -> Result<(), prometheus::Error> {
        self.error.map_or(Ok(()), Err)
    }
}

impl Sink for TextSink<'_> {
    fn family(&mut self, family: Family<'_>) {
        if self.error.is_some() || family.is_empty() {
            return;
        }
        if let Err(err) = self
            .claim(family.spec().name)
            .and_then(|()| family.write_text(self.out).map_err(prometheus::Error::from))
        {
            self.error = Some(err);
        }
    }
}

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

/// A collector registered in the registry and also used directly.
struct Shared<C>(Arc<C>);

impl<C: Collector> Collector for Shared<C> {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

/// Planet's collectors: registered in a [`Registry`] (and nothing global),
/// and written as one text page by [`Exporter::write_text`] without the
/// registry's whole-page model.
pub struct Exporter {
    registry: Registry,
    build_info: Arc<BuildInfo>,
    snapshot: Arc<SnapshotCollector>,
    process: Arc<ProcessCollector>,
}

impl Exporter {
    pub fn new(store: Arc<Store>) -> Result<Self, prometheus::Error> {
        let build_info = Arc::new(BuildInfo {
            desc: agent::BUILD_INFO.desc()?,
            family: agent::build_info().into_proto().into_iter().collect(),
        });
        let snapshot = Arc::new(SnapshotCollector::new(store)?);
        // process_cpu_seconds_total, process_resident_memory_bytes, open fds…
        let process = Arc::new(ProcessCollector::for_self());
        let registry = Registry::new();
        registry.register(Box::new(Shared(build_info.clone())))?;
        registry.register(Box::new(Shared(snapshot.clone())))?;
        registry.register(Box::new(Shared(process.clone())))?;
        Ok(Self {
            registry,
            build_info,
            snapshot,
            process,
        })
    }

    /// The registry the collectors are registered in: `gather` gives the
    /// same families, series and values as [`Exporter::write_text`].
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of every collector, written one family at a
    /// time: the snapshot's families go from the snapshot to `out` through
    /// their compact [`Family`] form, never all in memory at once (the
    /// `prometheus` model of a 35k-series page took about 50 MiB).
    ///
    /// The same families, series and values as `Registry::gather` encoded
    /// by `TextEncoder`, each family's samples sorted the same way, with
    /// one difference: families come in the order the collectors produce
    /// them (build information, the snapshot's families as rendered, then
    /// the process's), not sorted by name; the text format does not order
    /// families.
    pub fn write_text(&self, out: &mut dyn Write) -> Result<(), prometheus::Error> {
        let mut sink = TextSink::new(out);
        sink.proto(&self.build_info.family);
        render_into(&self.snapshot.store.load(), &mut sink);
        sink.proto(&self.process.collect());
        sink.finish()
    }
}

/// Renders a snapshot into the `prometheus` model.
pub fn render(snapshot: &Snapshot) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    render_into(snapshot, &mut out);
    out
}

/// Renders a snapshot into `out`, family by family. The two
/// planet-exporter collectors' durations include what `out` does with
/// their families (on the page: writing them).
pub fn render_into(snapshot: &Snapshot, out: &mut dyn Sink) {
    let started = Instant::now();
    let hostmeta_ok = match dependencies::render_hostmeta(snapshot, out) {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(error = %err, "hostmeta collector failed: cannot read the hostname");
            false
        }
    };
    let hostmeta = ("hostmeta", started.elapsed(), hostmeta_ok);

    let started = Instant::now();
    dependencies::render(snapshot, out);
    let source = crate::model::traffic_source::select(snapshot, SystemTime::now());
    flows::render(
        snapshot,
        source == crate::model::traffic_source::Source::Flow,
        out,
    );
    traffic_sources::render(snapshot, source, out);
    let network = ("network_dependency", started.elapsed(), true);

    agent::render(snapshot, out);
    agent::scrape_metrics(&[hostmeta, network], out);
}

#[cfg(test)]
mod tests;
