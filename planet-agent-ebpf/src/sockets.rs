//! The socket-owner iterator (object `planet-sockets`): a `task_file` BPF
//! iterator that visits every open file of every process once (threads
//! sharing their leader's file table are skipped by the kernel) and writes
//! one [`SocketOwnerRecord`] per socket descriptor with `bpf_seq_write`.
//! User space reads the iterator's descriptor like a file.
//!
//! A separate object from the flow programs (`planet`), so loading it
//! creates none of their maps. Its only global is the layout the loader
//! measured from the kernel's BTF; the context layout (one 8-byte slot per
//! argument of `bpf_iter_task_file(meta, task, fd, file)`) is checked
//! against BTF by the loader too.
#![no_std]
#![no_main]

mod global;
mod object;

use core::{ffi::c_void, ptr::read_volatile};

use aya_ebpf::{
    bindings::{file, seq_file},
    helpers::{bpf_probe_read_kernel, bpf_seq_write, bpf_sock_from_file},
};
use planet_common::{SocketIterConfig, SocketOwnerRecord, sockets::COMM_LEN};

/// Offsets for the running kernel, written by the loader before load.
#[unsafe(no_mangle)]
static PLANET_SOCKETS_CONFIG: SocketIterConfig = SocketIterConfig::UNSET;

/// Reads one field of the layout global, widened for pointer arithmetic.
macro_rules! layout {
    ($field:ident) => {
        u64::from(global::read_global!(PLANET_SOCKETS_CONFIG, $field))
    };
}

/// Context slots of `bpf_iter__task_file`.
const CTX_META: usize = 0;
const CTX_TASK: usize = 1;
const CTX_FD: usize = 2;
const CTX_FILE: usize = 3;

/// Called for every (process, descriptor) pair, then once more with no
/// task at the end of the walk.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_file")]
pub fn planet_iter_sockets(ctx: *mut c_void) -> i32 {
    let ctx = ctx as *const u64;
    // SAFETY: the context of a task_file iterator is four 8-byte slots
    // (meta, task, fd, file); the verifier checks every access.
    unsafe { emit(ctx) };
    0
}

/// # Safety
/// `ctx` is the iterator's context.
#[inline(always)]
unsafe fn emit(ctx: *const u64) {
    // SAFETY: slot 3 of the context (see planet_iter_sockets).
    let file = unsafe { read_volatile(ctx.add(CTX_FILE)) } as *mut file;
    if file.is_null() {
        return;
    }
    // SAFETY: file is a non-null file pointer the kernel handed us.
    let socket = unsafe { bpf_sock_from_file(file) };
    if socket.is_null() {
        return;
    }
    // SAFETY: slot 1 of the context.
    let task = unsafe { read_volatile(ctx.add(CTX_TASK)) };
    if task == 0 {
        return;
    }
    let (ino_at, tgid_at, leader_at) = (
        socket as u64 + layout!(socket_ino),
        task + layout!(task_tgid),
        task + layout!(task_group_leader),
    );
    let inode = read_kernel::<u64>(ino_at).unwrap_or(0);
    let tgid = read_kernel::<u32>(tgid_at).unwrap_or(0);
    let leader = match read_kernel::<u64>(leader_at) {
        Some(leader) if leader != 0 => leader,
        _ => task,
    };
    let comm = read_kernel::<[u8; COMM_LEN]>(leader + layout!(task_comm)).unwrap_or([0; COMM_LEN]);
    let record = SocketOwnerRecord {
        inode,
        tgid,
        // SAFETY: slot 2 of the context; the descriptor is its low 32 bits.
        fd: unsafe { read_volatile(ctx.add(CTX_FD)) } as u32,
        comm,
    };
    // SAFETY: slot 0 of the context; `seq` is the first member of
    // `struct bpf_iter_meta` (checked against BTF by the loader).
    let seq = unsafe { read_volatile(read_volatile(ctx.add(CTX_META)) as *const *mut seq_file) };
    // SAFETY: record lives on the stack for the call; the length is its size.
    unsafe {
        bpf_seq_write(
            seq,
            (&raw const record).cast(),
            SocketOwnerRecord::SIZE as u32,
        )
    };
}

/// Reads a `T` of kernel memory at `addr`; `None` when the read faults.
#[inline(always)]
fn read_kernel<T>(addr: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address and fails cleanly.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}
