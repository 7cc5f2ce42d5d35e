//! Loading Planet's eBPF object and attaching the programs of one probe
//! mode. [`load`] walks the candidate modes and returns the first that
//! attaches, with the reason every earlier one was rejected.

pub mod layout;
pub mod probe;

use std::path::Path;

use aya::{Ebpf, EbpfLoader};
use planet_common::names;
use thiserror::Error;

pub use probe::{ModeRequest, ProbeMode};

/// The eBPF object built by `build.rs` (empty when built with `AYA_BUILD_SKIP`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/planet"));

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("this binary was built without eBPF programs (AYA_BUILD_SKIP)")]
    NoObject,
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("cannot read the kernel's BTF")]
    Btf(#[source] Box<aya::BtfError>),
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    #[error("loading the eBPF object failed")]
    Object(#[source] aya::EbpfError),
    #[error("eBPF program {0} is missing from the object")]
    MissingProgram(&'static str),
    #[error("eBPF program {program} failed to load or attach")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {0} is missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF map {name} has an unexpected type")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot watch the close-record ring buffer")]
    Watch(#[source] std::io::Error),
    #[error("no probe mode could attach: {0}")]
    NoMode(String),
}

/// Sizes of the kernel maps.
#[derive(Clone, Copy, Debug)]
pub struct MapLimits {
    pub flows: u32,
}

impl Default for MapLimits {
    fn default() -> Self {
        Self {
            flows: names::FLOWS_MAX_ENTRIES,
        }
    }
}

/// A loaded object whose programs of `mode` are attached. Dropping it
/// detaches them.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub mode: ProbeMode,
    /// Modes tried before `mode`, with the reason each was rejected.
    pub rejected: Vec<(ProbeMode, String)>,
    pub limits: MapLimits,
}

/// Loads the object and attaches the first mode of `request` that works.
///
/// Type layouts come from the BTF at `kernel_btf` (see [`probe::prepare`]).
pub fn load(
    request: ModeRequest,
    limits: MapLimits,
    kernel_btf: &Path,
) -> Result<Loaded, LoadError> {
    if OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    raise_memlock_limit();
    let mut rejected = Vec::new();
    for mode in request.candidates() {
        let result = load_mode(mode, limits, kernel_btf);
        // Loading parsed the kernel's BTF (several MiB of small allocations).
        crate::allocator::release_freed();
        match result {
            Ok(ebpf) => {
                return Ok(Loaded {
                    ebpf,
                    mode,
                    rejected,
                    limits,
                });
            }
            Err(err) => {
                let reason = planet_cli::errors::chain(&err);
                tracing::info!(%mode, %reason, "probe mode rejected");
                rejected.push((mode, reason));
            }
        }
    }
    let summary = rejected
        .iter()
        .map(|(mode, reason)| format!("{mode}: {reason}"))
        .collect::<Vec<_>>()
        .join("; ");
    Err(LoadError::NoMode(summary))
}

/// Loads and attaches the programs of `mode` alone, then detaches them:
/// whether `mode` works on this kernel, and if not, why.
pub fn check(mode: ProbeMode, limits: MapLimits, kernel_btf: &Path) -> Result<(), LoadError> {
    if OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    raise_memlock_limit();
    let result = load_mode(mode, limits, kernel_btf).map(drop);
    crate::allocator::release_freed();
    result
}

fn load_mode(mode: ProbeMode, limits: MapLimits, kernel_btf: &Path) -> Result<Ebpf, LoadError> {
    let plan = probe::prepare(mode, kernel_btf)?;
    // The programs read only offsets measured above: no CO-RE relocation
    // needs the kernel's BTF, so aya is spared parsing it again.
    let mut ebpf = EbpfLoader::new()
        .btf(None)
        .override_global(names::CONFIG_GLOBAL, &plan.config, true)
        .map_max_entries(names::FLOWS_MAP, limits.flows)
        .load(OBJECT)
        .map_err(LoadError::Object)?;
    probe::attach(mode, &plan, &mut ebpf)?;
    if mode == ProbeMode::Tracepoint {
        tracing::debug!(
            raw = plan.raw_length(),
            "byte counts from sock_send_length/sock_recv_length ({})",
            if plan.raw_length() {
                "raw tracepoints"
            } else {
                "trace records: no sk_protocol offset in the kernel's BTF"
            }
        );
    }
    Ok(ebpf)
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
pub(crate) fn raise_memlock_limit() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid, initialised rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not raise RLIMIT_MEMLOCK (fine on Linux 5.11+)"
        );
    }
}
