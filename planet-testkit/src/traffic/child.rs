//! A `planet-traffic` child process whose stdout lines arrive on a channel.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context as _, anyhow};
use serde::de::DeserializeOwned;

/// A running `planet-traffic` child whose stdout lines arrive on a channel.
#[derive(Debug)]
pub(super) struct TrafficChild {
    child: Child,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl TrafficChild {
    pub(super) fn spawn(mut cmd: Command) -> anyhow::Result<Self> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut stderr = child.stderr.take().context("no stderr pipe")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Ok(Self {
            child,
            lines,
            stderr: Some(stderr),
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line, or an error once `deadline` passes or stdout ends.
    pub(super) fn next_line(&mut self, deadline: Instant) -> anyhow::Result<String> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                Err(self.failure("timed out"))
            }
            Err(RecvTimeoutError::Disconnected) => Err(self.failure("stdout closed")),
        }
    }

    /// Waits for the exit and returns the last stdout line, parsed.
    pub(super) fn finish<T: DeserializeOwned>(mut self, deadline: Instant) -> anyhow::Result<T> {
        let mut last = None;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(wait) {
                Ok(line) => last = Some(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    return Err(self.failure("timed out"));
                }
            }
        }
        let status = self.child.wait()?;
        if !status.success() {
            return Err(self.failure(&format!("exited with {status}")));
        }
        let line = last.ok_or_else(|| self.failure("printed no report"))?;
        serde_json::from_str(&line).with_context(|| format!("parse planet-traffic report {line:?}"))
    }

    fn failure(&mut self, what: &str) -> anyhow::Error {
        let _ = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        anyhow!(
            "planet-traffic (pid {}) {what}; stderr: {}",
            self.child.id(),
            stderr.trim()
        )
    }
}

impl Drop for TrafficChild {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
