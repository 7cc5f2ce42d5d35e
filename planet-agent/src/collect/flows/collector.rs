//! The flow collector: reads close records as the ring announces them and
//! hands one [`FlowDrain`] to the model every interval.

use std::{collections::HashSet, time::Instant};

use planet_cli::periodic::Periodic;
use planet_common::Origin;

use super::{Flow, FlowSource, KernelStats, ProgramStats};
use crate::collect::{Input, Report, Reports, Run};

/// Name of this task in self-metrics.
pub const TASK_NAME: &str = "flow";

/// What one drain read from the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowDrain {
    /// Flows that closed since the previous drain, with their final counters.
    pub closed: Vec<Flow>,
    /// A walk of the live-flow map.
    pub live: Vec<Flow>,
    /// Local ports with a listener; read only when a flow predates the
    /// programs (its direction falls back to planet-exporter's rule).
    pub listening: HashSet<u16>,
    pub kernel: KernelStats,
    pub programs: Vec<ProgramStats>,
    /// Capacity of the kernel flow map.
    pub capacity: u32,
}

/// Drains a [`FlowSource`] into [`FlowDrain`]s.
pub struct FlowCollector<S> {
    source: S,
    pending: Vec<Flow>,
    reports: Reports,
    interval: std::time::Duration,
}

impl<S: FlowSource> FlowCollector<S> {
    pub fn new(source: S, reports: Reports, interval: std::time::Duration) -> Self {
        Self {
            source,
            pending: Vec::new(),
            reports,
            interval,
        }
    }

    /// The source, for tests that script it.
    #[cfg(test)]
    pub(crate) fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// Everything the kernel has for the model now.
    pub fn drain(&mut self) -> FlowDrain {
        self.source.poll_closed(&mut self.pending);
        let closed = std::mem::take(&mut self.pending);
        let live = self.source.live();
        let predates = closed
            .iter()
            .chain(&live)
            .any(|f| f.origin == Origin::Unknown);
        let listening = if predates {
            self.source.listening_ports().unwrap_or_else(|err| {
                tracing::warn!(error = %err, "cannot read listening ports; flows that predate the agent count as upstream");
                HashSet::new()
            })
        } else {
            HashSet::new()
        };
        FlowDrain {
            closed,
            live,
            listening,
            kernel: self.source.stats(),
            programs: self.source.program_stats(),
            capacity: self.source.capacity(),
        }
    }
}

impl<S: FlowSource> Periodic for FlowCollector<S> {
    async fn run(&mut self) {
        let started = Instant::now();
        let drain = self.drain();
        tracing::debug!(
            closed = drain.closed.len(),
            live = drain.live.len(),
            "flow drain"
        );
        let run = Run::since(started, true);
        self.reports
            .send(Report::ran(TASK_NAME, run, Some(Input::Flows(drain))))
            .await;
    }

    async fn between(&mut self) {
        if let Err(err) = self.source.wait_closed(&mut self.pending).await {
            tracing::error!(error = %err, "close-record ring buffer failed; draining on the interval only");
            let run = Run {
                success: false,
                duration: std::time::Duration::ZERO,
            };
            self.reports.send(Report::ran(TASK_NAME, run, None)).await;
            tokio::time::sleep(self.interval).await;
        }
    }

    /// Hands over what is pending, so a final scrape during shutdown sees it.
    async fn finish(&mut self) {
        self.run().await;
    }
}
