//! Exercises `TestNet` and the `planet-traffic` helpers on the real kernel.
//! Needs root (network namespaces); fails, never skips, without it.

use std::net::{IpAddr, SocketAddr};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use planet_testkit::netns::TestNet;
use planet_testkit::report::{ClientReport, ServerReport};
use planet_testkit::traffic::{self, ClientOpts, RecvMode, SendMode, ServerOpts};

const TIMEOUT: Duration = Duration::from_secs(60);

fn setup() -> SharedNet {
    planet_testkit::require_root().unwrap();
    shared_net().unwrap()
}

fn exchange(
    server: ServerOpts,
    server_net: Option<&TestNet>,
    client: impl FnOnce(SocketAddr) -> ClientOpts,
    client_net: Option<&TestNet>,
) -> (ServerReport, ClientReport) {
    let server = traffic::spawn_server(&server, server_net).unwrap();
    let client = traffic::run_client(&client(server.addr()), client_net, TIMEOUT).unwrap();
    (server.wait(TIMEOUT).unwrap(), client)
}

fn ip_of(addr: &str) -> IpAddr {
    addr.parse::<SocketAddr>().unwrap().ip()
}

/// Tests share the machine's namespace indices; the one that checks
/// removal runs alone.
static ALONE: RwLock<()> = RwLock::new(());

/// A `TestNet` for a test that may run beside others.
fn shared_net() -> anyhow::Result<SharedNet> {
    let guard = ALONE.read().unwrap_or_else(PoisonError::into_inner);
    Ok(SharedNet {
        net: TestNet::new()?,
        _guard: guard,
    })
}

/// A `TestNet` that holds off the removal check while it lives.
struct SharedNet {
    net: TestNet,
    _guard: RwLockReadGuard<'static, ()>,
}

impl std::ops::Deref for SharedNet {
    type Target = TestNet;

    fn deref(&self) -> &TestNet {
        &self.net
    }
}

#[test]
fn client_in_namespace_reaches_host_over_ipv4() {
    let net = setup();
    let (server, client) = exchange(
        ServerOpts {
            expect_conns: 2,
            reply_bytes: 777,
            ..ServerOpts::new((net.host_v4(), 0), "tk-srv4")
        },
        None,
        |addr| ClientOpts {
            conns: 2,
            read_reply: true,
            ..ClientOpts::new(addr, "tk-cli4", 100_000)
        },
        Some(&net),
    );
    assert_eq!(
        (client.sent, client.received, client.conns),
        (200_000, 1554, 2)
    );
    assert_eq!(
        (server.received, server.sent, server.conns),
        (200_000, 1554, 2)
    );
    for conn in &client.connections {
        assert_eq!(ip_of(&conn.local), IpAddr::V4(net.ns_v4()));
        assert_eq!(ip_of(&conn.remote), IpAddr::V4(net.host_v4()));
    }
    assert_eq!(
        ip_of(&server.connections[0].remote),
        IpAddr::V4(net.ns_v4())
    );
}

#[test]
fn host_client_reaches_server_in_namespace_over_ipv6() {
    let net = setup();
    let (server, client) = exchange(
        ServerOpts {
            recv_mode: RecvMode::PeekThenRead,
            ..ServerOpts::new((net.ns_v6(), 0), "tk-srv6")
        },
        Some(&net),
        |addr| ClientOpts {
            mode: SendMode::Nonblocking,
            ..ClientOpts::new(addr, "tk-cli6", 3_000_000)
        },
        None,
    );
    assert_eq!(client.sent, 3_000_000);
    assert!(client.partial_writes > 0, "{client:?}");
    assert_eq!(server.received, 3_000_000);
    assert_eq!(
        ip_of(&client.connections[0].local),
        IpAddr::V6(net.host_v6())
    );
    assert_eq!(ip_of(&server.connections[0].local), IpAddr::V6(net.ns_v6()));
}

#[test]
fn sendfile_and_waitall_count_exactly() {
    let net = setup();
    let (server, client) = exchange(
        ServerOpts {
            recv_mode: RecvMode::Waitall,
            ..ServerOpts::new((net.host_v4(), 0), "tk-srvw")
        },
        None,
        |addr| ClientOpts {
            mode: SendMode::Sendfile,
            ..ClientOpts::new(addr, "tk-clif", 1_234_567)
        },
        Some(&net),
    );
    assert_eq!(client.sent, 1_234_567);
    assert_eq!(server.received, 1_234_567);
}

#[test]
fn parallel_namespaces_are_distinct_and_removed() {
    planet_testkit::require_root().unwrap();
    // Namespace names reuse free indices: while this test looks for its
    // removed names, no other test of this process may create one.
    let _alone = ALONE.write().unwrap_or_else(PoisonError::into_inner);
    let nets: Vec<TestNet> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| TestNet::new().unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut names: Vec<&str> = nets.iter().map(TestNet::name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 4);
    let mut subnets: Vec<_> = nets.iter().map(|n| n.host_v4()).collect();
    subnets.sort_unstable();
    subnets.dedup();
    assert_eq!(subnets.len(), 4);
    let owned: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    drop(nets);
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for name in owned {
        assert!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(&name)),
            "{name} left"
        );
    }
}

#[test]
fn benches_report_sane_numbers() {
    let rr = traffic::run_bench_rr(0.3, None, Some("tk-rr")).unwrap();
    assert_eq!(rr.mode, "rr");
    assert!(rr.ops > 100 && rr.ops_per_sec > 0.0, "{rr:?}");
    let bulk = traffic::run_bench_bulk(0.3, None, None).unwrap();
    assert_eq!(bulk.mode, "bulk");
    assert!(bulk.bytes > 1 << 20 && bulk.bytes_per_sec > 0.0, "{bulk:?}");
}
