//! Where `planet_traffic_bytes_total` comes from: the flow collector while
//! it runs, else darkstat when enabled, else none.

use std::time::{Duration, SystemTime};

use crate::{
    collect::{
        ProbeState, flows,
        scrapes::{ExternalReport, ScrapeKind},
    },
    model::Snapshot,
};

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
        ProbeState::Disabled => ext.flow_enabled && !snapshot.tasks.contains_key(flows::TASK_NAME),
        ProbeState::Attached { .. } => match snapshot.tasks.get(flows::TASK_NAME) {
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

impl ExternalTraffic {
    /// Where `kind`'s report goes.
    pub fn slot(&mut self, kind: ScrapeKind) -> &mut Option<ExternalReport> {
        match kind {
            ScrapeKind::Darkstat => &mut self.darkstat,
            ScrapeKind::EbpfExporter => &mut self.ebpf,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{collect::ebpf::ProbeMode, model::TaskStatus};

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
            flows::TASK_NAME,
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
