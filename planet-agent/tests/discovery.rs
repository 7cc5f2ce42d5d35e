//! Dependency discovery end to end: a server in the root namespace, clients
//! in a test host's namespace (IPv4 and IPv6), an inventory served over
//! HTTP on loopback, and the exact `planet_upstream`, `planet_downstream`
//! and `planet_server_process` series. Then bad inventories must leave the
//! last good one in place while the agent keeps serving.
//!
//! Needs root (eBPF, network namespaces); fails, never skips, without it.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use planet_testkit::{
    agent::AgentProcess,
    netns::TestNet,
    prom::{self, Sample},
    traffic::{self, ClientOpts, ServerOpts},
};

const AGENT: &str = env!("CARGO_BIN_EXE_planet-agent");
const SETTLE: Duration = Duration::from_secs(20);

/// What the inventory server answers.
#[derive(Clone)]
enum Reply {
    Json(String),
    Html,
    Truncated,
    Status500,
    Huge,
    Slow,
}

/// A loopback HTTP server whose reply can be switched while it runs.
struct InventoryServer {
    addr: SocketAddr,
    reply: Arc<Mutex<Reply>>,
}

impl InventoryServer {
    fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reply = Arc::new(Mutex::new(reply));
        let shared = reply.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let reply = shared.lock().unwrap().clone();
                thread::spawn(move || serve(stream, reply));
            }
        });
        Self { addr, reply }
    }

    fn url(&self) -> String {
        format!("http://{}/inventory.json", self.addr)
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }
}

fn serve(mut stream: std::net::TcpStream, reply: Reply) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let respond = |stream: &mut std::net::TcpStream, status: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
    };
    match reply {
        Reply::Json(body) => respond(&mut stream, "200 OK", body.as_bytes()),
        Reply::Html => respond(
            &mut stream,
            "200 OK",
            b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        ),
        Reply::Truncated => respond(
            &mut stream,
            "200 OK",
            br#"[{"ip_address":"10.9.9.9","domain":"tru"#,
        ),
        Reply::Status500 => respond(&mut stream, "500 Internal Server Error", b"[]"),
        Reply::Huge => {
            let size = 50 << 20;
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n[");
            let _ = stream.write_all(head.as_bytes());
            let chunk = vec![b' '; 1 << 20];
            for _ in 0..50 {
                if stream.write_all(&chunk).is_err() {
                    return;
                }
            }
        }
        Reply::Slow => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n[");
            thread::sleep(Duration::from_secs(30));
        }
    }
}

fn inventory_json(net: &TestNet) -> String {
    format!(
        r#"[
  {{"ip_address": "{host}", "domain": "host.planet.test", "hostgroup": "hostsvc"}},
  {{"ip_address": "{ns}", "domain": "client.planet.test", "hostgroup": "nsclient"}},
  {{"ip_address": "{v6net}/64", "domain": "", "hostgroup": "ns6"}}
]"#,
        host = net.host_v4(),
        ns = net.ns_v4(),
        v6net = net.ns_v6(),
    )
}

