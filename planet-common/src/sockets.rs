//! The socket-owner iterator: an eBPF `task_file` iterator that walks every
//! process's open files in the kernel and writes one [`SocketOwnerRecord`]
//! per socket descriptor, read back by the socket table task.

use core::mem::size_of;

/// Length of the kernel's `task_struct.comm` (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// One open socket descriptor of one process, as the iterator writes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketOwnerRecord {
    /// Inode number of the socket (`socket:[inode]` in `/proc/<pid>/fd`,
    /// `inode` in `sock_diag`).
    pub inode: u64,
    /// Process id (`task_struct.tgid`).
    pub tgid: u32,
    /// Descriptor number in that process.
    pub fd: u32,
    /// The process's name (`comm` of its thread group leader), NUL-padded;
    /// not necessarily UTF-8.
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(size_of::<SocketOwnerRecord>() == 32);

impl SocketOwnerRecord {
    /// Size of one record in the iterator's output.
    pub const SIZE: usize = size_of::<Self>();
}

/// Byte offsets inside kernel structures the iterator program reads,
/// measured from the running kernel's BTF by the loader (never hard-coded).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketIterConfig {
    /// `struct task_struct`: `tgid`.
    pub task_tgid: u32,
    /// `struct task_struct`: `group_leader`.
    pub task_group_leader: u32,
    /// `struct task_struct`: `comm`.
    pub task_comm: u32,
    /// From a `struct socket` to its inode's number: `struct socket_alloc`'s
    /// `vfs_inode` minus its `socket`, plus `struct inode`'s `i_ino`.
    pub socket_ino: u32,
}
const _: () = assert!(size_of::<SocketIterConfig>() == 16);

impl SocketIterConfig {
    /// What the object holds before the loader fills it in.
    pub const UNSET: Self = Self {
        task_tgid: 0,
        task_group_leader: 0,
        task_comm: 0,
        socket_ino: 0,
    };
}
