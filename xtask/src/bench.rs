//! `cargo xtask bench-overhead`: what the flow probes cost the traffic they
//! observe.
//!
//! Each round measures every workload once with the agent detached and once
//! attached; the order flips every round (ABBA) so slow drift cancels out.
//! Loopback runs vary by ±20 % from one run to the next on these machines, so
//! only medians over many rounds, with their spread, mean anything.

use std::{fmt::Write as _, fs, net::SocketAddr, path::Path, time::Duration};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::{
    agent::Agent,
    cmd::{self, say},
    run::{self, Profile},
    setup,
};

/// Where the attached agent listens.
const LISTEN: &str = "127.0.0.1:19199";
/// The attached agent's flags besides `-listen-address`: flow accounting only.
const AGENT_ARGS: &[&str] = &["-task-interval", "7s", "-task-socketstat-enabled=false"];
/// Pause between "attached" and the first workload run.
const SETTLE: Duration = Duration::from_secs(2);
/// The agent flag that has the kernel time every program run.
const PROGRAM_STATS: &str = "-task-flow-program-stats";

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
    /// Lowest acceptable median ratio attached/detached.
    target: f64,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "rr",
        subcommand: "bench-rr",
        extra_args: &["--addr", "127.0.0.1:0"],
        field: "ops_per_sec",
        unit: "ops/s",
        scale: 1.0,
        target: 0.98,
    },
    Workload {
        name: "bulk",
        subcommand: "bench-bulk",
        extra_args: &[],
        field: "bytes_per_sec",
        unit: "MB/s",
        scale: 1e-6,
        target: 0.995,
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Detached,
    Attached,
}

pub struct Options {
    pub rounds: usize,
    pub seconds: u64,
    pub bpf_stats: bool,
    /// The CPU every workload runs on, or `None` to let the scheduler choose.
    pub cpu: Option<usize>,
}

/// Rates of one workload, one entry per round.
#[derive(Default)]
struct Samples {
    detached: Vec<f64>,
    attached: Vec<f64>,
}

pub fn run(options: &Options) -> Result<()> {
    if options.rounds == 0 || options.seconds == 0 {
        bail!("--rounds and --seconds must be at least 1");
    }
    setup::run()?;
    let release = run::cargo_build(&["planet-agent", "planet-testkit"], Profile::Release)?;
    let agent = release.join("planet-agent");
    let traffic = release.join("planet-traffic");
    for binary in [&agent, &traffic] {
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
        "{} rounds × (detached + attached) × {} workloads × {} s: about {} plus agent start-ups",
        options.rounds,
        WORKLOADS.len(),
        options.seconds,
        cmd::human(Duration::from_secs(per_run * 2 * options.rounds as u64))
    );

    let mut samples: Vec<Samples> = WORKLOADS.iter().map(|_| Samples::default()).collect();
    let mut orders = Vec::new();
    for round in 0..options.rounds {
        let order = if round % 2 == 0 {
            [Mode::Detached, Mode::Attached]
        } else {
            [Mode::Attached, Mode::Detached]
        };
        orders.push(order);
        for mode in order {
            say!("round {}/{}: {mode:?}", round + 1, options.rounds);
            let rates = measure(mode, &agent, &traffic, addr, &log, options)?;
            for (samples, rate) in samples.iter_mut().zip(rates) {
                match mode {
                    Mode::Detached => samples.detached.push(rate),
                    Mode::Attached => samples.attached.push(rate),
                }
            }
        }
    }

    let report = report(&samples, &orders, options);
    print!("{report}");
    let path = target.join("bench-overhead.md");
    fs::write(&path, &report).with_context(|| format!("write {}", path.display()))?;
    say!("written to {}", path.display());
    Ok(())
}

