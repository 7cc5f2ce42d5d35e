//! The federator's own metrics (the original had none), served on
//! `/metrics`. One registry, built once; every metric is thread-safe, so
//! the struct is shared through an `Arc` with no lock.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    core::Collector,
};

/// Why points were dropped instead of written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The write buffer stayed full until the job's deadline.
    BufferFull,
    /// InfluxDB rejected the batch (4xx other than 408/429).
    Rejected,
    /// The point could not be encoded (no finite field).
    Invalid,
    /// Still buffered when the shutdown flush deadline passed.
    Shutdown,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BufferFull => "buffer_full",
            Self::Rejected => "rejected",
            Self::Invalid => "invalid",
            Self::Shutdown => "shutdown",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    pub job_duration: HistogramVec,
    pub job_runs: IntCounterVec,
    pub job_success: IntGaugeVec,
    pub job_last_success: IntGaugeVec,
    pub job_points: IntCounterVec,
    pub job_skipped: IntCounterVec,
    pub points_written: IntCounter,
    pub points_retried: IntCounter,
    pub points_dropped: IntCounterVec,
    pub write_requests: IntCounterVec,
    pub buffer_points: IntGauge,
    pub buffer_capacity: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Self {
            job_duration: HistogramVec::new(
                HistogramOpts::new(
                    "planet_federator_job_duration_seconds",
                    "Wall time of one federator job run (query, aggregate, enqueue)",
                )
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                ]),
                &["job"],
            )
            .expect("valid metric"),
            job_runs: IntCounterVec::new(
                Opts::new(
                    "planet_federator_job_runs_total",
                    "Federator job runs by outcome (success or failure)",
                ),
                &["job", "outcome"],
            )
            .expect("valid metric"),
            job_success: IntGaugeVec::new(
                Opts::new(
                    "planet_federator_job_success",
                    "Whether the job's last run succeeded (1) or failed (0)",
                ),
                &["job"],
            )
            .expect("valid metric"),
            job_last_success: IntGaugeVec::new(
                Opts::new(
                    "planet_federator_job_last_success_timestamp_seconds",
                    "Unix time of the job's last successful run",
                ),
                &["job"],
            )
            .expect("valid metric"),
            job_points: IntCounterVec::new(
                Opts::new(
                    "planet_federator_job_points_total",
                    "Points produced by the job and handed to the writer",
                ),
                &["job"],
            )
            .expect("valid metric"),
            job_skipped: IntCounterVec::new(
                Opts::new(
                    "planet_federator_job_skipped_runs_total",
                    "Scheduled runs skipped because the job's previous run was still going",
                ),
                &["job"],
            )
            .expect("valid metric"),
            points_written: IntCounter::new(
                "planet_federator_points_written_total",
                "Points InfluxDB accepted",
            )
            .expect("valid metric"),
            points_retried: IntCounter::new(
                "planet_federator_points_retried_total",
                "Points in write requests that failed and were retried",
            )
            .expect("valid metric"),
            points_dropped: IntCounterVec::new(
                Opts::new(
                    "planet_federator_points_dropped_total",
                    "Points given up on, by reason (buffer_full, rejected, invalid, shutdown)",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            write_requests: IntCounterVec::new(
                Opts::new(
                    "planet_federator_write_requests_total",
                    "InfluxDB write requests by outcome (success, retryable, rejected)",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            buffer_points: IntGauge::new(
                "planet_federator_buffer_points",
                "Points waiting in the write buffer",
            )
            .expect("valid metric"),
            buffer_capacity: IntGauge::new(
                "planet_federator_buffer_capacity_points",
                "Capacity of the write buffer in points",
            )
            .expect("valid metric"),
            registry,
        };
        let collectors: [Box<dyn Collector>; 12] = [
            Box::new(m.job_duration.clone()),
            Box::new(m.job_runs.clone()),
            Box::new(m.job_success.clone()),
            Box::new(m.job_last_success.clone()),
            Box::new(m.job_points.clone()),
            Box::new(m.job_skipped.clone()),
            Box::new(m.points_written.clone()),
            Box::new(m.points_retried.clone()),
            Box::new(m.points_dropped.clone()),
            Box::new(m.write_requests.clone()),
            Box::new(m.buffer_points.clone()),
            Box::new(m.buffer_capacity.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("unique metric names");
        }
        let build = IntGaugeVec::new(
            Opts::new(
                "planet_federator_build_info",
                "A metric with a constant '1' value labeled by the federator's version",
            ),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m.registry
            .register(Box::new(build))
            .expect("unique metric names");
        // Pre-create the labelled children so they show up as 0.
        for reason in [
            DropReason::BufferFull,
            DropReason::Rejected,
            DropReason::Invalid,
            DropReason::Shutdown,
        ] {
            m.points_dropped.with_label_values(&[reason.as_str()]);
        }
        for outcome in ["success", "retryable", "rejected"] {
            m.write_requests.with_label_values(&[outcome]);
        }
        m
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn dropped(&self, reason: DropReason, n: usize) {
        self.points_dropped
            .with_label_values(&[reason.as_str()])
            .inc_by(n as u64);
    }

    /// Current value of the dropped counter for `reason` (for tests and logs).
    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        self.points_dropped
            .with_label_values(&[reason.as_str()])
            .get()
    }

    /// Registers the job's labelled series so they are visible before its
    /// first run.
    pub fn register_job(&self, job: &str) {
        self.job_duration.with_label_values(&[job]);
        self.job_runs.with_label_values(&[job, "success"]);
        self.job_runs.with_label_values(&[job, "failure"]);
        self.job_points.with_label_values(&[job]);
        self.job_skipped.with_label_values(&[job]);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    #[test]
    fn renders_all_families() {
        let m = Metrics::new();
        m.register_job("traffic");
        m.points_written.inc_by(3);
        m.dropped(DropReason::Rejected, 2);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&m.registry().gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        for needle in [
            "planet_federator_points_written_total 3",
            "planet_federator_points_dropped_total{reason=\"rejected\"} 2",
            "planet_federator_points_dropped_total{reason=\"buffer_full\"} 0",
            "planet_federator_job_runs_total{job=\"traffic\",outcome=\"success\"} 0",
            "planet_federator_job_duration_seconds_count{job=\"traffic\"} 0",
            "planet_federator_build_info{version=",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert_eq!(m.dropped_count(DropReason::Rejected), 2);
    }
}
