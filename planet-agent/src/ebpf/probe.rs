//! The probe-mode seam: each mode knows which kernel facilities it needs,
//! measures the layouts it reads, and attaches its programs. Everything
//! downstream (maps, drain, metrics) is the same for every mode.

use std::{fmt, path::Path, str::FromStr};

use aya::{Ebpf, programs::TracePoint};
use planet_common::{ProbeConfig, names};

use super::{LoadError, layout};

/// How the programs hook the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeMode {
    /// `sock:sock_{send,recv}_length` + `sock:inet_sock_set_state` (Linux 6.3+).
    Tracepoint,
    /// fentry/fexit on the TCP send/receive functions (BTF, trampolines).
    Fentry,
    /// kprobes/kretprobes on `tcp_sendmsg`/`tcp_cleanup_rbuf`.
    Kprobe,
}

impl ProbeMode {
    pub const ALL: [Self; 3] = [Self::Tracepoint, Self::Fentry, Self::Kprobe];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tracepoint => "tracepoint",
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
        }
    }
}

impl fmt::Display for ProbeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `-task-flow-mode` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeRequest {
    /// Try the cheapest exact mode first and fall back in order.
    Auto,
    Only(ProbeMode),
}

impl ModeRequest {
    /// Modes to try, in order of preference.
    pub fn candidates(self) -> Vec<ProbeMode> {
        match self {
            // Cheapest exact first: tracepoints cost least per event, then
            // trampolines, then kprobes.
            Self::Auto => ProbeMode::ALL.to_vec(),
            Self::Only(mode) => vec![mode],
        }
    }
}

impl FromStr for ModeRequest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "tracepoint" => Ok(Self::Only(ProbeMode::Tracepoint)),
            "fentry" => Ok(Self::Only(ProbeMode::Fentry)),
            "kprobe" => Ok(Self::Only(ProbeMode::Kprobe)),
            other => Err(format!(
                "unknown flow mode {other:?} (expected auto, tracepoint, fentry or kprobe)"
            )),
        }
    }
}

/// Fills the parts of `config` that `mode` reads, from the running kernel.
pub fn prepare(mode: ProbeMode, config: &mut ProbeConfig) -> Result<(), LoadError> {
    match mode {
        ProbeMode::Tracepoint => {
            let tracefs = layout::tracefs_root()?;
            let send = layout::read_format(&tracefs, "sock", "sock_send_length")?;
            let recv = layout::read_format(&tracefs, "sock", "sock_recv_length")?;
            layout::length_tracepoints(config, &send, &recv)?;
            let state = layout::read_format(&tracefs, "sock", "inet_sock_set_state")?;
            layout::state_tracepoint(config, &state)?;
            // Optional: frees sockets that were read after TCP_CLOSE.
            match layout::read_format(&tracefs, "tcp", "tcp_destroy_sock")
                .and_then(|f| layout::destroy_tracepoint(config, &f))
            {
                Ok(()) => {}
                Err(err) => tracing::info!(
                    reason = %err,
                    "tcp:tcp_destroy_sock unusable; sockets read after close stay in the flow map until their memory is reused"
                ),
            }
        }
        ProbeMode::Fentry | ProbeMode::Kprobe => {
            return Err(LoadError::ModeNotBuilt(mode));
        }
    }
    if let Some((daddr, rcv_saddr)) = layout::sock_v6_offsets(Path::new("/sys/kernel/btf/vmlinux"))
    {
        config.sock_v6_daddr = daddr;
        config.sock_v6_rcv_saddr = rcv_saddr;
    }
    Ok(())
}

/// Loads and attaches the programs of `mode` in a loaded object.
pub fn attach(mode: ProbeMode, config: &ProbeConfig, ebpf: &mut Ebpf) -> Result<(), LoadError> {
    match mode {
        ProbeMode::Tracepoint => {
            let mut programs = vec![
                (names::tracepoint::STATE, "sock", "inet_sock_set_state"),
                (names::tracepoint::SEND, "sock", "sock_send_length"),
                (names::tracepoint::RECV, "sock", "sock_recv_length"),
            ];
            if config.destroy_skaddr != 0 {
                programs.push((names::tracepoint::DESTROY, "tcp", "tcp_destroy_sock"));
            }
            for (program, category, event) in programs {
                let tp: &mut TracePoint = ebpf
                    .program_mut(program)
                    .ok_or(LoadError::MissingProgram(program))?
                    .try_into()
                    .map_err(|source| LoadError::Program { program, source })?;
                tp.load()
                    .map_err(|source| LoadError::Program { program, source })?;
                tp.attach(category, event)
                    .map_err(|source| LoadError::Program { program, source })?;
            }
            Ok(())
        }
        ProbeMode::Fentry | ProbeMode::Kprobe => Err(LoadError::ModeNotBuilt(mode)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mode_requests() {
        assert_eq!("auto".parse::<ModeRequest>(), Ok(ModeRequest::Auto));
        assert_eq!(
            "kprobe".parse::<ModeRequest>(),
            Ok(ModeRequest::Only(ProbeMode::Kprobe))
        );
        assert!("uprobe".parse::<ModeRequest>().is_err());
    }

    #[test]
    fn auto_prefers_the_cheapest_mode() {
        assert_eq!(ModeRequest::Auto.candidates()[0], ProbeMode::Tracepoint);
        assert_eq!(
            ModeRequest::Only(ProbeMode::Fentry).candidates(),
            vec![ProbeMode::Fentry]
        );
    }
}
