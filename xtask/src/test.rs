//! `cargo xtask test`: set-up, then every suite as a named step. All steps
//! run even when one fails; a summary table follows, and the task fails if
//! any step did.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use crate::{
    agent::{self, Agent},
    cmd::{self, say},
    deploy, setup, vm,
};

/// One suite. Add new suites to [`steps`].
struct Step {
    name: &'static str,
    run: fn() -> Result<()>,
}

/// The suites, in order.
fn steps() -> Vec<Step> {
    vec![
        Step {
            name: "cargo test (workspace, as root)",
            run: cargo_test,
        },
        Step {
            name: "flow accuracy without BTF (trace-record programs)",
            run: flow_accuracy_without_btf,
        },
        Step {
            name: "agent smoke (attach, scrape, SIGTERM)",
            run: agent_smoke,
        },
        Step {
            name: "fuzz inventory parsers (bounded)",
            run: fuzz_inventory,
        },
        Step {
            name: "systemd-analyze verify (setup/systemd)",
            run: deploy::systemd_verify,
        },
        Step {
            name: "promtool: alert rules, rule tests, scrape config (setup/prometheus)",
            run: deploy::promtool,
        },
        Step {
            name: "kubernetes manifests against schemas (setup/kubernetes)",
            run: deploy::kubernetes_validate,
        },
        Step {
            name: "ansible: syntax check, local install from dist tarballs, idempotent re-run",
            run: deploy::ansible,
        },
        Step {
            name: "test-vm: accuracy per probe mode on 5.10, 6.1, 6.12 (qemu)",
            run: test_vm,
        },
    ]
}

pub fn run(only: Option<&str>) -> Result<()> {
    setup::run()?;
    let mut results = Vec::new();
    let selected = steps()
        .into_iter()
        .filter(|step| only.is_none_or(|text| step.name.contains(text)));
    for step in selected {
        say!("step: {}", step.name);
        let start = Instant::now();
        let outcome = (step.run)();
        if let Err(e) = &outcome {
            say!("step failed: {}: {e:#}", step.name);
        }
        results.push((step.name, outcome, start.elapsed()));
    }

    println!();
    println!("| step | result | duration |");
    println!("|---|---|---|");
    for (name, outcome, duration) in &results {
        let result = if outcome.is_ok() { "pass" } else { "FAIL" };
        println!("| {name} | {result} | {} |", cmd::human(*duration));
    }
    if results.is_empty() {
        bail!("no step matches {only:?}");
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, outcome, _)| outcome.is_err())
        .map(|(name, _, _)| *name)
        .collect();
    if !failed.is_empty() {
        println!();
        for (name, outcome, _) in &results {
            if let Err(e) = outcome {
                println!("{name}: {e:#}");
            }
        }
        bail!(
            "{} of {} steps failed: {}",
            failed.len(),
            results.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// The host crates with all their targets. The eBPF crate is `no_std` for
/// `bpfel-unknown-none` and is built by planet-agent's build script instead.
/// Every step uses this same selection, so cargo unifies features the same
/// way and the eBPF object (built by a build script) is not rebuilt.
pub const HOST_TARGETS: &[&str] = &[
    "--workspace",
    "--exclude",
    "planet-agent-ebpf",
    "--all-targets",
];

/// Unit and integration tests of every host crate; the eBPF tests need root.
fn cargo_test() -> Result<()> {
    if !cmd::is_root() {
        // Compile as the invoking user so target/ stays theirs; only the run is root's.
        cmd::run(cmd::cargo().arg("test").args(HOST_TARGETS).arg("--no-run"))?;
    }
    // --no-fail-fast: run every test binary and report all failures at once.
    let mut test = root_cargo_test()?;
    cmd::run(test.args(HOST_TARGETS).arg("--no-fail-fast"))
}

/// `cargo test` as root in the workspace, with `PLANET_AGENT_BIN` naming
/// the agent binary that same `cargo test` builds (for planet-agent's own
/// tests) before any test runs: the federator's real-agent test would
/// otherwise build its own copy with planet-agent's features alone.
fn root_cargo_test() -> Result<std::process::Command> {
    let agent = cmd::target_dir()?.join("debug").join("planet-agent");
    let mut test = cmd::as_root("cargo");
    test.arg("test")
        .env("PLANET_AGENT_BIN", agent)
        .current_dir(cmd::workspace_root());
    Ok(test)
}

/// The accuracy suite again in the tracepoint mode with `-kernel-btf`
/// pointing nowhere: bytes then come from the programs that read trace
/// records (kernels with the length tracepoints but no BTF), which no
/// kernel at hand would otherwise run.
fn flow_accuracy_without_btf() -> Result<()> {
    let mut test = root_cargo_test()?;
    cmd::run(
        test.args(["-p", "planet-agent", "--test", "flow_accuracy"])
            .args(["--", "--test-threads=1"])
            .env("PLANET_TEST_FLOW_MODE", "tracepoint")
            .env("PLANET_TEST_KERNEL_BTF", "/nonexistent/planet-test/vmlinux"),
    )
}

/// The accuracy suite in every probe mode on the three Debian guest kernels.
fn test_vm() -> Result<()> {
    vm::run(&vm::Options {
        kernels: vm::Kernel::ALL.to_vec(),
        timeout: Duration::from_secs(vm::DEFAULT_TIMEOUT_MINUTES * 60),
    })
}

/// Seconds each fuzz target runs in `cargo xtask test`.
const FUZZ_SECONDS: u32 = 20;

/// Both inventory parsers under libFuzzer for a bounded time, from the
/// committed seeds. A crash, hang or lookup mismatch fails the step and
/// leaves the input in `fuzz/artifacts/`.
fn fuzz_inventory() -> Result<()> {
    let root = cmd::workspace_root();
    cmd::run(
        cmd::new("cargo")
            .args(["fmt", "--manifest-path", "fuzz/Cargo.toml", "--check"])
            .current_dir(root),
    )?;
    for target in ["inventory_arrayjson", "inventory_ndjson"] {
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        cmd::run(
            cmd::new("cargo")
                .args(["+nightly", "fuzz", "run", target])
                .arg(&corpus)
                .arg(root.join("fuzz/seeds").join(target))
                .arg("--")
                .arg(format!("-max_total_time={FUZZ_SECONDS}"))
                .args(["-timeout=5", "-dict=fuzz/json.dict"])
                // The fuzz build needs no eBPF object.
                .env("AYA_BUILD_SKIP", "1")
                .current_dir(root),
        )?;
    }
    Ok(())
}

/// The debug agent starts, attaches its probes, serves /metrics and exits
/// cleanly on SIGTERM.
fn agent_smoke() -> Result<()> {
    cmd::run(cmd::cargo().arg("build").args(HOST_TARGETS))?;
    let target = cmd::target_dir()?;
    let binary = target.join("debug").join("planet-agent");
    let log = target.join("xtask-agent-smoke.log");
    let _ = std::fs::remove_file(&log);
    let addr: SocketAddr = "127.0.0.1:19198".parse()?;
    let mut agent = Agent::start(&binary, addr, &["-task-interval", "2s"], &log)?;
    let metrics = agent.wait_attached(Duration::from_secs(60))?;
    let attached = agent::metric_value(&metrics, agent::ATTACHED_METRIC).unwrap_or_default();
    say!("agent attached {attached} flow programs; stopping it");
    let status = agent.stop()?;
    if !status.success() {
        bail!(
            "the agent exited with {} after SIGTERM; see {}",
            cmd::describe(status),
            log.display()
        );
    }
    Ok(())
}
