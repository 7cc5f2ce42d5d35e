//! Builds the eBPF objects (the binaries of `planet-agent-ebpf`) with the
//! nightly toolchain through aya-build and leaves them in `OUT_DIR` for
//! `include_bytes!`: `planet` (the flow programs), `planet-sockets` (the
//! socket-owner iterator) and `planet-hook-floor` (empty programs on the flow
//! task's hooks, loaded only by the `hook_floor` example for benchmarks).
//!
//! With `AYA_BUILD_SKIP=1` (no BPF toolchain: `cargo check`, editors) empty
//! objects are written instead; the agent then reports at run time that it
//! carries no eBPF programs, finds socket owners through `/proc` and serves
//! everything else.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use cargo_metadata::MetadataCommand;

const EBPF_PACKAGE: &str = "planet-agent-ebpf";
/// The binaries of `planet-agent-ebpf`, one object each.
const EBPF_BINARIES: [&str; 3] = ["planet", "planet-sockets", "planet-hook-floor"];

fn main() -> anyhow::Result<()> {
    build_metadata();
    let metadata = MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    // Rebuild whenever kernel-side sources or the shared types change.
    for name in [EBPF_PACKAGE, "planet-common"] {
        let package = metadata
            .packages
            .iter()
            .find(|p| p.name.as_str() == name)
            .ok_or_else(|| anyhow!("package {name} not in the workspace"))?;
        let dir = package
            .manifest_path
            .parent()
            .ok_or_else(|| anyhow!("{name} has no manifest dir"))?;
        println!("cargo:rerun-if-changed={dir}/src");
        println!("cargo:rerun-if-changed={dir}/Cargo.toml");
    }
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        let out = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR")?);
        for binary in EBPF_BINARIES {
            fs::write(out.join(binary), []).context("write empty eBPF object")?;
        }
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        return Ok(());
    }
    let package = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == EBPF_PACKAGE)
        .ok_or_else(|| anyhow!("{EBPF_PACKAGE} not found"))?;
    let root_dir = package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{EBPF_PACKAGE} has no manifest dir"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: EBPF_PACKAGE,
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

/// Version metadata for `planet_exporter_build_info`.
fn build_metadata() {
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".to_owned())
    };
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    println!(
        "cargo:rustc-env=PLANET_GIT_REVISION={}",
        run("git", &["rev-parse", "--short", "HEAD"])
    );
    println!(
        "cargo:rustc-env=PLANET_GIT_BRANCH={}",
        run("git", &["rev-parse", "--abbrev-ref", "HEAD"])
    );
    println!(
        "cargo:rustc-env=PLANET_RUSTC_VERSION={}",
        run(&rustc, &["-V"])
    );
    if let Ok(head) = std::fs::read_to_string("../.git/HEAD") {
        println!("cargo:rerun-if-changed=../.git/HEAD");
        if let Some(reference) = head.trim().strip_prefix("ref: ") {
            println!("cargo:rerun-if-changed=../.git/{reference}");
        }
    }
}
