//! `cargo xtask bench-modes`: what each probe mode costs, on one guest
//! kernel that offers them all (6.12).
//!
//! The guest runs `planet-traffic bench-rr` (1-byte request/response on
//! loopback, both ends on one CPU) with no agent and then with the agent
//! attached in each mode, for several rounds, and reports the kernel's BPF
//! statistics of every attached program. Under TCG the absolute numbers
//! are emulated time; the ratios between modes on the same guest are what
//! the table is for.

use std::{collections::BTreeMap, fmt::Write as _, fs};

use anyhow::{Context as _, Result, bail};

use super::report::Stream;

/// One `bench-rr` run in one mode.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Run {
    pub ops_per_sec: f64,
    /// Per program: (runs, seconds) from the kernel's BPF statistics.
    pub programs: BTreeMap<String, (f64, f64)>,
}

/// Runs per mode, in round order; `none` is the detached baseline.
pub type Runs = BTreeMap<String, Vec<Run>>;

/// Parses the guest's `bench` section: `rr MODE {json}` lines, each
/// followed (for attached modes) by `prog MODE <metric line>` lines.
pub fn parse(body: &str) -> Result<Runs> {
    let mut runs = Runs::new();
    for line in body.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("rr ") {
            let (mode, json) = rest.split_once(' ').context("rr line without a report")?;
            let report: serde_json::Value = serde_json::from_str(json)
                .with_context(|| format!("bench-rr report of {mode}: {json:?}"))?;
            let ops = report
                .get("ops_per_sec")
                .and_then(serde_json::Value::as_f64)
                .with_context(|| format!("no ops_per_sec in {json}"))?;
            runs.entry(mode.to_owned()).or_default().push(Run {
                ops_per_sec: ops,
                programs: BTreeMap::new(),
            });
        } else if let Some(rest) = line.strip_prefix("prog ") {
            let (mode, sample) = rest.split_once(' ').context("prog line without a sample")?;
            let (series, value) = sample.rsplit_once(' ').context("sample without a value")?;
            let value: f64 = value
                .parse()
                .with_context(|| format!("value of {sample}"))?;
            let program = series
                .split_once("program=\"")
                .and_then(|(_, p)| p.split_once('"'))
                .map(|(p, _)| p.to_owned())
                .with_context(|| format!("no program label in {series}"))?;
            let run = runs
                .get_mut(mode)
                .and_then(|r| r.last_mut())
                .with_context(|| format!("prog line before any rr line of {mode}"))?;
            let slot = run.programs.entry(program).or_default();
            if series.starts_with("planet_flow_program_runs_total") {
                slot.0 = value;
            } else if series.starts_with("planet_flow_program_run_seconds_total") {
                slot.1 = value;
            }
        } else if !line.trim().is_empty() {
            bail!("unexpected line in the bench section: {line:?}");
        }
    }
    Ok(runs)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Which hook a program belongs to, by its name: the send or receive
/// path (run per call) or the connection lifecycle (run per state change).
fn hook(program: &str) -> &'static str {
    if program.contains("send") {
        "send"
    } else if program.contains("recv") || program.contains("rbuf") {
        "recv"
    } else {
        "lifecycle"
    }
}

/// The markdown table: per mode, median rate and ratio to no agent, the
/// program time per send and per receive call (entry and return programs
/// of one call added up), and the median nanoseconds per run of each
/// program.
pub fn render(release: &str, rounds: usize, seconds: u64, runs: &Runs) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Guest kernel {release} (qemu TCG, 2 vCPUs); {rounds} rounds of `planet-traffic bench-rr --seconds {seconds} --cpu 1` per mode, modes in turn within each round; medians.\n"
    );
    let _ = writeln!(
        out,
        "| mode | rr ops/s | ratio to no agent | ns per send call | ns per receive call | programs (ns per run) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|");
    let baseline = runs
        .get("none")
        .map(|r| median(r.iter().map(|x| x.ops_per_sec).collect()));
    for (mode, list) in runs {
        let ops = median(list.iter().map(|r| r.ops_per_sec).collect());
        let ratio = baseline.map_or(f64::NAN, |b| ops / b);
        let mut names: Vec<&String> = list.iter().flat_map(|r| r.programs.keys()).collect();
        names.sort();
        names.dedup();
        let per_run: Vec<(&String, f64)> = names
            .iter()
            .map(|name| {
                let ns = median(
                    list.iter()
                        .filter_map(|r| r.programs.get(*name))
                        .filter(|(runs, _)| *runs > 0.0)
                        .map(|(runs, secs)| secs * 1e9 / runs)
                        .collect(),
                );
                (*name, ns)
            })
            .collect();
        let per_call = |path: &str| {
            let ns: f64 = per_run
                .iter()
                .filter(|(name, _)| hook(name) == path)
                .map(|(_, ns)| ns)
                .sum();
            if mode == "none" {
                "—".to_owned()
            } else {
                format!("{ns:.0}")
            }
        };
        let programs = per_run
            .iter()
            .map(|(name, ns)| format!("`{name}` {ns:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "| {mode} | {ops:.0} | {ratio:.3} | {} | {} | {programs} |",
            per_call("send"),
            per_call("recv"),
        );
    }
    out
}

