//! Building metric families from label values.

use prometheus::{
    core::Desc,
    proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType},
};

/// A metric family's name, help, type and label names.
pub struct Spec {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
    pub labels: &'static [&'static str],
}

impl Spec {
    pub const fn counter(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            help,
            kind: MetricType::COUNTER,
            labels,
        }
    }

    pub const fn gauge(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            help,
            kind: MetricType::GAUGE,
            labels,
        }
    }

    pub fn desc(&self) -> Result<Desc, prometheus::Error> {
        Desc::new(
            self.name.to_owned(),
            self.help.to_owned(),
            self.labels.iter().map(|l| (*l).to_owned()).collect(),
            Default::default(),
        )
    }
}

/// A family under construction.
pub struct Family<'s> {
    spec: &'s Spec,
    metrics: Vec<Metric>,
}

impl<'s> Family<'s> {
    pub fn new(spec: &'s Spec) -> Self {
        Self {
            spec,
            metrics: Vec::new(),
        }
    }

    /// Adds a sample; `values` follow `spec.labels` in order.
    pub fn push(&mut self, values: &[&str], value: f64) {
        debug_assert_eq!(values.len(), self.spec.labels.len(), "{}", self.spec.name);
        let mut labels: Vec<LabelPair> = self
            .spec
            .labels
            .iter()
            .zip(values)
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect();
        labels.sort_unstable_by(|a, b| a.name().cmp(b.name()));
        let mut metric = Metric::from_label(labels);
        if self.spec.kind == MetricType::COUNTER {
            let mut c = Counter::default();
            c.set_value(value);
            metric.set_counter(c);
        } else {
            let mut g = Gauge::default();
            g.set_value(value);
            metric.set_gauge(g);
        }
        self.metrics.push(metric);
    }

    /// The finished family, or `None` when it has no samples.
    pub fn finish(self) -> Option<MetricFamily> {
        if self.metrics.is_empty() {
            return None;
        }
        let mut mf = MetricFamily::default();
        mf.set_name(self.spec.name.to_owned());
        mf.set_help(self.spec.help.to_owned());
        mf.set_field_type(self.spec.kind);
        mf.set_metric(self.metrics);
        Some(mf)
    }
}

/// A family with one unlabelled sample.
pub fn single(spec: &Spec, value: f64) -> Option<MetricFamily> {
    let mut f = Family::new(spec);
    f.push(&[], value);
    f.finish()
}
