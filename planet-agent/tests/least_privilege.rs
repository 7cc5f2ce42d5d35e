//! The agent runs as an unprivileged user holding only the capabilities in
//! `planet_agent::privileges::REQUIRED`, and still counts exact bytes and
//! names another user's process (through the eBPF socket iterator); each of
//! those capabilities is needed (the agent loses something without it; the
//! two `/proc` ones only where socket owners come from the `/proc` walk,
//! checked with `-task-socketstat-owners proc_walk`); and the deployment
//! files in `setup/` grant exactly that set.
//!
//! The agent is started through util-linux `setpriv` with a numeric uid and
//! gid (65534, `nobody` on Debian) and the capabilities as inheritable,
//! ambient and bounding sets. The traffic processes run as root: for the
//! agent they are another user's processes.
//!
//! Needs root (to drop to the user, eBPF, network namespaces) and fails,
//! never skips, without it. The agent binary must carry the real eBPF object
//! (built without `AYA_BUILD_SKIP`).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use planet_agent::privileges::{self, Capability, REQUIRED};
use planet_testkit::agent::AgentProcess;
use planet_testkit::flows::{self, Bytes, Side};
use planet_testkit::netns::TestNet;
use planet_testkit::prom::{self, Sample};
use planet_testkit::traffic::{self, ClientOpts, ServerOpts, ServerProcess};

const AGENT: &str = env!("CARGO_BIN_EXE_planet-agent");
/// `nobody`/`nogroup` on Debian; any uid other than root's works.
const UNPRIVILEGED: u32 = 65534;
const TIMEOUT: Duration = Duration::from_secs(30);
const TRAFFIC_TIMEOUT: Duration = Duration::from_secs(120);

/// One agent at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

fn require_root() {
    if let Err(err) = planet_testkit::require_root() {
        panic!("least-privilege tests cannot run: {err:#}");
    }
}

/// A copy of the agent binary the unprivileged user can execute wherever
/// the checkout lives (a home directory may be closed to other users);
/// removed on drop.
struct AgentCopy {
    dir: PathBuf,
}

impl AgentCopy {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("planet-lp-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create binary dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod binary dir");
        let copy = Self { dir };
        std::fs::copy(AGENT, copy.path()).expect("copy the agent binary");
        std::fs::set_permissions(copy.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod agent binary");
        copy
    }

    fn path(&self) -> PathBuf {
        self.dir.join("planet-agent")
    }
}

impl Drop for AgentCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `-all,+bpf,+perfmon,...` for setpriv's capability options.
fn setpriv_caps(caps: &[Capability]) -> String {
    let mut list = String::from("-all");
    for cap in caps {
        let name = cap.name.trim_start_matches("CAP_").to_ascii_lowercase();
        list.push_str(",+");
        list.push_str(&name);
    }
    list
}

fn mask(caps: &[Capability]) -> u64 {
    caps.iter().fold(0, |m, cap| m | (1u64 << cap.bit))
}

/// Starts the agent as [`UNPRIVILEGED`] holding exactly `caps`, with
/// `extra` flags, and checks from `/proc` that it does.
fn start_unprivileged(binary: &AgentCopy, caps: &[Capability], extra: &[&str]) -> AgentProcess {
    let list = setpriv_caps(caps);
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={UNPRIVILEGED}"))
        .arg(format!("--regid={UNPRIVILEGED}"))
        .arg("--clear-groups")
        .arg(format!("--inh-caps={list}"))
        .arg(format!("--ambient-caps={list}"))
        .arg(format!("--bounding-set={list}"))
        .arg("--")
        .arg(binary.path());
    let agent = AgentProcess::start_command(cmd, "1s", extra)
        .unwrap_or_else(|err| panic!("start the agent through setpriv: {err:#}"));
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid()))
        .expect("read the agent's /proc status");
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    let uids: Vec<&str> = uid_line.split_whitespace().skip(1).collect();
    assert!(
        uids.iter().all(|u| *u == UNPRIVILEGED.to_string()),
        "agent is not running as uid {UNPRIVILEGED}: {uid_line}"
    );
    assert_eq!(
        privileges::effective(&status),
        Some(mask(caps)),
        "effective capabilities of the agent, expected exactly {list}"
    );
    agent
}

fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .expect("Uid of process")
}

fn comm(tag: &str) -> String {
    format!("pt-lp{tag}{}", std::process::id() % 10_000)
}

fn attached(samples: &[Sample]) -> Option<f64> {
    prom::value(samples, "planet_flow_programs_attached", &[])
}

fn task_ok(samples: &[Sample], task: &str) -> bool {
    prom::value(samples, "planet_task_last_run_success", &[("task", task)]) == Some(1.0)
}

