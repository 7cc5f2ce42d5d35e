//! Log set-up through `tracing`, honouring the Go originals' log flags.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the global subscriber. `RUST_LOG`, when set, refines the level.
pub fn init(level: tracing::Level, disable_colors: bool, disable_timestamp: bool) {
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    let ansi = !disable_colors && std::io::stderr().is_terminal();
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    if disable_timestamp {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
