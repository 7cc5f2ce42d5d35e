//! The agent's own families: task health, probe mode, inventory status,
//! build information, and planet-exporter's per-collector scrape metrics.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{
    Sink,
    dependencies::{DOWNSTREAM, UPSTREAM},
    family::{Family, Spec, single},
    flows::{DOWNSTREAM_BYTES, TRAFFIC, UPSTREAM_BYTES},
};
use crate::{collect::ProbeState, model::Snapshot};

pub const TASK_SUCCESS: Spec = Spec::gauge(
    "planet_task_last_run_success",
    "Whether the task's last run succeeded (1) or failed (0)",
    &["task"],
);
pub const TASK_DURATION: Spec = Spec::gauge(
    "planet_task_last_run_duration_seconds",
    "Duration of the task's last run",
    &["task"],
);
pub const TASK_TIMESTAMP: Spec = Spec::gauge(
    "planet_task_last_run_timestamp_seconds",
    "Unix time of the task's last run",
    &["task"],
);
pub const TASK_RUNS: Spec = Spec::counter("planet_task_runs_total", "Runs of the task", &["task"]);
pub const TASK_FAILURES: Spec = Spec::counter(
    "planet_task_failures_total",
    "Failed runs of the task",
    &["task"],
);
pub const PROGRAMS_ATTACHED: Spec = Spec::gauge(
    "planet_flow_programs_attached",
    "Whether the in-process eBPF flow programs are attached (1) or not (0)",
    &[],
);
pub const FLOW_MODE: Spec = Spec::gauge(
    "planet_flow_mode",
    "The probe mode the flow programs run in",
    &["mode"],
);
pub const FLOW_MODE_REJECTED: Spec = Spec::gauge(
    "planet_flow_mode_rejected",
    "Probe modes that were tried and rejected on this kernel, with the reason",
    &["mode", "reason"],
);
pub const SOCKET_OWNER_METHOD: Spec = Spec::gauge(
    "planet_socket_owner_method",
    "How the socket table finds the process of each socket: ebpf_iter (eBPF task_file iterator) or proc_walk (/proc/<pid>/fd links)",
    &["method"],
);
pub const INVENTORY_ENTRIES: Spec = Spec::gauge(
    "planet_inventory_entries",
    "Entries in the inventory in use",
    &[],
);
pub const INVENTORY_LAST_SUCCESS: Spec = Spec::gauge(
    "planet_inventory_last_success_timestamp_seconds",
    "Unix time of the last successful inventory fetch (0: never)",
    &[],
);
pub const INVENTORY_FAILURES: Spec = Spec::counter(
    "planet_inventory_failures_total",
    "Failed inventory fetches; the last good inventory stays in use",
    &[],
);
pub const BUILD_INFO: Spec = Spec::gauge(
    "planet_exporter_build_info",
    "A metric with a constant '1' value labeled by version, revision, branch, goversion from which planet_exporter was built, and the goos and goarch for the build.",
    &[
        "version",
        "revision",
        "branch",
        "goversion",
        "goos",
        "goarch",
        "tags",
    ],
);
pub const SCRAPE_DURATION: Spec = Spec::gauge(
    "planet_scrape_collector_duration_seconds",
    "planet_exporter: Duration of a collector scrape.",
    &["collector"],
);
pub const SCRAPE_SUCCESS: Spec = Spec::gauge(
    "planet_scrape_collector_success",
    "planet_exporter: Whether a collector succeeded.",
    &["collector"],
);

pub const TASK_SECONDS: Spec = Spec::counter(
    "planet_task_run_seconds_total",
    "Time spent in the task's runs",
    &["task"],
);
pub const SERIES_FOLDED_TOTAL: Spec = Spec::counter(
    "planet_series_folded_total",
    "Series of the family folded into its \"other\" series by the cardinality budget (-metrics-max-series-per-family)",
    &["family"],
);
pub const SERIES_FOLDED: Spec = Spec::gauge(
    "planet_series_folded",
    "Distinct series of the family folded into its \"other\" series within the retention window",
    &["family"],
);

