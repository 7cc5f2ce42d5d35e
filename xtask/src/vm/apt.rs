//! apt with a private configuration: its own sources list (bullseye,
//! bookworm, bookworm-backports on the machine's Debian mirror), package
//! lists and cache under xtask's cache folder. The machine's own apt
//! configuration and state are only read, never changed, and nothing needs
//! root.

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::kernel::Kernel;
use crate::cmd::{self, say};

/// The mirror when the machine's sources name no Debian one.
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Overrides the mirror.
const MIRROR_ENV: &str = "PLANET_VM_DEBIAN_MIRROR";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Package lists older than this are refreshed.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

pub struct PrivateApt {
    root: PathBuf,
}

impl PrivateApt {
    /// Sets up `root` (sources list, lists and cache folders) for `mirror`.
    pub fn new(root: &Path, mirror: &str) -> Result<Self> {
        let apt = Self {
            root: root.to_owned(),
        };
        for dir in [
            apt.lists().join("partial"),
            apt.cache().join("archives/partial"),
        ] {
            fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let sources = sources_list(mirror);
        if fs::read_to_string(apt.sources_path()).ok().as_deref() != Some(sources.as_str()) {
            fs::write(apt.sources_path(), sources)
                .with_context(|| format!("write {}", apt.sources_path().display()))?;
            // New sources: the lists must be fetched again.
            let _ = fs::remove_file(apt.stamp());
        }
        Ok(apt)
    }

    pub fn sources_path(&self) -> PathBuf {
        self.root.join("sources.list")
    }

    fn lists(&self) -> PathBuf {
        self.root.join("lists")
    }

    fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    fn stamp(&self) -> PathBuf {
        self.root.join("updated.stamp")
    }

    /// The `-o` options that point apt at this configuration only.
    fn options(&self) -> Vec<OsString> {
        let mut options = Vec::new();
        for (key, value) in [
            ("Dir::Etc::SourceList", self.sources_path().into_os_string()),
            ("Dir::Etc::SourceParts", "-".into()),
            ("Dir::State::Lists", self.lists().into_os_string()),
            ("Dir::Cache", self.cache().into_os_string()),
            // Our own lists need no lock on the machine's apt.
            ("Debug::NoLocking", "1".into()),
            // Only the Packages indices: no translations, no AppStream data.
            ("Acquire::Languages", "none".into()),
            (
                "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled",
                "false".into(),
            ),
            (
                "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled",
                "false".into(),
            ),
            (
                "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled",
                "false".into(),
            ),
            // As root, do not hand downloads to the `_apt` user, who cannot
            // write into a home folder (ignored when not root).
            ("APT::Sandbox::User", "root".into()),
        ] {
            let mut option = OsString::from(key);
            option.push("=");
            option.push(value);
            options.push("-o".into());
            options.push(option);
        }
        options
    }

    /// `program` with [`Self::options`].
    fn command(&self, program: &str) -> Command {
        let mut command = cmd::new(program);
        command.args(self.options());
        command
    }

    /// `apt-get update` of the private lists when they are missing or
    /// older than a day.
    pub fn update_if_stale(&self) -> Result<()> {
        let fresh = fs::metadata(self.stamp())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < LISTS_MAX_AGE);
        if fresh {
            return Ok(());
        }
        say!(
            "refreshing the private package lists ({})",
            self.sources_path().display()
        );
        // Progress to stderr: stdout is for the table.
        cmd::run(
            self.command("apt-get")
                .args(["-q", "update"])
                .stdout(std::io::stderr()),
        )?;
        fs::write(self.stamp(), "").with_context(|| format!("write {}", self.stamp().display()))
    }

    /// `apt-cache search --names-only <regex>`.
    pub fn search(&self, regex: &str) -> Result<String> {
        cmd::output(
            self.command("apt-cache")
                .args(["search", "--names-only"])
                .arg(regex),
        )
    }

    /// The `.deb` of `package` in `dir`, downloaded unless already there.
    pub fn download(&self, package: &str, dir: &Path) -> Result<PathBuf> {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        if let Some(deb) = cached_deb(dir, package) {
            return Ok(deb);
        }
        say!("downloading {package}");
        cmd::run(
            self.command("apt-get")
                .args(["-q", "download", package])
                .stdout(std::io::stderr())
                .current_dir(dir),
        )?;
        cached_deb(dir, package).ok_or_else(|| {
            anyhow!(
                "apt-get download left no {package}_*.deb in {}",
                dir.display()
            )
        })
    }
}

