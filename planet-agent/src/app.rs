//! Wiring: start the tasks, serve HTTP, shut down on SIGTERM/SIGINT.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use planet_cli::periodic;
use tokio::{net::TcpListener, signal::unix::SignalKind, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    cli::Cli,
    collect::{
        Input, ProbeState, Report, Reports, Run,
        ebpf::{self, MapLimits},
        flows::{self, FlowCollector, KernelFlows},
        inventory::{self, InventoryCollector, InventoryConfig},
        local_addr,
        scrapes::{DarkstatSource, EbpfExporterSource, ScrapeCollector, scrape::ScrapeClient},
        socket_table::{self, OwnerSource, SocketTableCollector},
    },
    model::{self, Model, Store, traffic_source},
    serve::{http, metrics, web_config::WebConfig},
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
        address = %listener.local_addr().unwrap_or(cli.listen_address),
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

    let (reports, received) = Reports::channel();
    let model = Model::new(model::Config {
        budget: cli.budget(),
        flow_enabled: cli.task_flow_enabled,
        interval: cli.task_interval,
        darkstat_enabled: cli.task_darkstat_enabled,
        ebpf_enabled: cli.task_ebpf_enabled,
        inventory_enabled: cli.task_inventory_enabled,
        socket_table_enabled: owners.is_some(),
    });
    store.publish(model.snapshot().clone());
    tasks.spawn(model::run(model, received, store.clone()));

    if cli.task_flow_enabled {
        let flow = FlowStart {
            mode: cli.task_flow_mode,
            limits: MapLimits {
                flows: cli.task_flow_max_flows,
            },
            kernel_btf: cli.kernel_btf.clone(),
            program_stats: cli.task_flow_program_stats,
            interval: cli.task_interval,
        };
        tasks.spawn(flow.run(reports.clone(), shutdown.clone()));
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
        let collector = InventoryCollector::new(config, reports.clone());
        let refresh = collector.refresh();
        tasks.spawn(periodic::run(collector, refresh, shutdown.clone()));
    }
    if let Some(owners) = owners {
        let collector = SocketTableCollector {
            local_override: cli.local_address,
            proc_root: "/proc".into(),
            owners: Arc::new(Mutex::new(owners)),
            reports: reports.clone(),
            method: None,
        };
        tasks.spawn(periodic::run(
            collector,
            cli.task_interval,
            shutdown.clone(),
        ));
    } else {
        // Without the socket table, the host's address still names flows.
        let local_ip = cli.local_address.or_else(local_addr::detect);
        reports
            .send(Report::input(
                socket_table::TASK_NAME,
                Input::LocalIp(local_ip),
            ))
            .await;
    }

    let client = || {
        ScrapeClient::new(cli.task_scrape_timeout, cli.task_scrape_max_bytes)
            .context("scrape client")
    };
    if cli.task_darkstat_enabled {
        let source = DarkstatSource::new(cli.task_darkstat_addr.clone());
        let collector = ScrapeCollector::new(source, client()?, reports.clone());
        tasks.spawn(periodic::run(
            collector,
            cli.task_interval,
            shutdown.clone(),
        ));
    }
    if cli.task_ebpf_enabled {
        let source = EbpfExporterSource::new(cli.task_ebpf_addr.clone());
        let collector = ScrapeCollector::new(source, client()?, reports.clone());
        tasks.spawn(periodic::run(
            collector,
            cli.task_interval,
            shutdown.clone(),
        ));
    }
    // The model stops once every collector has dropped its sender.
    drop(reports);
    tasks.spawn(log_traffic_source(store.clone(), shutdown.clone()));

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

/// What the flow collector needs before it can run.
struct FlowStart {
    mode: ebpf::ModeRequest,
    limits: MapLimits,
    kernel_btf: PathBuf,
    program_stats: bool,
    interval: Duration,
}

impl FlowStart {
    /// Loads and attaches the eBPF programs, then drains them every
    /// interval. On failure the agent keeps serving; the reason is logged
    /// once and shown in the self-metrics.
    async fn run(self, reports: Reports, shutdown: CancellationToken) {
        let Self {
            mode,
            limits,
            kernel_btf,
            program_stats,
            interval,
        } = self;
        let loaded = tokio::task::spawn_blocking(move || ebpf::load(mode, limits, &kernel_btf))
            .await
            .map_err(|err| anyhow::anyhow!("eBPF loader panicked: {err}"))
            .and_then(|r| r.map_err(anyhow::Error::from))
            .and_then(|loaded| {
                KernelFlows::new(loaded, program_stats).map_err(anyhow::Error::from)
            });
        match loaded {
            Ok(source) => {
                tracing::info!(
                    mode = %source.mode,
                    rejected = ?source.rejected,
                    "flow programs attached"
                );
                let probe = ProbeState::Attached {
                    mode: source.mode,
                    rejected: source.rejected.clone(),
                };
                reports
                    .send(Report::input(flows::TASK_NAME, Input::Probe(probe)))
                    .await;
                let collector = FlowCollector::new(source, reports, interval);
                periodic::run(collector, interval, shutdown).await;
            }
            Err(err) => {
                let reason = format!("{err:#}");
                tracing::error!(
                    %reason,
                    "flow task cannot run: no per-process byte counts; everything else is still served"
                );
                let run = Run {
                    success: false,
                    duration: Duration::ZERO,
                };
                let probe = Input::Probe(ProbeState::Failed { reason });
                reports
                    .send(Report::ran(flows::TASK_NAME, run, Some(probe)))
                    .await;
            }
        }
    }
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
        let source = traffic_source::select(&snapshot, std::time::SystemTime::now());
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
