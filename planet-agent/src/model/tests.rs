//! The agent's heart without root: a scripted [`FlowSource`] drained by
//! the real [`FlowCollector`], its drains applied to the [`Model`] with
//! the other collectors' inputs, the snapshot checked.

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use planet_common::Origin;

use super::*;
use crate::collect::{
    ProbeState, Reports,
    flows::{Counts, FlowCollector, FlowId, FlowSource, KernelStats, ProgramStats, TASK_NAME},
    inventory::{Host, Inventory, InventoryStatus},
    socket_table::{Connection, Listener, TcpState},
};

const HOST: &str = "10.0.0.1";
const RETENTION: Duration = Duration::from_secs(120);

/// The kernel as the flow collector sees it, scripted by the test.
#[derive(Default)]
struct FakeFlows {
    live: Vec<Flow>,
    closed: Vec<Flow>,
    listening: HashSet<u16>,
}

impl FakeFlows {
    /// `flow` appears in (or is updated in) the live map.
    fn set(&mut self, flow: Flow) {
        self.live.retain(|f| f.id != flow.id);
        self.live.push(flow);
    }

    /// `flow` closes with its final counters: a close record, and the
    /// entry leaves the live map.
    fn close(&mut self, flow: Flow) {
        self.live.retain(|f| f.id != flow.id);
        self.closed.push(flow);
    }
}

impl FlowSource for FakeFlows {
    async fn wait_closed(&mut self, _: &mut Vec<Flow>) -> std::io::Result<()> {
        std::future::pending().await
    }

    fn poll_closed(&mut self, out: &mut Vec<Flow>) {
        out.append(&mut self.closed);
    }

    fn live(&self) -> Vec<Flow> {
        self.live.clone()
    }

    fn stats(&self) -> KernelStats {
        KernelStats::default()
    }

    fn program_stats(&self) -> Vec<ProgramStats> {
        Vec::new()
    }

    fn capacity(&self) -> u32 {
        1024
    }

    fn listening_ports(&self) -> std::io::Result<HashSet<u16>> {
        Ok(self.listening.clone())
    }
}

/// A connection of `process` between this host's `local_port` and
/// `remote`, with the counters the kernel has for it.
fn flow(sock: u64, origin: Origin, local_port: u16, remote: &str, counts: (u64, u64)) -> Flow {
    let remote: SocketAddr = remote.parse().expect(remote);
    Flow {
        id: FlowId {
            sock,
            first_seen_ns: sock * 1000,
        },
        local: HOST.parse().expect("host"),
        local_port,
        remote: remote.ip(),
        remote_port: remote.port(),
        origin,
        addresses_missing: false,
        tgid: 100,
        comm: Arc::from(if origin == Origin::Accepted {
            "web"
        } else {
            "app"
        }),
        counts: Counts {
            tx: counts.0,
            rx: counts.1,
        },
    }
}

/// The flow collector over a fake kernel, and a model with a clock the
/// test moves.
struct Agent {
    kernel: FlowCollector<FakeFlows>,
    model: Model,
    now: Instant,
}

impl Agent {
    fn new(kernel: FakeFlows, socket_table: bool) -> Self {
        let mut model = Model::new(Config {
            budget: Budget {
                retention: RETENTION,
                ..Budget::default()
            },
            flow_enabled: true,
            interval: Duration::from_secs(15),
            socket_table_enabled: socket_table,
            ..Config::default()
        });
        let local_ip = Some(HOST.parse().expect("host"));
        model.apply(
            Report::input("socketstat", Input::LocalIp(local_ip)),
            Instant::now(),
            SystemTime::now(),
        );
        Self {
            kernel: FlowCollector::new(kernel, Reports::channel().0, Duration::from_secs(15)),
            model,
            now: Instant::now(),
        }
    }

    fn kernel(&mut self) -> &mut FakeFlows {
        self.kernel.source_mut()
    }

