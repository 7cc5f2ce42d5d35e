//! Socket owners from an eBPF `task_file` iterator.
//!
//! The program (`planet-agent-ebpf/src/sockets.rs`, object `planet-sockets`)
//! visits every open file of every process in the kernel, keeps the sockets
//! (`bpf_sock_from_file`, Linux 5.11+) and writes one fixed-size
//! [`SocketOwnerRecord`] each: socket inode, process id, descriptor and the
//! process's `comm`. A collection is one `read` loop over a fresh iterator
//! descriptor: no `/proc` directory or link is opened, so every collection
//! costs the same and needs no cache.
//!
//! The object is separate from the flow programs' (`planet`) and holds only
//! this program and its layout global, so loading it creates none of their
//! maps; the flow task and the socket table task load their own objects
//! independently. The kernel offsets the program reads (`task_struct`'s
//! `tgid`, `group_leader` and `comm`; a socket's inode number) are measured
//! from `/sys/kernel/btf/vmlinux` here, and the context layout the program
//! assumes is checked against the kernel's prototype of the iterator. Any
//! mismatch, a kernel without BTF, iterators or `bpf_sock_from_file`, or
//! missing `CAP_BPF`/`CAP_PERFMON` is a [`IterError`]; the caller then
//! falls back to the `/proc` walk ([`super::source`]).

use std::{
    collections::{HashMap, HashSet},
    io::{self, Read},
    path::Path,
    sync::Arc,
};

use aya::{Ebpf, EbpfLoader, programs::Iter};
use planet_common::{
    SocketIterConfig, SocketOwnerRecord,
    names::sockets::{CONFIG_GLOBAL, PROGRAM, TARGET},
    sockets::COMM_LEN,
};
use thiserror::Error;

use super::owners::{Owner, parse_comm};
use crate::collect::ebpf::layout::KernelBtf;

/// The iterator object built by `build.rs` (empty with `AYA_BUILD_SKIP`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/planet-sockets"));

/// Parameters of `bpf_iter_task_file`, whose context is one 8-byte slot
/// per parameter in this order: what the program reads.
const CONTEXT: [&str; 4] = ["meta", "task", "fd", "file"];

