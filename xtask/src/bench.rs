//! `cargo xtask bench-overhead`: what the flow probes cost the traffic they
//! observe.
//!
//! Each round measures every workload in three modes: detached (no
//! programs), floor (the `hook_floor` example: programs that return at once
//! on the two per-call events the agent probes) and attached (the agent as
//! deployed). The floor is what any program on those events costs on the
//! running kernel, so attached/floor is the agent's own share. The order
//! cycles through all six permutations so slow drift cancels out. Loopback
//! runs vary by ±20 % from one run to the next on these machines, so only
//! medians over many rounds, with their spread, mean anything.

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    agent::{self, Agent},
    cmd::{self, say},
    run::{self, Profile},
    setup,
};

/// Where the attached agent listens.
const LISTEN: &str = "127.0.0.1:19199";
/// The attached agent's flags besides `-listen-address`: flow accounting only.
const AGENT_ARGS: &[&str] = &["-task-interval", "7s", "-task-socketstat-enabled=false"];
/// Pause between attaching and the first workload run.
const SETTLE: Duration = Duration::from_secs(2);
/// The agent flag that has the kernel time every program run.
const PROGRAM_STATS: &str = "-task-flow-program-stats";
/// The example that holds the floor programs attached.
const FLOOR_EXAMPLE: &str = "hook_floor";

/// One `planet-traffic` benchmark mode.
struct Workload {
    /// `mode` in the JSON report, and the row name.
    name: &'static str,
    subcommand: &'static str,
    extra_args: &'static [&'static str],
    /// The JSON field holding the rate.
    field: &'static str,
    /// How rows print the rate.
    unit: &'static str,
    scale: f64,
    /// Lowest acceptable median ratio attached/detached, if the workload
    /// has a target (the others explain the ones that do).
    target: Option<f64>,
    /// Whether time per operation (1 / rate) means something to show.
    per_op: bool,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "rr",
        subcommand: "bench-rr",
        extra_args: &["--addr", "127.0.0.1:0"],
        field: "ops_per_sec",
        unit: "ops/s",
        scale: 1.0,
        target: Some(0.98),
        per_op: true,
    },
    Workload {
        name: "bulk",
        subcommand: "bench-bulk",
        extra_args: &[],
        field: "bytes_per_sec",
        unit: "MB/s",
        scale: 1e-6,
        target: Some(0.995),
        per_op: false,
    },
    Workload {
        name: "conn",
        subcommand: "bench-conn",
        extra_args: &[],
        field: "calls_per_sec",
        unit: "conns/s",
        scale: 1.0,
        target: None,
        per_op: true,
    },
    Workload {
        name: "empty-recv",
        subcommand: "bench-empty-recv",
        extra_args: &[],
        field: "calls_per_sec",
        unit: "calls/s",
        scale: 1.0,
        target: None,
        per_op: true,
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Detached,
    Floor,
    Attached,
}

impl Mode {
    const ALL: [Self; 3] = [Self::Detached, Self::Floor, Self::Attached];

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Self::Detached => "detached",
            Self::Floor => "floor",
            Self::Attached => "attached",
        }
    }
}

/// The order of round `round`: all six permutations in turn, so every mode
/// runs first, second and third equally often.
fn order(round: usize) -> [Mode; 3] {
    use Mode::{Attached as A, Detached as D, Floor as F};
    const ORDERS: [[Mode; 3]; 6] = [
        [D, F, A],
        [A, F, D],
        [F, A, D],
        [D, A, F],
        [A, D, F],
        [F, D, A],
    ];
    ORDERS[round % ORDERS.len()]
}

pub struct Options {
    pub rounds: usize,
    pub seconds: u64,
    pub bpf_stats: bool,
    /// The CPU every workload runs on, or `None` to let the scheduler choose.
    pub cpu: Option<usize>,
}

/// Rates of one workload: per mode, one entry per round.
#[derive(Default)]
struct Samples([Vec<f64>; 3]);

impl Samples {
    fn of(&self, mode: Mode) -> &[f64] {
        &self.0[mode.index()]
    }

    fn median(&self, mode: Mode) -> f64 {
        median(self.of(mode))
    }

    /// Per-round ratios `over`/`under`.
    fn ratios(&self, over: Mode, under: Mode) -> Vec<f64> {
        self.of(over)
            .iter()
            .zip(self.of(under))
            .map(|(a, d)| a / d)
            .collect()
    }
}

/// The binaries a run needs.
struct Binaries {
    agent: std::path::PathBuf,
    floor: std::path::PathBuf,
    traffic: std::path::PathBuf,
}

