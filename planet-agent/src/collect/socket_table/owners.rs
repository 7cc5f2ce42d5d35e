//! Which process owns which socket: a walk of `/proc/<pid>/fd`.
//!
//! Every file descriptor of every process is read (no per-process cap: the
//! original stopped at 4,096 fds and lost process names on busy servers),
//! but the walk stops as soon as every wanted socket inode is found. Names
//! are the kernel `comm` (`/proc/<pid>/comm`), decoded lossily.

use std::{
    collections::{HashMap, HashSet},
    ffi::CStr,
    fs, io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
    sync::Arc,
};

/// The owner of a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub comm: Arc<str>,
}

/// Parses a `socket:[12345]` fd link target.
pub fn socket_inode(link: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The kernel `comm` from `/proc/<pid>/comm` contents.
pub fn parse_comm(raw: &[u8]) -> Arc<str> {
    let trimmed = raw.strip_suffix(b"\n").unwrap_or(raw);
    Arc::from(String::from_utf8_lossy(trimmed).as_ref())
}

/// Finds the owners of `wanted` socket inodes under `proc_root`.
///
/// A socket shared by several processes (inherited over fork) belongs to
/// the lowest pid holding it. Processes that vanish or cannot be read are
/// skipped.
pub fn find_owners(proc_root: &Path, wanted: &HashSet<u64>) -> io::Result<HashMap<u64, Owner>> {
    let mut owners: HashMap<u64, Owner> = HashMap::with_capacity(wanted.len());
    if wanted.is_empty() {
        return Ok(owners);
    }
    let mut pids: Vec<u32> = fs::read_dir(proc_root)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let mut link = [0u8; 64];
    for pid in pids {
        let Ok(dir) = open_fd_dir(proc_root, pid) else {
            continue;
        };
        let mut comm: Option<Arc<str>> = None;
        for_each_entry(&dir, |name| {
            // SAFETY: dir is an open directory fd, name a NUL-terminated
            // entry name, link a writable buffer of the given length.
            let n = unsafe {
                libc::readlinkat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    link.as_mut_ptr().cast(),
                    link.len(),
                )
            };
            let Ok(n) = usize::try_from(n) else {
                return;
            };
            let Some(inode) = socket_inode(&link[..n]) else {
                return;
            };
            if !wanted.contains(&inode) || owners.contains_key(&inode) {
                return;
            }
            let comm = comm
                .get_or_insert_with(|| {
                    fs::read(proc_root.join(pid.to_string()).join("comm"))
                        .map(|raw| parse_comm(&raw))
                        .unwrap_or_else(|_| Arc::from(""))
                })
                .clone();
            owners.insert(inode, Owner { pid, comm });
        });
        if owners.len() == wanted.len() {
            break;
        }
    }
    Ok(owners)
}

fn open_fd_dir(proc_root: &Path, pid: u32) -> io::Result<OwnedFd> {
    let path = std::ffi::CString::new(format!("{}/{pid}/fd", proc_root.display()))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: path is a valid C string; the result is checked.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Calls `f` with the name of every entry of an open directory, using
/// getdents64 directly (no allocation per entry).
fn for_each_entry(dir: &OwnedFd, mut f: impl FnMut(&CStr)) {
    let mut buf = [0u8; 32 * 1024];
    loop {
        // SAFETY: buf is valid for writes of its length; dir is open.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        let Ok(n) = usize::try_from(n) else {
            return;
        };
        if n == 0 {
            return;
        }
        let mut at = 0;
        while at + 19 < n {
            // struct linux_dirent64 { u64 ino; i64 off; u16 reclen; u8 type; char name[]; }
            let reclen = usize::from(u16::from_ne_bytes([buf[at + 16], buf[at + 17]]));
            if reclen == 0 || at + reclen > n {
                return;
            }
            if let Ok(name) = CStr::from_bytes_until_nul(&buf[at + 19..at + reclen])
                && name.to_bytes().first() != Some(&b'.')
            {
                f(name);
            }
            at += reclen;
        }
    }
}

/// Collections between two full walks of `/proc` (see [`OwnerCache`]).
pub const FULL_WALK_EVERY: u32 = 10;

/// Owners remembered between collections.
///
/// A socket keeps the owner found for it while that process exists, so a
/// collection only walks `/proc` for sockets it has not seen before (and
/// stops once they are all found). Every [`FULL_WALK_EVERY`] collections
/// everything is looked up afresh, which catches descriptors handed to
/// another process. Sockets no process could be found for are remembered
/// too, so an unreadable process does not force a full walk every time.
#[derive(Debug, Default)]
pub struct OwnerCache {
    known: HashMap<u64, Option<Owner>>,
    collections: u32,
}