/// Boots `kernel`'s guest in bench mode and prints the table.
pub fn run(kernel: super::Kernel, rounds: usize, seconds: u64) -> Result<()> {
    let guest = super::prepare(&[kernel])?
        .into_iter()
        .next()
        .context("no guest was prepared")?;
    let (image, dir) = (guest.image, guest.dir);
    let initrd = guest.initrd?;
    let files = super::guest::Run::in_dir(&dir);
    let timeout = std::time::Duration::from_secs(600 + rounds as u64 * 4 * (seconds + 30));
    let end = super::guest::boot(
        kernel.series(),
        &image.vmlinuz,
        &initrd,
        &files,
        &format!("planet.bench={rounds},{seconds}"),
        timeout,
    )?;
    let results = fs::read_to_string(&files.results)
        .with_context(|| format!("read {}", files.results.display()))?;
    let stream = Stream::parse(&results);
    let section = stream.section("bench").with_context(|| {
        format!(
            "the guest reported no bench section ({end:?}); see {}",
            files.results.display()
        )
    })?;
    let runs = parse(&section.body)?;
    let table = render(&image.release, rounds, seconds, &runs);
    println!("\n{table}");
    let saved = dir.join("bench-modes.md");
    fs::write(&saved, &table).with_context(|| format!("write {}", saved.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"rr none {"mode":"rr","ops_per_sec":1000.0,"ops":5000,"seconds":5.0}
rr tracepoint {"mode":"rr","ops_per_sec":900.0,"ops":4500,"seconds":5.0}
prog tracepoint planet_flow_program_run_seconds_total{program="planet_tp_send"} 0.0009
prog tracepoint planet_flow_program_runs_total{program="planet_tp_send"} 9000
prog tracepoint planet_flow_program_run_seconds_total{program="planet_tp_recv"} 0.0018
prog tracepoint planet_flow_program_runs_total{program="planet_tp_recv"} 9000
"#;

    #[test]
    fn parses_runs_and_program_statistics() {
        let runs = parse(BODY).unwrap();
        assert_eq!(runs["none"][0].ops_per_sec, 1000.0);
        let tp = &runs["tracepoint"][0];
        assert_eq!(tp.programs["planet_tp_send"], (9000.0, 0.0009));
        assert_eq!(tp.programs["planet_tp_recv"], (9000.0, 0.0018));
    }

    #[test]
    fn table_has_ratios_and_per_run_costs() {
        let table = render("6.12.0", 1, 5, &parse(BODY).unwrap());
        assert!(
            table.contains("| none | 1000 | 1.000 | — | — |  |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| tracepoint | 900 | 0.900 | 100 | 200 | `planet_tp_recv` 200, `planet_tp_send` 100 |"
            ),
            "{table}"
        );
        assert_eq!(hook("planet_krp_send"), "send");
        assert_eq!(hook("planet_kp_rbuf"), "recv");
        assert_eq!(hook("planet_fx_recv5"), "recv");
        assert_eq!(hook("planet_tp_state"), "lifecycle");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("rr none not-json\n").is_err());
        assert!(parse("prog kprobe x{program=\"a\"} 1\n").is_err());
        assert!(parse("something else\n").is_err());
    }
}
