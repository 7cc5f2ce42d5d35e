//! Test helpers for Planet's accuracy tests and benchmarks.
//!
//! - [`browser`]: loads a page in headless Chromium (DOM, screenshot, console).
//! - [`netns`]: a network namespace joined to the root namespace by a veth pair.
//! - [`prom`]: a Prometheus text-exposition parser.
//! - [`agent`]: runs the agent binary and scrapes it.
//! - [`load`]: thousands of held loopback connections, each its own peer.
//! - [`prometheus`]: a real Prometheus server and instant queries.
//! - [`traffic`]: runs the `planet-traffic` generator and parses its reports.
//! - [`flows`]: reads the agent's per-flow byte counters out of a scrape.
//! - [`report`]: the JSON lines `planet-traffic` prints.
//! - [`cargo_bin`]: finds or builds a workspace binary for another package's tests.

pub mod agent;
pub mod browser;
pub mod cargo_bin;
pub mod flows;
pub mod http;
pub mod load;
pub mod netns;
pub mod prom;
pub mod prometheus;
pub mod report;
pub mod traffic;
mod util;

/// Fails with a clear message unless the process runs as root (effective uid 0).
///
/// The accuracy tests need root for eBPF and network namespaces; they must fail
/// rather than pass silently when they cannot run.
pub fn require_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        anyhow::bail!(
            "this test needs root (eBPF programs and network namespaces); running as uid {euid}. \
             Run it as root, e.g. `sudo -E cargo test`"
        );
    }
    Ok(())
}
