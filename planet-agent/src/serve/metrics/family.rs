//! Building metric families from label values.

use std::io::Write;

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

/// A family under construction, its samples kept compactly: the label
/// values of every sample in one string, where each ends, and the values.
/// Tens of bytes a sample, where the `prometheus` proto model (one
/// `Metric` with a `LabelPair` and two `String`s per label) takes about a
/// kilobyte; the page is written from this form, one family at a time.
pub struct Family<'s> {
    spec: &'s Spec,
    text: String,
    /// End of each label value in `text`, `spec.labels.len()` per sample.
    ends: Vec<u32>,
    values: Vec<f64>,
}

impl<'s> Family<'s> {
    pub fn new(spec: &'s Spec) -> Self {
        Self {
            spec,
            text: String::new(),
            ends: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Adds a sample; `values` follow `spec.labels` in order.
    pub fn push(&mut self, values: &[&str], value: f64) {
        debug_assert_eq!(values.len(), self.spec.labels.len(), "{}", self.spec.name);
        for v in values {
            self.text.push_str(v);
            let end = u32::try_from(self.text.len()).expect("a family's labels fit in 4 GiB");
            self.ends.push(end);
        }
        self.values.push(value);
    }

    pub fn spec(&self) -> &'s Spec {
        self.spec
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value of label `label` (index into `spec.labels`) of sample `sample`.
    fn label(&self, sample: usize, label: usize) -> &str {
        let i = sample * self.spec.labels.len() + label;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    /// Label indices in name order, as the exposition writes them.
    fn label_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.spec.labels.len()).collect();
        order.sort_by_key(|&i| self.spec.labels[i]);
        order
    }

    /// The family in the `prometheus` model, samples in the order pushed;
    /// `None` when it has no samples.
    pub fn into_proto(self) -> Option<MetricFamily> {
        if self.is_empty() {
            return None;
        }
        let order = self.label_order();
        let metrics = (0..self.values.len())
            .map(|sample| {
                let labels: Vec<LabelPair> = order
                    .iter()
                    .map(|&label| {
                        let mut pair = LabelPair::default();
                        pair.set_name(self.spec.labels[label].to_owned());
                        pair.set_value(self.label(sample, label).to_owned());
                        pair
                    })
                    .collect();
                let mut metric = Metric::from_label(labels);
                let value = self.values[sample];
                if self.spec.kind == MetricType::COUNTER {
                    let mut c = Counter::default();
                    c.set_value(value);
                    metric.set_counter(c);
                } else {
                    let mut g = Gauge::default();
                    g.set_value(value);
                    metric.set_gauge(g);
                }
                metric
            })
            .collect();
        let mut mf = MetricFamily::default();
        mf.set_name(self.spec.name.to_owned());
        mf.set_help(self.spec.help.to_owned());
        mf.set_field_type(self.spec.kind);
        mf.set_metric(metrics);
        Some(mf)
    }

    /// Writes the family in the text exposition format exactly as
    /// `prometheus::TextEncoder` writes it after `Registry::gather`: `# HELP`
    /// and `# TYPE` once, then the samples sorted by their label values
    /// (labels in name order; equal label sets keep the order pushed).
    /// Nothing when it has no samples.
    pub fn write_text(&self, w: &mut dyn Write) -> std::io::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let name = self.spec.name;
        if !self.spec.help.is_empty() {
            write!(w, "# HELP {name} ")?;
            write_escaped(w, self.spec.help, false)?;
            w.write_all(b"\n")?;
        }
        let kind = format!("{:?}", self.spec.kind).to_lowercase();
        writeln!(w, "# TYPE {name} {kind}")?;

        let order = self.label_order();
        let mut samples: Vec<u32> = (0..self.values.len() as u32).collect();
        samples.sort_by(|&a, &b| {
            order
                .iter()
                .map(|&l| self.label(a as usize, l).cmp(self.label(b as usize, l)))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        for sample in samples {
            let sample = sample as usize;
            w.write_all(name.as_bytes())?;
            let mut separator = b"{";
            for &label in &order {
                w.write_all(separator)?;
                w.write_all(self.spec.labels[label].as_bytes())?;
                w.write_all(b"=\"")?;
                write_escaped(w, self.label(sample, label), true)?;
                w.write_all(b"\"")?;
                separator = b",";
            }
            if !order.is_empty() {
                w.write_all(b"}")?;
            }
            writeln!(w, " {}", self.values[sample])?;
        }
        Ok(())
    }
}

/// The text format's escaping: `\` and newline, and `"` in label values.
fn write_escaped(w: &mut dyn Write, text: &str, quote: bool) -> std::io::Result<()> {
    let bytes = text.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'"' if quote => b"\\\"",
            _ => continue,
        };
        w.write_all(&bytes[from..i])?;
        w.write_all(escaped)?;
        from = i + 1;
    }
    w.write_all(&bytes[from..])
}

/// A family with one unlabelled sample.
pub fn single(spec: &Spec, value: f64) -> Family<'_> {
    let mut f = Family::new(spec);
    f.push(&[], value);
    f
}
