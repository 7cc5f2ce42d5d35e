//! The agent page in real headless Chromium, against a test topology in
//! network namespaces:
//!
//! ```text
//!  ns B: pg-client ──► root: pg-web (listens)      ns A: pg-db (listens)
//!   "client.planet.test"    "web.planet.test" pg-app ──►  "db.planet.test"
//! ```
//!
//! The agent (a real process, eBPF attached) names everything from an
//! inventory file. Traffic keeps flowing while the page loads, so edges carry
//! byte rates. The page's DOM must show this host, the upstream service and
//! the downstream client as nodes, the two edges with their port and
//! process, the listener, and the same rows in the tables; the page must log
//! nothing to its console. Screenshot and DOM go to
//! `target/test-artifacts/`.
//!
//! The eBPF programs see every namespace, so the namespaced ends also show
//! up (pg-client with web.planet.test as its upstream, pg-db with it as a
//! downstream), as do other processes on the machine; the checks pick
//! edges by peer and process name, as the discovery test does.
//!
//! Needs root (eBPF, network namespaces) and Debian's `chromium`; fails,
//! never skips, without them.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use planet_testkit::{
    agent::AgentProcess,
    browser::{self, Capture, Chromium},
    netns::TestNet,
    prom::Sample,
    traffic::{self, ClientOpts, ServerOpts},
};

const AGENT: &str = env!("CARGO_BIN_EXE_planet-agent");

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// Runs short client connections against `server` until `stop`, so every
/// flow drain sees bytes.
fn keep_talking(
    server: SocketAddr,
    comm: &str,
    net: Option<Arc<TestNet>>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<anyhow::Result<u64>> {
    let mut opts = ClientOpts::new(server, comm, 200_000);
    opts.conns = 3;
    opts.read_reply = true;
    thread::spawn(move || {
        let mut runs = 0;
        while !stop.load(Ordering::Relaxed) {
            traffic::run_client(&opts, net.as_deref(), Duration::from_secs(30))?;
            runs += 1;
            thread::sleep(Duration::from_millis(150));
        }
        Ok(runs)
    })
}

fn attr<'t>(tag: &'t [(String, String)], name: &str) -> Option<&'t str> {
    tag.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Groups (class="...") in the page DOM, as `key=value` sets of the given
