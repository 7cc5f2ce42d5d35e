//! `cargo xtask setup`: everything a fresh Debian/Ubuntu machine with rustup
//! needs to build, run and test Planet. Each part checks first and does
//! nothing when its work is already done, so a re-run is a fast no-op.

use std::{
    fs, io,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cmd::{self, say};

/// Debian packages the tests and tools need. Add new ones here.
pub const APT_PACKAGES: &[&str] = &[
    "iproute2",
    "procps",
    "util-linux",
    "curl",
    "ca-certificates",
    // darkstat 3.0.719 for the fallback traffic source tests, and what
    // building 3.0.721 from source needs (see `darkstat.rs`).
    "darkstat",
    "autoconf",
    "make",
    "gcc",
    "libpcap-dev",
    "zlib1g-dev",
    // Real servers for planet-federator's integration tests.
    "prometheus",
    "influxdb",
    "influxdb-client",
    // `cargo xtask test-vm`: qemu guests with a busybox initramfs.
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "binutils",
    "xz-utils",
    // Headless browser for the agent page test (planet-agent/tests/page.rs).
    "chromium",
    // rsvg-convert: the fleet map test renders its SVG to PNG.
    "librsvg2-bin",
    "fonts-dejavu-core",
    // `systemd-analyze verify` of the units in setup/systemd (offline).
    "systemd",
];

/// PyPI tools of the deployment checks, installed into [`python_venv`].
pub const PYTHON_REQUIREMENTS: &[&str] = &[
    // ansible-playbook: syntax check and a local run of setup/ansible.
    "ansible-core==2.19.14",
    // Kubernetes schemas bundled in the package (no cluster, no download);
    // its jsonschema also checks the in-repo Prometheus Operator schema.
    "kubernetes-validate==1.37.0",
];

/// The bpf-linker release the eBPF build uses.
const BPF_LINKER_VERSION: &str = "0.13.0";

const TRACEFS: &str = "/sys/kernel/tracing";

pub fn run() -> Result<()> {
    let start = Instant::now();
    toolchains()?;
    bpf_linker()?;
    cargo_fuzz()?;
    apt_packages()?;
    crate::darkstat::ensure()?;
    python_tools()?;
    tracefs();
    say!("setup: done in {}", cmd::human(start.elapsed()));
    Ok(())
}

/// The cargo-fuzz release the inventory fuzz targets use.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// cargo-fuzz, for the bounded fuzz runs of `cargo xtask test`.
fn cargo_fuzz() -> Result<()> {
    let installed = cmd::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION))
        .unwrap_or(false);
    if !installed {
        say!("installing cargo-fuzz {CARGO_FUZZ_VERSION}");
        cmd::run(cmd::new("cargo").args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ_VERSION,
        ]))?;
    }
    Ok(())
}

/// Nightly (for the eBPF crate) with rust-src, and stable's rustfmt + clippy.
fn toolchains() -> Result<()> {
    if !cmd::succeeds(cmd::new("rustup").arg("--version")) {
        bail!("rustup not found: install it first (https://rustup.rs), then re-run");
    }
    if !cmd::succeeds(cmd::new("rustup").args(["run", "nightly", "rustc", "-V"])) {
        say!("installing the nightly toolchain (the eBPF crate needs it)");
        cmd::run(cmd::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    ensure_components("nightly", &["rust-src"])?;
    ensure_components("stable", &["rustfmt", "clippy"])?;
    Ok(())
}

fn ensure_components(toolchain: &str, components: &[&str]) -> Result<()> {
    let installed = cmd::output(cmd::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        toolchain,
    ]))?;
    let missing: Vec<&str> = components
        .iter()
        .copied()
        .filter(|c| !has_component(&installed, c))
        .collect();
    if !missing.is_empty() {
        cmd::run(
            cmd::new("rustup")
                .args(["component", "add", "--toolchain", toolchain])
                .args(&missing),
        )?;
    }
    Ok(())
}

/// `rustup component list --installed` prints `rust-src`, or the name and the
/// host triple: `clippy-x86_64-unknown-linux-gnu`.
fn has_component(list: &str, component: &str) -> bool {
    list.lines().map(str::trim).any(|line| {
        line == component
            || line
                .strip_prefix(component)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|triple| triple.starts_with(std::env::consts::ARCH))
    })
}

