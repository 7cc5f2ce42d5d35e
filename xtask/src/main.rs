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
mod vm;

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
    /// The flow accuracy suite in every probe mode on Debian kernels under qemu.
    ///
    /// Fetches Debian's cloud kernel images through a private apt
    /// configuration (cached), builds an initramfs with the agent and the
    /// suite, boots each kernel under qemu (TCG), and prints a kernel × mode
    /// table of exact / inexact / unavailable. Fails if any available mode is
    /// inexact or any guest does not finish.
    TestVm {
        /// Which kernel to boot.
        #[arg(long, value_enum, default_value_t = KernelChoice::All)]
        kernel: KernelChoice,
        /// Minutes each guest may take from boot to power-off.
        #[arg(long, default_value_t = vm::DEFAULT_TIMEOUT_MINUTES)]
        timeout_minutes: u64,
    },
    /// Per-mode probe cost on one guest kernel that offers every mode:
    /// request/response rate with no agent and with each mode attached,
    /// and the kernel's statistics of each program. Prints a markdown table
    /// (also in target/test-vm/<release>/bench-modes.md).
    BenchModes {
        /// Which kernel to boot (6.12 offers all three modes).
        #[arg(long, value_enum, default_value_t = KernelChoice::V6_12)]
        kernel: KernelChoice,
        /// Rounds; each runs every mode once.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds per run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Probe overhead: workload rates with the agent detached vs attached,
    /// beside the floor (empty programs on the same events).
    ///
    /// Builds the release agent, the hook_floor example and planet-traffic,
    /// then runs each workload detached, with the floor and attached, in
    /// every order in turn. Prints a markdown table of medians and ratios,
    /// also written to target/bench-overhead.md.
    BenchOverhead {
        /// Rounds; each measures every workload detached, floor and attached.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Seconds per workload run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Run the agent with -task-flow-program-stats (the kernel times
        /// every program run, which adds to the overhead measured).
        #[arg(long)]
        bpf_stats: bool,
        /// CPU both ends of each workload run on (see planet-traffic --cpu).
        #[arg(long, default_value_t = 1, conflicts_with = "no_pin")]
        cpu: usize,
        /// Let the scheduler place the workload's threads.
        #[arg(long)]
        no_pin: bool,
    },
}

/// `--kernel` of `test-vm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum KernelChoice {
    #[value(name = "5.10")]
    V5_10,
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
    All,
}

impl KernelChoice {
    fn kernels(self) -> Vec<vm::Kernel> {
        match self {
            Self::V5_10 => vec![vm::Kernel::V5_10],
            Self::V6_1 => vec![vm::Kernel::V6_1],
            Self::V6_12 => vec![vm::Kernel::V6_12],
            Self::All => vm::Kernel::ALL.to_vec(),
        }
    }
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
        Task::TestVm {
            kernel,
            timeout_minutes,
        } => setup::run().and_then(|()| {
            vm::run(&vm::Options {
                kernels: kernel.kernels(),
                timeout: std::time::Duration::from_secs(timeout_minutes * 60),
            })
        }),
        Task::BenchModes {
            kernel,
            rounds,
            seconds,
        } => setup::run().and_then(|()| match kernel.kernels().as_slice() {
            [one] => vm::bench::run(*one, rounds, seconds),
            _ => Err(anyhow::anyhow!(
                "bench-modes boots one kernel; pick 5.10, 6.1 or 6.12"
            )),
        }),
        Task::BenchOverhead {
            rounds,
            seconds,
            bpf_stats,
            cpu,
            no_pin,
        } => bench::run(&bench::Options {
            rounds,
            seconds,
            bpf_stats,
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
    fn test_vm_kernels() {
        let cli = Cli::parse_from(["xtask", "test-vm", "--kernel", "6.1"]);
        let Task::TestVm { kernel, .. } = cli.task else {
            panic!("not test-vm: {cli:?}");
        };
        assert_eq!(kernel.kernels(), [vm::Kernel::V6_1]);
        let cli = Cli::parse_from(["xtask", "test-vm"]);
        let Task::TestVm { kernel, .. } = cli.task else {
            panic!("not test-vm: {cli:?}");
        };
        assert_eq!(kernel.kernels(), vm::Kernel::ALL);
        assert!(Cli::try_parse_from(["xtask", "test-vm", "--kernel", "4.19"]).is_err());
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