#[derive(Debug, Error)]
pub enum IterError {
    #[error("this binary was built without eBPF programs (AYA_BUILD_SKIP)")]
    NoObject,
    #[error("no kernel BTF at {0} (missing or unreadable)")]
    NoBtf(std::path::PathBuf),
    #[error("the kernel's BTF has no {0}")]
    MissingMember(&'static str),
    #[error("{what} is {size} bytes on this kernel, expected {expected}")]
    MemberSize {
        what: &'static str,
        size: usize,
        expected: usize,
    },
    #[error(
        "bpf_iter_task_file has an unknown context on this kernel: ({0}); task_file iterators need Linux 5.8+"
    )]
    Context(String),
    #[error("cannot read the kernel's BTF")]
    Btf(#[source] Box<aya::BtfError>),
    #[error("loading the socket iterator object failed")]
    Object(#[source] Box<aya::EbpfError>),
    #[error("eBPF program {PROGRAM} is missing from the socket iterator object")]
    MissingProgram,
    #[error("the socket iterator program failed to load or attach")]
    Program(#[source] Box<aya::programs::ProgramError>),
    #[error("cannot open the socket iterator")]
    Open(#[source] aya::programs::links::LinkError),
    #[error("reading the socket iterator failed")]
    Read(#[source] io::Error),
    #[error("the socket iterator ended inside a record ({0} stray bytes)")]
    Truncated(usize),
}

impl From<aya::programs::ProgramError> for IterError {
    fn from(err: aya::programs::ProgramError) -> Self {
        Self::Program(Box::new(err))
    }
}

/// Measures the offsets the program reads, and checks the context layout.
pub fn measure(btf: &KernelBtf) -> Result<SocketIterConfig, IterError> {
    let params = btf
        .parameters(&format!("bpf_iter_{TARGET}"))
        .ok_or(IterError::Context("no such function".into()))?;
    if params != CONTEXT {
        return Err(IterError::Context(params.join(", ")));
    }
    let field = |strukt, member, what, expected: Option<usize>| {
        let found = btf
            .member(strukt, member)
            .ok_or(IterError::MissingMember(what))?;
        if let Some(expected) = expected
            && found.size != expected
        {
            return Err(IterError::MemberSize {
                what,
                size: found.size,
                expected,
            });
        }
        Ok(found.offset)
    };
    // The program loads `meta->seq` directly (a BTF pointer the verifier
    // must see): it has to be the first member.
    let seq = field("bpf_iter_meta", "seq", "bpf_iter_meta.seq", Some(8))?;
    if seq != 0 {
        return Err(IterError::Context(format!("bpf_iter_meta.seq at {seq}")));
    }
    let vfs_inode = field("socket_alloc", "vfs_inode", "socket_alloc.vfs_inode", None)?;
    let socket = field("socket_alloc", "socket", "socket_alloc.socket", None)?;
    let i_ino = field("inode", "i_ino", "inode.i_ino", Some(8))?;
    let socket_ino = vfs_inode
        .checked_sub(socket)
        .ok_or(IterError::MissingMember(
            "socket_alloc.vfs_inode after .socket",
        ))?
        + i_ino;
    Ok(SocketIterConfig {
        task_tgid: field("task_struct", "tgid", "task_struct.tgid", Some(4))?,
        task_group_leader: field(
            "task_struct",
            "group_leader",
            "task_struct.group_leader",
            Some(8),
        )?,
        task_comm: field("task_struct", "comm", "task_struct.comm", Some(COMM_LEN))?,
        socket_ino,
    })
}

/// The loaded iterator program.
pub struct SocketIter {
    ebpf: Ebpf,
    /// Read buffer, reused between collections.
    buf: Vec<u8>,
}

impl std::fmt::Debug for SocketIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIter").finish_non_exhaustive()
    }
}

/// Bytes read from the iterator per `read` call: whole records.
const READ_CHUNK: usize = 2048 * SocketOwnerRecord::SIZE;

impl SocketIter {
    /// Measures the kernel (type layouts from the BTF at `kernel_btf`),
    /// loads the program and runs it once, so a kernel that rejects it is
    /// found here, not at the first collection.
    pub fn load(kernel_btf: &Path) -> Result<Self, IterError> {
        if OBJECT.is_empty() {
            return Err(IterError::NoObject);
        }
        let result = Self::load_inner(kernel_btf);
        crate::allocator::release_freed();
        let mut iter = result?;
        iter.for_each_record(|_| {})?;
        Ok(iter)
    }

    fn load_inner(kernel_btf: &Path) -> Result<Self, IterError> {
        let config = {
            let btf = KernelBtf::open(kernel_btf)
                .ok_or_else(|| IterError::NoBtf(kernel_btf.to_owned()))?;
            measure(&btf)?
        };
        crate::collect::ebpf::raise_memlock_limit();
        // The program reads only offsets measured above: no CO-RE
        // relocation needs the kernel's BTF.
        let mut ebpf = EbpfLoader::new()
            .btf(None)
            .override_global(CONFIG_GLOBAL, &config, true)
            .load(OBJECT)
            .map_err(|e| IterError::Object(Box::new(e)))?;
        // Attaching an iterator names its kernel target by the id in the
        // kernel's own BTF, whatever file gave the layouts.
        let btf = aya::Btf::from_sys_fs().map_err(|e| IterError::Btf(Box::new(e)))?;
        let program: &mut Iter = ebpf
            .program_mut(PROGRAM)
            .ok_or(IterError::MissingProgram)?
            .try_into()?;
        program.load(TARGET, &btf)?;
        Ok(Self {
            ebpf,
            buf: Vec::new(),
        })
    }

    /// Runs the iterator once, calling `f` with every record.
    pub fn for_each_record(&mut self, f: impl FnMut(&SocketOwnerRecord)) -> Result<(), IterError> {
        let program: &mut Iter = self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or(IterError::MissingProgram)?
            .try_into()?;
        let link = program.attach()?;
        let link = program.take_link(link)?;
        let file = link.into_file().map_err(IterError::Open)?;
        read_records(file, &mut self.buf, f)
    }

    /// Owners of `wanted` socket inodes.
    pub fn owners(&mut self, wanted: &HashSet<u64>) -> Result<HashMap<u64, Owner>, IterError> {
        let mut owners = OwnerMerge::new(wanted);
        self.for_each_record(|r| owners.add(r))?;
        Ok(owners.finish())
    }
}

/// Reads whole records from `source` until end of file, `buf` being the
/// scratch space (kept between calls).
pub fn read_records(
    mut source: impl Read,
    buf: &mut Vec<u8>,
    mut f: impl FnMut(&SocketOwnerRecord),
) -> Result<(), IterError> {
    buf.resize(READ_CHUNK, 0);
    let mut filled = 0;
    loop {
        let n = match source.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(IterError::Read(err)),
        };
        if n == 0 {
            return match filled {
                0 => Ok(()),
                stray => Err(IterError::Truncated(stray)),
            };
        }
        filled += n;
        let whole = filled - filled % SocketOwnerRecord::SIZE;
        for raw in buf[..whole].chunks_exact(SocketOwnerRecord::SIZE) {
            f(&decode(raw));
        }
        buf.copy_within(whole..filled, 0);
        filled -= whole;
    }
}

/// One record from its bytes (native endianness, the kernel's).
pub fn decode(raw: &[u8]) -> SocketOwnerRecord {
    let u64_at = |at: usize| u64::from_ne_bytes(raw[at..at + 8].try_into().unwrap_or_default());
    let u32_at = |at: usize| u32::from_ne_bytes(raw[at..at + 4].try_into().unwrap_or_default());
    let mut comm = [0; COMM_LEN];
    comm.copy_from_slice(&raw[16..16 + COMM_LEN]);
    SocketOwnerRecord {
        inode: u64_at(0),
        tgid: u32_at(8),
        fd: u32_at(12),
        comm,
    }
}

/// Folds records into owners of the wanted inodes: a socket shared by
/// several processes belongs to the lowest pid, as with the `/proc` walk.
pub struct OwnerMerge<'w> {
    wanted: &'w HashSet<u64>,
    owners: HashMap<u64, Owner>,
    /// The name of the process of the previous record: records come
    /// grouped by process, so each name is decoded once.
    last: Option<(u32, [u8; COMM_LEN], Arc<str>)>,
}

