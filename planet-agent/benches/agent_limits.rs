//! The agent as `setup/systemd/planet-agent.service` runs it, at 10k flows:
//! an unprivileged user holding only the required capabilities, inside a
//! cgroup with the unit's limits (CPU quota 20 % of one CPU, memory limit
//! 512 MiB; on cgroup v2 also memory.high 256 MiB), default task interval.
//!
//! Load: 5,000 loopback connections held open (both ends on this host, so
//! 10,000 flows; each from its own 127.77.x.y source, so each is its own
//! edge), 10 % of them exchanging 512 bytes every second, and one
//! Prometheus-style scrape every 15 s. Reports the cgroup's memory peak
//! (which includes what the kernel charges the agent: its BPF maps too),
//! the agent's CPU use and throttling, task durations and scrape times.
//!
//! As root: `cargo bench -p planet-agent --bench agent_limits`
//! (`PLANET_BENCH_SECONDS`, default 120). Under `cargo test` a short smoke
//! run with 200 connections.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use planet_agent::privileges::REQUIRED;
use planet_testkit::{agent::AgentProcess, load::HeldConnections, prom};

const AGENT: &str = env!("CARGO_BIN_EXE_planet-agent");
const CONNECTIONS: usize = 5_000;
const CPU_QUOTA_US: u64 = 20_000;
const CPU_PERIOD_US: u64 = 100_000;
const MEMORY_HIGH: u64 = 256 << 20;
const MEMORY_MAX: u64 = 512 << 20;
const SCRAPE_EVERY: Duration = Duration::from_secs(15);
/// The unit's (default) task interval.
const TASK_INTERVAL: &str = "7s";

/// A cgroup with the unit's CPU and memory limits, v1 or v2.
enum Cgroup {
    V1 { cpu: PathBuf, memory: PathBuf },
    V2 { dir: PathBuf },
}

impl Cgroup {
    fn create() -> Self {
        let name = format!("planet-bench-{}", std::process::id());
        let write = |path: PathBuf, value: String| {
            fs::write(&path, &value)
                .unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
        };
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            let dir = Path::new("/sys/fs/cgroup").join(&name);
            let _ = fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+cpu +memory");
            fs::create_dir_all(&dir).expect("create cgroup v2");
            write(
                dir.join("cpu.max"),
                format!("{CPU_QUOTA_US} {CPU_PERIOD_US}"),
            );
            write(dir.join("memory.high"), MEMORY_HIGH.to_string());
            write(dir.join("memory.max"), MEMORY_MAX.to_string());
            Self::V2 { dir }
        } else {
            let cpu = Path::new("/sys/fs/cgroup/cpu").join(&name);
            let memory = Path::new("/sys/fs/cgroup/memory").join(&name);
            fs::create_dir_all(&cpu).expect("create cpu cgroup (v1)");
            fs::create_dir_all(&memory).expect("create memory cgroup (v1)");
            write(cpu.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string());
            write(cpu.join("cpu.cfs_quota_us"), CPU_QUOTA_US.to_string());
            write(memory.join("memory.limit_in_bytes"), MEMORY_MAX.to_string());
            Self::V1 { cpu, memory }
        }
    }

    fn version(&self) -> &'static str {
        match self {
            Self::V1 { .. } => "v1 (cpu.cfs_quota_us, memory.limit_in_bytes; no memory.high)",
            Self::V2 { .. } => "v2 (cpu.max, memory.high, memory.max)",
        }
    }

    fn procs(&self) -> Vec<PathBuf> {
        match self {
            Self::V1 { cpu, memory } => vec![cpu.join("cgroup.procs"), memory.join("cgroup.procs")],
            Self::V2 { dir } => vec![dir.join("cgroup.procs")],
        }
    }

    fn memory_peak(&self) -> u64 {
        let path = match self {
            Self::V1 { memory, .. } => memory.join("memory.max_usage_in_bytes"),
            Self::V2 { dir } => dir.join("memory.peak"),
        };
        read_u64(&path)
    }

    /// `(periods, throttled periods)` from cpu.stat.
    fn throttling(&self) -> (u64, u64) {
        let path = match self {
            Self::V1 { cpu, .. } => cpu.join("cpu.stat"),
            Self::V2 { dir } => dir.join("cpu.stat"),
        };
        let text = fs::read_to_string(&path).unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or(0)
        };
        (field("nr_periods "), field("nr_throttled "))
    }

    /// Whether the kernel killed anything in the cgroup for memory.
    fn oom_kills(&self) -> u64 {
        let (path, key) = match self {
            Self::V1 { memory, .. } => (memory.join("memory.oom_control"), "oom_kill "),
            Self::V2 { dir } => (dir.join("memory.events"), "oom_kill "),
        };
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let dirs = match self {
            Self::V1 { cpu, memory } => vec![cpu.clone(), memory.clone()],
            Self::V2 { dir } => vec![dir.clone()],
        };
        for dir in dirs {
            let _ = fs::remove_dir(dir);
        }
    }
}

