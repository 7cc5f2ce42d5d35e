//! Test steps for the deployment files in `setup/`: systemd units, the
//! Prometheus configuration and alert rules, Kubernetes manifests and the
//! Ansible roles. Each runs the real tool offline and fails on any error or
//! warning it prints.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    cmd::{self, say},
    dist,
    run::Profile,
    setup,
};

/// A fresh, empty folder under `target/xtask/<name>`.
fn scratch(name: &str) -> Result<PathBuf> {
    let dir = cmd::target_dir()?.join("xtask").join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("clear {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// Runs `command` and returns its stdout and stderr; fails unless it exits
/// 0 and, with `quiet`, prints nothing on stderr (`systemd-analyze verify`
/// reports problems as warnings and still exits 0).
fn run_clean(command: &mut std::process::Command, quiet: bool) -> Result<String> {
    let line = cmd::display(command);
    eprintln!("$ {line}");
    let out = command
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("run `{line}`"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stdout}{stderr}");
    if !out.status.success() {
        bail!("`{line}` failed: {}", cmd::describe(out.status));
    }
    if quiet && !stderr.trim().is_empty() {
        bail!("`{line}` printed warnings:\n{}", stderr.trim_end());
    }
    Ok(stdout + &stderr)
}

/// `systemd-analyze verify` of both units, in a scratch root holding the
/// system's own units (for the targets they name) and stand-in binaries.
pub fn systemd_verify() -> Result<()> {
    let analyze = cmd::which("systemd-analyze")
        .context("systemd-analyze not found: install the Debian package `systemd`")?;
    let root = scratch("systemd-root")?;
    let units = root.join("etc/systemd/system");
    fs::create_dir_all(&units)?;
    fs::create_dir_all(root.join("usr/bin"))?;
    let system_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("multi-user.target").exists())
        .context("no systemd unit folder with multi-user.target")?;
    fs::create_dir_all(root.join("usr/lib/systemd"))?;
    cmd::run(
        cmd::new("cp")
            .args(["-a", "--"])
            .arg(system_units)
            .arg(root.join("usr/lib/systemd/system")),
    )?;
    let names = ["planet-agent.service", "planet-federator.service"];
    for name in names {
        let from = cmd::workspace_root().join("setup/systemd").join(name);
        fs::copy(&from, units.join(name)).with_context(|| format!("copy {}", from.display()))?;
        // verify checks that ExecStart= is executable, nothing more.
        let binary = root.join("usr/bin").join(name.trim_end_matches(".service"));
        fs::copy("/bin/true", &binary).context("copy /bin/true as a stand-in binary")?;
    }
    run_clean(
        cmd::new(analyze)
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .args(names),
        true,
    )
    .map(drop)
}

/// `promtool check rules`, the rules' unit tests, and `promtool check
/// config` of the shipped configuration (with an example target file).
pub fn promtool() -> Result<()> {
    let promtool = cmd::which("promtool")
        .context("promtool not found: install the Debian package `prometheus`")?;
    let dir = cmd::workspace_root().join("setup/prometheus");
    run_clean(
        cmd::new(&promtool)
            .args(["check", "rules", "planet-alerts.yml"])
            .current_dir(&dir),
        false,
    )?;
    run_clean(
        cmd::new(&promtool)
            .args(["test", "rules", "planet-alerts.test.yml"])
            .current_dir(&dir),
        false,
    )?;
    let scratch = scratch("prometheus-config")?;
    for name in ["prometheus.yml", "planet-alerts.yml"] {
        fs::copy(dir.join(name), scratch.join(name))?;
    }
    fs::create_dir_all(scratch.join("targets"))?;
    fs::write(
        scratch.join("targets/planet-agent.json"),
        r#"[{"targets": ["127.0.0.1:19100"]}]"#,
    )?;
    fs::write(
        scratch.join("targets/planet-federator.json"),
        r#"[{"targets": ["127.0.0.1:19101"]}]"#,
    )?;
    let out = run_clean(
        cmd::new(&promtool)
            .args(["check", "config", "prometheus.yml"])
            .current_dir(&scratch),
        false,
    )?;
    if out.contains("WARNING") {
        bail!("promtool check config warned:\n{out}");
    }
    Ok(())
}

fn venv_tool(name: &str) -> Result<PathBuf> {
    let tool = setup::python_venv().join("bin").join(name);
    if !tool.exists() {
        bail!("{} is missing: run `cargo xtask setup`", tool.display());
    }
    Ok(tool)
}

/// Oldest Kubernetes release the manifests must fit.
const KUBERNETES_VERSION: &str = "1.28.0";

/// Built-in kinds through kubernetes-validate (schemas bundled in the
/// package, strict: unknown fields fail); Prometheus Operator kinds through
/// the in-repo schema.
pub fn kubernetes_validate() -> Result<()> {
    let dir = cmd::workspace_root().join("setup/kubernetes");
    let mut builtin = Vec::new();
    let mut operator = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = fs::read_to_string(&path)?;
        if text.contains("apiVersion: monitoring.coreos.com/") {
            operator.push(path);
        } else {
            builtin.push(path);
        }
    }
    builtin.sort();
    operator.sort();
    if builtin.is_empty() || operator.is_empty() {
        bail!("no manifests found in {}", dir.display());
    }
    for version in [KUBERNETES_VERSION, "1.33.0"] {
        let out = run_clean(
            cmd::new(venv_tool("kubernetes-validate")?)
                .args(["--strict", "-k", version])
                .args(&builtin),
            false,
        )?;
        if out.contains("WARN") || out.contains("ERROR") {
            bail!("kubernetes-validate -k {version} did not pass cleanly:\n{out}");
        }
    }
    run_clean(
        cmd::new(venv_tool("python3")?)
            .arg(dir.join("validate_monitoring.py"))
            .args(&operator),
        false,
    )
    .map(drop)
}

