//! `cargo xtask test-vm`: the flow accuracy suite in every probe mode on
//! Debian's 5.10, 6.1 and 6.12 cloud kernels under qemu (TCG), as a
//! kernel × mode table of exact / inexact / unavailable.
//!
//! Kernels come from Debian's archive through a private apt configuration
//! and are cached under `~/.cache/planet-xtask/vm`; guest work files (the
//! initramfs, console and result logs) go to `target/test-vm/`.

mod apt;
pub mod bench;
mod guest;
mod initramfs;
mod kernel;
mod payload;
mod report;

use std::{
    fs,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

pub use self::kernel::Kernel;
use self::{
    apt::PrivateApt,
    guest::End,
    report::{Row, Verdict},
};
use crate::cmd::{self, say};

/// Default limit per guest, boot to power-off.
pub const DEFAULT_TIMEOUT_MINUTES: u64 = 20;

pub struct Options {
    pub kernels: Vec<Kernel>,
    /// Per guest, boot to power-off.
    pub timeout: Duration,
}

/// Fetches the kernels, builds the payload and the initramfs, boots every
/// guest and prints the table. Fails if any available mode is inexact or
/// any guest did not run to its end.
pub fn run(options: &Options) -> Result<()> {
    let start = Instant::now();
    let mut rows = Vec::new();
    for guest in prepare(&options.kernels)? {
        let kernel = guest.kernel;
        say!(
            "guest {} ({}): booting",
            kernel.series(),
            guest.image.release
        );
        let guest_start = Instant::now();
        let verdict = match &guest.initrd {
            Ok(initrd) => run_guest(
                kernel.series(),
                &guest.image.vmlinuz,
                initrd,
                &guest.dir,
                options.timeout,
            ),
            Err(e) => Verdict {
                release: Some(guest.image.release.clone()),
                cells: Default::default(),
                errors: vec![format!("initramfs: {e:#}")],
            },
        };
        say!(
            "guest {}: {} in {}",
            kernel.series(),
            if verdict.is_failure() {
                "FAILED"
            } else {
                "done"
            },
            cmd::human(guest_start.elapsed())
        );
        rows.push(Row {
            series: kernel.series().to_owned(),
            verdict,
        });
    }
    let work = cmd::target_dir()?.join("test-vm");

    let table = report::render(&rows);
    println!("\n{table}");
    let saved = work.join("table.md");
    fs::write(&saved, &table).with_context(|| format!("write {}", saved.display()))?;
    say!(
        "test-vm: {} guests in {}; table in {}, logs in {}",
        rows.len(),
        cmd::human(start.elapsed()),
        saved.display(),
        work.display()
    );
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.verdict.is_failure())
        .map(|r| r.series.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("inexact or failed guests: {}", failed.join(", "));
    }
    Ok(())
}

/// A guest ready to boot: its kernel and initramfs, and its work directory.
pub struct Guest {
    pub kernel: Kernel,
    pub image: kernel::Image,
    /// The initramfs, or why it could not be built.
    pub initrd: Result<std::path::PathBuf>,
    pub dir: std::path::PathBuf,
}

/// Fetches the kernels, builds the payload and each guest's initramfs.
pub fn prepare(kernels: &[Kernel]) -> Result<Vec<Guest>> {
    apt::require_apt()?;
    initramfs::tools_present()?;
    let cache = cmd::cache_dir().join("vm");
    let apt = PrivateApt::new(&cache.join("apt"), &apt::mirror()?)?;
    if let Err(e) = apt.update_if_stale() {
        say!("warning: {e:#}; using the package lists and kernels already cached");
    }
    let mut images = Vec::new();
    for &kernel in kernels {
        images.push((kernel, kernel::fetch(kernel, &apt, &cache)?));
    }

    let payload = payload::build(crate::test::HOST_TARGETS)?;
    let work = cmd::target_dir()?.join("test-vm");
    fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let base = work.join("base.cpio");
    initramfs::build_base(&payload, &work.join("base-tree"), &base)?;
    let mut guests = Vec::new();
    for (kernel, image) in images {
        let dir = work.join(&image.release);
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let initrd = initramfs::build_for_kernel(&base, &image.modules, &dir);
        guests.push(Guest {
            kernel,
            image,
            initrd,
            dir,
        });
    }
    Ok(guests)
}

/// Boots one guest and judges what it reported.
fn run_guest(label: &str, vmlinuz: &Path, initrd: &Path, dir: &Path, timeout: Duration) -> Verdict {
    let files = guest::Run::in_dir(dir);
    let end = guest::boot(label, vmlinuz, initrd, &files, "", timeout);
    let results = fs::read(&files.results)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut verdict = Verdict::judge(&results);
    let console = fs::read(&files.console)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let problem = match end {
        Ok(End::Exited) => None,
        Ok(End::TimedOut(after)) => Some(format!(
            "timeout: killed after {} (console: {})",
            cmd::human(after),
            files.console.display()
        )),
        Ok(End::Failed(why)) => Some(why),
        Err(e) => Some(format!("{e:#}")),
    };
    verdict.errors.extend(problem);
    if let Some(crash) = guest::kernel_crash(&console) {
        verdict.errors.push(format!(
            "kernel crash: {crash} (see {})",
            files.console.display()
        ));
    }
    verdict
}
