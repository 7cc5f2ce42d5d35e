use std::process::ExitCode;

use planet_agent::{allocator, app, cli::Cli, collect::ebpf};
use planet_cli::{bootstrap, errors, go_flags::GoStyle as _};

fn main() -> ExitCode {
    let allocator_tuned = allocator::tune();
    let cli = Cli::parse_go_style();
    if cli.version {
        println!("planet-agent v{}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    cli.log.init();
    if !allocator_tuned {
        tracing::debug!("allocator thresholds left to the allocator (not glibc, or refused)");
    }
    if cli.check_flow_modes {
        check_flow_modes(&cli);
        return ExitCode::SUCCESS;
    }
    bootstrap::run_to_exit(app::run(cli))
}

/// `-check-flow-modes`: one line per probe mode, `ok` or the reason it
/// cannot run on this kernel (the lines `cargo xtask test-vm` reads).
fn check_flow_modes(cli: &Cli) {
    let limits = ebpf::MapLimits {
        flows: cli.task_flow_max_flows,
    };
    for mode in ebpf::ProbeMode::ALL {
        match ebpf::check(mode, limits, &cli.kernel_btf) {
            Ok(()) => println!("flow-mode {mode}: ok"),
            Err(err) => println!("flow-mode {mode}: unavailable: {}", errors::chain(&err)),
        }
    }
}
