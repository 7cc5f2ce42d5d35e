//! Finding (and, when needed, building) the `planet-traffic` binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context as _, anyhow};

/// The path of the `planet-traffic` binary: `$PLANET_TRAFFIC_BIN`, or the one
/// `cargo build` leaves beside the running test executable (built once per
/// process; see the `traffic` module docs).
pub fn binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| locate_or_build().map_err(|err| format!("{err:#}")))
        .clone()
        .map_err(|err| anyhow!("planet-traffic binary: {err}"))
}

fn locate_or_build() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PLANET_TRAFFIC_BIN") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let mut profile_dir = exe.parent().context("executable without a directory")?;
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir = profile_dir.parent().context("deps without a parent")?;
    }
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("profile dir")?;
    let parent = profile_dir
        .parent()
        .context("profile dir without a parent")?;
    // target/<profile>/ or, with --target, target/<triple>/<profile>/.
    let (target_dir, triple) = if is_target_root(parent) {
        (parent, None)
    } else {
        let root = parent.parent().filter(|p| is_target_root(p));
        let root = root.with_context(|| format!("no cargo target dir above {}", exe.display()))?;
        (root, parent.file_name().and_then(|n| n.to_str()))
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--bin",
        "planet-traffic",
        "--manifest-path",
    ])
    .arg(&manifest)
    .arg("--target-dir")
    .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    if let Some(triple) = triple {
        cmd.args(["--target", triple]);
    }
    let path = profile_dir.join("planet-traffic");
    match crate::util::run(&mut cmd) {
        Ok(_) => Ok(path),
        Err(err) if path.exists() => {
            eprintln!("planet-testkit: using {} as is: {err:#}", path.display());
            Ok(path)
        }
        Err(err) => Err(err.context("build planet-traffic (or set PLANET_TRAFFIC_BIN)")),
    }
}

fn is_target_root(dir: &Path) -> bool {
    dir.join("CACHEDIR.TAG").exists() || dir.join(".rustc_info.json").exists()
}
