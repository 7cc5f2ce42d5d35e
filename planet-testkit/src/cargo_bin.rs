//! Finding (and, when needed, building) a workspace binary from another
//! package's tests, which cannot name it through `CARGO_BIN_EXE_*`:
//! `planet-traffic` for the traffic generator, `planet-agent` for the
//! federator's end-to-end test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use anyhow::{Context as _, anyhow};

/// The path of `bin` of workspace package `package`: `$<env_override>` if
/// set, otherwise the one `cargo build -p <package> --bin <bin>` leaves
/// beside the running test executable (same target dir, profile and
/// target triple). The build runs once per process and binary, and is a
/// no-op when the binary is up to date (`cargo test --workspace` has built
/// it already); its features and environment (`AYA_BUILD_SKIP`, say) are
/// the caller's.
pub fn binary(package: &str, bin: &str, env_override: &str) -> anyhow::Result<PathBuf> {
    static BUILT: Mutex<Option<HashMap<String, Result<PathBuf, String>>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    built
        .get_or_insert_with(HashMap::new)
        .entry(bin.to_owned())
        .or_insert_with(|| {
            locate_or_build(package, bin, env_override).map_err(|err| format!("{err:#}"))
        })
        .clone()
        .map_err(|err| anyhow!("{bin} binary: {err}"))
}

fn locate_or_build(package: &str, bin: &str, env_override: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(env_override) {
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
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("planet-testkit outside a workspace")?
        .join("Cargo.toml");
    let mut cmd = Command::new(cargo);
    // Without the variables `cargo test` sets for the running test:
    // crates' builds read some (CARGO_PKG_NAME, CARGO_MANIFEST_DIR), so
    // with them the binary would be rebuilt here, and again by the next
    // plain cargo command.
    for (key, _) in std::env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        if TEST_ENV.contains(&k) || TEST_ENV_PREFIXES.iter().any(|p| k.starts_with(p)) {
            cmd.env_remove(&key);
        }
    }
    cmd.args([
        "build",
        "--quiet",
        "-p",
        package,
        "--bin",
        bin,
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
    let path = profile_dir.join(bin);
    match crate::util::run(&mut cmd) {
        Ok(_) => Ok(path),
        Err(err) if path.exists() => {
            eprintln!("planet-testkit: using {} as is: {err:#}", path.display());
            Ok(path)
        }
        Err(err) => Err(err.context(format!("build {bin} (or set {env_override})"))),
    }
}

/// What cargo sets in a test's environment (besides `CARGO`).
const TEST_ENV: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];
const TEST_ENV_PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_BIN_"];

fn is_target_root(dir: &Path) -> bool {
    dir.join("CACHEDIR.TAG").exists() || dir.join(".rustc_info.json").exists()
}
