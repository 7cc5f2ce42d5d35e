//! Names of maps, programs and globals: the contract between the eBPF object
//! and the loader. Each name appears only here.

/// Live TCP flows: `HashMap<u64 /* struct sock * */, FlowValue>`.
pub const FLOWS_MAP: &str = "PLANET_FLOWS";
/// Final counters of flows that closed: `RingBuf` of [`crate::ClosedFlow`].
pub const CLOSED_RING: &str = "PLANET_CLOSED";
/// Identity of sockets that reached `TCP_CLOSE` but may still be read by
/// their owner: `LruHashMap<u64 /* struct sock * */, FlowMeta>`.
pub const CLOSING_MAP: &str = "PLANET_CLOSING";
/// Capacity of [`CLOSING_MAP`].
pub const CLOSING_MAX_ENTRIES: u32 = 16_384;
/// Per-CPU event counters indexed by [`crate::Stat`].
pub const STATS_MAP: &str = "PLANET_STATS";
/// Calls in flight, for the probe modes that see a call's arguments and
/// its result in separate programs: `LruHashMap<u64 /* pid_tgid */, ProbeCall>`.
pub const CALLS_MAP: &str = "PLANET_CALLS";
/// Capacity of [`CALLS_MAP`]: threads inside a TCP send or receive at once.
pub const CALLS_MAX_ENTRIES: u32 = 16_384;
/// Global holding the [`crate::ProbeConfig`] the loader computed for the running kernel.
pub const CONFIG_GLOBAL: &str = "PLANET_CONFIG";

/// Default capacity of [`FLOWS_MAP`]; the loader may change it before load.
pub const FLOWS_MAX_ENTRIES: u32 = 65_536;
/// Size of [`CLOSED_RING`] in bytes (a power of two, page aligned): about
/// 10,000 close records. User space drains it every task interval, and as
/// soon as it is an eighth full (the programs wake it only then), and the
/// whole ring counts in the agent's RSS twice (it is mapped twice).
pub const CLOSED_RING_BYTES: u32 = 1 << 20;

/// Programs of the `tracepoint` probe mode.
pub mod tracepoint {
    /// `sock:sock_send_length`: bytes a `sendmsg` family call returned.
    pub const SEND: &str = "planet_tp_send";
    /// `sock:sock_recv_length`: bytes a `recvmsg` family call returned.
    pub const RECV: &str = "planet_tp_recv";
    /// Raw `sock_send_length`: the same event without the trace record
    /// (arguments only), preferred where BTF gives `sk_protocol`'s offset.
    pub const RAW_SEND: &str = "planet_rtp_send";
    /// Raw `sock_recv_length`.
    pub const RAW_RECV: &str = "planet_rtp_recv";
    /// `sock:inet_sock_set_state`: open, accept and close of TCP sockets.
    pub const STATE: &str = "planet_tp_state";
    /// `tcp:tcp_destroy_sock`: the socket is freed (optional).
    pub const DESTROY: &str = "planet_tp_destroy";
}

/// Programs of the `fentry` probe mode (fexit: arguments and return value
/// in one program; BTF trampolines).
pub mod fentry {
    /// fexit `tcp_sendmsg`: bytes queued, from the return value.
    pub const SEND: &str = "planet_fx_send";
    /// fexit `tcp_sendpage` (before Linux 6.5: `sendfile`, `splice`).
    pub const SENDPAGE: &str = "planet_fx_sendpage";
    /// fexit `tcp_recvmsg(sk, msg, len, flags)` (current kernels).
    pub const RECV4: &str = "planet_fx_recv4";
    /// fexit `tcp_recvmsg(sk, msg, len, flags, addr_len)` (Linux 5.19+).
    pub const RECV5: &str = "planet_fx_recv5";
    /// fexit `tcp_recvmsg(sk, msg, len, nonblock, flags, addr_len)` (before 5.19).
    pub const RECV6: &str = "planet_fx_recv6";
}

/// Programs of the `kprobe` probe mode.
pub mod kprobe {
    /// kprobe on `tcp_sendmsg` and `tcp_sendpage`: remembers the socket.
    pub const SEND_ENTRY: &str = "planet_kp_send";
    /// kretprobe on the same: counts the bytes the call returned.
    pub const SEND_RETURN: &str = "planet_krp_send";
    /// kprobe on `tcp_recvmsg(sk, msg, len, flags, ...)`: remembers the
    /// socket and `MSG_PEEK`.
    pub const RECV_ENTRY: &str = "planet_kp_recv";
    /// The same for `tcp_recvmsg(sk, msg, len, nonblock, flags, addr_len)`.
    pub const RECV_ENTRY_NONBLOCK_ARG: &str = "planet_kp_recv_nb";
    /// kprobe on `tcp_cleanup_rbuf(sk, copied)`: counts what `copied` grew by.
    pub const CLEANUP_RBUF: &str = "planet_kp_rbuf";
    /// kretprobe on `tcp_recvmsg`: forgets the call.
    pub const RECV_RETURN: &str = "planet_krp_recv";
}

/// The socket-owner iterator, a separate small object (`planet-sockets`)
/// so loading it never creates the flow programs' maps.
pub mod sockets {
    /// The iterator program: one [`crate::SocketOwnerRecord`] per socket
    /// descriptor of every process.
    pub const PROGRAM: &str = "planet_iter_sockets";
    /// The kernel iterator it attaches to (`bpf_iter_<TARGET>`; the
    /// program's ELF section is `iter/<TARGET>`).
    pub const TARGET: &str = "task_file";
    /// Global holding the [`crate::SocketIterConfig`] for the running kernel.
    pub const CONFIG_GLOBAL: &str = "PLANET_SOCKETS_CONFIG";
}

/// The hook floor, a benchmark-only object (`planet-hook-floor`): raw
/// tracepoint programs that return at once on the flow task's per-call
/// events, loaded by `planet-agent`'s `hook_floor` example.
pub mod hook_floor {
    /// On `sock_send_length`.
    pub const SEND: &str = "planet_floor_send";
    /// On `sock_recv_length`.
    pub const RECV: &str = "planet_floor_recv";
}
