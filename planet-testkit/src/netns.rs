//! [`TestNet`]: a network namespace joined to the root namespace by a veth
//! pair, with IPv4 and IPv6 addresses on both ends, removed on drop.
//!
//! Namespace `i` (1..=254, unique on the host while it exists) gets
//! `10.231.i.1/24` and `fd00:231:i::1/64` on the root side (`ptv<i>h`) and
//! `10.231.i.2/24` and `fd00:231:i::2/64` inside (`ptv<i>p`). Its name is
//! `planet-t<pid>-<i>`; namespaces left behind by dead processes are removed
//! the next time one is created.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::util::{self, FileLock};

const PREFIX: &str = "planet-t";

/// A network namespace with a veth pair to the root namespace; see the module docs.
#[derive(Debug)]
pub struct TestNet {
    name: String,
    index: u8,
}

impl TestNet {
    /// Creates the namespace, the veth pair and the addresses, and waits for
    /// both ends to have carrier. Needs root and iproute2's `ip`.
    pub fn new() -> anyhow::Result<Self> {
        let lock_path = std::env::temp_dir().join("planet-testkit-netns.lock");
        let _lock = FileLock::acquire(&lock_path)?;
        remove_stale();
        let used = used_indices()?;
        let index = (1..=254u8)
            .find(|i| !used.contains(i))
            .context("all 254 test network indices are in use")?;
        let net = Self {
            name: format!("{PREFIX}{}-{index}", std::process::id()),
            index,
        };
        // From here on, drop removes whatever part was created.
        net.setup()
            .with_context(|| format!("set up network namespace {}", net.name))?;
        Ok(net)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address of the root-namespace end.
    pub fn host_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.index, 1)
    }

    /// The address of the end inside the namespace.
    pub fn ns_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.index, 2)
    }

    /// The IPv6 address of the root-namespace end.
    pub fn host_v6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0x231, u16::from(self.index), 0, 0, 0, 0, 1)
    }

    /// The IPv6 address of the end inside the namespace.
    pub fn ns_v6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0x231, u16::from(self.index), 0, 0, 0, 0, 2)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    fn host_if(&self) -> String {
        format!("ptv{}h", self.index)
    }

    fn ns_if(&self) -> String {
        format!("ptv{}p", self.index)
    }

    fn setup(&self) -> anyhow::Result<()> {
        let (name, host_if, ns_if) = (self.name.as_str(), self.host_if(), self.ns_if());
        ip(&["netns", "add", name])?;
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", name,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.host_v4()),
            "dev",
            &host_if,
        ])?;
        ip(&[
            "-6",
            "addr",
            "add",
            &format!("{}/64", self.host_v6()),
            "dev",
            &host_if,
            "nodad",
        ])?;
        ip(&["link", "set", &host_if, "up"])?;
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            name,
            "addr",
            "add",
            &format!("{}/24", self.ns_v4()),
            "dev",
            &ns_if,
        ])?;
        let ns_v6 = format!("{}/64", self.ns_v6());
        ip(&[
            "-n", name, "-6", "addr", "add", &ns_v6, "dev", &ns_if, "nodad",
        ])?;
        ip(&["-n", name, "link", "set", &ns_if, "up"])?;
        self.wait_for_carrier(Duration::from_secs(10))
    }

    fn wait_for_carrier(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let host = ip(&["-o", "link", "show", "dev", &self.host_if()])?;
            let peer = ip(&["-n", &self.name, "-o", "link", "show", "dev", &self.ns_if()])?;
            if host.contains("LOWER_UP") && peer.contains("LOWER_UP") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("veth pair has no carrier after {timeout:?}: {host} / {peer}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Deleting the root-side veth removes its peer synchronously; deleting
        // the namespace would leave that to the kernel's cleanup work.
        let _ = ip(&["link", "del", &self.host_if()]);
        if let Err(err) = ip(&["netns", "del", &self.name]) {
            eprintln!("planet-testkit: removing network namespace: {err:#}");
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    util::run(Command::new("ip").args(args))
}

/// `(pid, index)` of a namespace name this module made.
fn parse_name(name: &str) -> Option<(u32, u8)> {
    let (pid, index) = name.strip_prefix(PREFIX)?.split_once('-')?;
    Some((pid.parse().ok()?, index.parse().ok()?))
}

fn namespaces() -> anyhow::Result<Vec<String>> {
    let out = ip(&["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Removes namespaces whose creating process is gone.
fn remove_stale() {
    let Ok(names) = namespaces() else { return };
    for name in names {
        match parse_name(&name) {
            Some((pid, index)) if !util::pid_alive(pid) => {
                let _ = ip(&["link", "del", &format!("ptv{index}h")]);
                let _ = ip(&["netns", "del", &name]);
            }
            _ => {}
        }
    }
}

/// Indices taken by existing namespaces or root-side links.
fn used_indices() -> anyhow::Result<BTreeSet<u8>> {
    let mut used: BTreeSet<u8> = namespaces()?
        .iter()
        .filter_map(|n| parse_name(n))
        .map(|(_, i)| i)
        .collect();
    let links = ip(&["-o", "link", "show"])?;
    for line in links.lines() {
        // "12: ptv3h@if2: <...>"
        let Some(ifname) = line.split(": ").nth(1) else {
            continue;
        };
        let ifname = ifname.split('@').next().unwrap_or(ifname);
        let index = ifname.strip_prefix("ptv").and_then(|r| r.strip_suffix('h'));
        if let Some(i) = index.and_then(|i| i.parse().ok()) {
            used.insert(i);
        }
    }
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_own_names_only() {
        assert_eq!(parse_name("planet-t1234-7"), Some((1234, 7)));
        assert_eq!(parse_name("planet-t1234-300"), None);
        assert_eq!(parse_name("other-ns"), None);
    }
}
