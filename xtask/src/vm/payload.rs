//! The binaries a guest runs: `planet-traffic` and the `flow_accuracy` test
//! executable from a debug build with the same target selection as `cargo
//! xtask test` (so that build is reused), and a release agent with the real
//! eBPF object: `AYA_BUILD_SKIP` is cleared, and an object whose build
//! script watched another checkout's sources (a copied `target/`) is
//! rebuilt.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use crate::cmd::{self, say};

/// Host paths of the guest's binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub agent: PathBuf,
    pub traffic: PathBuf,
    /// The accuracy suite (`planet-agent/tests/flow_accuracy.rs`).
    pub suite: PathBuf,
}

/// What the build's JSON messages name.
#[derive(Debug, Default, PartialEq, Eq)]
struct Artifacts {
    agent: Option<PathBuf>,
    traffic: Option<PathBuf>,
    suite: Option<PathBuf>,
    /// `OUT_DIR` of planet-agent's build script (it holds the eBPF object).
    agent_out_dir: Option<PathBuf>,
}

/// Reads cargo's `--message-format=json` lines.
fn artifacts(lines: impl IntoIterator<Item = String>) -> Artifacts {
    let mut found = Artifacts::default();
    for line in lines {
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let package = message["package_id"].as_str().unwrap_or_default();
        // `path+file:///x/planet-agent#0.1.0`, or `planet-agent 0.1.0 (path+...)`.
        let is_agent_package =
            package.contains("/planet-agent#") || package.starts_with("planet-agent ");
        match message["reason"].as_str() {
            Some("build-script-executed") if is_agent_package => {
                found.agent_out_dir = text(&message["out_dir"]).map(PathBuf::from);
            }
            Some("compiler-artifact") => {
                let Some(executable) = text(&message["executable"]).map(PathBuf::from) else {
                    continue;
                };
                let name = message["target"]["name"].as_str().unwrap_or_default();
                let kinds = message["target"]["kind"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let is = |kind: &str| kinds.iter().any(|k| k.as_str() == Some(kind));
                let test_build = message["profile"]["test"].as_bool().unwrap_or(false);
                match name {
                    "planet-agent" if is("bin") && !test_build => found.agent = Some(executable),
                    "planet-traffic" if is("bin") && !test_build => {
                        found.traffic = Some(executable);
                    }
                    "flow_accuracy" if is("test") => found.suite = Some(executable),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    found
}

/// `rerun-if-changed` paths of a build script's `output` that lie outside
/// `workspace`: the script last ran for another checkout.
fn foreign_watches(output: &str, workspace: &Path) -> Vec<PathBuf> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("cargo:rerun-if-changed="))
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && !p.starts_with(workspace))
        .collect()
}

/// The release agent build: under TCG the debug agent took ~13 s to load
/// its programs, the release one under 2 s, for every case of the suite.
const AGENT_BUILD: &[&str] = &["--release", "-p", "planet-agent", "--bin", "planet-agent"];

/// Builds the guest binaries: `planet-traffic` and the suite from the same
/// debug build as the host suites (`selection`), the agent in release.
pub fn build(selection: &[&str]) -> Result<Payload> {
    let tests = cargo_build(selection)?;
    let agent = build_agent()?;
    let missing = |what: &str| anyhow!("the build produced no {what}");
    Ok(Payload {
        agent: agent.agent.ok_or_else(|| missing("planet-agent binary"))?,
        traffic: tests
            .traffic
            .ok_or_else(|| missing("planet-traffic binary"))?,
        suite: tests
            .suite
            .ok_or_else(|| missing("flow_accuracy test executable"))?,
    })
}

/// The release agent, with a current, non-empty eBPF object.
fn build_agent() -> Result<Artifacts> {
    let found = cargo_build(AGENT_BUILD)?;
    let out_dir = found
        .agent_out_dir
        .clone()
        .ok_or_else(|| anyhow!("the build did not report planet-agent's build script"))?;
    let output = std::fs::read_to_string(out_dir.with_file_name("output")).unwrap_or_default();
    let foreign = foreign_watches(&output, cmd::workspace_root());
    let found = if foreign.is_empty() {
        found
    } else {
        say!(
            "planet-agent's eBPF object was built from another checkout ({}); rebuilding it",
            foreign[0].display()
        );
        cmd::run(cmd::cargo().args(["clean", "--release", "-p", "planet-agent"]))?;
        cargo_build(AGENT_BUILD)?
    };
    let object = found
        .agent_out_dir
        .as_ref()
        .map(|dir| dir.join("planet"))
        .ok_or_else(|| anyhow!("no planet-agent OUT_DIR after the rebuild"))?;
    let size = std::fs::metadata(&object)
        .with_context(|| format!("the eBPF object {}", object.display()))?
        .len();
    if size == 0 {
        bail!(
            "{} is empty (a stub from AYA_BUILD_SKIP): the guest needs real eBPF programs",
            object.display()
        );
    }
    Ok(found)
}

fn cargo_build(selection: &[&str]) -> Result<Artifacts> {
    let mut build = cmd::cargo();
    build
        .arg("build")
        .args(selection)
        .arg("--message-format=json-render-diagnostics")
        .env_remove("AYA_BUILD_SKIP")
        .stdout(Stdio::piped());
    eprintln!("$ {}", cmd::display(&build));
    let mut child = build.spawn().context("could not start cargo")?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let found = artifacts(BufReader::new(stdout).lines().map_while(Result::ok));
    let status = child.wait().context("wait for cargo")?;
    if !status.success() {
        bail!(
            "`{}` failed: {}",
            cmd::display(&build),
            cmd::describe(status)
        );
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_three_executables_and_the_out_dir() {
        let lines = [
            r#"{"reason":"build-script-executed","package_id":"path+file:///w/planet-agent#0.1.0","out_dir":"/w/target/debug/build/planet-agent-ee30/out"}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/planet-agent#0.1.0","target":{"name":"planet-agent","kind":["bin"]},"profile":{"test":false},"executable":"/w/target/debug/planet-agent"}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/planet-agent#0.1.0","target":{"name":"planet-agent","kind":["bin"]},"profile":{"test":true},"executable":"/w/target/debug/deps/planet_agent-35fb"}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/planet-agent#0.1.0","target":{"name":"flow_accuracy","kind":["test"]},"profile":{"test":true},"executable":"/w/target/debug/deps/flow_accuracy-2035"}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/planet-testkit#0.1.0","target":{"name":"planet-traffic","kind":["bin"]},"profile":{"test":false},"executable":"/w/target/debug/planet-traffic"}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/planet-common#0.1.0","target":{"name":"planet_common","kind":["lib"]},"profile":{"test":false},"executable":null}"#,
            "not json",
        ];
        let found = artifacts(lines.map(str::to_owned));
        assert_eq!(
            found,
            Artifacts {
                agent: Some("/w/target/debug/planet-agent".into()),
                traffic: Some("/w/target/debug/planet-traffic".into()),
                suite: Some("/w/target/debug/deps/flow_accuracy-2035".into()),
                agent_out_dir: Some("/w/target/debug/build/planet-agent-ee30/out".into()),
            }
        );
    }

    #[test]
    fn watches_of_another_checkout_are_foreign() {
        let output = "cargo:rustc-env=X=1\ncargo:rerun-if-changed=../.git/HEAD\n\
                      cargo:rerun-if-changed=/work/main/planet-agent-ebpf/src\n\
                      cargo:rerun-if-changed=/work/wt/vm/planet-common/src\n";
        assert_eq!(
            foreign_watches(output, Path::new("/work/wt/vm")),
            [PathBuf::from("/work/main/planet-agent-ebpf/src")]
        );
        assert!(foreign_watches(output, Path::new("/work/main")).len() == 1);
    }
}
