//! The probe-mode seam: each mode knows which kernel facilities it needs,
//! measures the layouts it reads, and attaches its programs. Everything
//! downstream (maps, drain, metrics) is the same for every mode.

use std::{fmt, path::Path};

use aya::{
    Ebpf,
    programs::{FExit, KProbe, Program, ProgramError, RawTracePoint, TracePoint},
};
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

/// `auto` tries the cheapest exact mode first: tracepoints cost least per
/// event, then trampolines, then kprobes.
impl planet_cli::choice::Named for ProbeMode {
    const ALL: &'static [Self] = &Self::ALL;

    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// What `-task-flow-mode` asks for.
pub type ModeRequest = planet_cli::choice::Choice<ProbeMode>;

/// Present when the kernel can create kprobes through perf events.
const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";

/// What [`attach`] needs to know about the running kernel.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// The programs' layout global.
    pub config: ProbeConfig,
    /// Whether the kernel has `tcp_sendpage` (before Linux 6.5) to hook.
    pub hook_sendpage: bool,
    /// `tcp_recvmsg`'s signature, where the mode's programs depend on it.
    pub recv: Option<layout::RecvSignature>,
    /// Index of `tcp_recvmsg`'s `flags` (0 = not needed by the mode).
    pub recv_flags_arg: u16,
}

impl Plan {
    /// Whether the tracepoint mode counts bytes with its raw programs
    /// (the kernel's BTF gave `sk_protocol`'s offset) rather than from the
    /// trace records.
    pub fn raw_length(&self) -> bool {
        self.config.sock_protocol != 0
    }
}

/// Measures what the programs of `mode` read on the running kernel (type
/// layouts from the BTF at `kernel_btf`; a missing file is a kernel without
/// BTF), or says why `mode` cannot run here.
pub fn prepare(mode: ProbeMode, kernel_btf: &Path) -> Result<Plan, LoadError> {
    let mut config = ProbeConfig::UNSET;
    let config = &mut config;
    let tracefs = layout::tracefs_root()?;
    let btf = layout::KernelBtf::open(kernel_btf);
    let kernel = layout::KernelVersion::running();
    let mut recv = None;
    let mut recv_flags_arg = 0;
    match mode {
        ProbeMode::Tracepoint => {
            let send = layout::read_format(&tracefs, "sock", "sock_send_length")?;
            let recv = layout::read_format(&tracefs, "sock", "sock_recv_length")?;
            layout::length_tracepoints(config, &send, &recv)?;
            // With `sk_protocol`'s offset the raw programs can run.
            config.sock_protocol = btf
                .as_ref()
                .and_then(layout::KernelBtf::sock_protocol_offset)
                .unwrap_or(0);
        }
        ProbeMode::Fentry => {
            let btf = btf.as_ref().ok_or(LoadError::Unsupported(
                "fentry needs the kernel's BTF (none at the -kernel-btf path)",
            ))?;
            let signature = btf.recv_signature()?;
            recv_flags_arg = signature.flags_arg();
            recv = Some(signature);
        }
        ProbeMode::Kprobe => {
            if !Path::new(KPROBE_PMU).exists() {
                return Err(LoadError::Unsupported(
                    "kernel built without kprobes (no /sys/bus/event_source/devices/kprobe)",
                ));
            }
            recv_flags_arg = match &btf {
                Some(btf) => btf.recv_signature()?.flags_arg(),
                None => kernel
                    .ok_or(LoadError::Unsupported(
                        "neither BTF nor a parsable kernel release tells tcp_recvmsg's arguments",
                    ))?
                    .recv_flags_arg(),
            };
        }
    }
    // Every mode takes the connection lifecycle from the same tracepoint.
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
    if let Some((daddr, rcv_saddr)) = btf.as_ref().and_then(layout::KernelBtf::sock_v6_offsets) {
        config.sock_v6_daddr = daddr;
        config.sock_v6_rcv_saddr = rcv_saddr;
    }
    // `sendfile` reaches TCP through `tcp_sendpage` on older kernels.
    let hook_sendpage = match (&btf, kernel) {
        (Some(btf), _) => btf.has_function("tcp_sendpage"),
        (None, Some(kernel)) => kernel.has_tcp_sendpage(),
        (None, None) => true,
    };
    Ok(Plan {
        config: *config,
        hook_sendpage,
        recv,
        recv_flags_arg,
    })
}