/// attributes.
fn groups(dom: &str, class: &str, keys: &[&str]) -> BTreeSet<String> {
    browser::start_tags(dom, "g")
        .iter()
        .filter(|t| attr(t, "class") == Some(class))
        .map(|t| {
            keys.iter()
                .map(|k| format!("{k}={}", attr(t, k).unwrap_or("<missing>")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// The section of `dom` that is the table with this id.
fn table<'d>(dom: &'d str, id: &str) -> &'d str {
    let start = dom
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id}"));
    let end = dom[start..].find("</table>").expect("table end");
    &dom[start..start + end]
}

struct Expected {
    db_port: String,
    web_port: String,
    /// `planet_server_process`'s `bind` of the web listener.
    web_bind: String,
}

/// What must hold for the page to be right; `Err` says what is missing.
fn check(dom: &str, want: &Expected) -> Result<(), String> {
    let mut missing = Vec::new();
    if !dom.contains("data-state=\"ready\"") {
        return Err("the page never rendered data (body data-state is not ready)".into());
    }
    let hosts = groups(dom, "host", &["data-address", "data-hostgroup"]);
    if !hosts.contains("data-address=web.planet.test,data-hostgroup=web") {
        missing.push(format!("host node web.planet.test/web, got {hosts:?}"));
    }
    let peers = groups(
        dom,
        "peer",
        &["data-direction", "data-address", "data-hostgroup"],
    );
    for peer in [
        "data-direction=upstream,data-address=db.planet.test,data-hostgroup=database",
        "data-direction=downstream,data-address=client.planet.test,data-hostgroup=frontend",
    ] {
        if !peers.contains(peer) {
            missing.push(format!("peer node {peer}, got {peers:?}"));
        }
    }
    let edge_keys = [
        "data-direction",
        "data-address",
        "data-port",
        "data-process",
    ];
    let edges = groups(dom, "edge", &edge_keys);
    for edge in [
        format!(
            "data-direction=upstream,data-address=db.planet.test,data-port={},data-process=pg-app",
            want.db_port
        ),
        format!(
            "data-direction=downstream,data-address=client.planet.test,data-port={},data-process=pg-web",
            want.web_port
        ),
    ] {
        if !edges.contains(&edge) {
            missing.push(format!("edge {edge}, got {edges:?}"));
        }
    }
    // The edges carry current bytes/s both ways (traffic is flowing).
    for (address, process) in [
        ("db.planet.test", "pg-app"),
        ("client.planet.test", "pg-web"),
    ] {
        let rated = browser::start_tags(dom, "g").into_iter().any(|t| {
            attr(&t, "class") == Some("edge")
                && attr(&t, "data-address") == Some(address)
                && attr(&t, "data-process") == Some(process)
                && ["data-egress", "data-ingress"].iter().all(|k| {
                    attr(&t, k)
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(|v| v > 0.0)
                })
        });
        if !rated {
            missing.push(format!(
                "{address}/{process} edge with bytes/s > 0 both ways"
            ));
        }
    }
    for (id, row, cell) in [
        (
            "upstream-table",
            format!(
                "<tr data-address=\"db.planet.test\" data-port=\"{}\">",
                want.db_port
            ),
            "<td>pg-app</td>",
        ),
        (
            "downstream-table",
            format!(
                "<tr data-address=\"client.planet.test\" data-port=\"{}\">",
                want.web_port
            ),
            "<td>pg-web</td>",
        ),
        (
            "listeners-table",
            format!(
                "<tr data-bind=\"{}\" data-port=\"{}\">",
                want.web_bind, want.web_port
            ),
            "<td>pg-web</td>",
        ),
    ] {
        let t = table(dom, id);
        if !t.contains(&row) || !t.contains(cell) || !t.contains("<caption>") {
            missing.push(format!("{id}: row {row} with {cell}"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("\n"))
    }
}

fn no_console_output(capture: &Capture, what: &str) {
    assert!(
        capture.console.is_empty(),
        "{what}: the page wrote to its console:\n{}",
        capture.console.join("\n")
    );
}

#[test]
fn the_page_shows_the_dependencies_in_chromium() {
    if let Err(err) = planet_testkit::require_root() {
        panic!("page test cannot run: {err:#}");
    }
    let chromium = Chromium::new().expect("chromium");
    let upstream_net = Arc::new(TestNet::new().expect("namespace A"));
    let downstream_net = Arc::new(TestNet::new().expect("namespace B"));
    let host = upstream_net.host_v4();

    let inventory = artifacts().join("page-inventory.json");
    std::fs::write(
        &inventory,
        format!(
            r#"[
  {{"ip_address": "{host_a}", "domain": "web.planet.test", "hostgroup": "web"}},
  {{"ip_address": "{host_b}", "domain": "web.planet.test", "hostgroup": "web"}},
  {{"ip_address": "{db}", "domain": "db.planet.test", "hostgroup": "database"}},
  {{"ip_address": "{client}", "domain": "client.planet.test", "hostgroup": "frontend"}}
]"#,
            host_a = upstream_net.host_v4(),
            host_b = downstream_net.host_v4(),
            db = upstream_net.ns_v4(),
            client = downstream_net.ns_v4(),
        ),
    )
    .expect("write inventory");
    let agent = AgentProcess::start(
        AGENT,
        "1s",
        &[
            "-task-inventory-enabled",
            "-task-inventory-addr",
            inventory.to_str().expect("utf-8 path"),
            "-task-inventory-interval",
            "1s",
            "-local-address",
            &host.to_string(),
        ],
    )
    .expect("start agent");
    let ready = |s: &[Sample]| {
        use planet_testkit::prom::value;
        value(s, "planet_flow_programs_attached", &[]) == Some(1.0)
            && value(s, "planet_task_last_run_success", &[("task", "inventory")]) == Some(1.0)
            && value(s, "planet_task_last_run_success", &[("task", "socketstat")]) == Some(1.0)
    };
    agent
        .wait_for(ready, Duration::from_secs(30))
        .expect("agent ready (eBPF attached, inventory and socket table collected)");

    let mut db = ServerOpts::new(SocketAddr::new(upstream_net.ns_v4().into(), 0), "pg-db");
    db.expect_conns = u64::MAX;
    db.reply_bytes = 50_000;
    let db = traffic::spawn_server(&db, Some(&upstream_net)).expect("db server");
    let mut web = ServerOpts::new(
        SocketAddr::new(downstream_net.host_v4().into(), 0),
        "pg-web",
    );
    web.expect_conns = u64::MAX;
    web.reply_bytes = 80_000;
    let web = traffic::spawn_server(&web, None).expect("web server");
    let want = Expected {
        db_port: db.addr().port().to_string(),
        web_port: web.addr().port().to_string(),
        web_bind: web.addr().to_string(),
    };

    let stop = Arc::new(AtomicBool::new(false));
    let talkers = [
        keep_talking(db.addr(), "pg-app", None, stop.clone()),
        keep_talking(
            web.addr(),
            "pg-client",
            Some(downstream_net.clone()),
            stop.clone(),
        ),
    ];

    let url = format!("http://{}/", agent.addr());
    let deadline = Instant::now() + Duration::from_secs(60);
    let dom_path = artifacts().join("agent-page.html");
    let outcome = loop {
        let capture = chromium.dump_dom(&url).expect("load the page");
        std::fs::write(&dom_path, &capture.dom).expect("save the DOM");
        no_console_output(&capture, "page load");
        match check(&capture.dom, &want) {
            Ok(()) => break Ok(capture),
            Err(missing) if Instant::now() > deadline => break Err(missing),
            Err(_) => thread::sleep(Duration::from_secs(1)),
        }
    };
    if let Err(missing) = outcome {
        stop.store(true, Ordering::Relaxed);
        panic!(
            "the page lacks:\n{missing}\nDOM saved to {}\nagent log:\n{}",
            dom_path.display(),
            agent.logs()
        );
    }

    // The refresh: with more virtual time the page polls the API again
    // (every 5 s) and still renders cleanly.
    let mut longer = chromium.clone();
    longer.virtual_time_ms = 12_000;
    let refreshed = longer.dump_dom(&url).expect("reload the page");
    no_console_output(&refreshed, "refreshing page");
    check(&refreshed.dom, &want).unwrap_or_else(|m| panic!("after refreshes:\n{m}"));

    let png = artifacts().join("agent-page.png");
    let mut shot = chromium.clone();
    shot.window = (1280, 900);
    let capture = shot.screenshot(&url, &png).expect("screenshot");
    no_console_output(&capture, "screenshot load");
    let header = std::fs::read(&png).expect("read screenshot");
    assert!(header.starts_with(b"\x89PNG"), "a PNG");
    eprintln!(
        "page artifacts: {} and {}",
        png.display(),
        dom_path.display()
    );

    stop.store(true, Ordering::Relaxed);
    for talker in talkers {
        let runs = talker.join().expect("talker thread").expect("client runs");
        assert!(runs > 0);
    }
    agent.ensure_running().expect("agent alive");
}

/// The console check is real: a page that logs an error, then throws from
/// a timer, is caught both times.
#[test]
fn an_uncaught_error_is_detected() {
    let chromium = Chromium::new().expect("chromium");
    let page = artifacts().join("console-error-probe.html");
    std::fs::write(
        &page,
        "<!doctype html><p id=p>x</p><script>\
         console.error('planet-logged-error'); \
         setTimeout(function () { document.getElementById('p').textContent = 'ran'; \
         throw new Error('planet-injected-error'); }, 100);</script>",
    )
    .expect("write probe page");
    let capture = chromium
        .dump_dom(&format!("file://{}", page.display()))
        .expect("load probe page");
    assert!(
        capture.dom.contains("<p id=\"p\">ran</p>"),
        "{}",
        capture.dom
    );
    assert!(
        capture
            .console
            .iter()
            .any(|l| l.contains("planet-logged-error")),
        "console.error was not seen; console: {:?}\nlog:\n{}",
        capture.console,
        capture.log
    );
    assert!(
        capture
            .console
            .iter()
            .any(|l| l.contains("Uncaught Error: planet-injected-error")),
        "the injected error was not seen; console: {:?}\nlog:\n{}",
        capture.console,
        capture.log
    );
}
