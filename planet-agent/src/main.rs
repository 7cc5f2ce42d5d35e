use std::process::ExitCode;

use planet_agent::{app, cli::Cli, logging};

fn main() -> ExitCode {
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
