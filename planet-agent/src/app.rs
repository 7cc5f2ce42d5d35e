//! Wiring: start the tasks, serve HTTP, shut down on SIGTERM/SIGINT.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{net::TcpListener, signal::unix::SignalKind, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    cli::Cli,
    dependencies::ClosedLog,
    ebpf::{self, MapLimits},
    flow::{self, FlowTask, KernelFlows},
    http,
    inventory::{self, InventoryConfig, InventoryTask},
    local_addr, metrics,
    snapshot::{ProbeState, Store},
    socket_table::{OwnerSource, SocketTableTask},
    traffic_sources::{self, DarkstatSource, EbpfExporterSource, ScrapeTask, scrape::ScrapeClient},
    web_config::WebConfig,
};

/// Runs the agent until a termination signal.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "Planet agent starting");
    crate::privileges::log_missing();

    let store = Arc::new(Store::new());
    let exporter = metrics::Exporter::new(store.clone()).context("metrics registry")?;
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();

    let web = match &cli.web_config_file {
        Some(path) => {
            WebConfig::load(path).with_context(|| format!("-web.config.file {}", path.display()))?
        }
        None => WebConfig::default(),
    };
    let listener = TcpListener::bind(cli.listen_address)
        .await
        .with_context(|| format!("listen on {}", cli.listen_address))?;
    tracing::info!(
        address = %cli.listen_address,
        tls = web.tls.is_some(),
        basic_auth = web.auth.is_some(),
        "serving /metrics"
    );

    // Where socket owners come from, chosen here on the main thread before
    // any other loader runs: loading the socket iterator parses the
    // kernel's BTF, and only the main thread's heap is handed back whole by
    // malloc_trim (on a blocking thread ~15 MiB stayed resident).
    let owners = cli
        .task_socketstat_enabled
        .then(|| OwnerSource::for_request(cli.task_socketstat_owners, &cli.kernel_btf));

    // Closed connections travel from the flow task to the socket table task.
    let closed_log = cli
        .task_socketstat_enabled
        .then(|| Arc::new(ClosedLog::default()));
    if cli.task_flow_enabled {
        let store = store.clone();
        let shutdown = shutdown.clone();
        let limits = MapLimits {
            flows: cli.task_flow_max_flows,
        };
        let (mode, interval) = (cli.task_flow_mode, cli.task_interval);
        let kernel_btf = cli.kernel_btf.clone();
        let program_stats = cli.task_flow_program_stats;
        let log = closed_log.clone();
        let budget = cli.budget();
        tasks.spawn(async move {
            let task =
                start_flow_task(mode, limits, &kernel_btf, program_stats, interval, store).await;
            if let Some(task) = task {
                task.with_closed_log(log, budget).run(shutdown).await;
            }
        });
    } else {
        tracing::info!("flow task disabled (-task-flow-enabled=false)");
    }
    if cli.task_inventory_enabled {
        let format = inventory::Format::from_flag(&cli.task_inventory_format);
        let mut config = InventoryConfig::new(
            cli.task_inventory_addr.clone(),
            format,
            cli.inventory_interval(),
        );
        config.timeout = cli.task_inventory_timeout;
        config.max_bytes = cli.task_inventory_max_bytes;
        tasks.spawn(InventoryTask::new(config).run(store.clone(), shutdown.clone()));
    }
    if let Some(owners) = owners {
        let task = SocketTableTask {
            store: store.clone(),
            interval: cli.task_interval,
            local_override: cli.local_address,
            proc_root: "/proc".into(),
            closed: closed_log.clone().unwrap_or_default(),
            budget: cli.budget(),
            owners,
        };
        tasks.spawn(task.run(shutdown.clone()));
    } else {
        // Without the socket table, the host's address still names flows.
        let local_ip = cli.local_address.or_else(local_addr::detect);
        store.update(|s| s.local_ip = local_ip);
    }

    spawn_traffic_sources(&cli, &store, &shutdown, &mut tasks)?;

    tasks.spawn(cancel_on_signal(shutdown.clone()));
    let served = http::serve(listener, http::app(exporter, store.clone()), &web, {
        let shutdown = shutdown.clone();
        async move { shutdown.cancelled().await }
    })
    .await;
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    served.context("HTTP server")?;
    tracing::info!("Planet agent stopped");
    Ok(())
}

