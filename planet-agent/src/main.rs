use std::process::ExitCode;

use planet_agent::{allocator, app, cli::Cli, collect::ebpf};
use planet_cli::logging;

fn main() -> ExitCode {
    let allocator_tuned = allocator::tune();
    let cli = Cli::parse_go_style();
    if cli.version {
        println!("planet-agent v{}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    logging::init(
        cli.log_level,
        cli.log_disable_colors,
        cli.log_disable_timestamp,
    );
    if !allocator_tuned {
        tracing::debug!("allocator thresholds left to the allocator (not glibc, or refused)");
    }
    if cli.check_flow_modes {
        check_flow_modes(&cli);
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
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
            Err(err) => println!(
                "flow-mode {mode}: unavailable: {}",
                planet_cli::errors::chain(&err)
            ),
        }
    }
}