impl<'w> OwnerMerge<'w> {
    pub fn new(wanted: &'w HashSet<u64>) -> Self {
        Self {
            wanted,
            owners: HashMap::with_capacity(wanted.len()),
            last: None,
        }
    }

    pub fn add(&mut self, record: &SocketOwnerRecord) {
        if !self.wanted.contains(&record.inode) {
            return;
        }
        if let Some(known) = self.owners.get(&record.inode)
            && known.pid <= record.tgid
        {
            return;
        }
        let comm = match &self.last {
            Some((tgid, raw, comm)) if *tgid == record.tgid && *raw == record.comm => comm.clone(),
            _ => {
                let len = record.comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
                let comm = parse_comm(&record.comm[..len]);
                self.last = Some((record.tgid, record.comm, comm.clone()));
                comm
            }
        };
        self.owners.insert(
            record.inode,
            Owner {
                pid: record.tgid,
                comm,
            },
        );
    }

    pub fn finish(self) -> HashMap<u64, Owner> {
        self.owners
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(inode: u64, tgid: u32, fd: u32, comm: &[u8]) -> Vec<u8> {
        let mut raw = Vec::with_capacity(SocketOwnerRecord::SIZE);
        raw.extend_from_slice(&inode.to_ne_bytes());
        raw.extend_from_slice(&tgid.to_ne_bytes());
        raw.extend_from_slice(&fd.to_ne_bytes());
        let mut name = [0u8; COMM_LEN];
        name[..comm.len()].copy_from_slice(comm);
        raw.extend_from_slice(&name);
        raw
    }

    /// A reader that hands out at most `step` bytes per call.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn records(data: &[u8], step: usize) -> Result<Vec<SocketOwnerRecord>, IterError> {
        let mut out = Vec::new();
        read_records(Trickle { data, step }, &mut Vec::new(), |r| out.push(*r))?;
        Ok(out)
    }

