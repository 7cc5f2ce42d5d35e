//! One guest: its `/init` script and the qemu run (TCG) that boots it.
//!
//! The kernel console goes to the first serial port (kept as a log for
//! diagnosis); `/init` writes the result stream ([`super::report`]) to the
//! second, so kernel messages never interleave with results.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{initramfs::MODULE_DIR, report::MARK};
use crate::cmd::{self, say};

/// Guest paths of the payload (in `/usr/bin`).
pub const AGENT: &str = "planet-agent";
pub const TRAFFIC: &str = "planet-traffic";
pub const SUITE: &str = "flow_accuracy";

/// The guest's `/init`: mounts what the agent and the tests use, loads the
/// modules, then reports the kernel release, `planet-agent
/// -check-flow-modes`, the suite's case list, and one suite run per
/// available mode, and powers off.
pub fn init_script() -> String {
    format!(
        r#"#!/bin/busybox sh
# PID 1 of a `cargo xtask test-vm` guest (written by xtask/src/vm/guest.rs).
/bin/busybox mkdir -p /bb
/bin/busybox --install -s /bb
export PATH=/usr/sbin:/usr/bin:/bb HOME=/root TMPDIR=/tmp RUST_BACKTRACE=0
export PLANET_AGENT_BIN=/usr/bin/{AGENT} PLANET_TRAFFIC_BIN=/usr/bin/{TRAFFIC}
mount -t devtmpfs devtmpfs /dev
OUT=/dev/ttyS1
mark() {{ echo "{MARK} $*" >> $OUT; }}
# section NAME COMMAND...: the command's output (in /tmp/NAME.txt) and status.
section() {{
    name=$1; shift
    "$@" > /tmp/$name.txt 2>&1
    rc=$?
    mark begin $name
    cat /tmp/$name.txt >> $OUT
    mark end $name rc=$rc
}}
try() {{ "$@" || mark error "failed: $*"; }}
try mount -t proc proc /proc
try mount -t sysfs sysfs /sys
try mount -t tmpfs tmpfs /run
try mount -t tmpfs tmpfs /tmp
try mount -t tracefs tracefs /sys/kernel/tracing
try mount -t debugfs debugfs /sys/kernel/debug
try mount -t bpf bpf /sys/fs/bpf
try mount -t cgroup2 cgroup2 /sys/fs/cgroup
for module in /{MODULE_DIR}/*.ko; do
    [ -e "$module" ] && try insmod "$module"
done
try ip link set lo up
section kernel uname -r
section modes {AGENT} -check-flow-modes
MODES=$(sed -n 's/^flow-mode \([a-z0-9_-]*\): ok$/\1/p' /tmp/modes.txt)
# planet.bench=ROUNDS,SECONDS on the kernel command line: the per-mode
# benchmark of `cargo xtask bench-modes` instead of the accuracy suite.
BENCH=$(sed -n 's/.*planet\.bench=\([0-9]*,[0-9]*\).*/\1/p' /proc/cmdline)
# bench_one MODE: a request/response run with MODE's programs attached
# (none: no agent), then the kernel's statistics of each program.
bench_one() {{
    mode=$1
    if [ "$mode" != none ]; then
        {AGENT} -listen-address 127.0.0.1:19100 -task-interval 1s \
            -task-socketstat-enabled=false -task-flow-program-stats -task-flow-mode=$mode > /tmp/agent.log 2>&1 &
        apid=$!
        n=0
        until wget -qO- http://127.0.0.1:19100/metrics 2>/dev/null | grep -q '^planet_flow_programs_attached 1'; do
            n=$((n+1))
            if [ $n -gt 240 ]; then echo "agent $mode did not attach"; cat /tmp/agent.log; break; fi
            sleep 0.5
        done
    fi
    echo "rr $mode $({TRAFFIC} bench-rr --seconds $SECS --cpu 1 | tail -n 1)"
    if [ "$mode" != none ]; then
        sleep 2
        wget -qO- http://127.0.0.1:19100/metrics | grep '^planet_flow_program_run' | sed "s/^/prog $mode /"
        kill $apid
        wait $apid
    fi
}}
bench_all() {{
    round=1
    while [ $round -le $ROUNDS ]; do
        for mode in none $MODES; do bench_one $mode; done
        round=$((round+1))
    done
}}
if [ -n "$BENCH" ]; then
    ROUNDS=${{BENCH%,*}} SECS=${{BENCH#*,}}
    section bench bench_all
else
    section list {SUITE} --list
    for mode in $MODES; do
        export PLANET_TEST_FLOW_MODE=$mode
        section suite-$mode {SUITE} --test-threads=1
    done
fi
mark done
poweroff -f
"#
    )
}

/// How a qemu run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// qemu exited by itself (power-off, or a reboot after a panic).
    Exited,
    /// Still running at the deadline: killed.
    TimedOut(Duration),
    /// qemu itself failed.
    Failed(String),
}

/// Files of one guest run.
pub struct Run {
    pub console: PathBuf,
    pub results: PathBuf,
    pub qemu_log: PathBuf,
}

impl Run {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            console: dir.join("console.log"),
            results: dir.join("results.log"),
            qemu_log: dir.join("qemu.log"),
        }
    }
}

/// The qemu command line: TCG (no KVM on these machines), 2 CPUs, 1 GiB,
/// no display, no network card, console on ttyS0 and results on ttyS1.
pub fn qemu_command(vmlinuz: &Path, initrd: &Path, run: &Run, cmdline: &str) -> Command {
    let mut qemu = cmd::new("qemu-system-x86_64");
    qemu.args(["-accel", "tcg"])
        // qemu 7.2's TCG corrupts flags on CMPXCHG16B, which 6.12's SLUB uses
        // on every allocation: guests crashed in kmem_cache_alloc in about
        // half of the boots. Without CX16 the kernel takes another path.
        .args(["-cpu", "qemu64,-cx16"])
        .args(["-smp", "2", "-m", "1024"])
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!("console=ttyS0 quiet panic=-1 {cmdline}").trim_end())
        .arg("-serial")
        .arg(serial_file(&run.console))
        .arg("-serial")
        .arg(serial_file(&run.results));
    qemu
}

