//! Where socket owners come from: the one seam between the two methods.
//!
//! [`OwnerSource::detect`] loads the eBPF socket iterator ([`super::iter`])
//! and falls back to the `/proc/<pid>/fd` walk ([`super::owners`]) when it
//! cannot (no BTF, kernel before 5.11, no `CAP_BPF`/`CAP_PERFMON`, a build
//! without eBPF objects), saying so in one log line. An iterator that fails
//! later hands over to the walk the same way. The method in use is the
//! `planet_socket_owner_method` self-metric.

use std::{
    collections::{HashMap, HashSet},
    fmt, io,
    path::Path,
};

use super::{
    iter::{IterError, SocketIter},
    owners::{Owner, OwnerCache},
};

/// How socket owners are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OwnerMethod {
    /// The eBPF `task_file` iterator: every collection, no cache.
    EbpfIter,
    /// `/proc/<pid>/fd` links, with owners cached between full walks.
    ProcWalk,
}

impl OwnerMethod {
    /// The `method` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EbpfIter => "ebpf_iter",
            Self::ProcWalk => "proc_walk",
        }
    }
}

impl fmt::Display for OwnerMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `auto` tries the iterator, then the walk.
impl planet_cli::choice::Named for OwnerMethod {
    const ALL: &'static [Self] = &[Self::EbpfIter, Self::ProcWalk];

    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// What `-task-socketstat-owners` asks for: `auto` (the iterator where it
/// loads, else the walk) or one method (the iterator still falls back to
/// the walk, with an error in the log, rather than leaving sockets without
/// owners).
pub type OwnerRequest = planet_cli::choice::Choice<OwnerMethod>;

/// A way of finding socket owners, with its state.
#[derive(Debug)]
pub enum OwnerSource {
    /// Boxed: the loaded object is large next to the cache.
    EbpfIter(Box<SocketIter>),
    ProcWalk(OwnerCache),
}

impl OwnerSource {
    /// What `request` asks for; the iterator (type layouts from the BTF at
    /// `kernel_btf`) falls back to the walk.
    pub fn for_request(request: OwnerRequest, kernel_btf: &Path) -> Self {
        match request {
            OwnerRequest::Only(OwnerMethod::ProcWalk) => {
                tracing::info!(method = %OwnerMethod::ProcWalk, "socket owners come from the /proc/<pid>/fd walk (-task-socketstat-owners)");
                Self::proc_walk()
            }
            OwnerRequest::Auto | OwnerRequest::Only(OwnerMethod::EbpfIter) => {
                Self::detect(kernel_btf)
            }
        }
    }

    /// The iterator where it works, otherwise the `/proc` walk.
    pub fn detect(kernel_btf: &Path) -> Self {
        match Self::ebpf_iter(kernel_btf) {
            Ok(source) => {
                tracing::info!(method = %OwnerMethod::EbpfIter, "socket owners come from the eBPF task_file iterator");
                source
            }
            Err(err) => {
                tracing::warn!(
                    method = %OwnerMethod::ProcWalk,
                    reason = %planet_cli::errors::chain(&err),
                    "eBPF socket iterator unavailable; socket owners come from the /proc/<pid>/fd walk"
                );
                Self::proc_walk()
            }
        }
    }

    /// The eBPF iterator, or why it cannot be used.
    pub fn ebpf_iter(kernel_btf: &Path) -> Result<Self, IterError> {
        SocketIter::load(kernel_btf).map(|iter| Self::EbpfIter(Box::new(iter)))
    }

    /// The `/proc` walk.
    pub fn proc_walk() -> Self {
        Self::ProcWalk(OwnerCache::new())
    }

    pub fn method(&self) -> OwnerMethod {
        match self {
            Self::EbpfIter(_) => OwnerMethod::EbpfIter,
            Self::ProcWalk(_) => OwnerMethod::ProcWalk,
        }
    }

    /// Owners of the `wanted` socket inodes (`proc_root` is the walk's).
    pub fn resolve(
        &mut self,
        proc_root: &Path,
        wanted: &HashSet<u64>,
    ) -> io::Result<HashMap<u64, Owner>> {
        match self {
            Self::EbpfIter(iter) => match iter.owners(wanted) {
                Ok(owners) => Ok(owners),
                Err(err) => {
                    tracing::warn!(
                        method = %OwnerMethod::ProcWalk,
                        reason = %planet_cli::errors::chain(&err),
                        "eBPF socket iterator failed; socket owners come from the /proc/<pid>/fd walk from now on"
                    );
                    *self = Self::proc_walk();
                    self.resolve(proc_root, wanted)
                }
            },
            Self::ProcWalk(cache) => cache.resolve(proc_root, wanted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!("auto".parse(), Ok(OwnerRequest::Auto));
        assert_eq!(
            "ebpf_iter".parse(),
            Ok(OwnerRequest::Only(OwnerMethod::EbpfIter))
        );
        assert_eq!(
            "proc_walk".parse(),
            Ok(OwnerRequest::Only(OwnerMethod::ProcWalk))
        );
        let err = "netlink".parse::<OwnerRequest>().unwrap_err();
        assert!(err.contains("ebpf_iter"), "{err}");
    }

    #[test]
    fn a_forced_walk_never_loads_the_iterator() {
        let source = OwnerSource::for_request(
            OwnerRequest::Only(OwnerMethod::ProcWalk),
            Path::new(crate::collect::ebpf::layout::KERNEL_BTF_PATH),
        );
        assert_eq!(source.method(), OwnerMethod::ProcWalk);
    }
}