    /// One drain, `elapsed` after the previous one.
    fn drain(&mut self, elapsed: Duration) -> &Snapshot {
        self.now += elapsed;
        let drain = self.kernel.drain();
        let run = Run {
            success: true,
            duration: Duration::ZERO,
        };
        self.apply(Report::ran(TASK_NAME, run, Some(Input::Flows(drain))))
    }

    fn apply(&mut self, report: Report) -> &Snapshot {
        self.model.apply(report, self.now, SystemTime::now());
        self.model.snapshot()
    }
}

/// `(direction, remote, port, process) -> (tx, rx)` of every edge.
fn edges(s: &Snapshot) -> Vec<(&'static str, IpAddr, u16, String, u64, u64)> {
    s.flows
        .edges
        .iter()
        .map(|e| {
            (
                e.key.direction.as_str(),
                e.key.remote,
                e.key.port,
                e.key.process.to_string(),
                e.bytes.tx,
                e.bytes.rx,
            )
        })
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect(s)
}

/// Flows opened, counted, grown and closed between drains: each byte is
/// credited once, a flow that lived between two drains is counted to its
/// close record, and a close record that races the live walk is not
/// counted twice.
#[test]
fn drains_credit_every_byte_once() {
    let mut agent = Agent::new(FakeFlows::default(), false);
    let db = flow(1, Origin::Connected, 40_000, "10.0.0.5:5432", (100, 50));
    agent.kernel().set(db.clone());
    let s = agent.drain(Duration::from_secs(15));
    assert_eq!(
        edges(s),
        vec![("upstream", ip("10.0.0.5"), 5432, "app".into(), 100, 50)]
    );
    assert_eq!(s.flows.live_flows, 1);
    assert_eq!(s.flows.capacity, 1024);
    assert!(s.flows.rates.is_none(), "no rate before two drains");

    // The connection grows; a client connects and disconnects between two
    // drains: only its close record shows it.
    agent.kernel().set(Flow {
        counts: Counts { tx: 400, rx: 80 },
        ..db.clone()
    });
    agent
        .kernel()
        .close(flow(2, Origin::Accepted, 8080, "10.0.0.9:51000", (7, 30)));
    let s = agent.drain(Duration::from_secs(10));
    assert_eq!(
        edges(s),
        vec![
            ("upstream", ip("10.0.0.5"), 5432, "app".into(), 400, 80),
            ("downstream", ip("10.0.0.9"), 8080, "web".into(), 7, 30),
        ]
    );
    let rates = s.flows.rates.as_ref().expect("rates after two drains");
    let db_rate = rates.get(&s.flows.edges[0].key);
    assert_eq!(
        (db_rate.tx, db_rate.rx),
        (30.0, 3.0),
        "300 B and 30 B in 10 s"
    );

    // The database connection closes; the kernel submits its record just
    // before deleting the entry, so this walk still sees it too.
    let last = Flow {
        counts: Counts { tx: 450, rx: 90 },
        ..db
    };
    agent.kernel().close(last.clone());
    agent.kernel().set(last);
    let s = agent.drain(Duration::from_secs(15));
    assert_eq!(
        edges(s)[0],
        ("upstream", ip("10.0.0.5"), 5432, "app".into(), 450, 90)
    );
    agent.kernel().live.clear();
    let s = agent.drain(Duration::from_secs(15));
    assert_eq!(
        edges(s)[0],
        ("upstream", ip("10.0.0.5"), 5432, "app".into(), 450, 90),
        "counted once"
    );
    assert_eq!(s.flows.vanished_total, 0);

    // The byte families carry the same totals, named by address.
    let upstream = &s.flows.series.upstream.series;
    assert_eq!(upstream.len(), 1);
    assert_eq!(upstream[0].0.remote_address, "10.0.0.5");
    assert_eq!(upstream[0].1, Counts { tx: 450, rx: 90 });
}

