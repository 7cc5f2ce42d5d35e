//! Running external commands with errors that say what was run, plus the few
//! facts about the environment every task needs (root, paths, target dir).

use std::{
    env,
    ffi::{OsStr, OsString},
    fmt::Write as _,
    fs,
    os::unix::{fs::MetadataExt as _, process::ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
};

use anyhow::{Context as _, Result, anyhow, bail};

/// Prints a progress line from xtask itself (stderr, so tables on stdout stay clean).
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("==> {}", format_args!($($arg)*))
    };
}
pub(crate) use say;

/// A command for `program` whose `PATH` also holds cargo's bin folder, where
/// `cargo install` puts bpf-linker (rustup normally adds it, a bare CI shell
/// may not).
pub fn new(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PATH", tool_path());
    cmd
}

/// `cargo`, run from the workspace root.
pub fn cargo() -> Command {
    let mut cmd = new("cargo");
    cmd.current_dir(workspace_root());
    cmd
}

/// A command that runs `program` as root: directly when we are root, else
/// through `sudo -E`, passing on the tool `PATH` and the rustup/cargo homes
/// (sudo's `secure_path` and `HOME` reset would otherwise lose them).
pub fn as_root(program: impl AsRef<OsStr>) -> Command {
    if is_root() {
        return new(program);
    }
    let mut cmd = new("sudo");
    cmd.arg("-E").arg("env");
    for (key, value) in [
        ("PATH", tool_path()),
        ("CARGO_HOME", cargo_home().into_os_string()),
        ("RUSTUP_HOME", rustup_home().into_os_string()),
    ] {
        let mut pair = OsString::from(key);
        pair.push("=");
        pair.push(value);
        cmd.arg(pair);
    }
    cmd.arg(program);
    cmd
}

/// Runs `cmd` with inherited stdio, echoing it first; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    eprintln!("$ {line}");
    let status = cmd.status().with_context(|| spawn_error(cmd))?;
    if !status.success() {
        bail!("`{line}` failed: {}", describe(status));
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout; the error carries its stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| spawn_error(cmd))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "`{}` failed: {}\n{}",
            display(cmd),
            describe(out.status),
            stderr.trim_end()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{}` printed non-UTF-8", display(cmd)))
}

/// Whether `cmd` runs and exits 0 (all output discarded).
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cmd` as a shell-like line, with the variables set on it, for messages.
pub fn display(cmd: &Command) -> String {
    let mut line = String::new();
    for (key, value) in cmd.get_envs() {
        // PATH is set on every command by `new`; showing it is noise.
        if let (Some(value), false) = (value, key == "PATH") {
            let _ = write!(line, "{}={} ", key.to_string_lossy(), quote(value));
        }
    }
    line.push_str(&quote(cmd.get_program()));
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    line
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn spawn_error(cmd: &Command) -> String {
    let program = cmd.get_program().to_string_lossy();
    if program == "sudo" {
        format!(
            "could not start `{}`: this needs root; run as root or install sudo",
            display(cmd)
        )
    } else {
        format!("could not start `{program}` (is it installed and on PATH?)")
    }
}

/// "exit status 3" or "killed by signal 9".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// Whether this process runs with effective uid 0 (`/proc/self` belongs to the euid).
pub fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn home() -> PathBuf {
    env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

/// `$CARGO_HOME`, else `~/.cargo`.
pub fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME").map_or_else(|| home().join(".cargo"), PathBuf::from)
}

/// `$RUSTUP_HOME`, else `~/.rustup`.
pub fn rustup_home() -> PathBuf {
    env::var_os("RUSTUP_HOME").map_or_else(|| home().join(".rustup"), PathBuf::from)
}

/// `$XDG_CACHE_HOME/planet-xtask`, else `~/.cache/planet-xtask`.
pub fn cache_dir() -> PathBuf {
    env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map_or_else(|| home().join(".cache"), PathBuf::from)
        .join("planet-xtask")
}

/// `PATH` with cargo's bin folder in front unless it is already on it.
pub fn tool_path() -> OsString {
    let bin = cargo_home().join("bin");
    let current = env::var_os("PATH").unwrap_or_default();
    if env::split_paths(&current).any(|p| p == bin) {
        return current;
    }
    env::join_paths(std::iter::once(bin).chain(env::split_paths(&current))).unwrap_or(current)
}

/// The first `name` on [`tool_path`].
pub fn which(name: &str) -> Option<PathBuf> {
    env::split_paths(&tool_path())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new("."))
}

/// Cargo's target directory for this workspace (honours `CARGO_TARGET_DIR`
/// and `.cargo/config.toml`).
pub fn target_dir() -> Result<PathBuf> {
    let json = output(cargo().args(["metadata", "--format-version", "1", "--no-deps"]))?;
    let value: serde_json::Value = serde_json::from_str(&json).context("parse `cargo metadata`")?;
    value
        .get("target_directory")
        .and_then(serde_json::Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("`cargo metadata` has no target_directory"))
}

/// A duration as `1m 02.3s` / `4.1s`.
pub fn human(duration: std::time::Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs >= 60.0 {
        let minutes = (secs / 60.0).floor();
        format!("{minutes:.0}m {:04.1}s", secs - minutes * 60.0)
    } else {
        format!("{secs:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let mut cmd = Command::new("cargo");
        cmd.args(["install", "--features", "llvm-22", "a b", "it's"])
            .env("LLVM_PREFIX", "/x/llvm-prefix");
        assert_eq!(
            display(&cmd),
            r"LLVM_PREFIX=/x/llvm-prefix cargo install --features llvm-22 'a b' 'it'\''s'"
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_millis(4_100)), "4.1s");
        assert_eq!(human(Duration::from_millis(62_300)), "1m 02.3s");
    }

    #[test]
    fn tool_path_has_cargo_bin() {
        let bin = cargo_home().join("bin");
        assert!(env::split_paths(&tool_path()).any(|p| p == bin));
    }
}
