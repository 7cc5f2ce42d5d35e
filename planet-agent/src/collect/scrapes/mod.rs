//! Traffic numbers from outside the agent, for hosts where the in-process
//! eBPF flow task cannot run or that already run one of these tools:
//!
//! - **darkstat** (`-task-darkstat-enabled`, `-task-darkstat-addr`): per-host
//!   byte counters from its `/metrics` (darkstat ≥ 3.0.720) or, for the
//!   3.0.719 that distributions ship, its HTML hosts table. The task finds
//!   out which by itself ([`darkstat`]).
//! - **ebpf_exporter** (`-task-ebpf-enabled`, `-task-ebpf-addr`): the tcptop
//!   counters of `setup/ebpf-exporter/` ([`ebpf_exporter`]), shown as
//!   `planet_ebpf_traffic_bytes_total` as in planet-exporter.
//!
//! Both go through one [`scrape`] client (time limit, size limit, status
//! check, the [`exposition`] parser) and one task loop ([`task`]) that keeps
//! the last good numbers on failure and counts failures by reason.
//!
//! `planet_traffic_bytes_total` has one source at a time ([`select`]): the
//! flow task while it runs, else darkstat when enabled, else none.

pub mod darkstat;
pub mod ebpf_exporter;
pub mod exposition;
pub mod scrape;
pub mod task;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

pub use task::{DarkstatSource, EbpfExporterSource, ScrapeTask};

use crate::{
    flow,
    snapshot::{ProbeState, Snapshot},
};

/// Task names in self-metrics.
pub const DARKSTAT_TASK: &str = "darkstat";
pub const EBPF_TASK: &str = "ebpf";

/// Seen from this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Egress,
    Ingress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Egress => "egress",
            Self::Ingress => "ingress",
        }
    }
}

/// A cumulative byte counter with one peer in one direction.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerBytes {
    pub remote: IpAddr,
    pub direction: Direction,
    pub bytes: f64,
}

/// What one external task publishes.
#[derive(Clone, Debug, Default)]
pub struct ExternalReport {
    /// From the last successful scrape (kept through failures).
    pub peers: Arc<Vec<PeerBytes>>,
    /// When that scrape happened.
    pub last_success: Option<SystemTime>,
    /// Failed scrapes since start, by reason (see [`scrape::ScrapeError::reason`]).
    pub errors: BTreeMap<&'static str, u64>,
    /// darkstat only: which page the numbers come from.
    pub darkstat_format: Option<darkstat::Format>,
}

/// The external tasks' state in the snapshot.
#[derive(Clone, Debug, Default)]
pub struct ExternalTraffic {
    /// `-task-flow-enabled`.
    pub flow_enabled: bool,
    /// `-task-interval`: a flow task silent for 3 intervals is not running.
    pub interval: Duration,
    /// `None` while `-task-darkstat-enabled=false`.
    pub darkstat: Option<ExternalReport>,
    /// `None` while `-task-ebpf-enabled=false`.
    pub ebpf: Option<ExternalReport>,
}

/// Where `planet_traffic_bytes_total` comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Flow,
    Darkstat,
    None,
}

impl Source {
    pub const ALL: [Self; 3] = [Self::Flow, Self::Darkstat, Self::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flow => "flow",
            Self::Darkstat => "darkstat",
            Self::None => "none",
        }
    }
}

/// Flow drains missed before the flow task counts as stopped.
const STALE_INTERVALS: u32 = 3;

/// The source of `planet_traffic_bytes_total` for `snapshot` at `now`:
///
/// - **flow** while the flow programs are attached and the flow task
///   neither failed its last drain nor missed [`STALE_INTERVALS`] drains
///   (it also wins while an enabled flow task is still loading its
///   programs, so a start does not flap through darkstat);
/// - else **darkstat** when its task is enabled (its last good numbers,
///   possibly none yet);
/// - else **none**.
pub fn select(snapshot: &Snapshot, now: SystemTime) -> Source {
    let ext = &snapshot.external;
    let flow_running = match &snapshot.probe {
        ProbeState::Failed { .. } => false,
        ProbeState::Disabled => ext.flow_enabled && !snapshot.tasks.contains_key(flow::TASK_NAME),
        ProbeState::Attached { .. } => match snapshot.tasks.get(flow::TASK_NAME) {
            None => true,
            Some(status) => {
                let age = now.duration_since(status.last_run).unwrap_or_default();
                let stale = !ext.interval.is_zero() && age > ext.interval * STALE_INTERVALS;
                status.last_success && !stale
            }
        },
    };
    if flow_running {
        Source::Flow
    } else if ext.darkstat.is_some() {
        Source::Darkstat
    } else {
        Source::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ebpf::ProbeMode, snapshot::TaskStatus};

    const INTERVAL: Duration = Duration::from_secs(7);

    fn snapshot(flow_enabled: bool, darkstat: bool, probe: ProbeState) -> Snapshot {
        let mut s = Snapshot {
            probe,
            ..Snapshot::default()
        };
        s.external = Arc::new(ExternalTraffic {
            flow_enabled,
            interval: INTERVAL,
            darkstat: darkstat.then(ExternalReport::default),
            ebpf: None,
        });
        s
    }

    fn attached() -> ProbeState {
        ProbeState::Attached {
            mode: ProbeMode::Tracepoint,
            rejected: vec![],
        }
    }

    fn with_flow_run(mut s: Snapshot, success: bool, last_run: SystemTime) -> Snapshot {
        s.tasks.insert(
            flow::TASK_NAME,
            TaskStatus {
                last_success: success,
                last_duration: Duration::ZERO,
                last_run,
                runs: 1,
                failures: u64::from(!success),
                total_duration: Duration::ZERO,
            },
        );
        s
    }

    #[test]
    fn flow_wins_while_it_runs() {
        let now = SystemTime::now();
        for darkstat in [false, true] {
            let s = with_flow_run(snapshot(true, darkstat, attached()), true, now);
            assert_eq!(select(&s, now), Source::Flow);
            // Attached, first drain not yet done.
            assert_eq!(
                select(&snapshot(true, darkstat, attached()), now),
                Source::Flow
            );
            // Still loading the programs.
            let loading = snapshot(true, darkstat, ProbeState::Disabled);
            assert_eq!(select(&loading, now), Source::Flow);
        }
    }

    #[test]
    fn darkstat_when_the_flow_task_is_off_or_fails() {
        let now = SystemTime::now();
        let failed = ProbeState::Failed {
            reason: "no BTF".into(),
        };
        let cases = [
            ("disabled", snapshot(false, true, ProbeState::Disabled)),
            ("failed to attach", snapshot(true, true, failed.clone())),
            (
                "failed to load, recorded as a run",
                with_flow_run(snapshot(true, true, ProbeState::Disabled), false, now),
            ),
            (
                "last drain failed",
                with_flow_run(snapshot(true, true, attached()), false, now),
            ),
            (
                "stopped draining",
                with_flow_run(
                    snapshot(true, true, attached()),
                    true,
                    now - INTERVAL * (STALE_INTERVALS + 1),
                ),
            ),
        ];
        for (case, s) in cases {
            assert_eq!(select(&s, now), Source::Darkstat, "{case}");
            let mut without = s.clone();
            Arc::make_mut(&mut without.external).darkstat = None;
            assert_eq!(
                select(&without, now),
                Source::None,
                "{case} without darkstat"
            );
        }
        let recent = with_flow_run(
            snapshot(true, true, attached()),
            true,
            now - INTERVAL * STALE_INTERVALS,
        );
        assert_eq!(
            select(&recent, now),
            Source::Flow,
            "within the staleness bound"
        );
    }
}