fn serial_file(path: &Path) -> String {
    format!("file:{}", path.display())
}

/// Boots the guest and waits until qemu exits or `timeout` passes.
/// Marker lines worth a progress line (a section ended, an error).
fn progress_lines(results: &str) -> impl Iterator<Item = &str> {
    results.lines().filter_map(|line| {
        let marker = line.trim_end_matches('\r').strip_prefix(MARK)?.trim();
        (marker.starts_with("end ") || marker.starts_with("error ") || marker == "done")
            .then_some(marker)
    })
}

/// Boots the guest and waits until qemu exits or `timeout` passes, printing
/// each finished section of the result stream as it arrives.
pub fn boot(
    label: &str,
    vmlinuz: &Path,
    initrd: &Path,
    run: &Run,
    cmdline: &str,
    timeout: Duration,
) -> Result<End> {
    for file in [&run.console, &run.results] {
        let _ = fs::remove_file(file);
    }
    let mut qemu = qemu_command(vmlinuz, initrd, run, cmdline);
    let log = fs::File::create(&run.qemu_log)
        .with_context(|| format!("create {}", run.qemu_log.display()))?;
    qemu.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    eprintln!("$ {}", cmd::display(&qemu));
    let mut child = qemu
        .spawn()
        .context("could not start qemu-system-x86_64 (package qemu-system-x86)")?;
    let start = Instant::now();
    let mut shown = 0;
    loop {
        let results = fs::read(&run.results).unwrap_or_default();
        let results = String::from_utf8_lossy(&results);
        // Only whole lines: the last one may still be arriving.
        let complete = results.rfind('\n').map_or("", |end| &results[..=end]);
        for line in progress_lines(complete).skip(shown) {
            say!("guest {label} at {}: {line}", cmd::human(start.elapsed()));
            shown += 1;
        }
        if let Some(status) = child.try_wait().context("wait for qemu")? {
            if status.success() {
                return Ok(End::Exited);
            }
            let log = fs::read_to_string(&run.qemu_log).unwrap_or_default();
            return Ok(End::Failed(format!(
                "qemu exited with {}: {}",
                cmd::describe(status),
                log.trim()
            )));
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(End::TimedOut(timeout));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The first kernel oops or panic line of a console log.
pub fn kernel_crash(console: &str) -> Option<String> {
    console
        .lines()
        .find(|l| l.contains("Kernel panic") || l.contains("Oops:") || l.contains("BUG: "))
        .map(|l| l.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_reports_every_available_mode() {
        let script = init_script();
        assert!(script.starts_with("#!/bin/busybox sh\n"));
        assert!(script.contains("section modes planet-agent -check-flow-modes\n"));
        assert!(script.contains("section list flow_accuracy --list\n"));
        assert!(script.contains("section suite-$mode flow_accuracy --test-threads=1\n"));
        assert!(script.contains("section bench bench_all\n"));
        assert!(script.contains("bench-rr --seconds $SECS --cpu 1"));
        assert!(script.contains("PLANET_AGENT_BIN=/usr/bin/planet-agent"));
        assert!(script.contains("PLANET_TRAFFIC_BIN=/usr/bin/planet-traffic"));
        assert!(script.contains("mount -t tracefs tracefs /sys/kernel/tracing"));
        assert!(script.contains("mount -t bpf bpf /sys/fs/bpf"));
        assert!(script.contains("for module in /lib/modules/*.ko"));
        assert!(script.trim_end().ends_with("mark done\npoweroff -f"));
    }

    #[test]
    fn qemu_uses_tcg_two_serial_files() {
        let run = Run::in_dir(Path::new("/w"));
        let line = cmd::display(&qemu_command(
            Path::new("/k/vmlinuz"),
            Path::new("/w/initrd"),
            &run,
            "planet.bench=3,5",
        ));
        assert!(
            line.contains("console=ttyS0 quiet panic=-1 planet.bench=3,5"),
            "{line}"
        );
        assert!(
            line.contains("-accel tcg -cpu qemu64,-cx16 -smp 2 -m 1024"),
            "{line}"
        );
        assert!(
            line.contains("-serial file:/w/console.log -serial file:/w/results.log"),
            "{line}"
        );
        assert!(
            line.contains("-kernel /k/vmlinuz -initrd /w/initrd"),
            "{line}"
        );
    }

    #[test]
    fn progress_shows_ends_and_errors() {
        let results = "@@planet-vm begin modes\r\nflow-mode fentry: ok\r\n@@planet-vm end modes rc=0\r\n\
                       @@planet-vm error failed: insmod /lib/modules/00-veth.ko\n@@planet-vm done\n";
        assert_eq!(
            progress_lines(results).collect::<Vec<_>>(),
            [
                "end modes rc=0",
                "error failed: insmod /lib/modules/00-veth.ko",
                "done"
            ]
        );
    }

    #[test]
    fn crash_line() {
        let console =
            "[ 1.0] ok\n[ 1.3] BUG: kernel NULL pointer dereference\n[ 1.4] Kernel panic - x\n";
        assert_eq!(
            kernel_crash(console).as_deref(),
            Some("[ 1.3] BUG: kernel NULL pointer dereference")
        );
        assert_eq!(kernel_crash("fine\n"), None);
    }
}