fn read_u64(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("read {}", path.display()))
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the parenthesised comm; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

fn rss_mib(pid: u32) -> f64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .expect("VmRSS")
        / 1024.0
}

/// The agent binary where the unprivileged user can execute it.
fn agent_copy() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("planet-limits-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("create binary dir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let path = dir.join("planet-agent");
    fs::copy(AGENT, &path).expect("copy agent");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod agent");
    path
}

/// `sh` puts itself into the cgroup, then execs setpriv, which drops to
/// uid 65534 with only the required capabilities and execs the agent.
fn agent_command(cgroup: &Cgroup, binary: &Path) -> Command {
    let caps: Vec<String> = REQUIRED
        .iter()
        .map(|c| {
            format!(
                "+{}",
                c.name.trim_start_matches("CAP_").to_ascii_lowercase()
            )
        })
        .collect();
    let caps = format!("-all,{}", caps.join(","));
    let mut script = String::new();
    for (i, _) in cgroup.procs().iter().enumerate() {
        script.push_str(&format!("echo $$ > \"${}\" && ", i + 1));
    }
    script.push_str(&format!("shift {} && exec \"$@\"", cgroup.procs().len()));
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).arg("sh").args(cgroup.procs());
    cmd.args([
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ])
    .arg(format!("--inh-caps={caps}"))
    .arg(format!("--ambient-caps={caps}"))
    .arg(format!("--bounding-set={caps}"))
    .arg("--")
    .arg(binary);
    cmd
}