/// The process name the agent gives the listener on `port`, once the
/// socket table has listed it.
fn listener_name(samples: &[Sample], port: u16) -> Option<String> {
    let port = port.to_string();
    prom::select(samples, "planet_server_process", &[("port", port.as_str())])
        .next()
        .map(|s| s.label("process_name").unwrap_or_default().to_owned())
}

/// A root `planet-traffic server` on the host side of `net`.
fn root_server(net: &TestNet, comm: &str, reply_bytes: u64) -> ServerProcess {
    let opts = ServerOpts {
        reply_bytes,
        ..ServerOpts::new((net.host_v4(), 0), comm)
    };
    let server =
        traffic::spawn_server(&opts, None).unwrap_or_else(|err| panic!("traffic server: {err:#}"));
    assert_ne!(
        uid_of(server.pid()),
        UNPRIVILEGED,
        "the server must belong to another user than the agent"
    );
    server
}

#[test]
fn unprivileged_agent_with_the_required_set_counts_exact_bytes() {
    require_root();
    let _turn = serial();
    let binary = AgentCopy::new();
    let agent = start_unprivileged(&binary, &REQUIRED, &[]);
    if let Err(err) = agent.wait_for(|s| attached(s) == Some(1.0), TIMEOUT) {
        panic!("flow programs did not attach with {REQUIRED:?}: {err:#}");
    }
    let net = TestNet::new().unwrap_or_else(|err| panic!("test namespace: {err:#}"));
    let (server_comm, client_comm) = (comm("s"), comm("c"));
    let server = root_server(&net, &server_comm, 4321);
    let port = server.addr().port();

    // Process attribution from /proc: the listener belongs to a root process.
    let named = |s: &[Sample]| listener_name(s, port).as_deref() == Some(server_comm.as_str());
    if let Err(err) = agent.wait_for(named, TIMEOUT) {
        let samples = agent.scrape().unwrap_or_default();
        panic!(
            "listener on port {port} never named {server_comm:?} (got {:?}): {err:#}",
            listener_name(&samples, port)
        );
    }

    let client_opts = ClientOpts {
        read_reply: true,
        ..ClientOpts::new(server.addr(), client_comm.clone(), 1_234_567)
    };
    let client = traffic::run_client(&client_opts, Some(&net), TRAFFIC_TIMEOUT)
        .unwrap_or_else(|err| panic!("traffic client: {err:#}"));
    let served = server
        .wait(TRAFFIC_TIMEOUT)
        .unwrap_or_else(|err| panic!("traffic server: {err:#}"));
    assert_eq!((client.sent, served.received), (1_234_567, 1_234_567));
    assert_eq!((served.sent, client.received), (4321, 4321));

    let want_client = Bytes::sent_received(client.sent, client.received);
    let want_server = Bytes::sent_received(served.sent, served.received);
    let exact = |s: &[Sample]| {
        flows::process_bytes(s, Side::Upstream, &client_comm) == want_client
            && flows::process_bytes(s, Side::Downstream, &server_comm) == want_server
    };
    if let Err(err) = agent.wait_for(exact, TIMEOUT) {
        let samples = agent.scrape().unwrap_or_default();
        panic!(
            "byte counters not exact: client {} (want {want_client}), server {} (want {want_server}): {err:#}\n{}\n{}",
            flows::process_bytes(&samples, Side::Upstream, &client_comm),
            flows::process_bytes(&samples, Side::Downstream, &server_comm),
            flows::describe_process(&samples, &client_comm),
            flows::describe_process(&samples, &server_comm),
        );
    }
    let samples = agent.scrape().expect("scrape");
    for task in ["flow", "socketstat"] {
        assert!(task_ok(&samples, task), "task {task} failed");
    }
    assert_eq!(
        owner_method(&samples).as_deref(),
        Some("ebpf_iter"),
        "with the required set the socket table must use the eBPF iterator:\n{}",
        agent.logs()
    );
    assert!(
        !agent.logs().contains("capability missing"),
        "the agent reported a missing capability:\n{}",
        agent.logs()
    );
}

/// `planet_socket_owner_method`'s method.
fn owner_method(samples: &[Sample]) -> Option<String> {
    prom::select(samples, "planet_socket_owner_method", &[])
        .find(|s| s.value == 1.0)
        .and_then(|s| s.label("method"))
        .map(str::to_owned)
}

/// What an agent without one capability still manages.
#[derive(Debug, PartialEq, Eq)]
struct Degraded {
    attached: bool,
    names_other_users: bool,
    owner_method: Option<String>,
}