/// Loads and attaches the eBPF programs. On failure the agent keeps
/// serving; the reason is logged once and shown in the self-metrics.
async fn start_flow_task(
    mode: ebpf::ModeRequest,
    limits: MapLimits,
    kernel_btf: &Path,
    program_stats: bool,
    interval: Duration,
    store: Arc<Store>,
) -> Option<FlowTask> {
    let kernel_btf = kernel_btf.to_owned();
    let loaded = tokio::task::spawn_blocking(move || ebpf::load(mode, limits, &kernel_btf))
        .await
        .map_err(|err| anyhow::anyhow!("eBPF loader panicked: {err}"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .and_then(|loaded| KernelFlows::new(loaded, program_stats).map_err(anyhow::Error::from));
    match loaded {
        Ok(source) => {
            tracing::info!(
                mode = %source.mode,
                rejected = ?source.rejected,
                "flow programs attached"
            );
            store.update(|s| {
                s.probe = ProbeState::Attached {
                    mode: source.mode,
                    rejected: source.rejected.clone(),
                }
            });
            Some(FlowTask::new(source, store, interval))
        }
        Err(err) => {
            let reason = format!("{err:#}");
            tracing::error!(
                %reason,
                "flow task cannot run: no per-process byte counts; everything else is still served"
            );
            store.update(|s| {
                s.probe = ProbeState::Failed {
                    reason: reason.clone(),
                }
            });
            store.task_ran(flow::TASK_NAME, false, Duration::ZERO);
            None
        }
    }
}

/// The darkstat and ebpf_exporter tasks, and the watcher that logs which
/// source feeds `planet_traffic_bytes_total`.
fn spawn_traffic_sources(
    cli: &Cli,
    store: &Arc<Store>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let (flow_enabled, interval) = (cli.task_flow_enabled, cli.task_interval);
    store.update(|s| {
        let external = Arc::make_mut(&mut s.external);
        external.flow_enabled = flow_enabled;
        external.interval = interval;
    });
    let client = || {
        ScrapeClient::new(cli.task_scrape_timeout, cli.task_scrape_max_bytes)
            .context("scrape client")
    };
    if cli.task_darkstat_enabled {
        let task = ScrapeTask::new(
            DarkstatSource::new(cli.task_darkstat_addr.clone()),
            client()?,
            interval,
        );
        tasks.spawn(task.run(store.clone(), shutdown.clone()));
    }
    if cli.task_ebpf_enabled {
        let task = ScrapeTask::new(
            EbpfExporterSource::new(cli.task_ebpf_addr.clone()),
            client()?,
            interval,
        );
        tasks.spawn(task.run(store.clone(), shutdown.clone()));
    }
    tasks.spawn(log_traffic_source(store.clone(), shutdown.clone()));
    Ok(())
}

/// Logs the source of `planet_traffic_bytes_total` at start and on every
/// change (scrapes compute the same selection from the snapshot).
async fn log_traffic_source(store: Arc<Store>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let mut shown = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let snapshot = store.load();
        let source = traffic_sources::select(&snapshot, std::time::SystemTime::now());
        if shown == Some(source) {
            continue;
        }
        match shown {
            None => tracing::info!(
                source = source.as_str(),
                "planet_traffic_bytes_total source"
            ),
            Some(previous) => tracing::warn!(
                source = source.as_str(),
                previous = previous.as_str(),
                "planet_traffic_bytes_total source changed"
            ),
        }
        shown = Some(source);
    }
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            tracing::error!(error = %err, "cannot watch SIGTERM");
            shutdown.cancelled().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        () = shutdown.cancelled() => {}
    }
    shutdown.cancel();
}
