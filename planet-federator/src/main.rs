use std::process::ExitCode;

use planet_cli::logging;
use planet_federator::{app, cli::Cli};

fn main() -> ExitCode {
    let cli = Cli::parse_go_style();
    if cli.version {
        println!("planet-federator v{}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    logging::init(
        cli.log.log_level,
        cli.log.log_disable_colors,
        cli.log.log_disable_timestamp,
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
    let result: anyhow::Result<()> = runtime
        .block_on(app::run(cli, app::shutdown_signal()))
        .map_err(anyhow::Error::from);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}
