//! [`Prometheus`]: a real Prometheus server (the Debian `prometheus`
//! package, 2.x) on a free loopback port with its own temporary directory,
//! killed on drop; blocking instant queries over the HTTP API.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{http, util};

pub const BINARY: &str = "/usr/bin/prometheus";
const TIMEOUT: Duration = Duration::from_secs(10);

/// A running Prometheus; see the module docs.
#[derive(Debug)]
pub struct Prometheus {
    dir: PathBuf,
    addr: SocketAddr,
    child: Child,
}

impl Prometheus {
    /// Writes `files` (name, content) into a fresh directory, starts
    /// Prometheus with `config` (one of those names) and waits until it is
    /// ready. Fails if the binary is missing.
    pub fn start(files: &[(&str, String)], config: &str) -> anyhow::Result<Self> {
        if !Path::new(BINARY).exists() {
            bail!(
                "{BINARY} not found: install the Debian package `prometheus` (`cargo xtask setup` does)"
            );
        }
        let dir = util::unique_temp_path("planet-prometheus", "d");
        for (name, content) in files {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&path, content).with_context(|| format!("write {}", path.display()))?;
        }
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log = fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", dir.join(config).display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start prometheus")?;
        let prometheus = Self { dir, addr, child };
        prometheus.wait_ready(Duration::from_secs(60))?;
        Ok(prometheus)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything Prometheus logged so far.
    pub fn logs(&self) -> String {
        fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The `data` of a successful `GET /api/v1/<path>`.
    pub fn api(&self, path_and_query: &str) -> anyhow::Result<Value> {
        let (status, body) = http::get(self.addr, &format!("/api/v1/{path_and_query}"), TIMEOUT)?;
        let json: Value = serde_json::from_str(&body)
            .with_context(|| format!("answer to {path_and_query} is not JSON: {body}"))?;
        if status != 200 || json["status"] != "success" {
            bail!("{path_and_query} answered {status}: {body}");
        }
        Ok(json["data"].clone())
    }

    /// The result vector of instant query `expr`.
    pub fn query(&self, expr: &str) -> anyhow::Result<Vec<Value>> {
        let data = self.api(&format!("query?query={}", encode(expr)))?;
        match &data["result"] {
            Value::Array(result) => Ok(result.clone()),
            other => bail!("{expr}: result is not a vector: {other}"),
        }
    }

    /// Queries every 250 ms until `expr` has a result; fails after `timeout`.
    pub fn wait_for(&self, expr: &str, timeout: Duration) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(expr)?;
            if !result.is_empty() {
                return Ok(result);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{expr} has no result after {timeout:?}; Prometheus log:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = http::get(self.addr, "/-/ready", Duration::from_secs(2)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "prometheus not ready after {timeout:?}; its log:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes `text` for a URL query value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode("up{job=\"a b\"}"), "up%7Bjob%3D%22a%20b%22%7D");
        assert_eq!(encode("rate(x[1m])"), "rate%28x%5B1m%5D%29");
        assert_eq!(encode("é"), "%C3%A9");
    }
}