impl OwnerCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Owners of `wanted` inodes.
    pub fn resolve(
        &mut self,
        proc_root: &Path,
        wanted: &HashSet<u64>,
    ) -> io::Result<HashMap<u64, Owner>> {
        let full = self.collections.is_multiple_of(FULL_WALK_EVERY);
        self.collections = self.collections.wrapping_add(1);
        if full {
            self.known.clear();
        } else {
            self.known.retain(|inode, _| wanted.contains(inode));
            // Forget owners that exited: their sockets live on elsewhere.
            let mut alive: HashMap<u32, bool> = HashMap::new();
            self.known.retain(|_, owner| match owner {
                Some(o) => *alive
                    .entry(o.pid)
                    .or_insert_with(|| proc_root.join(o.pid.to_string()).exists()),
                None => true,
            });
        }
        let new: HashSet<u64> = wanted
            .iter()
            .filter(|inode| !self.known.contains_key(inode))
            .copied()
            .collect();
        if !new.is_empty() {
            let mut found = find_owners(proc_root, &new)?;
            for inode in new {
                self.known.insert(inode, found.remove(&inode));
            }
        }
        Ok(self
            .known
            .iter()
            .filter_map(|(inode, owner)| Some((*inode, owner.clone()?)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn parses_socket_links_and_comm() {
        assert_eq!(socket_inode(b"socket:[4242]"), Some(4242));
        assert_eq!(socket_inode(b"pipe:[4242]"), None);
        assert_eq!(socket_inode(b"socket:[x]"), None);
        assert_eq!(&*parse_comm(b"nginx\n"), "nginx");
        assert_eq!(&*parse_comm(b"a\xffb\n"), "a\u{fffd}b");
    }

    #[test]
    fn finds_the_owner_of_our_own_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = listener.as_raw_fd();
        let inode = fs::metadata(format!("/proc/self/fd/{fd}")).unwrap().ino();
        let owners = find_owners(Path::new("/proc"), &HashSet::from([inode])).unwrap();
        let owner = &owners[&inode];
        assert_eq!(owner.pid, std::process::id());
        assert!(!owner.comm.is_empty());
    }

    #[test]
    fn cache_walks_only_for_new_sockets_and_forgets_closed_ones() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ino = |l: &std::net::TcpListener| {
            fs::metadata(format!("/proc/self/fd/{}", l.as_raw_fd()))
                .unwrap()
                .ino()
        };
        let mut cache = OwnerCache::new();
        let first = cache
            .resolve(Path::new("/proc"), &HashSet::from([ino(&a)]))
            .unwrap();
        assert_eq!(first[&ino(&a)].pid, std::process::id());
        // An inode no process holds is remembered as unowned, not walked again.
        let ghost = u64::MAX - 7;
        let wanted = HashSet::from([ino(&a), ghost]);
        let second = cache.resolve(Path::new("/proc"), &wanted).unwrap();
        assert!(!second.contains_key(&ghost));
        assert_eq!(cache.known.get(&ghost), Some(&None));
        // A new socket is found on the next collection.
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let third = cache
            .resolve(Path::new("/proc"), &HashSet::from([ino(&a), ino(&b)]))
            .unwrap();
        assert_eq!(third.len(), 2);
        assert!(
            !cache.known.contains_key(&ghost),
            "closed sockets are forgotten"
        );
    }

    #[test]
    fn finds_sockets_beyond_4096_descriptors() {
        // The original read only the first 4,096 fds of a process.
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into a valid rlimit.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        let wanted_fds = 4_200;
        if limit.rlim_cur < wanted_fds + 64 {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max.min(8192),
                rlim_max: limit.rlim_max,
            };
            // SAFETY: setrlimit reads a valid rlimit.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
        }
        let files: Vec<fs::File> = (0..wanted_fds)
            .map(|_| fs::File::open("/dev/null").unwrap())
            .collect();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(listener.as_raw_fd() > 4096);
        let inode = fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd()))
            .unwrap()
            .ino();
        let owners = find_owners(Path::new("/proc"), &HashSet::from([inode])).unwrap();
        assert_eq!(owners[&inode].pid, std::process::id());
        drop(files);
    }
}
