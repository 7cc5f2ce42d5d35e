//! Where drains come from: [`FlowSource`], and [`KernelFlows`], the maps
//! of a loaded eBPF object.

use std::{
    collections::{HashMap as StdHashMap, HashSet},
    future::Future,
};

use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf};
use planet_common::{ClosedFlow, FlowValue, Stat, names};
use tokio::io::{Interest, unix::AsyncFd};

use super::record::Flow;
use crate::collect::{
    ebpf::{LoadError, Loaded, ProbeMode},
    socket_table,
};

/// What the flow collector reads each drain. [`KernelFlows`] in the agent;
/// a scripted source in tests.
pub trait FlowSource: Send {
    /// Waits until close records are available, then appends them to `out`.
    fn wait_closed(
        &mut self,
        out: &mut Vec<Flow>,
    ) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Appends the close records already available to `out`, without waiting.
    fn poll_closed(&mut self, out: &mut Vec<Flow>);

    /// The live flows.
    fn live(&self) -> Vec<Flow>;

    /// What the programs could not account for.
    fn stats(&self) -> KernelStats;

    /// Run statistics of the attached programs.
    fn program_stats(&self) -> Vec<ProgramStats>;

    /// Capacity of the live-flow map.
    fn capacity(&self) -> u32;

    /// Local ports with a listener.
    fn listening_ports(&self) -> std::io::Result<HashSet<u16>> {
        socket_table::listening_ports()
    }
}

/// Counters the programs keep about what they could not account for,
/// summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub counters: StdHashMap<StatName, u64>,
}

/// Run count and cumulative run time of one attached program (kernel BPF
/// statistics, enabled by the agent while it runs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: String,
    pub runs: u64,
    pub run_time: std::time::Duration,
}

/// A [`Stat`] usable as a map key and metric label.
pub type StatName = &'static str;

pub fn stat_name(stat: Stat) -> StatName {
    match stat {
        Stat::FlowsNotTracked => "flows_not_tracked",
        Stat::TxBytesNotTracked => "tx_bytes_not_tracked",
        Stat::RxBytesNotTracked => "rx_bytes_not_tracked",
        Stat::CloseRecordsLost => "close_records_lost",
        Stat::ReadErrors => "read_errors",
    }
}

/// Attached programs and the maps they fill.
pub struct KernelFlows {
    flows: HashMap<MapData, u64, FlowValue>,
    closed: AsyncFd<RingBuf<MapData>>,
    stats: PerCpuArray<MapData, u64>,
    pub mode: ProbeMode,
    pub rejected: Vec<(ProbeMode, String)>,
    capacity: u32,
    // While held, the kernel accounts run time and count per program.
    stats_enabled: Option<std::os::fd::OwnedFd>,
    // Keeps the programs attached; dropped last.
    ebpf: aya::Ebpf,
}

fn take<T>(
    ebpf: &mut aya::Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<T, aya::maps::MapError>,
) -> Result<T, LoadError> {
    let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
    convert(map).map_err(|source| LoadError::Map { name, source })
}

impl KernelFlows {
    /// Takes the maps out of a loaded object, and with `program_stats` asks
    /// the kernel to time the programs. Must run inside a tokio runtime.
    pub fn new(loaded: Loaded, program_stats: bool) -> Result<Self, LoadError> {
        let Loaded {
            mut ebpf,
            mode,
            rejected,
            limits,
        } = loaded;
        let flows = take(&mut ebpf, names::FLOWS_MAP, HashMap::try_from)?;
        let ring = take(&mut ebpf, names::CLOSED_RING, RingBuf::try_from)?;
        let stats = take(&mut ebpf, names::STATS_MAP, PerCpuArray::try_from)?;
        // SAFETY: the ring owns its map fd, which stays open and unchanged
        // until the `AsyncFd` (which owns the ring) is dropped.
        let closed = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| LoadError::Watch(e.into()))?;
        Ok(Self {
            flows,
            closed,
            stats,
            mode,
            rejected,
            capacity: limits.flows,
            stats_enabled: program_stats.then(enable_run_time_stats).flatten(),
            ebpf,
        })
    }
}

impl FlowSource for KernelFlows {
    async fn wait_closed(&mut self, out: &mut Vec<Flow>) -> std::io::Result<()> {
        let mut guard = self.closed.readable_mut().await?;
        read_ring(guard.get_inner_mut(), out);
        guard.clear_ready();
        Ok(())
    }

    fn poll_closed(&mut self, out: &mut Vec<Flow>) {
        read_ring(self.closed.get_mut(), out);
    }

    /// Walks the live-flow map. Entries that vanish during the walk are skipped.
    fn live(&self) -> Vec<Flow> {
        self.flows
            .iter()
            .filter_map(Result::ok)
            .map(|(sock, value)| Flow::from_kernel(sock, &value))
            .collect()
    }

    fn stats(&self) -> KernelStats {
        let mut counters = StdHashMap::new();
        for stat in Stat::ALL {
            let sum = self
                .stats
                .get(&stat.index(), 0)
                .map(|per_cpu| per_cpu.iter().copied().fold(0u64, u64::wrapping_add))
                .unwrap_or(0);
            counters.insert(stat_name(stat), sum);
        }
        KernelStats { counters }
    }

    /// Run statistics of the attached programs: none unless the kernel
    /// keeps them (`-task-flow-program-stats`, or the sysctl
    /// `kernel.bpf_stats_enabled=1`), so that no zero reads as "never ran".
    fn program_stats(&self) -> Vec<ProgramStats> {
        let mut out: Vec<ProgramStats> = self
            .ebpf
            .programs()
            .filter_map(|(name, program)| {
                let info = program.info().ok()?;
                Some(ProgramStats {
                    name: name.to_owned(),
                    runs: info.run_count(),
                    run_time: info.run_time(),
                })
            })
            .collect();
        if self.stats_enabled.is_none() && out.iter().all(|p| p.runs == 0) {
            out.clear();
        }
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn capacity(&self) -> u32 {
        self.capacity
    }
}

/// Asks the kernel to account program run time (BPF_ENABLE_STATS, 5.8+).
fn enable_run_time_stats() -> Option<std::os::fd::OwnedFd> {
    match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
        Ok(fd) => Some(fd),
        Err(err) => {
            // Without CAP_SYS_ADMIN the run counts still come when the
            // sysctl kernel.bpfstats_enabled is 1.
            tracing::info!(
                error = %err,
                "cannot enable kernel BPF run-time statistics (needs CAP_SYS_ADMIN); \
                 program run counts and times stay 0 unless kernel.bpfstats_enabled=1"
            );
            None
        }
    }
}

fn read_ring(ring: &mut RingBuf<MapData>, out: &mut Vec<Flow>) {
    while let Some(item) = ring.next() {
        if item.len() < size_of::<ClosedFlow>() {
            continue;
        }
        // SAFETY: the kernel wrote a whole `ClosedFlow` (size checked above);
        // read_unaligned copes with the ring's 8-byte alignment.
        let record: ClosedFlow = unsafe { item.as_ptr().cast::<ClosedFlow>().read_unaligned() };
        out.push(Flow::from_kernel(record.sock, &record.flow));
    }
}