struct Report {
    connections: usize,
    seconds: u64,
    live_flows: f64,
    series: usize,
    memory_peak_mib: f64,
    rss_max_mib: f64,
    cpu_avg_pct: f64,
    cpu_max_window_pct: f64,
    periods: u64,
    throttled: u64,
    oom_kills: u64,
    task_max: Vec<(&'static str, f64)>,
    task_failures: f64,
    scrape_max_ms: f64,
}

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

fn run(connections: usize, seconds: u64) -> Report {
    planet_testkit::require_root().expect("the limits bench needs root");
    raise_nofile();
    let cgroup = Cgroup::create();
    let binary = agent_copy();
    let agent = AgentProcess::start_command(
        agent_command(&cgroup, &binary),
        TASK_INTERVAL,
        &["-log-level", "warn"],
    )
    .expect("start the agent in its cgroup");
    let pid = agent.pid();
    agent
        .wait_for(
            |s| prom::value(s, "planet_flow_programs_attached", &[]) == Some(1.0),
            Duration::from_secs(30),
        )
        .expect("programs attach with the required capabilities only");

    let mut held = HeldConnections::open(connections).expect("open connections");
    // Two task intervals: every flow drained and merged.
    std::thread::sleep(Duration::from_secs(15));

    let start = Instant::now();
    let cpu_start = cpu_seconds(pid);
    let (periods_start, throttled_start) = cgroup.throttling();
    let mut window = (Instant::now(), cpu_start);
    let mut cpu_max_window_pct: f64 = 0.0;
    let mut rss_max_mib: f64 = 0.0;
    let mut task_max: Vec<(&'static str, f64)> = vec![("flow", 0.0), ("socketstat", 0.0)];
    let mut scrape_max_ms: f64 = 0.0;
    let mut next_scrape = Instant::now();
    let mut live_flows = 0.0;
    let mut series = 0;
    let mut task_failures = 0.0;
    let mut tick = 0usize;
    let payload = [7u8; 512];
    while start.elapsed() < Duration::from_secs(seconds) {
        let slice = (connections / 10).max(1);
        for k in 0..slice {
            let i = (tick * slice + k) % connections;
            held.exchange(i, &payload).expect("exchange");
        }
        tick += 1;
        rss_max_mib = rss_max_mib.max(rss_mib(pid));
        if window.0.elapsed() >= Duration::from_secs(7) {
            let now = cpu_seconds(pid);
            let pct = (now - window.1) / window.0.elapsed().as_secs_f64() * 100.0;
            cpu_max_window_pct = cpu_max_window_pct.max(pct);
            window = (Instant::now(), now);
        }
        if Instant::now() >= next_scrape {
            let took = Instant::now();
            let text = agent.scrape_text().expect("scrape");
            scrape_max_ms = scrape_max_ms.max(took.elapsed().as_secs_f64() * 1000.0);
            let samples = prom::parse(&text).expect("parse");
            series = samples.len();
            live_flows = prom::value(&samples, "planet_flow_live_flows", &[]).unwrap_or(0.0);
            task_failures = prom::sum(&samples, "planet_task_failures_total", &[]);
            for (task, max) in &mut task_max {
                let d = prom::value(
                    &samples,
                    "planet_task_last_run_duration_seconds",
                    &[("task", task)],
                )
                .unwrap_or(0.0);
                *max = max.max(d);
            }
            next_scrape += SCRAPE_EVERY;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_avg_pct = (cpu_seconds(pid) - cpu_start) / elapsed * 100.0;
    let (periods_end, throttled_end) = cgroup.throttling();
    let report = Report {
        connections,
        seconds,
        live_flows,
        series,
        memory_peak_mib: cgroup.memory_peak() as f64 / f64::from(1 << 20),
        rss_max_mib,
        cpu_avg_pct,
        cpu_max_window_pct,
        periods: periods_end - periods_start,
        throttled: throttled_end - throttled_start,
        oom_kills: cgroup.oom_kills(),
        task_max,
        task_failures,
        scrape_max_ms,
    };
    agent.ensure_running().expect("the agent survived");
    drop(held);
    drop(agent);
    let _ = fs::remove_dir_all(binary.parent().expect("binary dir"));
    println!("cgroup {}", cgroup.version());
    report
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (connections, seconds) = if full {
        let seconds = std::env::var("PLANET_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120);
        (CONNECTIONS, seconds)
    } else {
        (200, 10)
    };
    let r = run(connections, seconds);
    println!(
        "| connections (flows) | seconds | live flows | series | cgroup memory peak MiB | RSS max MiB | CPU avg % | CPU max 7-s window % | throttled periods | OOM kills | flow task max s | socketstat task max s | task failures | scrape max ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} ({}) | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {}/{} | {} | {:.3} | {:.3} | {} | {:.1} |",
        r.connections,
        r.connections * 2,
        r.seconds,
        r.live_flows,
        r.series,
        r.memory_peak_mib,
        r.rss_max_mib,
        r.cpu_avg_pct,
        r.cpu_max_window_pct,
        r.throttled,
        r.periods,
        r.oom_kills,
        r.task_max[0].1,
        r.task_max[1].1,
        r.task_failures,
        r.scrape_max_ms,
    );
    let memory_ok = r.memory_peak_mib <= (MEMORY_HIGH >> 20) as f64 && r.oom_kills == 0;
    let cpu_ok = r.cpu_avg_pct <= (CPU_QUOTA_US * 100 / CPU_PERIOD_US) as f64;
    println!(
        "Limits (setup/systemd/planet-agent.service): memory ≤ 256 MiB (MemoryHigh), never 512 MiB (MemoryMax): {}; CPU ≤ 20 % of one CPU on average: {}.",
        if memory_ok { "met" } else { "NOT met" },
        if cpu_ok { "met" } else { "NOT met" },
    );
    assert_eq!(r.oom_kills, 0, "the agent was OOM-killed in its cgroup");
    assert_eq!(r.task_failures, 0.0, "a task failed under the limits");
}
