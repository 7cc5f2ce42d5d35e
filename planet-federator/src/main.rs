#![expect(
    unused_crate_dependencies,
    reason = "the library uses the dependencies; this binary only calls it"
)]

use std::process::ExitCode;

use planet_cli::{bootstrap, go_flags::GoStyle};
use planet_federator::{app, cli::Cli};

fn main() -> ExitCode {
    let cli = Cli::parse_go_style();
    if cli.version {
        println!("planet-federator v{}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    cli.log.init();
    bootstrap::run_to_exit(app::run(cli, app::shutdown_signal()))
}
