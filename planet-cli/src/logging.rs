//! Log set-up through `tracing`, honouring the Go originals' log flags.

use std::io::IsTerminal;

use clap::{ArgAction, Args, builder::BoolishValueParser};
use tracing_subscriber::{EnvFilter, fmt};

use crate::go_flags::parse_log_level;

/// The Go originals' log flags, for every subcommand.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log level (trace, debug, info, warn, error; also warning, fatal, panic)
    #[arg(long, global = true, default_value = "info", value_parser = parse_log_level)]
    pub log_level: tracing::Level,

    /// Disable timestamp on logger
    #[arg(long, global = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub log_disable_timestamp: bool,

    /// Disable colors on logger
    #[arg(long, global = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub log_disable_colors: bool,
}

impl LogArgs {
    /// Installs the global subscriber these flags ask for (see [`init`]).
    pub fn init(&self) {
        init(
            self.log_level,
            self.log_disable_colors,
            self.log_disable_timestamp,
        );
    }
}

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