/// Without a socket table, dependencies come from the flows: a closed
/// connection stays an edge for the retention window, then leaves.
#[test]
fn closed_connections_stay_dependencies_for_the_retention() {
    let mut agent = Agent::new(FakeFlows::default(), false);
    agent
        .kernel()
        .close(flow(1, Origin::Connected, 40_001, "10.0.0.7:443", (1, 2)));
    let s = agent.drain(Duration::from_secs(15));
    assert_eq!(s.dependencies.upstream.len(), 1);
    assert_eq!(s.dependencies.upstream[0].remote_address, "10.0.0.7");
    assert_eq!(s.dependencies.upstream[0].port, 443);
    let s = agent.drain(RETENTION - Duration::from_secs(15));
    assert_eq!(s.dependencies.upstream.len(), 1, "within the retention");
    let s = agent.drain(Duration::from_secs(16));
    assert!(s.dependencies.upstream.is_empty(), "forgotten after it");
    assert!(s.flows.edges.is_empty(), "idle edge forgotten too");
}

/// After an agent restart the kernel's map starts empty but sockets live
/// on: flows first seen on a send or receive predate the programs, and
/// take planet-exporter's rule (a local port with a listener is
/// downstream). Their bytes count from what the new programs saw.
#[test]
fn flows_older_than_the_agent_take_the_listener_rule() {
    let kernel = FakeFlows {
        listening: HashSet::from([8443]),
        ..FakeFlows::default()
    };
    let mut agent = Agent::new(kernel, false);
    agent
        .kernel()
        .set(flow(1, Origin::Unknown, 8443, "10.0.0.20:33000", (5, 6)));
    agent
        .kernel()
        .set(flow(2, Origin::Unknown, 45_000, "10.0.0.21:9092", (7, 8)));
    let s = agent.drain(Duration::from_secs(15));
    assert_eq!(
        edges(s),
        vec![
            ("upstream", ip("10.0.0.21"), 9092, "app".into(), 7, 8),
            ("downstream", ip("10.0.0.20"), 8443, "app".into(), 5, 6),
        ]
    );
    assert_eq!(s.dependencies.downstream[0].port, 8443);
    assert_eq!(s.dependencies.upstream[0].port, 9092);
}

/// With the socket table running, dependencies are built once, from the
/// table and the flows together, and only when a table arrives: a
/// connection the table shows and the flows saw is one dependency, and a
/// listener names downstream edges without a process.
#[test]
fn one_dependency_builder_merges_table_and_flows() {
    let mut agent = Agent::new(FakeFlows::default(), true);
    agent.kernel().set(flow(
        1,
        Origin::Connected,
        40_002,
        "10.0.0.5:5432",
        (10, 10),
    ));
    let s = agent.drain(Duration::from_secs(15));
    assert!(
        s.dependencies.upstream.is_empty(),
        "dependencies wait for the socket table"
    );
    let table = SocketTable {
        listeners: vec![Listener {
            addr: "0.0.0.0:8080".parse().expect("addr"),
            process: Arc::from("web"),
        }],
        connections: vec![
            Connection {
                local: "10.0.0.1:40002".parse().expect("addr"),
                remote: "10.0.0.5:5432".parse().expect("addr"),
                state: TcpState::Established,
                process: Arc::from("app"),
            },
            Connection {
                local: "10.0.0.1:8080".parse().expect("addr"),
                remote: "10.0.0.30:1234".parse().expect("addr"),
                state: TcpState::TimeWait,
                process: Arc::from(""),
            },
        ],
        ephemeral_ports: None,
    };
    let report = Report::ran(
        "socketstat",
        Run {
            success: true,
            duration: Duration::from_millis(3),
        },
        Some(Input::SocketTable {
            table,
            local_ip: Some(ip(HOST)),
        }),
    );
    let s = agent.apply(report);
    assert_eq!(s.dependencies.upstream.len(), 1, "one edge, not two");
    assert_eq!(&*s.dependencies.upstream[0].process_name, "app");
    assert_eq!(s.dependencies.downstream.len(), 1);
    assert_eq!(&*s.dependencies.downstream[0].process_name, "web");
    assert_eq!(s.dependencies.servers.len(), 1);
    assert!(s.tasks["socketstat"].last_success);
}