pub fn run(options: &Options) -> Result<()> {
    if options.rounds == 0 || options.seconds == 0 {
        bail!("--rounds and --seconds must be at least 1");
    }
    setup::run()?;
    let release = run::cargo_build(&["planet-agent", "planet-testkit"], Profile::Release)?;
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "-p",
        "planet-agent",
        "--example",
        FLOOR_EXAMPLE,
    ]))?;
    let binaries = Binaries {
        agent: release.join("planet-agent"),
        floor: release.join("examples").join(FLOOR_EXAMPLE),
        traffic: release.join("planet-traffic"),
    };
    for binary in [&binaries.agent, &binaries.floor, &binaries.traffic] {
        if !binary.is_file() {
            bail!("{} was not built", binary.display());
        }
    }
    let target = cmd::target_dir()?;
    let log = target.join("bench-overhead-agent.log");
    let _ = fs::remove_file(&log);
    let addr: SocketAddr = LISTEN.parse()?;

    let per_run = options.seconds * WORKLOADS.len() as u64;
    say!(
        "{} rounds × (detached + floor + attached) × {} workloads × {} s: about {} plus start-ups",
        options.rounds,
        WORKLOADS.len(),
        options.seconds,
        cmd::human(Duration::from_secs(
            per_run * Mode::ALL.len() as u64 * options.rounds as u64
        ))
    );

    let mut samples: Vec<Samples> = WORKLOADS.iter().map(|_| Samples::default()).collect();
    for round in 0..options.rounds {
        for mode in order(round) {
            say!("round {}/{}: {}", round + 1, options.rounds, mode.name());
            let rates = measure(mode, &binaries, addr, &log, options)?;
            for (samples, rate) in samples.iter_mut().zip(rates) {
                samples.0[mode.index()].push(rate);
            }
        }
    }

    let report = report(&samples, options);
    print!("{report}");
    let path = target.join("bench-overhead.md");
    fs::write(&path, &report).with_context(|| format!("write {}", path.display()))?;
    say!("written to {}", path.display());
    Ok(())
}

/// Runs every workload once in `mode`; returns their rates in [`WORKLOADS`] order.
fn measure(
    mode: Mode,
    binaries: &Binaries,
    addr: SocketAddr,
    log: &Path,
    options: &Options,
) -> Result<Vec<f64>> {
    let run_all = || -> Result<Vec<f64>> {
        WORKLOADS
            .iter()
            .map(|w| workload(&binaries.traffic, w, options))
            .collect()
    };
    match mode {
        Mode::Detached => run_all(),
        Mode::Floor => {
            let mut floor = start_floor(&binaries.floor)?;
            std::thread::sleep(SETTLE);
            let rates = run_all();
            let status = agent::terminate(&mut floor, Duration::from_secs(5))?;
            if !status.success() {
                bail!("{FLOOR_EXAMPLE} exited with {}", cmd::describe(status));
            }
            rates
        }
        Mode::Attached => {
            let mut args = AGENT_ARGS.to_vec();
            if options.bpf_stats {
                args.push(PROGRAM_STATS);
            }
            let mut running = Agent::start(&binaries.agent, addr, &args, log)?;
            running.wait_attached(Duration::from_secs(60))?;
            // Let the agent's start-up work (first scans, first drain) finish first.
            std::thread::sleep(SETTLE);
            let rates = run_all()?;
            let status = running.stop()?;
            if !status.success() {
                say!(
                    "warning: the agent exited with {} after SIGTERM; see {}",
                    cmd::describe(status),
                    log.display()
                );
            }
            Ok(rates)
        }
    }
}

/// Starts the floor example and waits until it says its programs are attached.
fn start_floor(binary: &Path) -> Result<Child> {
    let mut child = cmd::as_root(binary)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let stdout = child.stdout.take().context("floor stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() != "attached" {
        let status = child.wait()?;
        bail!(
            "{FLOOR_EXAMPLE} did not attach ({}); run it by hand to see why",
            cmd::describe(status)
        );
    }
    Ok(child)
}

/// Runs `planet-traffic <subcommand> --seconds S ...` and reads its JSON line.
fn workload(traffic: &Path, workload: &Workload, options: &Options) -> Result<f64> {
    let mut command = cmd::new(traffic);
    command
        .arg(workload.subcommand)
        .args(["--seconds", &options.seconds.to_string()])
        .args(workload.extra_args);
    if let Some(cpu) = options.cpu {
        command.args(["--cpu", &cpu.to_string()]);
    }
    let stdout = cmd::output(&mut command)?;
    parse_rate(&stdout, workload)
}

