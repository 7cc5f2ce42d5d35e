//! Exact per-flow byte accounting against the real kernel: a `planet-traffic`
//! client and server exchange a known number of bytes between the root network
//! namespace and a `TestNet` namespace, and the agent's upstream/downstream
//! counters for their process names must equal what the applications report.
//!
//! Needs root (eBPF and network namespaces) and fails, never skips, without it.
//! Tests take turns: each starts its own agent, and only one runs at a time.
//!
//! `PLANET_TEST_FLOW_MODE` (tracepoint, fentry, kprobe) runs the suite in one
//! probe mode, and fails if the agent cannot attach in it; the default is
//! whatever `auto` picks. `PLANET_TEST_KERNEL_BTF` is passed as `-kernel-btf`:
//! a path that does not exist has the tracepoint mode count bytes from the
//! trace records, as on a kernel without BTF (`cargo xtask test` runs the
//! suite that way too), and the suite checks which programs are attached. `PLANET_AGENT_BIN` and `PLANET_TRAFFIC_BIN` point
//! at the binaries where the build paths do not exist (the qemu guests of
//! `cargo xtask test-vm`).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use planet_testkit::agent::AgentProcess;
use planet_testkit::flows::{self, Bytes, FlowKey, Side};
use planet_testkit::netns::TestNet;
use planet_testkit::prom::{self, Sample};
use planet_testkit::report::{ClientReport, ServerReport};
use planet_testkit::traffic::{self, ClientOpts, RecvMode, SendMode, ServerOpts};

const TASK_INTERVAL: Duration = Duration::from_secs(1);
/// How long the counters may take to show the traffic.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);
const TRAFFIC_TIMEOUT: Duration = Duration::from_secs(120);

/// Serializes the tests: one agent and one traffic run at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A process name unique to this test and test process (at most 15 bytes).
fn comm(tag: &str, role: char) -> String {
    let name = format!("pt-{tag}-{role}{}", std::process::id() % 10_000);
    assert!(name.len() <= 15, "comm {name:?} is too long");
    name
}

