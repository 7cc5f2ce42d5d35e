//! [`AgentProcess`]: runs the agent binary on a free loopback port, scrapes
//! its `/metrics`, and stops it with SIGTERM on drop. Its stdout and stderr go
//! to a temporary file, printed when the owning test panics.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::prom::{self, Sample};
use crate::{http, util};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The `planet-agent` binary for tests outside the planet-agent package:
/// `$PLANET_AGENT_BIN`, or `cargo build -p planet-agent` into the running
/// test's target dir (see [`crate::cargo_bin`]). Built without
/// `AYA_BUILD_SKIP` it carries the real eBPF programs.
pub fn binary() -> anyhow::Result<PathBuf> {
    crate::cargo_bin::binary("planet-agent", "planet-agent", "PLANET_AGENT_BIN")
}

/// A running agent; see the module docs.
#[derive(Debug)]
pub struct AgentProcess {
    child: Mutex<Child>,
    pid: u32,
    addr: SocketAddr,
    log_path: PathBuf,
}

impl AgentProcess {
    /// Starts `binary -listen-address 127.0.0.1:<free port> -task-interval
    /// <task_interval> <extra_args...>` and waits up to 30 s until `GET
    /// /metrics` answers 200.
    pub fn start(
        binary: impl AsRef<Path>,
        task_interval: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_command(Command::new(binary.as_ref()), task_interval, extra_args)
    }

    /// Like [`AgentProcess::start`], for an agent started by `command`: the
    /// binary itself, or a wrapper such as `setpriv ... -- <binary>`. The
    /// flags are appended to its arguments.
    pub fn start_command(
        command: Command,
        task_interval: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let agent = Self::spawn_command(command, task_interval, extra_args)?;
        agent.wait_ready(READY_TIMEOUT)?;
        Ok(agent)
    }

    /// Like [`AgentProcess::start`] without waiting for plain-HTTP
    /// `/metrics` (for agents serving TLS, or expected to fail at startup).
    pub fn spawn(
        binary: impl AsRef<Path>,
        task_interval: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::spawn_command(Command::new(binary.as_ref()), task_interval, extra_args)
    }

    /// [`AgentProcess::spawn`] for an agent started by `command`.
    pub fn spawn_command(
        mut command: Command,
        task_interval: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log_path = util::unique_temp_path("planet-agent-log", "txt");
        let log = File::create(&log_path)
            .with_context(|| format!("create agent log {}", log_path.display()))?;
        let child = command
            .arg("-listen-address")
            .arg(addr.to_string())
            .args(["-task-interval", task_interval])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn agent {command:?}"))?;
        let agent = Self {
            pid: child.id(),
            child: Mutex::new(child),
            addr,
            log_path,
        };
        Ok(agent)
    }

    /// The address `/metrics` is served on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The type (`enum bpf_prog_type`) of every BPF program the agent
    /// holds a descriptor of, from `/proc/<pid>/fdinfo`.
    pub fn bpf_program_types(&self) -> anyhow::Result<Vec<u32>> {
        let dir = PathBuf::from(format!("/proc/{}/fdinfo", self.pid));
        let mut types = Vec::new();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
            // A descriptor closed since the listing has no fdinfo any more.
            let Ok(info) = std::fs::read_to_string(entry?.path()) else {
                continue;
            };
            if let Some(kind) = info
                .lines()
                .find_map(|line| line.strip_prefix("prog_type:"))
            {
                types.push(kind.trim().parse().context("prog_type in fdinfo")?);
            }
        }
        Ok(types)
    }

    /// Everything the agent wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|err| format!("<cannot read {}: {err}>", self.log_path.display()))
    }

    /// The exit status, if the agent has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        child.try_wait().ok().flatten()
    }

    /// Fails if the agent has exited.
    pub fn ensure_running(&self) -> anyhow::Result<()> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => bail!("agent exited ({status}); its output:\n{}", self.logs()),
        }
    }

    /// The raw text of `GET /metrics`.
    pub fn scrape_text(&self) -> anyhow::Result<String> {
        self.ensure_running()?;
        let (status, body) = http::get(self.addr, "/metrics", SCRAPE_TIMEOUT)
            .with_context(|| format!("GET http://{}/metrics", self.addr))?;
        if status != 200 {
            bail!("GET /metrics answered {status}: {body}");
        }
        Ok(body)
    }

    /// The parsed samples of `GET /metrics`.
    pub fn scrape(&self) -> anyhow::Result<Vec<Sample>> {
        let text = self.scrape_text()?;
        prom::parse(&text).context("parse /metrics")
    }

    /// Scrapes every 200 ms until `predicate` holds and returns that scrape;
    /// fails after `timeout`, or at once if the agent exits.
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut(&[Sample]) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Sample>> {
        let deadline = Instant::now() + timeout;
        loop {
            let last_error = match self.scrape() {
                Ok(samples) if predicate(&samples) => return Ok(samples),
                Ok(_) => None,
                Err(err) => {
                    self.ensure_running()?;
                    Some(err)
                }
            };
            if Instant::now() >= deadline {
                return Err(match last_error {
                    Some(err) => err.context(format!("condition not met within {timeout:?}")),
                    None => anyhow::anyhow!("condition not met within {timeout:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends SIGTERM and waits (up to 10 s, then SIGKILL) for the exit status.
    pub fn stop(&self) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        util::signal(self.pid, libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill()?;
        let status = child.wait()?;
        bail!("agent ignored SIGTERM for {STOP_TIMEOUT:?}; killed ({status})")
    }

    fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_running()?;
            match http::get(self.addr, "/metrics", Duration::from_secs(2)) {
                Ok((200, _)) => return Ok(()),
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok((status, body)) => {
                    bail!("/metrics still answers {status} after {timeout:?}: {body}")
                }
                Err(err) => {
                    return Err(err.context(format!(
                        "agent not serving /metrics after {timeout:?}; its output:\n{}",
                        self.logs()
                    )));
                }
            }
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let stopped = self.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- agent (pid {}) output, stop: {stopped:?} ----\n{}\n---- end of agent output ----",
                self.pid,
                self.logs()
            );
        }
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// A loopback TCP port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("find a free port")?;
    Ok(listener.local_addr()?.port())
}