pub const SPECS: [&Spec; 17] = [
    &TASK_SECONDS,
    &SERIES_FOLDED_TOTAL,
    &SERIES_FOLDED,
    &TASK_SUCCESS,
    &TASK_DURATION,
    &TASK_TIMESTAMP,
    &TASK_RUNS,
    &TASK_FAILURES,
    &PROGRAMS_ATTACHED,
    &FLOW_MODE,
    &FLOW_MODE_REJECTED,
    &SOCKET_OWNER_METHOD,
    &INVENTORY_ENTRIES,
    &INVENTORY_LAST_SUCCESS,
    &INVENTORY_FAILURES,
    &SCRAPE_DURATION,
    &SCRAPE_SUCCESS,
];

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn render(snapshot: &Snapshot, out: &mut dyn Sink) {
    let mut success = Family::new(&TASK_SUCCESS);
    let mut duration = Family::new(&TASK_DURATION);
    let mut timestamp = Family::new(&TASK_TIMESTAMP);
    let mut runs = Family::new(&TASK_RUNS);
    let mut failures = Family::new(&TASK_FAILURES);
    let mut seconds = Family::new(&TASK_SECONDS);
    for (task, status) in &snapshot.tasks {
        let task = [*task];
        success.push(&task, if status.last_success { 1.0 } else { 0.0 });
        duration.push(&task, status.last_duration.as_secs_f64());
        timestamp.push(&task, unix_seconds(status.last_run));
        runs.push(&task, status.runs as f64);
        failures.push(&task, status.failures as f64);
        seconds.push(&task, status.total_duration.as_secs_f64());
    }
    for family in [success, duration, timestamp, runs, failures, seconds] {
        out.family(family);
    }

    let mut attached = Family::new(&PROGRAMS_ATTACHED);
    let mut mode = Family::new(&FLOW_MODE);
    let mut rejected = Family::new(&FLOW_MODE_REJECTED);
    match &snapshot.probe {
        ProbeState::Disabled => attached.push(&[], 0.0),
        ProbeState::Failed { reason } => {
            attached.push(&[], 0.0);
            rejected.push(&["all", reason], 1.0);
        }
        ProbeState::Attached {
            mode: active,
            rejected: tried,
        } => {
            attached.push(&[], 1.0);
            mode.push(&[active.as_str()], 1.0);
            for (m, reason) in tried {
                rejected.push(&[m.as_str(), reason], 1.0);
            }
        }
    }
    for family in [attached, mode, rejected] {
        out.family(family);
    }
    if let Some(method) = snapshot.socket_owners {
        let mut family = Family::new(&SOCKET_OWNER_METHOD);
        family.push(&[method.as_str()], 1.0);
        out.family(family);
    }

    let mut folded_total = Family::new(&SERIES_FOLDED_TOTAL);
    let mut folded = Family::new(&SERIES_FOLDED);
    let (flows, deps) = (&snapshot.flows.series, &snapshot.dependencies);
    for (family, status) in [
        (UPSTREAM.name, deps.upstream_folds),
        (DOWNSTREAM.name, deps.downstream_folds),
        (UPSTREAM_BYTES.name, flows.upstream.folds),
        (DOWNSTREAM_BYTES.name, flows.downstream.folds),
        (TRAFFIC.name, flows.traffic.folds),
    ] {
        folded_total.push(&[family], status.total as f64);
        folded.push(&[family], status.current as f64);
    }
    out.family(folded_total);
    out.family(folded);

    if let Some(status) = &snapshot.inventory_status {
        out.family(single(&INVENTORY_ENTRIES, status.entries as f64));
        out.family(single(
            &INVENTORY_LAST_SUCCESS,
            status.last_success.map_or(0.0, unix_seconds),
        ));
        out.family(single(&INVENTORY_FAILURES, status.failures as f64));
    }
}

/// `planet_exporter_build_info`, with Rust's equivalents of Go's fields.
pub fn build_info() -> Family<'static> {
    let goarch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    let mut family = Family::new(&BUILD_INFO);
    family.push(
        &[
            concat!("v", env!("CARGO_PKG_VERSION")),
            env!("PLANET_GIT_REVISION"),
            env!("PLANET_GIT_BRANCH"),
            env!("PLANET_RUSTC_VERSION"),
            std::env::consts::OS,
            goarch,
            "unknown",
        ],
        1.0,
    );
    family
}

/// The per-collector scrape families for this scrape.
pub fn scrape_metrics(collectors: &[(&str, Duration, bool)], out: &mut dyn Sink) {
    let mut duration = Family::new(&SCRAPE_DURATION);
    let mut success = Family::new(&SCRAPE_SUCCESS);
    for (name, took, ok) in collectors {
        duration.push(&[name], took.as_secs_f64());
        success.push(&[name], if *ok { 1.0 } else { 0.0 });
    }
    out.family(duration);
    out.family(success);
}