/// The `field` of the last JSON line whose `mode` is the workload's.
fn parse_rate(stdout: &str, workload: &Workload) -> Result<f64> {
    stdout
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line.trim()).ok())
        .find(|v| v.get("mode").and_then(serde_json::Value::as_str) == Some(workload.name))
        .and_then(|v| v.get(workload.field).and_then(serde_json::Value::as_f64))
        .ok_or_else(|| {
            anyhow!(
                "planet-traffic {} printed no {{\"mode\":\"{}\",\"{}\":...}} line:\n{stdout}",
                workload.subcommand,
                workload.name,
                workload.field
            )
        })
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 0 => (sorted[mid - 1] + sorted[mid]) / 2.0,
        _ => sorted[mid],
    }
}

fn spread(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

fn report(samples: &[Samples], options: &Options) -> String {
    use Mode::{Attached, Detached, Floor};
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Probe overhead: attached / detached, beside the floor\n"
    );
    let _ = writeln!(
        out,
        "Kernel {}, {cpus} CPUs; {} rounds, {} s per workload run, order cycling through \
         all six permutations; workload {}. Agent: `planet-agent -listen-address {LISTEN} {}{}`. \
         Floor: `{FLOOR_EXAMPLE}` (programs that return at once on `sock_send_length` and \
         `sock_recv_length`).\n",
        kernel.trim(),
        options.rounds,
        options.seconds,
        options.cpu.map_or_else(
            || "threads placed by the scheduler".to_owned(),
            |c| format!("pinned to CPU {c}")
        ),
        AGENT_ARGS.join(" "),
        if options.bpf_stats {
            format!(" {PROGRAM_STATS}")
        } else {
            String::new()
        },
    );
    let _ = writeln!(
        out,
        "| workload | median detached | median floor | median attached | floor/detached | \
         attached/floor | attached/detached | per-round attached/floor | per-round attached/detached (min–max) | \
         target | verdict |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for (w, s) in WORKLOADS.iter().zip(samples) {
        let ratio = s.median(Attached) / s.median(Detached);
        let per_round = s.ratios(Attached, Detached);
        let (min, max) = spread(&per_round);
        let over_floor = median(&s.ratios(Attached, Floor));
        let (target, verdict) = match w.target {
            Some(t) if ratio >= t => (format!("≥ {t}"), "pass"),
            Some(t) => (format!("≥ {t}"), "FAIL"),
            None => ("–".to_owned(), "–"),
        };
        let _ = writeln!(
            out,
            "| {} ({}) | {} | {} | {} | {:.4} | {:.4} | {ratio:.4} | {over_floor:.4} | {:.4} ({min:.4}–{max:.4}) | {target} | {verdict} |",
            w.name,
            w.unit,
            rate(s.median(Detached), w),
            rate(s.median(Floor), w),
            rate(s.median(Attached), w),
            s.median(Floor) / s.median(Detached),
            s.median(Attached) / s.median(Floor),
            median(&per_round),
        );
    }

    let _ = writeln!(
        out,
        "\nTime per operation from the medians (one rr operation is a round trip: \
         two sends and two receives):\n"
    );
    let _ = writeln!(
        out,
        "| workload | detached ns | floor adds ns | attached adds ns | the agent's programs add ns |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for (w, s) in WORKLOADS.iter().zip(samples).filter(|(w, _)| w.per_op) {
        let ns = |mode| 1e9 / s.median(mode);
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:+.0} | {:+.0} | {:+.0} |",
            w.name,
            ns(Detached),
            ns(Floor) - ns(Detached),
            ns(Attached) - ns(Detached),
            ns(Attached) - ns(Floor),
        );
    }

    if let Some(bound) = floor_bound(samples) {
        let _ = writeln!(
            out,
            "\nThe floor costs {:.0} ns per probed call (empty-recv); an rr round trip makes four \
             such calls, so no program on these events can keep rr above {:.4} of detached here.",
            bound.per_call_ns, bound.rr_ratio
        );
    }

    let _ = writeln!(out, "\n### Rounds\n");
    let mut header = String::from("| round | order |");
    let mut rule = String::from("|---|---|");
    for w in WORKLOADS {
        let _ = write!(
            header,
            " {0} detached | {0} floor | {0} attached | {0} attached/detached |",
            w.name
        );
        rule.push_str("---|---|---|---|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    let rounds = samples.first().map_or(0, |s| s.of(Detached).len());
    for round in 0..rounds {
        let names: Vec<&str> = order(round).iter().map(|m| m.name()).collect();
        let _ = write!(out, "| {} | {} |", round + 1, names.join(", "));
        for (w, s) in WORKLOADS.iter().zip(samples) {
            let [d, f, a] = Mode::ALL.map(|mode| s.of(mode)[round]);
            let _ = write!(
                out,
                " {} | {} | {} | {:.4} |",
                rate(d, w),
                rate(f, w),
                rate(a, w),
                a / d
            );
        }
        out.push('\n');
    }
    out
}

/// What the floor alone allows, from the medians.
struct FloorBound {
    /// What having a program on the event costs each call.
    per_call_ns: f64,
    /// The best rr ratio with that cost on each of a round trip's four calls.
    rr_ratio: f64,
}

fn floor_bound(samples: &[Samples]) -> Option<FloorBound> {
    let ns = |name: &str, mode: Mode| {
        WORKLOADS
            .iter()
            .position(|w| w.name == name)
            .map(|i| 1e9 / samples[i].median(mode))
    };
    let per_call_ns = ns("empty-recv", Mode::Floor)? - ns("empty-recv", Mode::Detached)?;
    let rr_ns = ns("rr", Mode::Detached)?;
    Some(FloorBound {
        per_call_ns,
        rr_ratio: rr_ns / (rr_ns + 4.0 * per_call_ns),
    })
}

fn rate(value: f64, workload: &Workload) -> String {
    let scaled = value * workload.scale;
    if scaled >= 1000.0 {
        format!("{scaled:.0}")
    } else {
        format!("{scaled:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn rates_from_json_lines() -> Result<()> {
        let out = "listening on 127.0.0.1:40000\n\
                   {\"mode\":\"rr\",\"ops_per_sec\":71234.5,\"seconds\":5}\n";
        assert_eq!(parse_rate(out, &WORKLOADS[0])?, 71234.5);
        assert!(parse_rate(out, &WORKLOADS[1]).is_err());
        let bulk = "{\"mode\":\"bulk\",\"bytes_per_sec\":2.5e9}\n";
        assert_eq!(parse_rate(bulk, &WORKLOADS[1])?, 2.5e9);
        Ok(())
    }

    #[test]
    fn orders_put_every_mode_in_every_place_equally() {
        let mut counts = [[0; 3]; 3];
        for round in 0..6 {
            let order = order(round);
            for (place, mode) in order.iter().enumerate() {
                counts[mode.index()][place] += 1;
            }
            let mut sorted = order.map(Mode::index);
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2], "round {round} runs every mode once");
        }
        assert_eq!(counts, [[2; 3]; 3]);
    }

    #[test]
    fn report_has_ratios_costs_and_rounds() {
        let samples = vec![
            Samples([vec![100.0, 110.0], vec![99.5, 109.0], vec![99.0, 108.0]]),
            Samples([vec![2e9, 2e9], vec![2e9, 2e9], vec![1.99e9, 2e9]]),
            Samples([vec![1e4, 1e4], vec![1e4, 1e4], vec![0.5e4, 0.5e4]]),
            Samples([vec![1e6, 1e6], vec![0.5e6, 0.5e6], vec![0.4e6, 0.4e6]]),
        ];
        let options = Options {
            rounds: 2,
            seconds: 1,
            bpf_stats: true,
            cpu: Some(1),
        };
        let text = report(&samples, &options);
        assert!(
            text.contains(
                "| rr (ops/s) | 105.0 | 104.2 | 103.5 | 0.9929 | 0.9928 | 0.9857 | 0.9929 | 0.9859 (0.9818–0.9900) | ≥ 0.98 | pass |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| bulk (MB/s) | 2000 | 2000 | 1995 | 1.0000 | 0.9975 | 0.9975 | 0.9975 | 0.9975 (0.9950–1.0000) | ≥ 0.995 | pass |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| empty-recv (calls/s) | 1000000 | 500000 | 400000 | 0.5000 | 0.8000 | 0.4000 | 0.8000 | 0.4000 (0.4000–0.4000) | – | – |"
            ),
            "{text}"
        );
        // 1 µs per call detached, 2 µs with the floor, 2.5 µs attached.
        assert!(
            text.contains("| empty-recv | 1000 | +1000 | +1500 | +500 |"),
            "{text}"
        );
        assert!(
            text.contains("| conn | 100000 | +0 | +100000 | +100000 |"),
            "{text}"
        );
        assert!(!text.contains("| bulk | "), "no time per byte: {text}");
        // rr: 1e9 / 105 ns per round trip, plus four calls at 1000 ns each.
        let bound = 1e9 / 105.0 / (1e9 / 105.0 + 4000.0);
        assert!(
            text.contains(&format!(
                "The floor costs 1000 ns per probed call (empty-recv); an rr round trip makes \
                 four such calls, so no program on these events can keep rr above {bound:.4}"
            )),
            "{text}"
        );
        assert!(text.contains("| 2 | attached, floor, detached |"), "{text}");
    }
}
