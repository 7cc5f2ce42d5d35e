//! Socket-table collection cost against `ss -tanp` doing the same
//! enumeration with processes, at 1k, 10k and 50k established loopback
//! connections, side by side in one run: owners from the eBPF `task_file`
//! iterator and from the `/proc/<pid>/fd` walk (cold and steady each).
//! Prints a markdown table.
//!
//! `cargo bench -p planet-agent --bench socket_table` (as root, so every
//! method sees every process; the iterator must load, the run fails
//! otherwise). `PLANET_BENCH_ROUNDS` sets repetitions (default 7).

use std::{
    io::{BufRead, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use planet_agent::collect::socket_table;

/// Connections one holder process keeps (two descriptors each), so the
/// per-process descriptor limit (20,000 on these machines) is never hit.
const PER_HOLDER: usize = 8_000;
const HOLD_ENV: &str = "PLANET_BENCH_HOLD";

/// Raises the soft descriptor limit to the hard one.
fn raise_nofile() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit use a valid rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

/// Child mode: hold `n` connections until stdin closes.
fn hold(n: usize) {
    raise_nofile();
    let conns = open(n);
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(conns);
}

/// Holder processes with `n` connections in all.
fn spawn_holders(n: usize) -> Vec<std::process::Child> {
    let me = std::env::current_exe().unwrap();
    let mut children = Vec::new();
    let mut left = n;
    while left > 0 {
        let k = left.min(PER_HOLDER);
        left -= k;
        let mut child = Command::new(&me)
            .env(HOLD_ENV, k.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "holder failed");
        children.push(child);
    }
    children
}

fn cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes into a valid rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(who, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Holds `n` established loopback connections (both ends in this process).
struct Connections {
    _listeners: Vec<TcpListener>,
    _pairs: Vec<(TcpStream, TcpStream)>,
}

fn open(n: usize) -> Connections {
    // Several listening ports so the ephemeral port range is never the limit.
    let listeners: Vec<TcpListener> = (0..4)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let mut pairs = Vec::with_capacity(n);
    for i in 0..n {
        let which = i % listeners.len();
        let client = TcpStream::connect(addrs[which]).unwrap();
        let (server, _) = listeners[which].accept().unwrap();
        pairs.push((client, server));
    }
    Connections {
        _listeners: listeners,
        _pairs: pairs,
    }
}

impl Drop for Connections {
    /// Resets instead of closing, so no TIME_WAIT sockets spill into the next row.
    fn drop(&mut self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        for (a, b) in &self._pairs {
            for fd in [a.as_raw_fd(), b.as_raw_fd()] {
                // SAFETY: fd is an open socket; linger is a valid option value.
                unsafe {
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&raw const linger).cast(),
                        size_of::<libc::linger>() as u32,
                    )
                };
            }
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    if let Some(n) = std::env::var(HOLD_ENV).ok().and_then(|v| v.parse().ok()) {
        return hold(n);
    }
    // `cargo bench` passes `--bench`; under `cargo test` this is a quick
    // smoke run that keeps the benchmark from rotting.
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::var("PLANET_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 7 } else { 1 });
    let sizes: Vec<usize> = match std::env::var("PLANET_BENCH_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|n| n.trim().parse().expect("PLANET_BENCH_SIZES: numbers"))
            .collect(),
        Err(_) if full => vec![1_000, 10_000, 50_000],
        Err(_) => vec![100],
    };
    // Loaded once, as the agent does at its first collection.
    let cpu = cpu_time(libc::RUSAGE_SELF);
    let start = Instant::now();
    let mut iter = socket_table::OwnerSource::ebpf_iter(std::path::Path::new(
        planet_agent::collect::ebpf::layout::KERNEL_BTF_PATH,
    ))
    .unwrap_or_else(|err| panic!("the eBPF socket iterator must load: {err}"));
    println!(
        "Loading the iterator once at start: {} ms wall, {} ms CPU.\n",
        ms(start.elapsed()),
        ms(cpu_time(libc::RUSAGE_SELF) - cpu)
    );
    println!(
        "| connections | sockets seen | method | cold wall ms | cold CPU ms | steady wall ms | steady CPU ms | ss -tanp wall ms | ss -tanp CPU ms | wall ratio cold/ss | wall ratio steady/ss | attributed |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut parts = Vec::new();
    for &n in &sizes {
        let mut holders = spawn_holders(n);
        let mut runs = [Run::default(), Run::default()];
        let mut ss = Samples::default();
        let (mut diag, mut owners, mut records) =
            (Samples::default(), Samples::default(), Samples::default());
        for _ in 0..rounds {
            // Cold: nothing known yet (the agent's first collection, and
            // for the walk every tenth one, which re-walks /proc).
            // Steady: the collections in between. The iterator keeps
            // nothing between collections: both are full runs.
            let mut walk = socket_table::OwnerSource::proc_walk();
            runs[1].measure(&mut walk);
            runs[0].measure(&mut iter);
            assert_eq!(
                iter.method(),
                socket_table::OwnerMethod::EbpfIter,
                "iterator failed over"
            );

            // Where an iterator collection's time goes.
            let (sockets, wall, cpu) = timed(|| socket_table::diag::dump_tcp().unwrap());
            diag.push(wall, cpu);
            let wanted = sockets
                .iter()
                .map(|s| s.inode)
                .filter(|&i| i != 0)
                .collect();
            let (_, wall, cpu) = timed(|| iter.resolve(Path::new("/proc"), &wanted).unwrap());
            owners.push(wall, cpu);
            let socket_table::OwnerSource::EbpfIter(raw) = &mut iter else {
                panic!("iterator failed over")
            };
            let (_, wall, cpu) = timed(|| raw.for_each_record(|_| {}).unwrap());
            records.push(wall, cpu);

            let cpu = cpu_time(libc::RUSAGE_CHILDREN);
            let start = Instant::now();
            let status = Command::new("ss")
                .arg("-tanp")
                .stdout(Stdio::null())
                .status()
                .expect("run ss (iproute2)");
            ss.push(start.elapsed(), cpu_time(libc::RUSAGE_CHILDREN) - cpu);
            assert!(status.success());
        }
        let (sw, sc) = ss.medians();
        for (method, run) in ["ebpf_iter", "proc_walk"].iter().zip(runs) {
            let (pw, pc) = run.cold.medians();
            let (tw, tc) = run.steady.medians();
            println!(
                "| {n} | {} | {method} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {}/{} |",
                run.seen,
                ms(pw),
                ms(pc),
                ms(tw),
                ms(tc),
                ms(sw),
                ms(sc),
                pw.as_secs_f64() / sw.as_secs_f64(),
                tw.as_secs_f64() / sw.as_secs_f64(),
                run.attributed,
                run.seen,
            );
        }
        let ((dw, dc), (ow, oc), (rw, rc)) = (diag.medians(), owners.medians(), records.medians());
        parts.push(format!(
            "| {n} | {} | {} | {} | {} | {} | {} |",
            ms(dw),
            ms(dc),
            ms(ow),
            ms(oc),
            ms(rw),
            ms(rc)
        ));
        for child in &mut holders {
            drop(child.stdin.take());
            child.wait().unwrap();
        }
    }
    println!(
        "\nParts of one collection (all TCP states dumped; owners of every socket with an inode):\n"
    );
    println!(
        "| connections | sock_diag dump wall ms | sock_diag dump CPU ms | iterator owners wall ms | iterator owners CPU ms | iterator read alone wall ms | iterator read alone CPU ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for line in parts {
        println!("{line}");
    }
}

/// Runs `f` once: its result, wall time and CPU time.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let cpu = cpu_time(libc::RUSAGE_SELF);
    let start = Instant::now();
    let out = f();
    (out, start.elapsed(), cpu_time(libc::RUSAGE_SELF) - cpu)
}

/// Wall and CPU times of repeated runs.
#[derive(Default)]
struct Samples {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl Samples {
    fn push(&mut self, wall: Duration, cpu: Duration) {
        self.wall.push(wall);
        self.cpu.push(cpu);
    }

    fn medians(self) -> (Duration, Duration) {
        (median(self.wall), median(self.cpu))
    }
}

/// One method's cold and steady collections.
#[derive(Default)]
struct Run {
    cold: Samples,
    steady: Samples,
    seen: usize,
    attributed: usize,
}

impl Run {
    /// A cold collection with `source` as it is, then a steady one.
    fn measure(&mut self, source: &mut socket_table::OwnerSource) {
        let timed = |source: &mut socket_table::OwnerSource| {
            let cpu = cpu_time(libc::RUSAGE_SELF);
            let start = Instant::now();
            let table = socket_table::collect_with(Path::new("/proc"), source).unwrap();
            (table, start.elapsed(), cpu_time(libc::RUSAGE_SELF) - cpu)
        };
        let (table, wall, cpu) = timed(source);
        self.cold.push(wall, cpu);
        let (steady, wall, cpu) = timed(source);
        self.steady.push(wall, cpu);
        // Sockets of the machine come and go between two collections;
        // the held ones must be attributed in both.
        let owned = |t: &socket_table::SocketTable| {
            t.connections
                .iter()
                .filter(|c| !c.process.is_empty())
                .count()
        };
        assert!(
            owned(&steady) + 16 >= owned(&table),
            "steady collection lost owners"
        );
        self.seen = table.connections.len();
        self.attributed = owned(&table);
    }
}
