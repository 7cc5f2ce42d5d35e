//! Which Linux capabilities the agent holds, and what it cannot do without
//! the ones it lacks. Checked once at start so an agent run with too few
//! privileges says so, instead of quietly serving less.
//!
//! The set was found by experiment (see README, "Least privilege", and
//! `tests/least_privilege.rs`, which runs the agent as an unprivileged user
//! holding exactly [`REQUIRED`]).

use std::fmt;

/// A capability the agent uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// `CAP_BPF`.
    pub name: &'static str,
    /// Bit number in the kernel's capability sets.
    pub bit: u8,
    /// What is lost without it.
    pub without: &'static str,
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Needed for the full data set.
pub const REQUIRED: [Capability; 4] = [
    Capability {
        name: "CAP_BPF",
        bit: 39,
        without: "the eBPF maps and programs cannot be created: no per-process byte counts, \
                  and socket owners come from the /proc walk instead of the eBPF iterator",
    },
    Capability {
        name: "CAP_PERFMON",
        bit: 38,
        without: "tracing programs cannot be loaded or attached: no per-process byte counts, \
                  and socket owners come from the /proc walk instead of the eBPF iterator",
    },
    Capability {
        name: "CAP_DAC_READ_SEARCH",
        bit: 2,
        without: "tracefs (mode 0700) cannot be read: no byte counts; and where the eBPF \
                  socket iterator is unavailable, other users' /proc/<pid>/fd cannot be read: \
                  sockets of other users' processes have no process name",
    },
    Capability {
        name: "CAP_SYS_PTRACE",
        bit: 19,
        without: "where the eBPF socket iterator is unavailable (or -task-socketstat-owners \
                  proc_walk), other users' /proc/<pid>/fd links cannot be read: \
                  sockets of other users' processes have no process name",
    },
];

/// Used when held, never needed.
pub const OPTIONAL: [Capability; 1] = [Capability {
    name: "CAP_SYS_ADMIN",
    bit: 21,
    without: "-task-flow-program-stats cannot turn on BPF run-time statistics \
              (planet_flow_program_run*; the sysctl kernel.bpf_stats_enabled=1 gives them \
              without it), and tracefs is not mounted if it is missing",
}];

/// The effective set (`CapEff:` of `/proc/<pid>/status`), or `None` if the
/// text has no such line.
pub fn effective(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// The capabilities of `wanted` missing from the effective set `eff`.
pub fn missing(eff: u64, wanted: &[Capability]) -> Vec<Capability> {
    wanted
        .iter()
        .copied()
        .filter(|cap| eff & (1u64 << cap.bit) == 0)
        .collect()
}

/// Logs, once, every capability the agent lacks and what that costs.
pub fn log_missing() {
    let status = match std::fs::read_to_string("/proc/self/status") {
        Ok(status) => status,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read /proc/self/status; capabilities unknown");
            return;
        }
    };
    let Some(eff) = effective(&status) else {
        tracing::warn!("no CapEff line in /proc/self/status; capabilities unknown");
        return;
    };
    let lacking = missing(eff, &REQUIRED);
    for cap in &lacking {
        tracing::warn!(capability = %cap, consequence = cap.without, "capability missing");
    }
    let stats_sysctl = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .is_ok_and(|v| v.trim() == "1");
    for cap in missing(eff, &OPTIONAL) {
        if cap.name == "CAP_SYS_ADMIN" && stats_sysctl {
            continue;
        }
        tracing::info!(capability = %cap, consequence = cap.without, "optional capability not held");
    }
    if lacking.is_empty() {
        tracing::debug!(
            effective = format!("{eff:#x}"),
            "all required capabilities held"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_set() {
        let status = "Name:\tplanet-agent\nCapInh:\t0000000000000000\nCapPrm:\t000000c000080004\n\
                      CapEff:\t000000c000080004\nCapBnd:\t000000c000080004\n";
        assert_eq!(effective(status), Some(0xc0_0008_0004));
        assert_eq!(effective("Name:\tx\n"), None);
        assert_eq!(effective("CapEff:\tzz\n"), None);
    }

    #[test]
    fn the_required_set_is_exactly_enough() {
        let all: u64 = REQUIRED.iter().map(|c| 1u64 << c.bit).sum();
        assert_eq!(all, 0xc0_0008_0004);
        assert!(missing(all, &REQUIRED).is_empty());
        assert_eq!(missing(all, &OPTIONAL), OPTIONAL.to_vec());
        assert!(missing(u64::MAX >> 23, &REQUIRED).is_empty());
    }

    #[test]
    fn names_each_missing_capability() {
        let without_ptrace = 0xc0_0000_0004;
        let names: Vec<&str> = missing(without_ptrace, &REQUIRED)
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["CAP_SYS_PTRACE"]);
        let names: Vec<&str> = missing(0, &REQUIRED).iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "CAP_BPF",
                "CAP_PERFMON",
                "CAP_DAC_READ_SEARCH",
                "CAP_SYS_PTRACE"
            ]
        );
    }
}
