//! The eBPF socket iterator finds the same owners as the `/proc/<pid>/fd`
//! walk, for real sockets held by child processes: shared ones (lowest pid
//! wins), ones only a child holds, and a child whose name is not UTF-8.
//!
//! Needs root and a kernel with BTF, task_file iterators and
//! `bpf_sock_from_file` (5.11+); fails, never skips, without them. The test
//! binary must carry the real eBPF objects (built without `AYA_BUILD_SKIP`).

use std::{
    collections::{HashMap, HashSet},
    ffi::OsStr,
    net::{TcpListener, TcpStream},
    os::{
        fd::{AsRawFd, RawFd},
        unix::{ffi::OsStrExt, fs::MetadataExt, process::CommandExt},
    },
    path::Path,
    process::{Child, Command},
    time::{Duration, Instant},
};

use planet_agent::collect::socket_table::{
    self, OwnerMethod, OwnerSource,
    owners::{self, Owner},
};

fn inode(fd: RawFd) -> u64 {
    std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .expect("stat our descriptor")
        .ino()
}

/// A child running `sleep` through `program`, inheriting `fds`.
struct Holder {
    child: Child,
}

impl Holder {
    fn spawn(program: &Path, fds: &[RawFd]) -> Self {
        let fds = fds.to_vec();
        let mut cmd = Command::new(program);
        cmd.arg("600");
        // SAFETY: fcntl is async-signal-safe; the descriptors are open in
        // the parent and so in the forked child.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &fds {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn a socket holder");
        let holder = Self { child };
        // Wait until the exec happened (the comm is the new program's).
        let deadline = Instant::now() + Duration::from_secs(10);
        let want = program.file_name().expect("program name").as_bytes();
        while std::fs::read(format!("/proc/{}/comm", holder.pid()))
            .map(|c| c.strip_suffix(b"\n").unwrap_or(&c) != want)
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "holder never exec'd");
            std::thread::sleep(Duration::from_millis(5));
        }
        holder
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn iterator_owners_equal_the_proc_walk() {
    if let Err(err) = planet_testkit::require_root() {
        panic!("the socket iterator test cannot run: {err:#}");
    }
    let mut iter = OwnerSource::ebpf_iter(std::path::Path::new(
        planet_agent::collect::ebpf::layout::KERNEL_BTF_PATH,
    ))
    .unwrap_or_else(|err| panic!("the eBPF socket iterator must load on this kernel: {err:#}"));
    assert_eq!(iter.method(), OwnerMethod::EbpfIter);

    // A program whose name (and so the holder's comm) is not UTF-8.
    let dir = std::env::temp_dir().join(format!("planet-owners-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let odd = dir.join(OsStr::from_bytes(b"sl\xffep"));
    let sleep = ["/bin/sleep", "/usr/bin/sleep"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("sleep (coreutils)");
    let _ = std::fs::remove_file(&odd);
    std::os::unix::fs::symlink(sleep, &odd).expect("symlink to sleep");

    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let listener6 = TcpListener::bind("[::1]:0").expect("listen on ::1");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    let client6 = TcpStream::connect(listener6.local_addr().unwrap()).expect("connect ::1");
    let (server6, _) = listener6.accept().expect("accept ::1");

    // Shared by this process and both holders; one end of each connection
    // handed to one holder only (this process then closes its copy).
    let a = Holder::spawn(
        sleep,
        &[
            listener.as_raw_fd(),
            client.as_raw_fd(),
            server6.as_raw_fd(),
        ],
    );
    let b = Holder::spawn(
        &odd,
        &[
            listener.as_raw_fd(),
            server.as_raw_fd(),
            client6.as_raw_fd(),
        ],
    );
    let shared = inode(listener.as_raw_fd());
    let ours = inode(listener6.as_raw_fd());
    let a_only = [inode(client.as_raw_fd()), inode(server6.as_raw_fd())];
    let b_only = [inode(server.as_raw_fd()), inode(client6.as_raw_fd())];
    drop((client, server, client6, server6));

    let wanted: HashSet<u64> = [shared, ours]
        .into_iter()
        .chain(a_only)
        .chain(b_only)
        .collect();
    let from_iter = iter.resolve(Path::new("/proc"), &wanted).expect("iterator");
    assert_eq!(iter.method(), OwnerMethod::EbpfIter, "iterator failed over");
    let from_proc = owners::find_owners(Path::new("/proc"), &wanted).expect("/proc walk");
    assert_eq!(from_iter, from_proc, "iterator and /proc walk disagree");

    let me = std::process::id();
    let owner = |inode: u64| -> &Owner { &from_iter[&inode] };
    assert_eq!(owner(shared).pid, me.min(a.pid()).min(b.pid()));
    assert_eq!(owner(ours).pid, me);
    for inode in a_only {
        assert_eq!((owner(inode).pid, &*owner(inode).comm), (a.pid(), "sleep"));
    }
    for inode in b_only {
        assert_eq!(
            (owner(inode).pid, &*owner(inode).comm),
            (b.pid(), "sl\u{fffd}ep")
        );
    }

    // Whole collections agree too, on the sockets of these processes
    // (the rest of the machine may change between two collections).
    let names = [
        "sleep".to_owned(),
        "sl\u{fffd}ep".to_owned(),
        owner(ours).comm.to_string(),
    ];
    let ours_only = |table: &socket_table::SocketTable| -> HashMap<String, String> {
        table
            .connections
            .iter()
            .map(|c| (format!("{} {}", c.local, c.remote), c.process.to_string()))
            .chain(
                table
                    .listeners
                    .iter()
                    .map(|l| (l.addr.to_string(), l.process.to_string())),
            )
            .filter(|(_, process)| names.contains(process))
            .collect()
    };
    let walked = socket_table::collect(Path::new("/proc")).expect("collect with the walk");
    let iterated = socket_table::collect_with(Path::new("/proc"), &mut iter).expect("collect");
    let (walked, iterated) = (ours_only(&walked), ours_only(&iterated));
    for key in [
        listener.local_addr().unwrap().to_string(),
        listener6.local_addr().unwrap().to_string(),
    ] {
        assert!(iterated.contains_key(&key), "{key} missing: {iterated:?}");
    }
    assert_eq!(iterated, walked);
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}