#[test]
fn each_required_capability_is_needed() {
    require_root();
    let _turn = serial();
    let net = TestNet::new().unwrap_or_else(|err| panic!("test namespace: {err:#}"));
    let binary = AgentCopy::new();
    let mut seen = Vec::new();
    for (i, dropped) in REQUIRED.iter().enumerate() {
        let caps: Vec<Capability> = REQUIRED.iter().copied().filter(|c| c != dropped).collect();
        let walk_only = matches!(dropped.name, "CAP_DAC_READ_SEARCH" | "CAP_SYS_PTRACE");
        // The /proc capabilities matter where owners come from the walk.
        let runs: &[&[&str]] = if walk_only {
            &[&[], &["-task-socketstat-owners=proc_walk"]]
        } else {
            &[&[]]
        };
        for (r, flags) in runs.iter().enumerate() {
            let agent = start_unprivileged(&binary, &caps, flags);
            let server_comm = comm(&format!("d{i}{r}"));
            let server = root_server(&net, &server_comm, 0);
            let port = server.addr().port();
            // Wait until the socket table lists the listener and the flow task
            // has reported, then read what the agent made of them.
            let settled = |s: &[Sample]| {
                listener_name(s, port).is_some()
                    && prom::value(s, "planet_task_last_run_success", &[("task", "flow")]).is_some()
            };
            let samples = agent.wait_for(settled, TIMEOUT).unwrap_or_else(|err| {
                panic!("without {dropped} {flags:?}: agent never listed port {port}: {err:#}")
            });
            let outcome = Degraded {
                attached: attached(&samples) == Some(1.0),
                names_other_users: listener_name(&samples, port).as_deref()
                    == Some(server_comm.as_str()),
                owner_method: owner_method(&samples),
            };
            let expect = |attached, names_other_users, method: &str| Degraded {
                attached,
                names_other_users,
                owner_method: Some(method.to_owned()),
            };
            let expected = match (dropped.name, flags.is_empty()) {
                ("CAP_BPF" | "CAP_PERFMON", _) => expect(false, true, "proc_walk"),
                // The iterator needs neither /proc capability.
                ("CAP_DAC_READ_SEARCH", true) => expect(false, true, "ebpf_iter"),
                ("CAP_DAC_READ_SEARCH", false) => expect(false, false, "proc_walk"),
                ("CAP_SYS_PTRACE", true) => expect(true, true, "ebpf_iter"),
                ("CAP_SYS_PTRACE", false) => expect(true, false, "proc_walk"),
                (other, _) => panic!("no expectation for {other}; add one"),
            };
            assert_eq!(outcome, expected, "agent without {dropped} {flags:?}");
            if !outcome.attached {
                // The rejected mode names the cause, not just "failed".
                let reasons: Vec<&str> = prom::select(&samples, "planet_flow_mode_rejected", &[])
                    .filter_map(|s| s.label("reason"))
                    .collect();
                let hint = match dropped.name {
                    "CAP_DAC_READ_SEARCH" => "CAP_DAC_READ_SEARCH",
                    _ => "Operation not permitted",
                };
                assert!(
                    reasons.iter().any(|r| r.contains(hint)),
                    "without {dropped}, planet_flow_mode_rejected should mention {hint:?}: {reasons:?}"
                );
            }
            let logs = agent.logs();
            assert!(
                logs.contains("capability missing") && logs.contains(dropped.name),
                "the agent did not say it lacks {dropped}:\n{logs}"
            );
            drop(server);
            drop(agent);
        }
        seen.push(dropped.name);
    }
    assert_eq!(seen.len(), REQUIRED.len());
}

/// The values of every `key=` line of a unit file, split on spaces.
fn unit_values(unit: &str, key: &str) -> BTreeSet<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .flat_map(|v| v.split_whitespace().map(str::to_owned))
        .collect()
}

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

#[test]
fn deployment_files_grant_exactly_the_required_set() {
    let required: BTreeSet<String> = REQUIRED.iter().map(|c| c.name.to_owned()).collect();
    let unit = repo_file("setup/systemd/planet-agent.service");
    assert_eq!(unit_values(&unit, "AmbientCapabilities"), required);
    assert_eq!(unit_values(&unit, "CapabilityBoundingSet"), required);
    // The release tarball ships this unit, and the Ansible role installs it.

    // Kubernetes names capabilities without the CAP_ prefix, in one flow list.
    let daemonset = repo_file("setup/kubernetes/daemonset.yaml");
    let add = daemonset
        .lines()
        .find_map(|l| l.trim().strip_prefix("add:"))
        .expect("capabilities add: line in the DaemonSet");
    let granted: BTreeSet<String> = add
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|c| format!("CAP_{}", c.trim().trim_matches('"')))
        .collect();
    assert_eq!(granted, required);
    assert!(
        daemonset.contains("drop: [\"ALL\"]"),
        "the DaemonSet must drop every other capability"
    );
    let settings: Vec<&str> = daemonset
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(settings.contains(&"privileged: false"));
    assert!(settings.contains(&"allowPrivilegeEscalation: false"));
    assert!(!settings.contains(&"privileged: true"));
}
