//! Indices of the per-CPU event counters the programs keep about themselves.

/// What the programs could not account for, or did not find room for.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stat {
    /// A new flow did not fit in the flow map (it was full).
    FlowsNotTracked = 0,
    /// Bytes sent on flows that did not fit.
    TxBytesNotTracked = 1,
    /// Bytes received on flows that did not fit.
    RxBytesNotTracked = 2,
    /// Close records lost because the ring buffer was full. The flow's bytes
    /// since the previous drain are lost with it.
    CloseRecordsLost = 3,
    /// Kernel reads (tracepoint fields, socket fields) that failed.
    ReadErrors = 4,
}

impl Stat {
    /// Number of slots in the stats map.
    pub const COUNT: u32 = 8;
    /// Every counter, for iteration in user space.
    pub const ALL: [Self; 5] = [
        Self::FlowsNotTracked,
        Self::TxBytesNotTracked,
        Self::RxBytesNotTracked,
        Self::CloseRecordsLost,
        Self::ReadErrors,
    ];

    pub const fn index(self) -> u32 {
        self as u32
    }
}
