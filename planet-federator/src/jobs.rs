//! The three federator jobs (traffic, upstream, downstream): query
//! Prometheus, aggregate, hand the points to the writer. Each run is timed
//! and recorded in the federator's own metrics.

use std::{fmt, sync::Arc, time::Duration};

use jiff::{SignedDuration, Timestamp};
use thiserror::Error;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::{
    aggregate::{self, Direction},
    history::History,
    influx::{Point, WriterHandle, line},
    metrics::{DropReason, Metrics},
    prom::{PromApi, PromError},
    promql::{self, Exclusions, Windows},
};
use planet_cli::errors;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Traffic,
    Upstream,
    Downstream,
}

impl JobKind {
    pub const ALL: [Self; 3] = [Self::Traffic, Self::Upstream, Self::Downstream];

    pub fn name(self) -> &'static str {
        match self {
            Self::Traffic => "traffic",
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The PromQL of each job, built once from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queries {
    pub traffic: String,
    pub upstream: String,
    pub downstream: String,
}

impl Queries {
    pub fn new(exclusions: &Exclusions, windows: Windows) -> Self {
        Self {
            traffic: promql::traffic(exclusions, windows),
            upstream: promql::dependency(promql::UPSTREAM_METRIC, exclusions, windows),
            downstream: promql::dependency(promql::DOWNSTREAM_METRIC, exclusions, windows),
        }
    }

    pub fn get(&self, kind: JobKind) -> &str {
        match kind {
            JobKind::Traffic => &self.traffic,
            JobKind::Upstream => &self.upstream,
            JobKind::Downstream => &self.downstream,
        }
    }
}

/// What the jobs share.
pub struct Context<P> {
    pub prom: P,
    pub writer: WriterHandle,
    pub metrics: Arc<Metrics>,
    pub queries: Queries,
    /// Queries are evaluated this long before the job time (the original's
    /// fixed 15 s, which lets the last scrapes land).
    pub query_lag: Duration,
    /// Dependency history, when enabled.
    pub history: Option<Arc<History>>,
}

#[derive(Debug, Error)]
pub enum JobError {
    #[error("{job} job query failed")]
    Query {
        job: JobKind,
        #[source]
        source: PromError,
    },
    #[error("{job} job did not finish within {timeout:?}")]
    Timeout { job: JobKind, timeout: Duration },
}

/// The outcome of one successful run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobReport {
    /// Series Prometheus returned.
    pub series: usize,
    /// Points handed to the writer (including history points).
    pub points: usize,
    /// Points dropped (not encodable, or no room in the buffer in time).
    pub dropped: usize,
}

/// Runs `kind` once for job time `at`: evaluates its query at
/// `at - query_lag`, writes the points stamped `at`.
pub(crate) async fn run<P: PromApi>(
    kind: JobKind,
    ctx: &Context<P>,
    at: Timestamp,
    deadline: Instant,
) -> Result<JobReport, JobError> {
    let lag = SignedDuration::try_from(ctx.query_lag).unwrap_or(SignedDuration::ZERO);
    let eval_at = at.checked_sub(lag).unwrap_or(at);
    let samples = ctx
        .prom
        .query(ctx.queries.get(kind), eval_at)
        .await
        .map_err(|source| JobError::Query { job: kind, source })?;
    let at_ns = i64::try_from(at.as_nanosecond()).unwrap_or(i64::MAX);
    // Each point is encoded as soon as it is built: a run can be 100k+
    // points, and only the encoded lines need to outlive this function.
    let mut lines = Vec::with_capacity(samples.len());
    let mut invalid = Vec::new();
    let mut add = |point: Point| {
        let mut l = String::with_capacity(192);
        match line::encode(&point, &mut l) {
            Ok(()) => lines.push(l),
            Err(e) => invalid.push(e),
        }
    };
    let mut skipped = 0;
    for s in &samples {
        match kind {
            JobKind::Traffic => match aggregate::traffic_point(s, at_ns) {
                Some(p) => add(p),
                None => skipped += 1,
            },
            JobKind::Upstream => add(aggregate::dependency_point(Direction::Upstream, s, at_ns)),
            JobKind::Downstream => {
                add(aggregate::dependency_point(Direction::Downstream, s, at_ns));
            }
        }
    }
    if skipped > 0 {
        warn!(job = %kind, series = skipped, "series without local_hostgroup skipped");
    }
    if let Some(history) = &ctx.history {
        let direction = match kind {
            JobKind::Traffic => None,
            JobKind::Upstream => Some(Direction::Upstream),
            JobKind::Downstream => Some(Direction::Downstream),
        };
        if let Some(d) = direction {
            history
                .observe(d, &samples, at)
                .into_iter()
                .for_each(&mut add);
        }
    }
    let series = samples.len();
    drop(samples);
    if !invalid.is_empty() {
        ctx.metrics.dropped(DropReason::Invalid, invalid.len());
        warn!(job = %kind, points = invalid.len(), first = %invalid[0], "points could not be encoded");
    }
    let n = lines.len();
    ctx.metrics
        .job_points
        .with_label_values(&[kind.name()])
        .inc_by(n as u64);
    let enqueued = ctx.writer.enqueue(lines, deadline).await;
    Ok(JobReport {
        series,
        points: enqueued.accepted,
        dropped: enqueued.dropped + invalid.len(),
    })
}

/// [`run`] with a timeout, recorded in the metrics and the log.
pub async fn run_recorded<P: PromApi>(
    kind: JobKind,
    ctx: &Context<P>,
    at: Timestamp,
    timeout: Duration,
) -> Result<JobReport, JobError> {
    let start = Instant::now();
    let deadline = start + timeout;
    // The run gives up on its own at `deadline` (counting what it drops);
    // the hard timeout only catches a hung query, a little later.
    let hard = deadline + Duration::from_millis(250);
    let result = match tokio::time::timeout_at(hard, run(kind, ctx, at, deadline)).await {
        Ok(r) => r,
        Err(_) => Err(JobError::Timeout { job: kind, timeout }),
    };
    let took = start.elapsed();
    let job = kind.name();
    ctx.metrics
        .job_duration
        .with_label_values(&[job])
        .observe(took.as_secs_f64());
    match &result {
        Ok(report) => {
            ctx.metrics
                .job_runs
                .with_label_values(&[job, "success"])
                .inc();
            ctx.metrics.job_success.with_label_values(&[job]).set(1);
            ctx.metrics
                .job_last_success
                .with_label_values(&[job])
                .set(Timestamp::now().as_second());
            info!(
                job,
                %at,
                series = report.series,
                points = report.points,
                dropped = report.dropped,
                "{job} job took {took:?}"
            );
        }
        Err(err) => {
            ctx.metrics
                .job_runs
                .with_label_values(&[job, "failure"])
                .inc();
            ctx.metrics.job_success.with_label_values(&[job]).set(0);
            warn!(job, %at, error = %errors::chain(err), "{job} job failed after {took:?}; nothing written");
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        influx::{Writer, WriterConfig, write::LineSink, write::WriteError},
        prom::{FakeProm, Sample},
        promql::Preset,
    };
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<String>>);

    impl LineSink for Sink {
        async fn write(&self, body: String) -> Result<(), WriteError> {
            self.0.lock().unwrap().push_str(&body);
            Ok(())
        }
    }

    fn ctx(prom: FakeProm, sink: &Sink, history: bool) -> (Context<FakeProm>, Writer) {
        let metrics = Arc::new(Metrics::new());
        let writer = Writer::start(sink.clone(), WriterConfig::default(), Arc::clone(&metrics));
        let ex = Exclusions::new(Preset::PlanetExporter, &[], &[]).unwrap();
        (
            Context {
                prom,
                writer: writer.handle(),
                metrics,
                queries: Queries::new(&ex, Windows::default()),
                query_lag: Duration::from_secs(15),
                history: history.then(|| Arc::new(History::new(Duration::from_secs(300)))),
            },
            writer,
        )
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn traffic_job_queries_fifteen_seconds_back_and_stamps_job_time() {
        let prom = FakeProm::new().answer(
            "planet_traffic_bytes_total",
            vec![Sample::new(
                [
                    ("direction", "egress"),
                    ("local_hostgroup", "web"),
                    ("remote_hostgroup", "db"),
                ],
                8000.0,
            )],
        );
        let sink = Sink::default();
        let (ctx, writer) = ctx(prom, &sink, false);
        let at = Timestamp::from_second(1_764_064_830).unwrap();
        let report = run_recorded(JobKind::Traffic, &ctx, at, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(report.points, 1);
        writer.close(soon()).await;
        let q = ctx.prom.queries();
        assert_eq!(q[0].1, Timestamp::from_second(1_764_064_815).unwrap());
        assert_eq!(
            *sink.0.lock().unwrap(),
            "egress,remote_service=db,service=web bandwidth_bps=8000 1764064830000000000\n"
        );
        assert_eq!(
            ctx.metrics
                .job_runs
                .with_label_values(&["traffic", "success"])
                .get(),
            1
        );
    }

    #[tokio::test]
    async fn failed_query_writes_nothing_and_is_recorded() {
        let prom = FakeProm::new().fail("planet_upstream", "bad_data");
        let sink = Sink::default();
        let (ctx, writer) = ctx(prom, &sink, true);
        let at = Timestamp::from_second(1_764_064_830).unwrap();
        let err = run_recorded(JobKind::Upstream, &ctx, at, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, JobError::Query { .. }));
        writer.close(soon()).await;
        assert!(sink.0.lock().unwrap().is_empty());
        assert_eq!(
            ctx.metrics
                .job_success
                .with_label_values(&["upstream"])
                .get(),
            0
        );
    }

    #[tokio::test]
    async fn dependency_job_writes_history_points() {
        let prom = FakeProm::new().answer(
            "planet_downstream",
            vec![Sample::new(
                [
                    ("local_hostgroup", "db"),
                    ("remote_hostgroup", "web"),
                    ("remote_address", "web-1.example"),
                    ("port", "5432"),
                    ("protocol", "tcp"),
                    ("process_name", "postgres"),
                ],
                1.0,
            )],
        );
        let sink = Sink::default();
        let (ctx, writer) = ctx(prom, &sink, true);
        let at = Timestamp::from_second(1_764_064_830).unwrap();
        let r = run_recorded(JobKind::Downstream, &ctx, at, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.points, 2);
        writer.close(soon()).await;
        let body = sink.0.lock().unwrap().clone();
        assert!(body.contains("downstream,downstream_address=web-1.example,downstream_service=web,port=5432,process_name=postgres,protocol=tcp,service=db service_dependency=1i 1764064830000000000\n"), "{body}");
        assert!(body.contains("service_edge,direction=downstream,port=5432,protocol=tcp,remote_service=web,service=db first_seen=1764064830i,last_seen=1764064830i 1764064830000000000\n"), "{body}");
    }
}