fn series(samples: &[Sample], name: &str, comms: &[&str]) -> BTreeSet<String> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| s.label("process_name").is_some_and(|p| comms.contains(&p)))
        .map(|s| {
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            labels.join(",")
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let mut v: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    v.sort();
    v.join(",")
}

#[test]
fn discovers_dependencies_named_by_the_inventory() {
    if let Err(err) = planet_testkit::require_root() {
        panic!("discovery tests cannot run: {err:#}");
    }
    let net = TestNet::new().expect("test network namespace");
    let inventory = InventoryServer::start(Reply::Json(inventory_json(&net)));
    let host = net.host_v4().to_string();
    let agent = AgentProcess::start(
        AGENT,
        "1s",
        &[
            "-task-inventory-enabled",
            "-task-inventory-addr",
            &inventory.url(),
            "-task-inventory-interval",
            "1s",
            "-task-inventory-timeout",
            "2s",
            "-local-address",
            &host,
        ],
    )
    .expect("start agent");
    let ready = |s: &[Sample]| {
        prom::value(s, "planet_flow_programs_attached", &[]) == Some(1.0)
            && prom::value(s, "planet_task_last_run_success", &[("task", "inventory")]) == Some(1.0)
            && prom::value(s, "planet_task_last_run_success", &[("task", "socketstat")])
                == Some(1.0)
    };
    agent
        .wait_for(ready, Duration::from_secs(30))
        .expect("agent ready");

    let pid = std::process::id() % 10_000;
    let (srv, cli, srv6, cli6) = (
        format!("pd-srv-{pid}"),
        format!("pd-cli-{pid}"),
        format!("pd-srv6-{pid}"),
        format!("pd-cli6-{pid}"),
    );
    // A long-lived listener on the host side; one short connection from the
    // namespace (it lives for a millisecond, well between two collections).
    let mut v4 = ServerOpts::new(SocketAddr::new(net.host_v4().into(), 0), srv.clone());
    v4.expect_conns = 1;
    let server = traffic::spawn_server(&v4, None).expect("server");
    let mut v6 = ServerOpts::new(SocketAddr::new(net.host_v6().into(), 0), srv6.clone());
    v6.expect_conns = 1;
    let server6 = traffic::spawn_server(&v6, None).expect("server6");
    let port = server.addr().port();
    let port6 = server6.addr().port();

    // Wait until the listeners are in the socket table first.
    let listening = |s: &[Sample]| {
        !series(s, "planet_server_process", &[&srv]).is_empty()
            && !series(s, "planet_server_process", &[&srv6]).is_empty()
    };
    agent.wait_for(listening, SETTLE).expect("listeners seen");

    traffic::run_client(
        &ClientOpts::new(server.addr(), cli.clone(), 100),
        Some(&net),
        Duration::from_secs(30),
    )
    .expect("v4 client");
    traffic::run_client(
        &ClientOpts::new(server6.addr(), cli6.clone(), 100),
        Some(&net),
        Duration::from_secs(30),
    )
    .expect("v6 client");
    server.wait(Duration::from_secs(30)).expect("server done");
    server6.wait(Duration::from_secs(30)).expect("server6 done");

    let port_s = port.to_string();
    let port6_s = port6.to_string();
    let ns6 = net.ns_v6().to_string();
    let host6 = net.host_v6().to_string();
    let expected_down: BTreeSet<String> = [
        labels(&[
            ("local_address", "host.planet.test"),
            ("local_hostgroup", "hostsvc"),
            ("port", &port_s),
            ("process_name", &srv),
            ("protocol", "tcp"),
            ("remote_address", "client.planet.test"),
            ("remote_hostgroup", "nsclient"),
        ]),
        // The host side is inside the namespace's /64 too.
        labels(&[
            ("local_address", &host6),
            ("local_hostgroup", "ns6"),
            ("port", &port6_s),
            ("process_name", &srv6),
            ("protocol", "tcp"),
            ("remote_address", &ns6),
            ("remote_hostgroup", "ns6"),
        ]),
    ]
    .into();
    // The clients live in the test host's namespace: the eBPF programs see
    // them too, as upstreams of that host.
    let expected_up: BTreeSet<String> = [
        labels(&[
            ("local_address", "client.planet.test"),
            ("local_hostgroup", "nsclient"),
            ("port", &port_s),
            ("process_name", &cli),
            ("protocol", "tcp"),
            ("remote_address", "host.planet.test"),
            ("remote_hostgroup", "hostsvc"),
        ]),
        labels(&[
            ("local_address", &ns6),
            ("local_hostgroup", "ns6"),
            ("port", &port6_s),
            ("process_name", &cli6),
            ("protocol", "tcp"),
            ("remote_address", &host6),
            ("remote_hostgroup", "ns6"),
        ]),
    ]
    .into();
    let comms = [srv.as_str(), cli.as_str(), srv6.as_str(), cli6.as_str()];
    let matches = |s: &[Sample]| {
        series(s, "planet_downstream", &comms) == expected_down
            && series(s, "planet_upstream", &comms) == expected_up
    };
    if let Err(err) = agent.wait_for(matches, SETTLE) {
        let s = agent.scrape().unwrap_or_default();
        panic!(
            "{err:#}\nexpected downstream {expected_down:#?}\n got {:#?}\nexpected upstream {expected_up:#?}\n got {:#?}\nlogs:\n{}",
            series(&s, "planet_downstream", &comms),
            series(&s, "planet_upstream", &comms),
            agent.logs()
        );
    }

    // The bytes of those connections carry the same names.
    let s = agent.scrape().unwrap();
    let ingress = prom::sum(
        &s,
        "planet_downstream_bytes_total",
        &[
            ("process_name", &srv),
            ("direction", "ingress"),
            ("remote_address", "client.planet.test"),
        ],
    );
    assert_eq!(ingress, 100.0);

    // Bad inventories: each one fails, the last good one stays, and the
    // agent keeps serving with the names it had.
    let failures =
        |s: &[Sample]| prom::value(s, "planet_inventory_failures_total", &[]).unwrap_or(0.0);
    for (what, reply) in [
        ("html error page", Reply::Html),
        ("truncated json", Reply::Truncated),
        ("http 500", Reply::Status500),
        ("50 MB body", Reply::Huge),
        ("slow server", Reply::Slow),
    ] {
        let before = failures(&agent.scrape().unwrap());
        inventory.set(reply);
        agent
            .wait_for(|s| failures(s) > before, SETTLE)
            .unwrap_or_else(|e| panic!("{what}: failure not reported: {e:#}\n{}", agent.logs()));
        let s = agent.scrape().expect("agent still serving");
        assert_eq!(
            prom::value(&s, "planet_inventory_entries", &[]),
            Some(4.0),
            "{what}: entries (3 + localhost)"
        );
        assert_eq!(
            prom::value(&s, "planet_task_last_run_success", &[("task", "inventory")]),
            Some(0.0),
            "{what}"
        );
        assert_eq!(
            series(&s, "planet_downstream", &comms),
            expected_down,
            "{what}: names kept"
        );
    }
    inventory.set(Reply::Json("[]".into()));
    agent
        .wait_for(
            |s| prom::value(s, "planet_inventory_entries", &[]) == Some(1.0),
            SETTLE,
        )
        .expect("an empty inventory replaces the old one wholesale (only localhost left)");
    agent.ensure_running().expect("agent alive");
}
