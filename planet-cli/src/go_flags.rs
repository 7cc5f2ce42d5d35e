//! Go's `flag` package accepts `-long-flag[=value]`; clap wants
//! `--long-flag`. [`rewrite`] bridges the two, [`GoStyle`] parses a clap
//! command line through it, and [`parse_log_level`] takes the originals'
//! level names.

use std::ffi::OsString;

/// Rewrites Go-style `-name[=value]` arguments to `--name[=value]` when
/// `is_long_flag(name)` says `name` is one, so Go users' command lines keep
/// working. Double-dash flags, other arguments (values such as `-1h5m`) and
/// everything after `--` are left alone.
pub fn rewrite<I, T>(args: I, is_long_flag: impl Fn(&str) -> bool) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut out = Vec::new();
    let mut passthrough = false;
    for arg in args.into_iter().map(Into::into) {
        if passthrough || arg == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        let rewritten = arg.to_str().and_then(|s| {
            let body = s.strip_prefix('-').filter(|b| !b.starts_with('-'))?;
            let name = body.split('=').next()?;
            is_long_flag(name).then(|| OsString::from(format!("-{s}")))
        });
        out.push(rewritten.unwrap_or(arg));
    }
    out
}

/// Every long flag of `command` and its subcommands, and `help`.
pub fn long_flags(command: &clap::Command) -> Vec<String> {
    let mut known: Vec<String> = vec!["help".into()];
    let mut stack = vec![command];
    while let Some(c) = stack.pop() {
        known.extend(
            c.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_owned)),
        );
        stack.extend(c.get_subcommands());
    }
    known
}

/// A clap command line that also takes Go-style single-dash long flags.
pub trait GoStyle: clap::Parser {
    /// `args` with Go-style long flags rewritten (see [`rewrite`]); by
    /// default those of the command and its subcommands ([`long_flags`]).
    fn go_style_args<I, T>(args: I) -> Vec<OsString>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let known = long_flags(&Self::command());
        rewrite(args, |name| known.iter().any(|k| k == name))
    }

    /// Parses the process arguments, accepting Go-style single-dash flags.
    fn parse_go_style() -> Self {
        Self::parse_from(Self::go_style_args(std::env::args_os()))
    }

    /// Like [`GoStyle::parse_go_style`] over given arguments (first = program name).
    fn try_parse_go_style<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        Self::try_parse_from(Self::go_style_args(args))
    }
}

/// A log level as the Go originals (logrus) name them, case-insensitive.
pub fn parse_log_level(s: &str) -> Result<tracing::Level, String> {
    match s.to_ascii_lowercase().as_str() {
        "trace" => Ok(tracing::Level::TRACE),
        "debug" => Ok(tracing::Level::DEBUG),
        "info" => Ok(tracing::Level::INFO),
        "warn" | "warning" => Ok(tracing::Level::WARN),
        "error" | "fatal" | "panic" => Ok(tracing::Level::ERROR),
        other => Err(format!("not a valid log level: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter()
            .map(|a| a.into_string().expect("UTF-8"))
            .collect()
    }

    #[test]
    fn rewrites_only_what_the_predicate_names() {
        let args = [
            "prog", "-a-flag", "-b=1", "-other", "-1h5m", "--c", "-", "--", "-a-flag",
        ];
        let out = strings(rewrite(args, |name| name == "a-flag" || name == "b"));
        assert_eq!(
            out,
            [
                "prog", "--a-flag", "--b=1", "-other", "-1h5m", "--c", "-", "--", "-a-flag"
            ]
        );
    }

    #[test]
    fn lists_long_flags_of_subcommands() {
        let command = clap::Command::new("x")
            .arg(clap::Arg::new("top").long("top-flag"))
            .subcommand(clap::Command::new("sub").arg(clap::Arg::new("s").long("sub-flag")));
        let known = long_flags(&command);
        for name in ["help", "top-flag", "sub-flag"] {
            assert!(known.iter().any(|k| k == name), "{name}: {known:?}");
        }
    }

    #[test]
    fn log_levels_as_logrus_names_them() {
        assert_eq!(parse_log_level("WARNING"), Ok(tracing::Level::WARN));
        assert_eq!(parse_log_level("fatal"), Ok(tracing::Level::ERROR));
        assert!(parse_log_level("loud").is_err());
    }
}
