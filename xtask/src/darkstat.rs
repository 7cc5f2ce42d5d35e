//! darkstat 3.0.721 built from Debian trixie's source, for the fallback
//! traffic source tests (Debian bookworm's package is 3.0.719, which has
//! no `/metrics`; that one comes from [`super::setup::APT_PACKAGES`]).
//!
//! The source comes through apt with a **private** sources list, lists and
//! cache under the target folder, so the machine's own apt configuration
//! is neither read for packages nor changed; only its mirror URI is reused.
//! The result is `<target>/darkstat-3.0.721/darkstat`, where the tests look
//! for it; a re-run with that binary in place does nothing.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, say};

pub const VERSION: &str = "3.0.721";

/// The folder the build lives in, below cargo's target folder.
pub fn dir(target: &Path) -> PathBuf {
    target.join(format!("darkstat-{VERSION}"))
}

/// Builds darkstat [`VERSION`] unless it is already there.
pub fn ensure() -> Result<()> {
    let dir = dir(&cmd::target_dir()?);
    let binary = dir.join("darkstat");
    if reports_version(&binary) {
        return Ok(());
    }
    say!("building darkstat {VERSION} from Debian trixie's source");
    fs::create_dir_all(dir.join("apt/lists/partial"))
        .and_then(|()| fs::create_dir_all(dir.join("apt/cache/archives/partial")))
        .with_context(|| format!("create {}", dir.display()))?;
    let mirror = debian_mirror()?;
    let sources = dir.join("apt/sources.list");
    fs::write(&sources, format!("deb-src {mirror} trixie main\n"))
        .with_context(|| format!("write {}", sources.display()))?;
    let apt = |args: &[&str]| {
        let mut c = cmd::new("apt-get");
        c.arg("-o")
            .arg(format!("Dir::Etc::SourceList={}", sources.display()))
            .args(["-o", "Dir::Etc::SourceParts=-"])
            .arg("-o")
            .arg(format!(
                "Dir::State::Lists={}",
                dir.join("apt/lists").display()
            ))
            .arg("-o")
            .arg(format!("Dir::Cache={}", dir.join("apt/cache").display()))
            .args(args)
            .current_dir(&dir);
        c
    };
    cmd::run(&mut apt(&["update"]))?;
    let tarball = dir.join(format!("darkstat_{VERSION}.orig.tar.gz"));
    // Only the upstream tarball is needed; apt verifies its hash. Some
    // mirrors lack the Debian packaging files, which fails the command
    // after the tarball arrived, so the tarball decides.
    if let Err(err) = cmd::run(&mut apt(&["source", "--download-only", "darkstat"])) {
        if !tarball.exists() {
            return Err(err);
        }
        say!("darkstat: {err:#}; the upstream tarball arrived, building from it");
    }
    if !tarball.exists() {
        bail!(
            "trixie's darkstat source is no longer {VERSION}: no {}",
            tarball.display()
        );
    }
    let src = dir.join(format!("darkstat-{VERSION}"));
    let _ = fs::remove_dir_all(&src);
    cmd::run(cmd::new("tar").arg("xzf").arg(&tarball).arg("-C").arg(&dir))?;
    for step in [
        &["autoconf"][..],
        &["autoheader"],
        &["./configure"],
        &["make"],
    ] {
        cmd::run(cmd::new(step[0]).args(&step[1..]).current_dir(&src))?;
    }
    fs::copy(src.join("darkstat"), &binary)
        .with_context(|| format!("copy the built darkstat to {}", binary.display()))?;
    if !reports_version(&binary) {
        bail!("{} does not report darkstat {VERSION}", binary.display());
    }
    Ok(())
}

fn reports_version(binary: &Path) -> bool {
    binary.exists()
        && cmd::output(cmd::new(binary).arg("--version"))
            .is_ok_and(|v| v.starts_with(&format!("darkstat {VERSION} ")))
}

/// The Debian mirror this machine's apt uses.
fn debian_mirror() -> Result<String> {
    let mut texts = Vec::new();
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        texts.extend(paths.iter().filter_map(|p| fs::read_to_string(p).ok()));
    }
    texts.extend(fs::read_to_string("/etc/apt/sources.list").ok());
    texts
        .iter()
        .find_map(|text| mirror_in(text))
        .context("no Debian mirror (a URI ending in /debian) in /etc/apt/sources.list{,.d}")
}

/// The first URI ending in `/debian` in a one-line or deb822 sources file.
fn mirror_in(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .flat_map(|line| {
            let uris = line
                .strip_prefix("URIs:")
                .map(str::split_whitespace)
                .into_iter()
                .flatten();
            let one_line = line
                .strip_prefix("deb ")
                .or_else(|| line.strip_prefix("deb-src "))
                .map(|rest| match rest.trim_start().strip_prefix('[') {
                    Some(options) => options.split_once(']').map_or("", |(_, r)| r),
                    None => rest,
                })
                .into_iter()
                .flat_map(str::split_whitespace)
                .take(1);
            uris.chain(one_line).collect::<Vec<_>>()
        })
        .map(|uri| uri.trim_end_matches('/'))
        .find(|uri| uri.ends_with("/debian"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_from_deb822_and_one_line_files() {
        let deb822 = "Types: deb\n# a comment\nURIs: http://mirror.invalid/debian-security\n\
                      Suites: bookworm-security\n\nTypes: deb\nURIs: http://mirror.invalid/debian/\n";
        assert_eq!(
            mirror_in(deb822).as_deref(),
            Some("http://mirror.invalid/debian")
        );
        let one_line = "# deb http://old.invalid/debian bookworm main\n\
                        deb [arch=amd64 signed-by=/k.gpg] http://m.invalid/debian bookworm main\n";
        assert_eq!(
            mirror_in(one_line).as_deref(),
            Some("http://m.invalid/debian")
        );
        assert_eq!(mirror_in("deb http://x.invalid/ubuntu jammy main\n"), None);
    }
}