/// Loads and attaches the programs of `mode` in a loaded object.
pub fn attach(mode: ProbeMode, plan: &Plan, ebpf: &mut Ebpf) -> Result<(), LoadError> {
    let config = &plan.config;
    let mut lifecycle = vec![(names::tracepoint::STATE, "sock", "inet_sock_set_state")];
    if config.destroy_skaddr != 0 {
        lifecycle.push((names::tracepoint::DESTROY, "tcp", "tcp_destroy_sock"));
    }
    match mode {
        ProbeMode::Tracepoint if plan.raw_length() => {
            for (program, event) in [
                (names::tracepoint::RAW_SEND, "sock_send_length"),
                (names::tracepoint::RAW_RECV, "sock_recv_length"),
            ] {
                let raw: &mut RawTracePoint = program_mut(ebpf, program)?;
                raw.load()
                    .map_err(|source| LoadError::Program { program, source })?;
                raw.attach(event)
                    .map_err(|source| LoadError::Program { program, source })?;
            }
            attach_tracepoints(ebpf, &lifecycle)
        }
        ProbeMode::Tracepoint => {
            lifecycle.push((names::tracepoint::SEND, "sock", "sock_send_length"));
            lifecycle.push((names::tracepoint::RECV, "sock", "sock_recv_length"));
            attach_tracepoints(ebpf, &lifecycle)
        }
        ProbeMode::Fentry => {
            let btf = aya::Btf::from_sys_fs().map_err(|source| LoadError::Btf(Box::new(source)))?;
            let recv = match plan.recv {
                Some(layout::RecvSignature::Nonblock6) => names::fentry::RECV6,
                Some(layout::RecvSignature::Flags5) => names::fentry::RECV5,
                Some(layout::RecvSignature::Flags4) | None => names::fentry::RECV4,
            };
            let mut hooks = vec![(names::fentry::SEND, "tcp_sendmsg"), (recv, "tcp_recvmsg")];
            if plan.hook_sendpage {
                hooks.push((names::fentry::SENDPAGE, "tcp_sendpage"));
            }
            for (program, function) in hooks {
                let fexit: &mut FExit = program_mut(ebpf, program)?;
                fexit
                    .load(function, &btf)
                    .map_err(|source| LoadError::Program { program, source })?;
                fexit
                    .attach()
                    .map_err(|source| LoadError::Program { program, source })?;
            }
            attach_tracepoints(ebpf, &lifecycle)
        }
        ProbeMode::Kprobe => {
            let mut send = vec!["tcp_sendmsg"];
            if plan.hook_sendpage {
                send.push("tcp_sendpage");
            }
            let recv_entry = match plan.recv_flags_arg {
                4 => names::kprobe::RECV_ENTRY_NONBLOCK_ARG,
                _ => names::kprobe::RECV_ENTRY,
            };
            let hooks: [(&'static str, &[&str]); 5] = [
                // Entry programs after their return programs: a call seen
                // entering is always seen leaving.
                (names::kprobe::SEND_RETURN, &send),
                (names::kprobe::SEND_ENTRY, &send),
                (names::kprobe::RECV_RETURN, &["tcp_recvmsg"]),
                (names::kprobe::CLEANUP_RBUF, &["tcp_cleanup_rbuf"]),
                (recv_entry, &["tcp_recvmsg"]),
            ];
            for (program, functions) in hooks {
                let probe: &mut KProbe = program_mut(ebpf, program)?;
                probe
                    .load()
                    .map_err(|source| LoadError::Program { program, source })?;
                for function in functions {
                    probe
                        .attach(function, 0)
                        .map_err(|source| LoadError::Program { program, source })?;
                }
            }
            attach_tracepoints(ebpf, &lifecycle)
        }
    }
}

fn attach_tracepoints(
    ebpf: &mut Ebpf,
    programs: &[(&'static str, &str, &str)],
) -> Result<(), LoadError> {
    for &(program, category, event) in programs {
        let tp: &mut TracePoint = program_mut(ebpf, program)?;
        tp.load()
            .map_err(|source| LoadError::Program { program, source })?;
        tp.attach(category, event)
            .map_err(|source| LoadError::Program { program, source })?;
    }
    Ok(())
}

fn program_mut<'a, P>(ebpf: &'a mut Ebpf, program: &'static str) -> Result<&'a mut P, LoadError>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    ebpf.program_mut(program)
        .ok_or(LoadError::MissingProgram(program))?
        .try_into()
        .map_err(|source| LoadError::Program { program, source })
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