/// Names come from the inventory in use when bytes were counted: after a
/// change new bytes go to the new name and the old series keeps its value.
#[test]
fn inventory_names_new_bytes_and_keeps_old_series() {
    let mut agent = Agent::new(FakeFlows::default(), false);
    let inventory = |domain: &str| Input::Inventory {
        inventory: Some(Arc::new(Inventory::with_localhost(vec![Host::new(
            "10.0.0.5", domain, "db",
        )]))),
        status: InventoryStatus::default(),
    };
    agent.apply(Report::input("inventory", inventory("db-old.example")));
    let db = flow(1, Origin::Connected, 40_003, "10.0.0.5:5432", (100, 0));
    agent.kernel().set(db.clone());
    agent.drain(Duration::from_secs(15));
    agent.apply(Report::input("inventory", inventory("db-new.example")));
    agent.kernel().set(Flow {
        counts: Counts { tx: 130, rx: 0 },
        ..db
    });
    let s = agent.drain(Duration::from_secs(15));
    let mut named: Vec<(String, u64)> = s
        .flows
        .series
        .upstream
        .series
        .iter()
        .map(|(d, c)| (d.remote_address.clone(), c.tx))
        .collect();
    named.sort();
    assert_eq!(
        named,
        vec![
            ("db-new.example".to_owned(), 30),
            ("db-old.example".to_owned(), 100)
        ]
    );
    assert_eq!(s.dependencies.upstream[0].remote_address, "db-new.example");
}

/// A failed inventory refresh keeps the last good inventory and counts
/// the failure; task runs are recorded with their outcome.
#[test]
fn failed_inputs_keep_the_last_good_state() {
    let mut agent = Agent::new(FakeFlows::default(), false);
    let good = Inventory::with_localhost(vec![Host::new("10.0.0.5", "db.example", "db")]);
    let ran = |success| Run {
        success,
        duration: Duration::from_millis(1),
    };
    agent.apply(Report::ran(
        "inventory",
        ran(true),
        Some(Input::Inventory {
            inventory: Some(Arc::new(good)),
            status: InventoryStatus::default(),
        }),
    ));
    let failed = InventoryStatus {
        failures: 1,
        last_error: Some("cannot fetch the inventory".into()),
        ..InventoryStatus::default()
    };
    let s = agent.apply(Report::ran(
        "inventory",
        ran(false),
        Some(Input::Inventory {
            inventory: None,
            status: failed.clone(),
        }),
    ));
    assert_eq!(
        s.inventory
            .lookup(ip("10.0.0.5"))
            .map(|h| h.domain.as_str()),
        Some("db.example")
    );
    assert_eq!(s.inventory_status, Some(failed));
    let status = &s.tasks["inventory"];
    assert_eq!((status.runs, status.failures), (2, 1));
    assert!(!status.last_success);
}

/// The probe's state is an input like any other; the model's snapshot
/// always says whether the programs run.
#[test]
fn probe_state_is_reported() {
    let mut agent = Agent::new(FakeFlows::default(), false);
    assert_eq!(agent.model.snapshot().probe, ProbeState::Disabled);
    let failed = ProbeState::Failed {
        reason: "no BTF".into(),
    };
    let s = agent.apply(Report::ran(
        TASK_NAME,
        Run {
            success: false,
            duration: Duration::ZERO,
        },
        Some(Input::Probe(failed.clone())),
    ));
    assert_eq!(s.probe, failed);
    assert!(!s.tasks[TASK_NAME].last_success);
}
