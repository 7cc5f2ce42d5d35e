//! `cargo xtask build` and `cargo xtask run`.

use std::{ffi::OsString, os::unix::process::CommandExt as _, path::PathBuf};

use anyhow::{Context as _, Result};

use crate::{
    cmd::{self, say},
    setup,
};

/// Cargo profile of the agent build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Release,
    Debug,
}

impl Profile {
    /// The folder under `target/` the profile builds into.
    fn dir(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Debug => "debug",
        }
    }
}

/// `cargo build -p <packages>` in `profile`; returns `target/<profile>/`.
pub fn cargo_build(packages: &[&str], profile: Profile) -> Result<PathBuf> {
    let mut build = cmd::cargo();
    build.arg("build");
    for package in packages {
        build.args(["-p", package]);
    }
    if profile == Profile::Release {
        build.arg("--release");
    }
    cmd::run(&mut build)?;
    Ok(cmd::target_dir()?.join(profile.dir()))
}

/// Set-up, then the agent binary; returns its path.
pub fn build(profile: Profile) -> Result<PathBuf> {
    setup::run()?;
    let binary = cargo_build(&["planet-agent"], profile)?.join("planet-agent");
    say!("built {}", binary.display());
    Ok(binary)
}

/// Set-up, release build, then replaces this process with the agent run as
/// root (through `sudo -E` unless we are root): its exit status and signals
/// are the agent's own.
pub fn run(args: &[OsString]) -> Result<()> {
    let binary = build(Profile::Release)?;
    let mut agent = cmd::as_root(&binary);
    agent.args(args);
    say!("running {}", cmd::display(&agent));
    let err = agent.exec();
    Err(err).with_context(|| format!("exec `{}`", cmd::display(&agent)))
}
