//! The guest kernels: Debian's `linux-image-*-cloud-amd64` packages for
//! 5.10 (bullseye), 6.1 (bookworm) and 6.12 (bookworm-backports), fetched
//! through a private apt configuration ([`super::apt`]) and unpacked once
//! into the cache.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::apt::PrivateApt;
use crate::cmd::{self, say};

/// A kernel series of the test matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kernel {
    V5_10,
    V6_1,
    V6_12,
}

impl Kernel {
    pub const ALL: [Self; 3] = [Self::V5_10, Self::V6_1, Self::V6_12];

    /// `5.10`, `6.1`, `6.12`.
    pub fn series(self) -> &'static str {
        match self {
            Self::V5_10 => "5.10",
            Self::V6_1 => "6.1",
            Self::V6_12 => "6.12",
        }
    }

    /// The Debian suite that ships it.
    pub fn suite(self) -> &'static str {
        match self {
            Self::V5_10 => "bullseye",
            Self::V6_1 => "bookworm",
            Self::V6_12 => "bookworm-backports",
        }
    }
}

const PREFIX: &str = "linux-image-";
const SUFFIX: &str = "-cloud-amd64";

/// The kernel release (`uname -r`) of a `linux-image-<release>` package
/// name, when it is a signed cloud image of `series`.
fn release_of<'a>(package: &'a str, series: &str) -> Option<&'a str> {
    let release = package.strip_prefix(PREFIX)?;
    let abi = release.strip_suffix(SUFFIX)?;
    let rest = abi.strip_prefix(series)?;
    // 6.1 must not match 6.12: the series ends at a `.` or `-`.
    matches!(rest.chars().next(), Some('.' | '-')).then_some(release)
}

/// A release's numbers in order, for "newest": `6.12.90+deb12.1` ->
/// `[6, 12, 90, 12, 1]`, `5.10.0-32` -> `[5, 10, 0, 32]`.
fn version_key(release: &str) -> Vec<u64> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .filter_map(|part| part.parse().ok())
        .collect()
}

/// The newest cloud image of `series` among package names (one per line,
/// as `apt-cache search --names-only` prints them: `name - description`).
pub fn newest_package(series: &str, names: &str) -> Option<String> {
    names
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| release_of(name, series).is_some())
        .max_by_key(|name| {
            let release = release_of(name, series).unwrap_or_default();
            version_key(release.strip_suffix(SUFFIX).unwrap_or(release))
        })
        .map(str::to_owned)
}

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub struct Image {
    /// `uname -r` of the kernel.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` of the package.
    pub modules: PathBuf,
}

impl Image {
    fn at(dir: &Path, release: &str) -> Self {
        Self {
            release: release.to_owned(),
            vmlinuz: dir.join("boot").join(format!("vmlinuz-{release}")),
            modules: dir.join("lib").join("modules").join(release),
        }
    }
}

/// The newest image of `kernel`, downloaded and unpacked under `cache`
/// unless it already is there. When the package lists cannot be refreshed
/// (no network), the newest image already in the cache is used.
pub fn fetch(kernel: Kernel, apt: &PrivateApt, cache: &Path) -> Result<Image> {
    let images = cache.join("kernels");
    fs::create_dir_all(&images).with_context(|| format!("create {}", images.display()))?;
    let series = kernel.series();
    let found = apt
        .search(&format!(
            "^{PREFIX}{}[.-].*{SUFFIX}$",
            series.replace('.', "\\.")
        ))
        .map(|names| newest_package(series, &names));
    let package = match found {
        Ok(Some(package)) => package,
        other => {
            let why = match other {
                Err(e) => format!("{e:#}"),
                Ok(_) => format!(
                    "no {PREFIX}{series}*{SUFFIX} package in the lists of {} ({})",
                    kernel.suite(),
                    apt.sources_path().display()
                ),
            };
            let cached = newest_cached(&images, series).ok_or_else(|| {
                anyhow!(
                    "{why}; and no {series} kernel is cached in {}",
                    images.display()
                )
            })?;
            say!("warning: {why}; using the cached {cached}");
            cached
        }
    };
    let release = release_of(&package, series)
        .ok_or_else(|| anyhow!("{package} is not a {series} cloud image"))?;
    let dir = images.join(&package);
    let image = Image::at(&dir, release);
    if image.vmlinuz.is_file() {
        return Ok(image);
    }
    let debs = cache.join("debs");
    let deb = apt.download(&package, &debs)?;
    let partial = images.join(format!("{package}.partial"));
    let _ = fs::remove_dir_all(&partial);
    cmd::run(cmd::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial))?;
    fs::rename(&partial, &dir)
        .with_context(|| format!("rename {} to {}", partial.display(), dir.display()))?;
    if !image.vmlinuz.is_file() {
        bail!("{} has no {}", deb.display(), image.vmlinuz.display());
    }
    say!("unpacked {package} into {}", dir.display());
    Ok(image)
}

/// The newest fully unpacked image of `series` in `images`.
fn newest_cached(images: &Path, series: &str) -> Option<String> {
    let names: Vec<String> = fs::read_dir(images)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("boot").is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    newest_package(series, &names.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEARCH: &str = "\
linux-image-5.10.0-30-cloud-amd64 - Linux 5.10 for x86-64 cloud (signed)
linux-image-5.10.0-32-cloud-amd64 - Linux 5.10 for x86-64 cloud (signed)
linux-image-5.10.0-32-cloud-amd64-dbg - Debug symbols
linux-image-6.1.0-47-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)
linux-image-6.1.0-50-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)
linux-image-6.1.0-50-cloud-amd64-unsigned - Linux 6.1 for x86-64 cloud
linux-image-6.12.90+deb12-cloud-amd64 - Linux 6.12 for x86-64 cloud (signed)
linux-image-6.12.90+deb12.1-cloud-amd64 - Linux 6.12 for x86-64 cloud (signed)
linux-image-6.12.9+deb12-cloud-amd64 - Linux 6.12 for x86-64 cloud (signed)
linux-image-cloud-amd64 - Linux for x86-64 cloud (meta-package)
";

    #[test]
    fn newest_signed_image_per_series() {
        assert_eq!(
            newest_package("5.10", SEARCH).as_deref(),
            Some("linux-image-5.10.0-32-cloud-amd64")
        );
        assert_eq!(
            newest_package("6.1", SEARCH).as_deref(),
            Some("linux-image-6.1.0-50-cloud-amd64")
        );
        assert_eq!(
            newest_package("6.12", SEARCH).as_deref(),
            Some("linux-image-6.12.90+deb12.1-cloud-amd64")
        );
        assert_eq!(newest_package("6.6", SEARCH), None);
    }

    #[test]
    fn release_is_the_uname() {
        assert_eq!(
            release_of("linux-image-6.12.95+deb12-cloud-amd64", "6.12"),
            Some("6.12.95+deb12-cloud-amd64")
        );
        assert_eq!(
            release_of("linux-image-6.12.95+deb12-cloud-amd64", "6.1"),
            None
        );
        assert_eq!(release_of("linux-image-cloud-amd64", "6.1"), None);
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_key("6.12.95+deb12") > version_key("6.12.9+deb12"));
        assert!(version_key("6.12.90+deb12.1") > version_key("6.12.90+deb12"));
        assert!(version_key("5.10.0-32") > version_key("5.10.0-4"));
    }
}