/// Runs every workload once in `mode`; returns their rates in [`WORKLOADS`] order.
fn measure(
    mode: Mode,
    agent: &Path,
    traffic: &Path,
    addr: SocketAddr,
    log: &Path,
    options: &Options,
) -> Result<Vec<f64>> {
    let run_all = || -> Result<Vec<f64>> {
        WORKLOADS
            .iter()
            .map(|w| workload(traffic, w, options))
            .collect()
    };
    if mode == Mode::Detached {
        return run_all();
    }
    let mut args = AGENT_ARGS.to_vec();
    if options.bpf_stats {
        args.push(PROGRAM_STATS);
    }
    let mut running = Agent::start(agent, addr, &args, log)?;
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

/// Per-round ratios attached/detached.
fn ratios(samples: &Samples) -> Vec<f64> {
    samples
        .attached
        .iter()
        .zip(&samples.detached)
        .map(|(a, d)| a / d)
        .collect()
}

fn report(samples: &[Samples], orders: &[[Mode; 2]], options: &Options) -> String {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let mut out = String::new();
    let _ = writeln!(out, "## Probe overhead: attached / detached\n");
    let _ = writeln!(
        out,
        "Kernel {}, {cpus} CPUs; {} rounds, {} s per workload run, order alternating (ABBA); \
         workload {}. Agent: `planet-agent -listen-address {LISTEN} {}{}`.\n",
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
        "| workload | median detached | median attached | ratio attached/detached | min ratio | max ratio | target | verdict |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for (w, s) in WORKLOADS.iter().zip(samples) {
        let ratio = median(&s.attached) / median(&s.detached);
        let per_round = ratios(s);
        let min = per_round.iter().copied().fold(f64::INFINITY, f64::min);
        let max = per_round.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let verdict = if ratio >= w.target { "pass" } else { "FAIL" };
        let _ = writeln!(
            out,
            "| {} ({}) | {} | {} | {ratio:.4} | {min:.4} | {max:.4} | ≥ {} | {verdict} |",
            w.name,
            w.unit,
            rate(median(&s.detached), w),
            rate(median(&s.attached), w),
            w.target,
        );
    }

    let _ = writeln!(out, "\n### Rounds\n");
    let mut header = String::from("| round | order |");
    let mut rule = String::from("|---|---|");
    for w in WORKLOADS {
        let _ = write!(header, " {0} detached | {0} attached | {0} ratio |", w.name);
        rule.push_str("---|---|---|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for (round, order) in orders.iter().enumerate() {
        let order = match order[0] {
            Mode::Detached => "detached, attached",
            Mode::Attached => "attached, detached",
        };
        let _ = write!(out, "| {} | {order} |", round + 1);
        for (w, s) in WORKLOADS.iter().zip(samples) {
            let (d, a) = (s.detached[round], s.attached[round]);
            let _ = write!(out, " {} | {} | {:.4} |", rate(d, w), rate(a, w), a / d);
        }
        out.push('\n');
    }
    out
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
    fn report_has_both_tables() {
        let samples = vec![
            Samples {
                detached: vec![100.0, 110.0],
                attached: vec![99.0, 108.0],
            },
            Samples {
                detached: vec![2e9, 2e9],
                attached: vec![1.99e9, 2e9],
            },
        ];
        let orders = [
            [Mode::Detached, Mode::Attached],
            [Mode::Attached, Mode::Detached],
        ];
        let options = Options {
            rounds: 2,
            seconds: 1,
            bpf_stats: true,
            cpu: Some(1),
        };
        let text = report(&samples, &orders, &options);
        assert!(
            text.contains(
                "| rr (ops/s) | 105.0 | 103.5 | 0.9857 | 0.9818 | 0.9900 | ≥ 0.98 | pass |"
            )
        );
        assert!(
            text.contains(
                "| bulk (MB/s) | 2000 | 1995 | 0.9975 | 0.9950 | 1.0000 | ≥ 0.995 | pass |"
            )
        );
        assert!(text.contains("| 2 | attached, detached |"));
    }
}
