//! The guest's initramfs: busybox (static), iproute2's `ip`, the payload
//! binaries (debug info stripped) and every shared library `ldd` names for
//! them, plus the kernel modules the tests need that the cloud kernels build
//! as modules (veth). The shared part is one cpio archive; each kernel's
//! modules are a second one appended to it (the kernel unpacks both).

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::{guest, payload::Payload};
use crate::cmd;

/// Modules to load, by name (`veth` for the tests' network namespace).
pub const MODULES: &[&str] = &["veth"];
/// Where the guest finds them.
pub const MODULE_DIR: &str = "lib/modules";

/// Builds the shared archive at `archive` from a fresh tree in `tree`.
pub fn build_base(payload: &Payload, tree: &Path, archive: &Path) -> Result<()> {
    reset(tree)?;
    for dir in [
        "bin", "bb", "usr/bin", "usr/sbin", "proc", "sys", "dev", "run", "tmp", "root", "etc",
        MODULE_DIR,
    ] {
        mkdir(&tree.join(dir))?;
    }
    let busybox = find_tool("busybox")?;
    let ip = find_tool("ip")?;
    let mut dynamic = Vec::new();
    copy_file(&busybox, &tree.join("bin/busybox"))?;
    dynamic.push(busybox);
    copy_file(&ip, &tree.join("usr/sbin/ip"))?;
    dynamic.push(ip);
    for (binary, name) in [
        (&payload.agent, guest::AGENT),
        (&payload.traffic, guest::TRAFFIC),
        (&payload.suite, guest::SUITE),
    ] {
        let target = tree.join("usr/bin").join(name);
        cmd::run(
            cmd::new("strip")
                .arg("--strip-debug")
                .arg("-o")
                .arg(&target)
                .arg(binary),
        )?;
        dynamic.push(binary.clone());
    }
    let mut libraries = BTreeSet::new();
    for binary in &dynamic {
        let ldd = cmd::new("ldd").arg(binary).output().context("run ldd")?;
        // `ldd` fails on static binaries ("not a dynamic executable").
        libraries.extend(shared_libraries(&String::from_utf8_lossy(&ldd.stdout)));
    }
    for library in &libraries {
        let relative = library.strip_prefix("/").unwrap_or(library);
        copy_file(library, &tree.join(relative))?;
    }
    let init = tree.join("init");
    fs::write(&init, guest::init_script()).with_context(|| format!("write {}", init.display()))?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    cpio(tree, archive)
}

/// Builds the module archive of one kernel (`modules`: its
/// `lib/modules/<release>`) and returns the initramfs: `base` + modules.
pub fn build_for_kernel(base: &Path, modules: &Path, work: &Path) -> Result<PathBuf> {
    let tree = work.join("modules-tree");
    reset(&tree)?;
    let dir = tree.join(MODULE_DIR);
    mkdir(&dir)?;
    let mut loaded = Vec::new();
    for name in MODULES {
        add_module(modules, name, &dir, &mut loaded)?;
    }
    let archive = work.join("modules.cpio");
    cpio(&tree, &archive)?;
    let initrd = work.join("initrd.cpio");
    let mut bytes = fs::read(base).with_context(|| format!("read {}", base.display()))?;
    bytes.extend(fs::read(&archive).with_context(|| format!("read {}", archive.display()))?);
    fs::write(&initrd, bytes).with_context(|| format!("write {}", initrd.display()))?;
    Ok(initrd)
}

/// Copies module `name` (decompressed) into `dir` after its dependencies.
fn add_module(modules: &Path, name: &str, dir: &Path, loaded: &mut Vec<String>) -> Result<()> {
    if loaded.iter().any(|m| same_module(m, name)) {
        return Ok(());
    }
    let file = find_module(&modules.join("kernel"), name)?.ok_or_else(|| {
        anyhow!(
            "module {name} is not in {}; is it built into the kernel? (then drop it from MODULES)",
            modules.display()
        )
    })?;
    let bytes = decompress(&file)?;
    for dependency in depends(&bytes) {
        add_module(modules, &dependency, dir, loaded)?;
    }
    // The init script loads the files in name order: number them.
    let target = dir.join(format!("{:02}-{name}.ko", loaded.len()));
    fs::write(&target, bytes).with_context(|| format!("write {}", target.display()))?;
    loaded.push(name.to_owned());
    Ok(())
}