/// `ansible-playbook --syntax-check`, then two local runs of the playbook
/// into a scratch root from the tarballs of `cargo xtask dist --debug`: the
/// first installs, the second must change nothing.
pub fn ansible() -> Result<()> {
    let playbook_dir = cmd::workspace_root().join("setup/ansible");
    let playbook = venv_tool("ansible-playbook")?;
    let artifacts = dist::run(Profile::Debug)?;
    let root = scratch("ansible-root")?;
    let inventory = root.with_file_name("ansible-inventory.ini");
    let python = venv_tool("python3")?;
    let host = format!(
        "localhost ansible_connection=local ansible_become=false ansible_python_interpreter={}",
        python.display()
    );
    fs::write(
        &inventory,
        format!("[planet_agents]\n{host}\n\n[planet_federators]\n{host}\n"),
    )?;
    let run = |extra: &[&str]| -> Result<String> {
        run_clean(
            cmd::new(&playbook)
                .arg("-i")
                .arg(&inventory)
                .arg("playbook.yml")
                .arg("-e")
                .arg(format!("planet_root={}", root.display()))
                .arg("-e")
                .arg(format!(
                    "planet_release_url=file://{}",
                    artifacts.dir.display()
                ))
                .arg("-e")
                .arg(format!("planet_version={}", dist::VERSION))
                .args([
                    "-e",
                    r#"{"planet_agent_args": ["-task-interval=10s", "-log-level=debug"]}"#,
                ])
                .args(extra)
                .env("ANSIBLE_NOCOLOR", "1")
                .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
                .env("ANSIBLE_LOCAL_TEMP", root.with_file_name("ansible-tmp"))
                .current_dir(&playbook_dir),
            false,
        )
    };
    run(&["--syntax-check"])?;
    let first = run(&[])?;
    check_recap(
        &first,
        |changed| changed > 0,
        "the first run installed nothing",
    )?;
    for (path, mode) in [
        ("usr/bin/planet-agent", 0o755),
        ("usr/bin/planet-federator", 0o755),
        ("etc/systemd/system/planet-agent.service", 0o644),
        ("etc/systemd/system/planet-federator.service", 0o644),
        ("etc/default/planet-agent", 0o644),
        ("etc/default/planet-federator", 0o644),
    ] {
        let meta =
            fs::metadata(root.join(path)).with_context(|| format!("{path} not installed"))?;
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o777 != mode {
            bail!(
                "{path} has mode {:o}, want {mode:o}",
                meta.permissions().mode() & 0o777
            );
        }
    }
    let flags = fs::read_to_string(root.join("etc/default/planet-agent"))?;
    if !flags.contains(r#"PLANET_AGENT_ARGS="-task-interval=10s -log-level=debug""#) {
        bail!("etc/default/planet-agent lacks the flags:\n{flags}");
    }
    let shipped = fs::read(cmd::workspace_root().join("setup/systemd/planet-agent.service"))?;
    if fs::read(root.join("etc/systemd/system/planet-agent.service"))? != shipped {
        bail!("the installed planet-agent.service is not the shipped one");
    }
    let version = cmd::output(cmd::new(root.join("usr/bin/planet-agent")).arg("-version"))?;
    if !version.contains(dist::VERSION) {
        bail!("installed planet-agent -version printed {version:?}");
    }
    let second = run(&[])?;
    check_recap(
        &second,
        |changed| changed == 0,
        "the second run changed something",
    )?;
    say!(
        "ansible: installed into {} and a re-run changed nothing",
        root.display()
    );
    Ok(())
}

/// Checks `changed=N failed=0` on every host line of a PLAY RECAP.
fn check_recap(output: &str, changed_ok: impl Fn(u64) -> bool, why: &str) -> Result<()> {
    let recap = output
        .split("PLAY RECAP")
        .nth(1)
        .context("no PLAY RECAP in the ansible output")?;
    let mut hosts = 0;
    for line in recap.lines().filter(|l| l.contains("ok=")) {
        hosts += 1;
        let field = |name: &str| -> Option<u64> {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        };
        if field("failed") != Some(0) || field("unreachable") != Some(0) {
            bail!("ansible failed: {line}");
        }
        if !changed_ok(field("changed").context("no changed= in the recap")?) {
            bail!("{why}: {line}");
        }
    }
    if hosts == 0 {
        bail!("empty PLAY RECAP");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECAP: &str = "PLAY [x]\n\nPLAY RECAP *****\n\
        localhost                  : ok=12   changed=0    unreachable=0    failed=0    skipped=3    rescued=0    ignored=0\n";

    #[test]
    fn reads_the_play_recap() {
        assert!(check_recap(RECAP, |c| c == 0, "changed").is_ok());
        assert!(check_recap(RECAP, |c| c > 0, "nothing changed").is_err());
        let failed = RECAP.replace("failed=0", "failed=1");
        assert!(check_recap(&failed, |_| true, "").is_err());
        assert!(check_recap("no recap", |_| true, "").is_err());
    }
}