/// `<package>_<version>_<arch>.deb` in `dir`.
fn cached_deb(dir: &Path, package: &str) -> Option<PathBuf> {
    let prefix = format!("{package}_");
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
}

/// The private sources list: every suite of the kernel matrix.
pub fn sources_list(mirror: &str) -> String {
    let mut suites: Vec<&str> = Kernel::ALL.iter().map(|k| k.suite()).collect();
    suites.dedup();
    suites
        .iter()
        .map(|suite| format!("deb [signed-by={KEYRING}] {mirror} {suite} main\n"))
        .collect()
}

/// The Debian mirror: `$PLANET_VM_DEBIAN_MIRROR`, else the first
/// non-security Debian URI of the machine's apt sources, else deb.debian.org.
pub fn mirror() -> Result<String> {
    if let Some(mirror) = std::env::var_os(MIRROR_ENV) {
        return mirror
            .into_string()
            .map_err(|m| anyhow!("{MIRROR_ENV} is not UTF-8: {m:?}"));
    }
    let mut texts = Vec::new();
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        texts.extend(paths.iter().filter_map(|p| fs::read_to_string(p).ok()));
    }
    texts.extend(fs::read_to_string("/etc/apt/sources.list").ok());
    let found = texts.iter().find_map(|text| debian_mirror(text));
    match found {
        Some(mirror) => Ok(mirror),
        None => {
            say!("no Debian mirror in /etc/apt; using {DEFAULT_MIRROR}");
            Ok(DEFAULT_MIRROR.to_owned())
        }
    }
}

/// The first Debian archive URI (not a security one) in a one-line-style
/// (`deb [opts] uri suite comps`) or deb822 (`URIs: uri`) sources text.
fn debian_mirror(text: &str) -> Option<String> {
    let is_archive = |uri: &str| {
        let uri = uri.trim_end_matches('/');
        uri.ends_with("/debian") && !uri.contains("security")
    };
    for line in text.lines().map(str::trim) {
        let uris: Vec<&str> = if let Some(rest) = line.strip_prefix("URIs:") {
            rest.split_whitespace().collect()
        } else if let Some(rest) = line.strip_prefix("deb ") {
            let rest = match rest.trim_start().strip_prefix('[') {
                Some(opts) => opts.split_once(']').map_or("", |(_, r)| r),
                None => rest,
            };
            rest.split_whitespace().take(1).collect()
        } else {
            continue;
        };
        if let Some(uri) = uris.into_iter().find(|u| is_archive(u)) {
            return Some(uri.trim_end_matches('/').to_owned());
        }
    }
    None
}

/// Fails early, with the fix, when apt is missing.
pub fn require_apt() -> Result<()> {
    for tool in ["apt-get", "apt-cache", "dpkg-deb"] {
        if cmd::which(tool).is_none() && !Path::new("/usr/bin").join(tool).is_file() {
            bail!("{tool} not found: test-vm fetches Debian kernels with apt");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_cover_the_matrix() {
        let sources = sources_list("http://m/debian");
        assert_eq!(
            sources,
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://m/debian bullseye main\n\
             deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://m/debian bookworm main\n\
             deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://m/debian bookworm-backports main\n"
        );
    }

    #[test]
    fn mirror_from_deb822_skips_security() {
        let text = "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n\
                    Types: deb\nURIs: http://deb.debian.org/debian/\nSuites: bookworm\n";
        assert_eq!(
            debian_mirror(text).as_deref(),
            Some("http://deb.debian.org/debian")
        );
    }

    #[test]
    fn mirror_from_one_line_sources() {
        let text = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://ftp.de.debian.org/debian bookworm main\n";
        assert_eq!(
            debian_mirror(text).as_deref(),
            Some("http://ftp.de.debian.org/debian")
        );
        assert_eq!(
            debian_mirror("deb http://archive.ubuntu.com/ubuntu noble main\n"),
            None
        );
    }
}