/// What bpf-linker must be linked against: the nightly toolchain's libLLVM.
struct Nightly {
    /// `commit-hash: ...` from `rustc +nightly -vV`.
    commit: String,
    /// `22.1.4`.
    llvm_version: String,
    /// `22`.
    llvm_major: String,
    /// `$sysroot/lib/libLLVM.so.<maj>.<min>-rust-<ver>-nightly`.
    libllvm: PathBuf,
    /// rustup rewrites this file whenever the toolchain is installed or updated.
    manifest: PathBuf,
}

impl Nightly {
    fn probe() -> Result<Self> {
        let verbose = cmd::output(cmd::new("rustc").args(["+nightly", "-vV"]))?;
        let field = |name: &str| {
            verbose
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .ok_or_else(|| anyhow!("`rustc +nightly -vV` has no `{name}` line:\n{verbose}"))
        };
        let commit = field("commit-hash:")?;
        let llvm_version = field("LLVM version:")?;
        let llvm_major = llvm_version
            .split('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        let sysroot = cmd::output(cmd::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
        let lib = Path::new(sysroot.trim()).join("lib");
        let mut candidates: Vec<PathBuf> = fs::read_dir(&lib)
            .with_context(|| format!("read {}", lib.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| file_name(p).starts_with("libLLVM.so."))
            .collect();
        candidates.sort();
        let libllvm = candidates.pop().ok_or_else(|| {
            anyhow!(
                "no libLLVM.so.* in {}: bpf-linker is built against the nightly toolchain's LLVM",
                lib.display()
            )
        })?;
        let manifest = lib.join("rustlib").join("multirust-channel-manifest.toml");
        Ok(Self {
            commit,
            llvm_version,
            llvm_major,
            libllvm,
            manifest,
        })
    }

    /// What the stamp file holds after a build against this toolchain.
    fn stamp(&self) -> String {
        format!(
            "bpf-linker {BPF_LINKER_VERSION}\nfeatures llvm-{}\ncommit-hash {}\nLLVM {}\nlib {}\n",
            self.llvm_major,
            self.commit,
            self.llvm_version,
            file_name(&self.libllvm),
        )
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// bpf-linker 0.13.0 linked against the nightly toolchain's own libLLVM.
///
/// The library is reached through a prefix folder of symlinks, which is also
/// the binary's RUNPATH, so bpf-linker runs outside `rustup run nightly` too.
/// A stamp next to the prefix records the nightly it was built for; a nightly
/// update changes the stamp and triggers a rebuild (about 1.5 minutes).
fn bpf_linker() -> Result<()> {
    let nightly = Nightly::probe()?;
    let cache = cmd::cache_dir();
    let prefix = cache.join("llvm-prefix");
    let stamp_path = cache.join("bpf-linker.stamp");
    link_prefix(&prefix.join("lib"), &nightly.libllvm)?;

    let expected = nightly.stamp();
    let linker = cmd::which("bpf-linker");
    let version = linker
        .as_ref()
        .and_then(|p| cmd::output(cmd::new(p).arg("--version")).ok())
        .map(|v| v.trim().to_owned());
    let wanted = format!("bpf-linker {BPF_LINKER_VERSION}");
    let stamp = fs::read_to_string(&stamp_path).ok();

    let reason = match (&linker, &version) {
        (None, _) => Some("not installed".to_owned()),
        (Some(path), None) => Some(format!("{} does not run", path.display())),
        (Some(_), Some(v)) if *v != wanted => Some(format!("found `{v}`, want `{wanted}`")),
        (Some(path), Some(_)) => match stamp {
            Some(stamp) if stamp == expected => None,
            Some(_) => Some("the nightly toolchain changed since it was built".to_owned()),
            // No stamp (built by hand the same way): adopt it when it links
            // this nightly's libLLVM and is newer than the toolchain install.
            None if built_against(path, &nightly) => {
                fs::write(&stamp_path, &expected)
                    .with_context(|| format!("write {}", stamp_path.display()))?;
                say!(
                    "bpf-linker: adopted {} (links this nightly's LLVM)",
                    path.display()
                );
                None
            }
            None => Some("no record of the LLVM it was built against".to_owned()),
        },
    };
    let Some(reason) = reason else {
        return Ok(());
    };

    say!(
        "building bpf-linker {BPF_LINKER_VERSION} against nightly LLVM {} ({reason})",
        nightly.llvm_version
    );
    let _ = fs::remove_file(&stamp_path);
    cmd::run(
        cmd::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--force",
            ])
            .args(["--no-default-features", "--features"])
            .arg(format!("llvm-{}", nightly.llvm_major))
            .env("LLVM_PREFIX", &prefix)
            // Build in cargo's own temp dir with the default toolchain, not
            // in whatever the surrounding `cargo xtask` was told to use.
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTUP_TOOLCHAIN")
            .current_dir(&cache),
    )
    .with_context(|| {
        format!(
            "bpf-linker {BPF_LINKER_VERSION} did not build against nightly's LLVM {}; \
             if it has no `llvm-{}` feature, install a nightly whose LLVM it supports",
            nightly.llvm_version, nightly.llvm_major
        )
    })?;
    let installed = cmd::cargo_home().join("bin").join("bpf-linker");
    let version = cmd::output(cmd::new(&installed).arg("--version"))
        .with_context(|| format!("run the freshly built {}", installed.display()))?;
    if version.trim() != wanted {
        bail!(
            "{} reports `{}`, want `{wanted}`",
            installed.display(),
            version.trim()
        );
    }
    if cmd::which("bpf-linker").as_deref() != Some(installed.as_path()) {
        say!(
            "warning: another bpf-linker comes first on PATH; the build needs {}",
            installed.display()
        );
    }
    fs::write(&stamp_path, &expected).with_context(|| format!("write {}", stamp_path.display()))
}

/// Makes `lib` hold exactly `libLLVM.so` and `<soname>`, both pointing at `libllvm`.
fn link_prefix(lib: &Path, libllvm: &Path) -> Result<()> {
    fs::create_dir_all(lib).with_context(|| format!("create {}", lib.display()))?;
    let soname = file_name(libllvm);
    for entry in fs::read_dir(lib).with_context(|| format!("read {}", lib.display()))? {
        let path = entry?.path();
        let name = file_name(&path);
        if name != "libLLVM.so" && name != soname {
            fs::remove_file(&path).with_context(|| format!("remove stale {}", path.display()))?;
        }
    }
    for name in ["libLLVM.so", soname.as_str()] {
        let link = lib.join(name);
        if fs::read_link(&link).is_ok_and(|target| target == libllvm) {
            continue;
        }
        match fs::remove_file(&link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("remove {}", link.display())),
        }
        symlink(libllvm, &link).with_context(|| format!("symlink {}", link.display()))?;
    }
    Ok(())
}

/// Whether the bpf-linker at `path` loads this nightly's libLLVM and was
/// built after this nightly was installed.
fn built_against(path: &Path, nightly: &Nightly) -> bool {
    let Ok(ldd) = cmd::output(cmd::new("ldd").arg(path)) else {
        return false;
    };
    let Some((soname, resolved)) = ldd_llvm(&ldd) else {
        return false;
    };
    let same_lib = soname == file_name(&nightly.libllvm)
        && fs::canonicalize(resolved).ok() == fs::canonicalize(&nightly.libllvm).ok();
    let installed = fs::metadata(&nightly.manifest)
        .or_else(|_| fs::metadata(&nightly.libllvm))
        .and_then(|m| m.modified());
    let built = fs::metadata(path).and_then(|m| m.modified());
    let newer = match (built, installed) {
        (Ok(built), Ok(installed)) => built >= installed,
        _ => false,
    };
    same_lib && newer
}

/// The `soname => path` of libLLVM in `ldd` output.
fn ldd_llvm(ldd: &str) -> Option<(&str, &str)> {
    ldd.lines().find_map(|line| {
        let (name, rest) = line.trim().split_once(" => ")?;
        if !name.starts_with("libLLVM") {
            return None;
        }
        let path = rest.split_whitespace().next()?;
        path.starts_with('/').then_some((name, path))
    })
}

/// Installs the missing [`APT_PACKAGES`] (`apt-get update` only when needed).
fn apt_packages() -> Result<()> {
    if cmd::which("dpkg-query").is_none() {
        say!(
            "warning: not a Debian/Ubuntu machine (no dpkg-query); make sure these are installed: {}",
            APT_PACKAGES.join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|pkg| !dpkg_installed(pkg))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    say!("installing Debian packages: {}", missing.join(" "));
    cmd::run(
        cmd::as_root("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    cmd::run(
        cmd::as_root("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn dpkg_installed(package: &str) -> bool {
    cmd::output(cmd::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_ok_and(|status| status.trim() == "install ok installed")
}

/// The virtualenv holding [`PYTHON_REQUIREMENTS`]; its `bin/` has the tools.
pub fn python_venv() -> PathBuf {
    cmd::cache_dir().join("venv")
}

/// Creates the virtualenv and installs [`PYTHON_REQUIREMENTS`] into it,
/// unless a stamp says this exact list is already installed.
fn python_tools() -> Result<()> {
    let venv = python_venv();
    let stamp_path = cmd::cache_dir().join("venv.stamp");
    let expected = PYTHON_REQUIREMENTS.join("\n");
    let python = venv.join("bin").join("python3");
    if python.exists() && fs::read_to_string(&stamp_path).is_ok_and(|s| s == expected) {
        return Ok(());
    }
    if !python.exists() {
        say!("creating the Python virtualenv {}", venv.display());
        cmd::run(cmd::new("python3").args(["-m", "venv"]).arg(&venv))
            .context("python3 -m venv (install python3 and its venv module)")?;
    }
    say!("installing Python tools: {}", PYTHON_REQUIREMENTS.join(" "));
    cmd::run(
        cmd::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PYTHON_REQUIREMENTS),
    )?;
    fs::write(&stamp_path, expected).with_context(|| format!("write {}", stamp_path.display()))
}

/// Mounts tracefs when it is missing (the agent also tries; needs root).
fn tracefs() {
    if Path::new(TRACEFS).join("events").exists() || tracefs_mounted() {
        return;
    }
    say!("mounting tracefs at {TRACEFS}");
    if let Err(e) = cmd::run(cmd::as_root("mount").args(["-t", "tracefs", "tracefs", TRACEFS])) {
        say!("warning: {e:#}; tracepoint attachment will fail until tracefs is mounted");
    }
}

fn tracefs_mounted() -> bool {
    fs::read_to_string("/proc/self/mounts").is_ok_and(|mounts| {
        mounts.lines().any(|line| {
            let mut fields = line.split_whitespace().skip(1);
            fields.next() == Some(TRACEFS) && fields.next() == Some("tracefs")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_matched_by_name() {
        let list = "cargo-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\nrust-src\n\
                    rust-std-x86_64-unknown-linux-gnu\n";
        assert!(has_component(list, "clippy"));
        assert!(has_component(list, "rust-src"));
        assert!(!has_component(list, "rustfmt"));
        let without_src = "rust-std-x86_64-unknown-linux-gnu\n";
        assert!(!has_component(without_src, "rust-src"));
        assert!(!has_component(without_src, "rust"));
    }

    #[test]
    fn ldd_line_with_llvm() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibLLVM.so.22.1-rust-1.97.0-nightly => /c/llvm-prefix/lib/libLLVM.so.22.1-rust-1.97.0-nightly (0x00007f33)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f32)\n";
        assert_eq!(
            ldd_llvm(ldd),
            Some((
                "libLLVM.so.22.1-rust-1.97.0-nightly",
                "/c/llvm-prefix/lib/libLLVM.so.22.1-rust-1.97.0-nightly"
            ))
        );
        assert_eq!(ldd_llvm("\tlibLLVM.so.21 => not found\n"), None);
    }

    #[test]
    fn prefix_is_relinked_and_cleaned() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-prefix-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let old = dir.join("libLLVM.so.21.1-rust-1.90.0-nightly");
        let new = dir.join("libLLVM.so.22.1-rust-1.97.0-nightly");
        fs::create_dir_all(&dir)?;
        fs::write(&old, "")?;
        fs::write(&new, "")?;
        let lib = dir.join("prefix").join("lib");
        link_prefix(&lib, &old)?;
        link_prefix(&lib, &new)?;
        link_prefix(&lib, &new)?;
        let mut names: Vec<String> = fs::read_dir(&lib)?
            .map(|e| e.map(|e| file_name(&e.path())))
            .collect::<io::Result<_>>()?;
        names.sort();
        assert_eq!(names, ["libLLVM.so", "libLLVM.so.22.1-rust-1.97.0-nightly"]);
        assert_eq!(fs::read_link(lib.join("libLLVM.so"))?, new);
        fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
