//! Wiring: startup checks, the scheduled job loops, `/metrics`, and the
//! shutdown sequence (stop scheduling, let running jobs finish within their
//! timeout, store the history's pending last-seen times, flush the writer).

use std::{future::Future, sync::Arc, time::Duration};

use jiff::{SignedDuration, Timestamp};
use thiserror::Error;
use tokio::{net::TcpListener, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    bigquery::{self, BqJob, Tables},
    cli::{BigqueryArgs, Cli, Command, EdgesArgs, MapArgs},
    edges,
    history::{self, History},
    http,
    influx::{InfluxClient, Writer, WriterConfig, line, write::HealthError},
    jobs::{self, Context, Queries},
    map,
    metrics::Metrics,
    prom::{HttpProm, PromError},
    promql::{ExclusionError, Exclusions, Windows},
    schedule::Schedule,
};
use planet_cli::errors;

#[derive(Debug, Error)]
pub enum AppError {
    #[error(transparent)]
    Exclusions(#[from] ExclusionError),
    #[error("startup check of Prometheus failed")]
    Prometheus(#[source] PromError),
    #[error("startup check of InfluxDB failed")]
    Influx(#[source] HealthError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{failed} of {total} jobs failed")]
    JobsFailed { failed: usize, total: usize },
    #[error("{0} points could not be written before the flush deadline")]
    Unflushed(usize),
    #[error(transparent)]
    Edges(#[from] edges::EdgesError),
    #[error(transparent)]
    Bigquery(#[from] bigquery::BqError),
    #[error(transparent)]
    Map(#[from] map::MapError),
    #[error("cannot write {path}")]
    Output {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs what the command line asks for until `shutdown` resolves.
pub async fn run(
    cli: Cli,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    match &cli.command {
        None => federate(&cli, shutdown).await,
        Some(Command::Edges(args)) => edges_command(&cli, args).await,
        Some(Command::Map(args)) => map_command(&cli, args).await,
        Some(Command::Bigquery(args)) => bigquery_command(&cli, args, shutdown).await,
    }
}

/// The job time for a tick: the original's `now + offset`, taken from the
/// scheduled second so every run's points line up on the schedule.
fn job_time(tick: Timestamp, offset: SignedDuration) -> Timestamp {
    tick.checked_add(offset).unwrap_or(tick)
}

async fn federate(
    cli: &Cli,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let run = &cli.run;
    let timeout = Duration::from_secs(run.cron_job_timeout_second);
    let exclusions = Exclusions::new(run.exclude_preset, &run.exclude_address, &run.exclude_port)?;
    let windows = Windows {
        rate: run.query_rate_window,
        dependency: run.query_dependency_window,
    };

    let prom = HttpProm::new(&run.prometheus_addr, timeout).map_err(AppError::Prometheus)?;
    prom.check().await.map_err(AppError::Prometheus)?;
    let influx = InfluxClient::connect(&cli.influx.config(timeout))
        .await
        .map_err(AppError::Influx)?;
    info!(
        prometheus = %run.prometheus_addr,
        influxdb = %influx.base_url(),
        influxdb_version = influx.version.as_deref().unwrap_or("unknown"),
        api = %influx.api(),
        target = ?influx.target(),
        schedule = %run.cron_job_schedule,
        offset = %planet_cli::go_duration::GoDuration(run.cron_job_time_offset),
        "backends healthy"
    );

    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let server = match run.listen_address.0 {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| AppError::Listen { addr, source })?;
            info!(addr = %listener.local_addr().unwrap_or(addr), "serving /metrics");
            let app = http::app(Arc::clone(&metrics), Some(influx.clone()));
            let stopped = stop.clone();
            Some(tokio::spawn(http::serve(listener, app, async move {
                stopped.cancelled().await;
            })))
        }
        None => None,
    };

    let history = if run.history {
        let h = History::new(run.history_resolution);
        match history::load(&influx, None).await {
            Ok(stored) => {
                h.seed(&stored);
                info!(edges = stored.len(), "dependency history loaded");
            }
            Err(e) => {
                warn!(error = %errors::chain(&e), "cannot load the dependency history; first-seen times restart now")
            }
        }
        Some(Arc::new(h))
    } else {
        None
    };

    let writer = Writer::start(
        influx.clone(),
        WriterConfig {
            batch_size: usize::try_from(run.influxdb_batch_size).unwrap_or(usize::MAX),
            capacity: usize::try_from(run.influxdb_buffer_points).unwrap_or(usize::MAX),
            retry_initial: Duration::from_secs(1).min(run.influxdb_retry_max_interval),
            retry_max: run.influxdb_retry_max_interval,
        },
        Arc::clone(&metrics),
    );
    let ctx = Arc::new(Context {
        prom,
        writer: writer.handle(),
        metrics: Arc::clone(&metrics),
        queries: Queries::new(&exclusions, windows),
        query_lag: run.query_lag,
        history,
    });
    for job in &run.jobs {
        metrics.register_job(job.name());
    }

    let mut failed = 0;
    if run.once {
        let at = job_time(
            truncate_to_second(Timestamp::now()),
            run.cron_job_time_offset,
        );
        let mut set = JoinSet::new();
        for &job in &run.jobs {
            let ctx = Arc::clone(&ctx);
            set.spawn(async move { jobs::run_recorded(job, &ctx, at, timeout).await });
        }
        while let Some(r) = set.join_next().await {
            failed += usize::from(!matches!(r, Ok(Ok(_))));
        }
    } else {
        let mut loops = JoinSet::new();
        for &job in &run.jobs {
            let ctx = Arc::clone(&ctx);
            let schedule = run.cron_job_schedule.clone();
            let offset = run.cron_job_time_offset;
            let stop = stop.clone();
            loops.spawn(async move {
                let metrics = Arc::clone(&ctx.metrics);
                scheduled(job.name(), &schedule, stop, Some(&metrics), |tick| {
                    let ctx = Arc::clone(&ctx);
                    async move {
                        let _ =
                            jobs::run_recorded(job, &ctx, job_time(tick, offset), timeout).await;
                    }
                })
                .await;
            });
        }
        shutdown.await;
        info!("shutting down: no new job runs; waiting for running jobs");
        stop.cancel();
        let wait = tokio::time::timeout(timeout + Duration::from_secs(1), async {
            while loops.join_next().await.is_some() {}
        });
        if wait.await.is_err() {
            warn!(timeout = ?timeout, "running jobs did not finish in time");
            loops.abort_all();
        }
    }

    if let Some(h) = &ctx.history {
        let (lines, _) = line::encode_all(&h.pending_points());
        if !lines.is_empty() {
            ctx.writer.enqueue(lines, Instant::now()).await;
        }
    }
    let buffered = ctx.writer.len();
    if buffered > 0 {
        info!(points = buffered, "flushing pending writes");
    }
    let left = writer.close(Instant::now() + timeout).await;
    stop.cancel();
    if let Some(server) = server {
        match server.await {
            Ok(Err(e)) => error!(error = %e, "metrics server failed"),
            Err(e) => error!(error = %e, "metrics server task failed"),
            Ok(Ok(())) => {}
        }
    }
    info!(
        written = metrics.points_written.get(),
        retried = metrics.points_retried.get(),
        "stopped"
    );
    if failed > 0 {
        return Err(AppError::JobsFailed {
            failed,
            total: run.jobs.len(),
        });
    }
    if left > 0 {
        return Err(AppError::Unflushed(left));
    }
    Ok(())
}

fn truncate_to_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Calls `run(tick)` at each scheduled tick until `stop`. A run always
/// completes before the next tick is looked up, so runs of one job never
/// overlap; ticks that pass during a run are skipped and counted.
pub(crate) async fn scheduled<F, Fut>(
    name: &'static str,
    schedule: &Schedule,
    stop: CancellationToken,
    metrics: Option<&Metrics>,
    mut run: F,
) where
    F: FnMut(Timestamp) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut after = Timestamp::now();
    loop {
        let tick = match schedule.next_after(after) {
            Ok(t) => t,
            Err(e) => {
                error!(job = name, error = %errors::chain(&e), "schedule has no next time; job stopped");
                return;
            }
        };
        let wait = tick.duration_since(Timestamp::now());
        let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        run(tick).await;
        let now = Timestamp::now();
        let missed = schedule.count_between(tick, now, 10_000);
        if missed > 0 {
            if let Some(m) = metrics {
                m.job_skipped
                    .with_label_values(&[name])
                    .inc_by(missed as u64);
            }
            warn!(
                job = name,
                missed, "previous run still going at the scheduled time; runs skipped"
            );
        }
        after = now.max(tick);
    }
}

async fn edges_command(cli: &Cli, args: &EdgesArgs) -> Result<(), AppError> {
    let influx = InfluxClient::connect(&cli.influx.config(Duration::from_secs(60)))
        .await
        .map_err(AppError::Influx)?;
    let out = edges::run(&influx, args, Timestamp::now()).await?;
    print!("{out}");
    Ok(())
}

async fn map_command(cli: &Cli, args: &MapArgs) -> Result<(), AppError> {
    let influx = InfluxClient::connect(&cli.influx.config(Duration::from_secs(60)))
        .await
        .map_err(AppError::Influx)?;
    let out = map::run(&influx, args, Timestamp::now()).await?;
    match &args.output {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::write(path, out).map_err(|source| AppError::Output {
                path: path.clone(),
                source,
            })?;
            info!(path = %path.display(), format = %args.format, "map written");
        }
        _ => print!("{out}"),
    }
    Ok(())
}

async fn bigquery_command(
    cli: &Cli,
    args: &BigqueryArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let timeout = Duration::from_secs(args.cron_job_timeout_second);
    let influx = InfluxClient::connect(&cli.influx.config(timeout))
        .await
        .map_err(AppError::Influx)?;
    let tables = Tables {
        out_dir: args.bq_output_dir.clone(),
        traffic: args.bq_traffic_table_id.clone(),
        dependency: args.bq_dependency_table_id.clone(),
        project: args.bq_project_id.clone(),
        dataset: args.bq_dataset_id.clone(),
    };
    let offset = args.cron_job_time_offset;
    if let Some(which) = &args.once {
        let at = job_time(truncate_to_second(Timestamp::now()), offset);
        let jobs: &[BqJob] = match which.as_str() {
            "traffic" => &[BqJob::Traffic],
            "dependency" => &[BqJob::Dependency],
            _ => &[BqJob::Traffic, BqJob::Dependency],
        };
        for &job in jobs {
            bigquery::export(&influx, &tables, job, at).await?;
        }
        return Ok(());
    }
    let stop = CancellationToken::new();
    let mut loops = JoinSet::new();
    for (job, schedule) in [
        (BqJob::Traffic, args.cron_job_schedule_traffic.clone()),
        (BqJob::Dependency, args.cron_job_schedule_dependency.clone()),
    ] {
        let (influx, tables, stop) = (influx.clone(), tables.clone(), stop.clone());
        loops.spawn(async move {
            scheduled(job.name(), &schedule, stop, None, |tick| {
                let (influx, tables) = (&influx, &tables);
                async move {
                    let at = job_time(tick, offset);
                    match tokio::time::timeout(timeout, bigquery::export(influx, tables, job, at))
                        .await
                    {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            error!(job = job.name(), error = %errors::chain(&e), "export failed")
                        }
                        Err(_) => error!(job = job.name(), ?timeout, "export timed out"),
                    }
                }
            })
            .await;
        });
    }
    shutdown.await;
    stop.cancel();
    let _ = tokio::time::timeout(timeout, async {
        while loops.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("SIGINT received"),
        () = terminate => info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_time_applies_the_offset() {
        let tick: Timestamp = "2026-11-25T11:00:30Z".parse().unwrap();
        assert_eq!(
            job_time(tick, SignedDuration::from_secs(-3900)),
            "2026-11-25T09:55:30Z".parse::<Timestamp>().unwrap()
        );
    }

    #[tokio::test]
    async fn scheduled_runs_never_overlap_and_count_skips() {
        let schedule = Schedule::parse_in("@every 1s", jiff::tz::TimeZone::UTC).unwrap();
        let metrics = Metrics::new();
        let stop = CancellationToken::new();
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(3500)).await;
            stopper.cancel();
        });
        scheduled("t", &schedule, stop, Some(&metrics), |_| {
            let (running, runs) = (Arc::clone(&running), Arc::clone(&runs));
            async move {
                assert_eq!(running.fetch_add(1, std::sync::atomic::Ordering::SeqCst), 0);
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // Longer than the interval: the next tick must be skipped.
                tokio::time::sleep(Duration::from_millis(1500)).await;
                running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
        .await;
        let runs = runs.load(std::sync::atomic::Ordering::SeqCst);
        assert!((1..=2).contains(&runs), "{runs} runs");
        assert!(metrics.job_skipped.with_label_values(&["t"]).get() >= 1);
    }
}
