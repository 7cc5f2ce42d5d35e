//! Starting the agent as root, waiting until its probes are attached, and
//! stopping it with SIGTERM. Used by the smoke step and the benchmark.

use std::{
    fs::File,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// The gauge the agent sets to the number of attached flow programs.
pub const ATTACHED_METRIC: &str = "planet_flow_programs_attached";

/// A running agent; dropped without [`Agent::stop`] it is stopped anyway.
pub struct Agent {
    child: Option<Child>,
    addr: SocketAddr,
    log: PathBuf,
}

impl Agent {
    /// Starts `binary -listen-address <addr> <args>` as root, output to `log` (appended).
    pub fn start(binary: &Path, addr: SocketAddr, args: &[&str], log: &Path) -> Result<Self> {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok() {
            bail!("something already listens on {addr} (another agent?); stop it first");
        }
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = cmd::as_root(binary);
        command
            .arg("-listen-address")
            .arg(addr.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = command
            .spawn()
            .with_context(|| format!("start `{}`", cmd::display(&command)))?;
        Ok(Self {
            child: Some(child),
            addr,
            log: log.to_owned(),
        })
    }

    /// Polls `/metrics` until [`ATTACHED_METRIC`] is at least 1; returns that scrape.
    pub fn wait_attached(&mut self, timeout: Duration) -> Result<String> {
        let start = Instant::now();
        loop {
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait()?,
                None => bail!("the agent is not running"),
            };
            if let Some(status) = exited {
                self.child = None;
                bail!(
                    "the agent exited early ({}); last lines of {}:\n{}",
                    cmd::describe(status),
                    self.log.display(),
                    self.log_tail()
                );
            }
            let last = match http_get(self.addr, "/metrics") {
                Ok(body) => match metric_value(&body, ATTACHED_METRIC) {
                    Some(v) if v >= 1.0 => return Ok(body),
                    Some(v) => format!("/metrics answers with {ATTACHED_METRIC} {v}"),
                    None => format!("/metrics answers without {ATTACHED_METRIC}"),
                },
                Err(e) => format!("{e:#}"),
            };
            if start.elapsed() > timeout {
                bail!(
                    "the agent did not report attached programs within {}: {last}; last lines of {}:\n{}",
                    cmd::human(timeout),
                    self.log.display(),
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Sends SIGTERM and waits for the exit (SIGKILL after 20 s).
    pub fn stop(mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("the agent is not running");
        };
        terminate(&mut child, Duration::from_secs(20))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = terminate(&mut child, Duration::from_secs(5));
        }
    }
}

/// SIGTERM (as root, like the child), then SIGKILL after `grace`.
pub fn terminate(child: &mut Child, grace: Duration) -> Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    // The child may be root's (or sudo's), so signal it through as_root too.
    let _ = cmd::output(cmd::as_root("kill").args(["-s", "TERM", &child.id().to_string()]));
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        thread::sleep(Duration::from_millis(100));
    }
    child.kill().context("SIGKILL the child")?;
    child.wait()?;
    bail!(
        "process {} ignored SIGTERM for {}; killed it",
        child.id(),
        cmd::human(grace)
    )
}

/// A plain HTTP/1.0 GET (no chunked encoding to undo); returns the body of a 200.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("read the answer from {addr}{path}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("GET {addr}{path}: `{status}`");
    }
    Ok(body.to_owned())
}

/// The value of the first sample of `name` in Prometheus text exposition.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|line| {
            // `name{labels} value [timestamp]`: the value follows the labels.
            let after_labels = line.rsplit_once('}').map_or(line, |(_, v)| v);
            let mut fields = after_labels.split_whitespace();
            if after_labels.len() == line.len() {
                fields.next();
            }
            fields.next()?.parse().ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values() {
        let text = "# HELP planet_flow_programs_attached Flow programs attached.\n\
                    # TYPE planet_flow_programs_attached gauge\n\
                    planet_flow_programs_attached_total 9\n\
                    planet_flow_programs_attached 3\n\
                    planet_flow_mode{mode=\"tracepoint\"} 1 1700000000\n";
        assert_eq!(metric_value(text, ATTACHED_METRIC), Some(3.0));
        assert_eq!(metric_value(text, "planet_flow_mode"), Some(1.0));
        assert_eq!(metric_value(text, "planet_flow"), None);
    }
}
