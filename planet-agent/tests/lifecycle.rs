//! The agent degrades instead of dying: without privileges it still serves
//! /metrics and says the flow task is failing; SIGTERM and SIGINT stop it
//! cleanly. Runs the real binary.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

const AGENT: &str = env!("CARGO_BIN_EXE_planet-agent");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get_metrics(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .starts_with("HTTP/1.1 200")
        .then(|| response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()))?
}

/// Polls /metrics until `ready` holds for its body.
fn wait_for(port: u16, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(body) = get_metrics(port)
            && ready(&body)
        {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "agent on port {port} never became ready"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn spawn(command: &mut Command, port: u16) -> Child {
    command
        .args(["-listen-address", &format!("127.0.0.1:{port}")])
        .args(["-task-interval", "1s", "-task-socketstat-enabled=false"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start planet-agent")
}

fn signal_and_wait(child: &mut Child, signal: libc::c_int) -> ExitStatus {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "agent ignored signal {signal}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut logs = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut logs);
    }
    logs
}

#[test]
fn unprivileged_agent_serves_and_reports_the_failing_flow_task() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test drops privileges with setpriv and must start as root"
    );
    let port = free_port();
    let mut child = spawn(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(AGENT),
        port,
    );
    let body = wait_for(port, |b| {
        b.contains(r#"planet_task_last_run_success{task="flow"}"#)
    });
    assert!(body.contains("planet_flow_programs_attached 0"), "{body}");
    assert!(
        body.contains(r#"planet_task_last_run_success{task="flow"} 0"#),
        "{body}"
    );
    assert!(body.contains("planet_flow_mode_rejected{"), "{body}");
    let status = signal_and_wait(&mut child, libc::SIGTERM);
    let logs = stderr_of(&mut child);
    assert!(status.success(), "exit {status:?}\n{logs}");
    assert!(
        logs.contains("flow task cannot run"),
        "one clear reason in the log:\n{logs}"
    );
}

#[test]
fn sigterm_and_sigint_stop_the_agent_cleanly() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let port = free_port();
        let mut child = spawn(&mut Command::new(AGENT), port);
        wait_for(port, |b| b.contains("planet_flow_programs_attached"));
        let status = signal_and_wait(&mut child, signal);
        let logs = stderr_of(&mut child);
        assert!(status.success(), "signal {signal}: {status:?}\n{logs}");
        assert!(logs.contains("Planet agent stopped"), "{logs}");
    }
}

#[test]
fn disabled_flow_task_is_reported_as_not_attached() {
    let port = free_port();
    let mut child = spawn(Command::new(AGENT).arg("-task-flow-enabled=false"), port);
    let body = wait_for(port, |b| b.contains("planet_flow_programs_attached"));
    assert!(body.contains("planet_flow_programs_attached 0"), "{body}");
    assert!(!body.contains(r#"task="flow""#), "{body}");
    signal_and_wait(&mut child, libc::SIGTERM);
}

#[test]
fn bad_flags_fail_fast_with_a_message() {
    let out = Command::new(AGENT)
        .args(["-task-interval", "0s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("greater than zero"));
    let out = Command::new(AGENT).arg("-version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("planet-agent v"));
}