    #[test]
    fn decodes_records_split_anywhere_across_reads() {
        let mut data = record(4242, 17, 3, b"nginx");
        data.extend(record(u64::MAX, u32::MAX, 70_000, &[b'x'; COMM_LEN]));
        for step in [1, 5, 31, 32, 33, 64, 4096] {
            let got = records(&data, step).unwrap();
            assert_eq!(got.len(), 2, "step {step}");
            assert_eq!(
                (got[0].inode, got[0].tgid, got[0].fd),
                (4242, 17, 3),
                "step {step}"
            );
            assert_eq!(&got[0].comm[..6], b"nginx\0");
            assert_eq!(
                (got[1].inode, got[1].tgid, got[1].fd),
                (u64::MAX, u32::MAX, 70_000)
            );
            assert_eq!(got[1].comm, [b'x'; COMM_LEN]);
        }
        assert!(records(&[], 7).unwrap().is_empty());
    }

    #[test]
    fn a_cut_record_is_an_error() {
        let mut data = record(1, 2, 3, b"a");
        data.extend_from_slice(&record(4, 5, 6, b"b")[..20]);
        let err = records(&data, 9).unwrap_err();
        assert!(matches!(err, IterError::Truncated(20)), "{err}");
    }

    #[test]
    fn lowest_pid_owns_a_shared_socket_and_names_decode_lossily() {
        let wanted = HashSet::from([10, 11, 12]);
        let mut merge = OwnerMerge::new(&wanted);
        for (inode, tgid, comm) in [
            (10, 300, &b"child"[..]),
            (10, 200, b"parent"),
            (10, 250, b"other"),
            (11, 5, b"a\xffb"),
            (99, 1, b"unwanted"),
            (12, 5, b"a\xffb"),
            (12, 5, b"renamed"),
        ] {
            merge.add(&decode(&record(inode, tgid, 0, comm)));
        }
        let owners = merge.finish();
        assert_eq!(owners.len(), 3);
        assert_eq!(owners[&10].pid, 200);
        assert_eq!(&*owners[&10].comm, "parent");
        assert_eq!(&*owners[&11].comm, "a\u{fffd}b");
        // The first descriptor of a process decides among equal pids.
        assert_eq!((owners[&12].pid, &*owners[&12].comm), (5, "a\u{fffd}b"));
        assert!(!owners.contains_key(&99));
    }

    #[test]
    fn a_full_length_comm_has_no_terminator() {
        let wanted = HashSet::from([1]);
        let mut merge = OwnerMerge::new(&wanted);
        merge.add(&decode(&record(1, 1, 0, b"0123456789abcdef")));
        assert_eq!(&*merge.finish()[&1].comm, "0123456789abcdef");
    }

    #[test]
    fn measures_this_kernels_layout_when_it_has_btf() {
        let path = Path::new(crate::collect::ebpf::layout::KERNEL_BTF_PATH);
        let Some(btf) = KernelBtf::open(path) else {
            assert!(!path.exists(), "BTF present but unreadable");
            eprintln!("no BTF on this kernel: the socket table uses the /proc walk");
            return;
        };
        let config = measure(&btf).expect("task_file iterator layout");
        assert!(config.task_comm > config.task_tgid, "{config:?}");
        assert!(config.socket_ino > 0, "{config:?}");
    }
}
