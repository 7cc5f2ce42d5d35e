//! Planet's developer tasks: `cargo xtask <task>` (alias in `.cargo/config.toml`).
//!
//! Building the eBPF object is not one of them: planet-agent's build script
//! does that. xtask installs what that build needs and runs things as root.

mod agent;
mod bench;
mod cmd;
mod darkstat;
mod deploy;
mod dist;
mod run;
mod setup;
mod test;

use std::{ffi::OsString, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Planet's developer tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent).
    ///
    /// Nightly with rust-src, stable rustfmt and clippy, bpf-linker 0.13.0
    /// linked against nightly's own LLVM (rebuilt when nightly changes), the
    /// Debian packages the tests use, and tracefs. A re-run checks and does
    /// nothing.
    Setup,
    /// Set up, then build the agent (release unless --debug).
    Build {
        /// Release build (the default).
        #[arg(long, conflicts_with = "debug")]
        release: bool,
        /// Debug build.
        #[arg(long)]
        debug: bool,
    },
    /// Set up, build the release agent and run it as root (sudo -E if needed).
    ///
    /// Example: cargo xtask run -- -listen-address 127.0.0.1:19100 -log-level debug
    Run {
        /// Arguments for planet-agent (put them after `--`).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "AGENT ARGS"
        )]
        args: Vec<OsString>,
    },
    /// Release tarballs of the agent and the federator, and their checksums.
    ///
    /// target/dist/planet-agent_v<version>_linux_<arch>.tar.gz (binary, systemd
    /// unit, README), planet-federator likewise, and
    /// planet_v<version>_sha256sums.txt.
    Dist {
        /// Pack the debug binaries instead of building release ones.
        #[arg(long)]
        debug: bool,
    },
    /// Set up, then run every test suite (as root) and print a summary table.
    Test {
        /// Run only the steps whose name contains this text (e.g. `ansible`).
        #[arg(long, value_name = "TEXT")]
        only: Option<String>,
    },
    /// Probe overhead: workload rates with the agent detached vs attached.
    ///
    /// Builds the release agent and planet-traffic, then alternates detached
    /// and attached runs (ABBA) of each workload. Prints a markdown table of
    /// medians and ratios, also written to target/bench-overhead.md.
    BenchOverhead {
        /// Rounds; each measures every workload detached and attached.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Seconds per workload run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Leave kernel.bpf_stats_enabled alone during attached runs.
        #[arg(long)]
        no_bpf_stats: bool,
        /// CPU both ends of each workload run on (see planet-traffic --cpu).
        #[arg(long, default_value_t = 1, conflicts_with = "no_pin")]
        cpu: usize,
        /// Let the scheduler place the workload's threads.
        #[arg(long)]
        no_pin: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Build { debug, .. } => {
            let profile = if debug {
                run::Profile::Debug
            } else {
                run::Profile::Release
            };
            run::build(profile).map(drop)
        }
        Task::Run { args } => run::run(&args),
        Task::Dist { debug } => {
            let profile = if debug {
                run::Profile::Debug
            } else {
                run::Profile::Release
            };
            dist::run(profile).map(|artifacts| {
                for path in artifacts.tarballs.iter().chain([&artifacts.checksums]) {
                    println!("{}", path.display());
                }
            })
        }
        Task::Test { only } => test::run(only.as_deref()),
        Task::BenchOverhead {
            rounds,
            seconds,
            no_bpf_stats,
            cpu,
            no_pin,
        } => bench::run(&bench::Options {
            rounds,
            seconds,
            bpf_stats: !no_bpf_stats,
            cpu: (!no_pin).then_some(cpu),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_go_style_agent_flags() {
        let cli = Cli::parse_from([
            "xtask",
            "run",
            "--",
            "-listen-address",
            "127.0.0.1:1",
            "-version",
        ]);
        let Task::Run { args } = cli.task else {
            panic!("not a run: {cli:?}");
        };
        assert_eq!(args, ["-listen-address", "127.0.0.1:1", "-version"]);
        let cli = Cli::parse_from(["xtask", "run", "-task-interval", "3s"]);
        let Task::Run { args } = cli.task else {
            panic!("not a run: {cli:?}");
        };
        assert_eq!(args, ["-task-interval", "3s"]);
    }
}
