//! `cargo xtask dist`: release tarballs of the agent and the federator,
//! `planet-<name>_v<version>_linux_<arch>.tar.gz`, each holding one folder
//! of that name with the binary, its systemd unit and a README, plus a
//! `sha256sum`-format checksum file over the tarballs. They land in
//! `target/dist/`.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    cmd::{self, say},
    run::{self, Profile},
    setup,
};

/// A binary shipped as its own tarball.
struct Component {
    name: &'static str,
    /// Files besides the binary, relative to the workspace root, and their
    /// name in the tarball.
    extra: &'static [(&'static str, &'static str)],
}

const COMPONENTS: [Component; 2] = [
    Component {
        name: "planet-agent",
        extra: &[
            ("setup/systemd/planet-agent.service", "planet-agent.service"),
            ("README.md", "README.md"),
        ],
    },
    Component {
        name: "planet-federator",
        extra: &[
            (
                "setup/systemd/planet-federator.service",
                "planet-federator.service",
            ),
            ("planet-federator/README.md", "README.md"),
        ],
    },
];

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `dist` produced.
#[derive(Debug)]
pub struct Artifacts {
    pub dir: PathBuf,
    /// One tarball per component, in [`COMPONENTS`] order.
    pub tarballs: Vec<PathBuf>,
    pub checksums: PathBuf,
}

/// `linux_amd64` style platform of this build.
pub fn platform() -> Result<String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => bail!("no release name for architecture {other}"),
    };
    Ok(format!("{}_{arch}", std::env::consts::OS))
}

/// `planet-agent_v0.1.0_linux_amd64`.
pub fn release_name(component: &str) -> Result<String> {
    Ok(format!("{component}_v{VERSION}_{}", platform()?))
}

/// The checksum file's name.
pub fn checksums_name() -> String {
    format!("planet_v{VERSION}_sha256sums.txt")
}

/// Set-up, build, then pack. `profile` Debug packs the debug binaries (the
/// test suite uses that to avoid a second, release, build).
pub fn run(profile: Profile) -> Result<Artifacts> {
    setup::run()?;
    let bin_dir = match profile {
        Profile::Release => run::cargo_build(&["planet-agent", "planet-federator"], profile)?,
        // The test suite's selection, so nothing is rebuilt after its cargo test.
        Profile::Debug => {
            cmd::run(cmd::cargo().arg("build").args(crate::test::HOST_TARGETS))?;
            cmd::target_dir()?.join("debug")
        }
    };
    pack(&bin_dir, &cmd::target_dir()?.join("dist"))
}

/// Packs the binaries found in `bin_dir` into `out`.
pub fn pack(bin_dir: &Path, out: &Path) -> Result<Artifacts> {
    let root = cmd::workspace_root();
    if out.exists() {
        fs::remove_dir_all(out).with_context(|| format!("clear {}", out.display()))?;
    }
    let mut tarballs = Vec::new();
    for component in &COMPONENTS {
        let name = release_name(component.name)?;
        let stage = out.join("stage").join(&name);
        fs::create_dir_all(&stage).with_context(|| format!("create {}", stage.display()))?;
        let binary = bin_dir.join(component.name);
        let staged = stage.join(component.name);
        copy(&binary, &staged)?;
        // Debug info is for developers, not hosts (a debug build's is ~100 MB).
        cmd::run(cmd::new("strip").arg("--strip-debug").arg(&staged))?;
        for (from, to) in component.extra {
            copy(&root.join(from), &stage.join(to))?;
        }
        let tarball = out.join(format!("{name}.tar.gz"));
        // Reproducible: fixed owner, mode and time, sorted names.
        cmd::run(
            cmd::new("tar")
                .args([
                    "--sort=name",
                    "--owner=0",
                    "--group=0",
                    "--numeric-owner",
                    "--mtime=@0",
                    "--mode=go-w",
                    "-czf",
                ])
                .arg(&tarball)
                .arg("-C")
                .arg(out.join("stage"))
                .arg(&name),
        )?;
        tarballs.push(tarball);
    }
    fs::remove_dir_all(out.join("stage")).context("remove the staging folder")?;
    let checksums = out.join(checksums_name());
    let mut sha = cmd::new("sha256sum");
    sha.current_dir(out);
    for tarball in &tarballs {
        sha.arg(tarball.file_name().context("tarball name")?);
    }
    let sums = cmd::output(&mut sha)?;
    fs::write(&checksums, sums).with_context(|| format!("write {}", checksums.display()))?;
    for path in tarballs.iter().chain([&checksums]) {
        say!("dist: {}", path.display());
    }
    Ok(Artifacts {
        dir: out.to_path_buf(),
        tarballs,
        checksums,
    })
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("copy {} to {}", from.display(), to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_release_scheme() -> Result<()> {
        let name = release_name("planet-agent")?;
        assert!(name.starts_with(&format!("planet-agent_v{VERSION}_linux_")));
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(name, format!("planet-agent_v{VERSION}_linux_amd64"));
        }
        assert_eq!(
            checksums_name(),
            format!("planet_v{VERSION}_sha256sums.txt")
        );
        Ok(())
    }

    #[test]
    fn every_shipped_file_exists() {
        for component in &COMPONENTS {
            for (from, _) in component.extra {
                assert!(
                    cmd::workspace_root().join(from).is_file(),
                    "{} ships {from}, which is missing",
                    component.name
                );
            }
        }
    }
}