/// Module names treat `-` and `_` alike.
fn same_module(a: &str, b: &str) -> bool {
    a.replace('-', "_") == b.replace('-', "_")
}

fn find_module(dir: &Path, name: &str) -> Result<Option<PathBuf>> {
    for entry in fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            if let Some(found) = find_module(&path, name)? {
                return Ok(Some(found));
            }
            continue;
        }
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let stem = file.split(".ko").next().unwrap_or_default();
        if file.contains(".ko") && same_module(stem, name) {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

fn decompress(file: &Path) -> Result<Vec<u8>> {
    let name = file.to_string_lossy();
    let tool = match name.rsplit('.').next() {
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => return fs::read(file).with_context(|| format!("read {}", file.display())),
    };
    let out = cmd::new(tool)
        .arg("-dc")
        .arg(file)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("run {tool} (install it to unpack {name})"))?;
    if !out.status.success() {
        bail!("{tool} -dc {name} failed: {}", cmd::describe(out.status));
    }
    Ok(out.stdout)
}

/// The `depends=` field of a module's `.modinfo` section.
fn depends(module: &[u8]) -> Vec<String> {
    let needle = b"depends=";
    module
        .split(|b| *b == 0)
        .find_map(|field| field.strip_prefix(needle.as_slice()))
        .map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The absolute library paths in `ldd` output, the loader included.
fn shared_libraries(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once(" => ") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// `tree` as a newc cpio archive owned by root.
fn cpio(tree: &Path, archive: &Path) -> Result<()> {
    let out = fs::File::create(archive).with_context(|| format!("create {}", archive.display()))?;
    let mut find = cmd::new("find")
        .args([".", "-print0"])
        .current_dir(tree)
        .stdout(Stdio::piped())
        .spawn()
        .context("run find")?;
    let names = find.stdout.take().context("find's stdout")?;
    let status = cmd::new("cpio")
        .args([
            "--null",
            "--create",
            "--format=newc",
            "--owner=0:0",
            "--quiet",
        ])
        .current_dir(tree)
        .stdin(names)
        .stdout(out)
        .status()
        .context("run cpio (package cpio)")?;
    let found = find.wait().context("wait for find")?;
    if !status.success() || !found.success() {
        bail!(
            "packing {} into {} failed",
            tree.display(),
            archive.display()
        );
    }
    Ok(())
}

/// `name` on `PATH` or in the sbin folders (`ip` is in /usr/sbin).
fn find_tool(name: &str) -> Result<PathBuf> {
    cmd::which(name)
        .or_else(|| {
            ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .map(|dir| Path::new(dir).join(name))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| anyhow!("{name} not found (cargo xtask setup installs it)"))
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        mkdir(parent)?;
    }
    // fs::copy follows symlinks and keeps the mode bits.
    fs::copy(from, to).with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn mkdir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))
}

fn reset(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("remove {}", dir.display())),
    }
    mkdir(dir)
}

/// Fails early, before any build, when a tool the archive needs is missing.
pub fn tools_present() -> Result<()> {
    for tool in ["cpio", "strip", "ldd", "busybox", "ip", "find"] {
        find_tool(tool)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_paths_with_loader() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibbpf.so.1 => /lib/x86_64-linux-gnu/libbpf.so.1 (0x00007f5c)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f5c)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f5c)\n";
        assert_eq!(
            shared_libraries(ldd),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libbpf.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(shared_libraries("\tnot a dynamic executable\n").is_empty());
    }

    #[test]
    fn modinfo_depends() {
        let module =
            b"\x7fELF junk\0license=GPL\0depends=udp_tunnel,ip6_udp_tunnel\0vermagic=6.1\0";
        assert_eq!(depends(module), ["udp_tunnel", "ip6_udp_tunnel"]);
        assert!(depends(b"\0depends=\0name=veth\0").is_empty());
        assert!(depends(b"no modinfo").is_empty());
    }

    #[test]
    fn module_names_ignore_dash_and_underscore() {
        assert!(same_module("ip6_udp_tunnel", "ip6-udp-tunnel"));
        assert!(!same_module("veth", "vxlan"));
    }
}