fn start_agent() -> AgentProcess {
    if let Err(err) = planet_testkit::require_root() {
        panic!("flow accuracy tests cannot run: {err:#}");
    }
    let mode = std::env::var("PLANET_TEST_FLOW_MODE").ok();
    let mode_flag = format!("-task-flow-mode={}", mode.as_deref().unwrap_or("auto"));
    let kernel_btf = std::env::var("PLANET_TEST_KERNEL_BTF").ok();
    let mut args = vec![
        "-task-socketstat-enabled=false".to_owned(),
        mode_flag.clone(),
    ];
    if let Some(path) = &kernel_btf {
        args.push(format!("-kernel-btf={path}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = AgentProcess::start(
        planet_testkit::agent::binary().expect("planet-agent binary"),
        "1s",
        &args,
    )
    .unwrap_or_else(|err| panic!("start planet-agent: {err:#}"));
    let attached = |s: &[Sample]| prom::value(s, "planet_flow_programs_attached", &[]) == Some(1.0);
    if let Err(err) = agent.wait_for(attached, Duration::from_secs(30)) {
        panic!(
            "planet_flow_programs_attached never became 1 ({mode_flag}): {err:#}\n{}",
            agent.logs()
        );
    }
    if let Some(mode) = mode {
        let samples = agent
            .scrape()
            .unwrap_or_else(|err| panic!("scrape: {err:#}"));
        assert_eq!(
            prom::value(&samples, "planet_flow_mode", &[("mode", &mode)]),
            Some(1.0),
            "the agent did not attach in mode {mode}"
        );
    }
    assert_length_programs(&agent, kernel_btf.as_deref());
    agent
}

/// `enum bpf_prog_type` values.
const BPF_PROG_TYPE_TRACEPOINT: u32 = 5;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;

/// In the tracepoint mode, which programs count bytes: the raw ones where
/// the BTF gives `sk_protocol`'s offset, the record-reading ones without
/// BTF. Other modes attach neither kind for bytes.
fn assert_length_programs(agent: &AgentProcess, kernel_btf: Option<&str>) {
    let samples = agent
        .scrape()
        .unwrap_or_else(|err| panic!("scrape: {err:#}"));
    if prom::value(&samples, "planet_flow_mode", &[("mode", "tracepoint")]) != Some(1.0) {
        return;
    }
    let types = agent
        .bpf_program_types()
        .unwrap_or_else(|err| panic!("the agent's BPF programs: {err:#}"));
    let count = |kind| types.iter().filter(|t| **t == kind).count();
    let btf = std::path::Path::new(
        kernel_btf.unwrap_or(planet_agent::collect::ebpf::layout::KERNEL_BTF_PATH),
    );
    if btf.exists() {
        assert_eq!(
            count(BPF_PROG_TYPE_RAW_TRACEPOINT),
            2,
            "with BTF at {}, sock_send_length and sock_recv_length get raw tracepoint programs; \
             program types: {types:?}",
            btf.display()
        );
    } else {
        assert_eq!(
            count(BPF_PROG_TYPE_RAW_TRACEPOINT),
            0,
            "without BTF (-kernel-btf {}), no raw programs; program types: {types:?}",
            btf.display()
        );
        // Lifecycle, send and receive (and tcp_destroy_sock where it exists).
        assert!(
            count(BPF_PROG_TYPE_TRACEPOINT) >= 3,
            "without BTF the byte counts come from trace-record programs; program types: {types:?}"
        );
    }
}

/// Where the two ends run: one in the root namespace, one inside `net`.
#[derive(Clone, Copy)]
enum Layout {
    /// Server in the root namespace on the host-side veth address, client inside.
    ClientInNs,
    /// Server inside the namespace, client in the root namespace.
    ServerInNs,
}

#[derive(Clone, Copy, PartialEq)]
enum Family {
    V4,
    V6,
    /// The server listens on `[::]` (dual stack); the client connects over IPv4,
    /// so the server's socket sees IPv4-mapped IPv6 addresses.
    MappedV4,
}

struct Case {
    tag: &'static str,
    layout: Layout,
    family: Family,
    server: fn(ServerOpts) -> ServerOpts,
    client: fn(ClientOpts) -> ClientOpts,
}

struct Outcome {
    server: ServerReport,
    client: ClientReport,
    client_ip: IpAddr,
    server_ip: IpAddr,
    samples: Vec<Sample>,
}

/// Runs `case` under a fresh agent and asserts the flow counters are exact.
fn run(case: &Case) -> Outcome {
    let _turn = serial();
    let agent = start_agent();
    let net = TestNet::new().unwrap_or_else(|err| panic!("create test namespace: {err:#}"));
    let (host_ip, ns_ip) = match case.family {
        Family::V4 | Family::MappedV4 => (IpAddr::V4(net.host_v4()), IpAddr::V4(net.ns_v4())),
        Family::V6 => (IpAddr::V6(net.host_v6()), IpAddr::V6(net.ns_v6())),
    };
    let (server_ip, client_ip, server_net, client_net) = match case.layout {
        Layout::ClientInNs => (host_ip, ns_ip, None, Some(&net)),
        Layout::ServerInNs => (ns_ip, host_ip, Some(&net), None),
    };
    let listen_ip = match case.family {
        Family::MappedV4 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        Family::V4 | Family::V6 => server_ip,
    };
    let (server_comm, client_comm) = (comm(case.tag, 's'), comm(case.tag, 'c'));

    let server_opts = (case.server)(ServerOpts::new((listen_ip, 0), server_comm.clone()));
    let server = traffic::spawn_server(&server_opts, server_net)
        .unwrap_or_else(|err| panic!("start traffic server: {err:#}"));
    let port = server.addr().port();
    let connect = SocketAddr::new(server_ip, port);
    let client_opts = (case.client)(ClientOpts::new(connect, client_comm.clone(), 0));
    let client = traffic::run_client(&client_opts, client_net, TRAFFIC_TIMEOUT)
        .unwrap_or_else(|err| panic!("traffic client: {err:#}"));
    let server = server
        .wait(TRAFFIC_TIMEOUT)
        .unwrap_or_else(|err| panic!("traffic server: {err:#}"));
    assert_eq!(client.conns, client_opts.conns, "client connections");
    assert_eq!(server.conns, server_opts.expect_conns, "server connections");

    let expected = Expected {
        client_key: FlowKey {
            side: Side::Upstream,
            process_name: client_comm,
            local_address: client_ip,
            remote_address: server_ip,
            port,
        },
        client: Bytes::sent_received(client.sent, client.received),
        server_key: FlowKey {
            side: Side::Downstream,
            process_name: server_comm,
            local_address: server_ip,
            remote_address: client_ip,
            port,
        },
        server: Bytes::sent_received(server.sent, server.received),
    };
    let samples = expected.wait(&agent);
    assert_task_ok(&agent);
    Outcome {
        server,
        client,
        client_ip,
        server_ip,
        samples,
    }
}

struct Expected {
    client_key: FlowKey,
    client: Bytes,
    server_key: FlowKey,
    server: Bytes,
}

impl Expected {
    /// Every check, as `(what, observed, expected)`.
    fn checks(&self, samples: &[Sample]) -> Vec<(String, Bytes, Bytes)> {
        let (c, s) = (&self.client_key.process_name, &self.server_key.process_name);
        vec![
            (
                format!("client {c} upstream flow"),
                self.client_key.bytes(samples),
                self.client,
            ),
            (
                format!("server {s} downstream flow"),
                self.server_key.bytes(samples),
                self.server,
            ),
            // Nothing of either process is counted under other labels.
            (
                format!("client {c} upstream, all labels"),
                flows::process_bytes(samples, Side::Upstream, c),
                self.client,
            ),
            (
                format!("client {c} downstream, all labels"),
                flows::process_bytes(samples, Side::Downstream, c),
                Bytes::default(),
            ),
            (
                format!("server {s} downstream, all labels"),
                flows::process_bytes(samples, Side::Downstream, s),
                self.server,
            ),
            (
                format!("server {s} upstream, all labels"),
                flows::process_bytes(samples, Side::Upstream, s),
                Bytes::default(),
            ),
        ]
    }

    fn holds(&self, samples: &[Sample]) -> bool {
        self.checks(samples)
            .iter()
            .all(|(_, observed, expected)| observed == expected)
    }

    /// Polls until the counters are exact, then checks they stay so for two
    /// more task intervals (no late over-counting).
    fn wait(&self, agent: &AgentProcess) -> Vec<Sample> {
        if agent.wait_for(|s| self.holds(s), SETTLE_TIMEOUT).is_err() {
            self.fail(
                agent,
                &format!("counters not exact within {SETTLE_TIMEOUT:?}"),
            );
        }
        std::thread::sleep(2 * TASK_INTERVAL);
        let samples = agent
            .scrape()
            .unwrap_or_else(|err| panic!("scrape: {err:#}"));
        if !self.holds(&samples) {
            self.fail(agent, "counters changed after being exact");
        }
        samples
    }

    fn fail(&self, agent: &AgentProcess, why: &str) -> ! {
        let samples = agent
            .scrape()
            .unwrap_or_else(|err| panic!("{why}; scrape failed: {err:#}"));
        let mut report = format!("{why}:\n");
        for (what, observed, expected) in self.checks(&samples) {
            let mark = if observed == expected { "ok  " } else { "BAD " };
            report += &format!("{mark}{what}: observed {observed}, expected {expected}\n");
        }
        report += &format!("expected client labels: {:?}\n", self.client_key.labels());
        report += &format!("expected server labels: {:?}\n", self.server_key.labels());
        for key in [&self.client_key, &self.server_key] {
            report += &format!(
                "series of {}:\n{}\n",
                key.process_name,
                flows::describe_process(&samples, &key.process_name)
            );
        }
        panic!("{report}");
    }
}

fn assert_task_ok(agent: &AgentProcess) {
    let samples = agent
        .scrape()
        .unwrap_or_else(|err| panic!("scrape: {err:#}"));
    let success = prom::value(
        &samples,
        "planet_task_last_run_success",
        &[("task", "flow")],
    );
    assert_eq!(
        success,
        Some(1.0),
        "planet_task_last_run_success{{task=\"flow\"}}"
    );
    let attached = prom::value(&samples, "planet_flow_programs_attached", &[]);
    assert_eq!(attached, Some(1.0), "planet_flow_programs_attached");
}

fn same(opts: ServerOpts) -> ServerOpts {
    opts
}

#[test]
fn ipv4_blocking() {
    let out = run(&Case {
        tag: "v4blk",
        layout: Layout::ClientInNs,
        family: Family::V4,
        server: same,
        client: |c| ClientOpts {
            bytes: 1_000_000,
            ..c
        },
    });
    assert_eq!(out.client.sent, 1_000_000);
    assert_eq!(out.server.received, 1_000_000);
}

#[test]
fn ipv6_blocking() {
    let out = run(&Case {
        tag: "v6blk",
        layout: Layout::ClientInNs,
        family: Family::V6,
        server: same,
        client: |c| ClientOpts {
            bytes: 777_777,
            ..c
        },
    });
    assert!(out.client_ip.is_ipv6() && out.server_ip.is_ipv6());
    assert_eq!(out.server.received, 777_777);
}

#[test]
fn ipv4_mapped_server_labels_dotted_addresses() {
    let out = run(&Case {
        tag: "v4map",
        layout: Layout::ClientInNs,
        family: Family::MappedV4,
        server: |s| ServerOpts {
            reply_bytes: 4321,
            ..s
        },
        client: |c| ClientOpts {
            bytes: 54_321,
            read_reply: true,
            ..c
        },
    });
    // The server's socket addresses are IPv4-mapped IPv6.
    assert!(
        out.server.connections[0].remote.starts_with("[::ffff:"),
        "{:?}",
        out.server
    );
}

#[test]
fn nonblocking_partial_writes() {
    let out = run(&Case {
        tag: "nonblk",
        layout: Layout::ClientInNs,
        family: Family::V4,
        server: same,
        client: |c| ClientOpts {
            bytes: 8_000_000,
            mode: SendMode::Nonblocking,
            ..c
        },
    });
    assert!(
        out.client.partial_writes > 0,
        "no partial writes: {:?}",
        out.client.partial_writes
    );
    assert_eq!(out.server.received, 8_000_000);
}

#[test]
fn msg_waitall_receiver() {
    run(&Case {
        tag: "wtall",
        layout: Layout::ClientInNs,
        family: Family::V4,
        server: |s| ServerOpts {
            recv_mode: RecvMode::Waitall,
            ..s
        },
        client: |c| ClientOpts {
            bytes: 5_000_001,
            ..c
        },
    });
}

#[test]
fn peek_then_read_receiver() {
    // Reverse layout: the server (which peeks) is inside the namespace.
    let out = run(&Case {
        tag: "peek",
        layout: Layout::ServerInNs,
        family: Family::V4,
        server: |s| ServerOpts {
            recv_mode: RecvMode::PeekThenRead,
            ..s
        },
        client: |c| ClientOpts {
            bytes: 2_500_000,
            ..c
        },
    });
    assert_eq!(out.server.received, 2_500_000);
}

#[test]
fn sendfile_sender() {
    run(&Case {
        tag: "sendf",
        layout: Layout::ClientInNs,
        family: Family::V4,
        server: same,
        client: |c| ClientOpts {
            bytes: 3_333_333,
            mode: SendMode::Sendfile,
            ..c
        },
    });
}

#[test]
fn thousand_short_connections() {
    let out = run(&Case {
        tag: "conns",
        layout: Layout::ClientInNs,
        family: Family::V4,
        server: |s| ServerOpts {
            expect_conns: 1000,
            ..s
        },
        client: |c| ClientOpts {
            bytes: 1536,
            conns: 1000,
            ..c
        },
    });
    assert_eq!(out.client.sent, 1_536_000);
    assert_eq!(out.server.received, 1_536_000);
}

#[test]
fn server_replies_both_directions() {
    // Reverse layout, and per-remote-IP totals: nothing else talks to these
    // addresses, so planet_traffic_bytes_total must match exactly too.
    let out = run(&Case {
        tag: "reply",
        layout: Layout::ServerInNs,
        family: Family::V6,
        server: |s| ServerOpts {
            expect_conns: 3,
            reply_bytes: 250_000,
            ..s
        },
        client: |c| ClientOpts {
            bytes: 100_000,
            conns: 3,
            read_reply: true,
            ..c
        },
    });
    assert_eq!((out.client.sent, out.client.received), (300_000, 750_000));
    assert_eq!((out.server.sent, out.server.received), (750_000, 300_000));
    let client_side = flows::traffic_bytes(&out.samples, out.server_ip);
    assert_eq!(
        client_side,
        Bytes::sent_received(out.client.sent, out.client.received)
    );
    let server_side = flows::traffic_bytes(&out.samples, out.client_ip);
    assert_eq!(
        server_side,
        Bytes::sent_received(out.server.sent, out.server.received)
    );
}
