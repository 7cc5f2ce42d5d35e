//! [`Chromium`]: loads a page in real headless Chromium (Debian's
//! `chromium` package) and returns the rendered DOM or a screenshot, plus
//! every message the page wrote to its console.
//!
//! Each run gets a fresh profile directory and no network services
//! (no QUIC, no background networking, no component updates, no sync).
//! `--virtual-time-budget` lets the page's scripts, fetches and timers run
//! before the DOM is dumped or the screenshot taken. Console messages
//! (including uncaught exceptions) come from Chromium's log on stderr
//! (`--enable-logging=stderr`), where each one is a line with `:CONSOLE`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::util;

/// Where Debian installs it; `PLANET_CHROMIUM` overrides.
const DEFAULT_BINARY: &str = "/usr/bin/chromium";
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// A headless Chromium binary.
#[derive(Debug, Clone)]
pub struct Chromium {
    binary: PathBuf,
    /// Milliseconds of virtual time the page runs before the capture.
    pub virtual_time_ms: u32,
    pub window: (u32, u32),
}

/// What one page load produced.
#[derive(Debug, Clone)]
pub struct Capture {
    /// The serialized DOM (`--dump-dom`); empty for a screenshot run.
    pub dom: String,
    /// Console messages, as Chromium logged them.
    pub console: Vec<String>,
    /// Chromium's whole stderr, for failure messages.
    pub log: String,
}

impl Chromium {
    /// Finds the binary; fails (never skips) when it is not installed.
    pub fn new() -> anyhow::Result<Self> {
        let binary = std::env::var_os("PLANET_CHROMIUM")
            .map_or_else(|| PathBuf::from(DEFAULT_BINARY), PathBuf::from);
        if !binary.is_file() {
            bail!(
                "{} not found: install Debian's chromium package (`cargo xtask setup` does) \
                 or point PLANET_CHROMIUM at a Chromium binary",
                binary.display()
            );
        }
        Ok(Self {
            binary,
            virtual_time_ms: 3000,
            window: (1280, 1000),
        })
    }

    /// Loads `url` and returns its DOM after the virtual time budget.
    pub fn dump_dom(&self, url: &str) -> anyhow::Result<Capture> {
        self.run(url, &[OsString::from("--dump-dom")])
    }

    /// Loads `url` and saves a PNG of the window to `png`.
    pub fn screenshot(&self, url: &str, png: &Path) -> anyhow::Result<Capture> {
        let _ = std::fs::remove_file(png);
        let mut arg = OsString::from("--screenshot=");
        arg.push(png);
        let capture = self.run(url, &[arg])?;
        let size = std::fs::metadata(png)
            .with_context(|| {
                format!(
                    "chromium wrote no screenshot to {}; its log:\n{}",
                    png.display(),
                    capture.log
                )
            })?
            .len();
        if size == 0 {
            bail!("chromium wrote an empty screenshot to {}", png.display());
        }
        Ok(capture)
    }

    fn run(&self, url: &str, mode: &[OsString]) -> anyhow::Result<Capture> {
        let profile = util::unique_temp_path("planet-chromium-profile", "d");
        std::fs::create_dir_all(&profile)
            .with_context(|| format!("create {}", profile.display()))?;
        let stdout_path = profile.with_extension("stdout");
        let stderr_path = profile.with_extension("stderr");
        let mut user_data = OsString::from("--user-data-dir=");
        user_data.push(&profile);
        let mut child = Command::new(&self.binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(user_data)
            .arg(format!("--virtual-time-budget={}", self.virtual_time_ms))
            .arg(format!("--window-size={},{}", self.window.0, self.window.1))
            .args(mode)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path)?)
            .stderr(std::fs::File::create(&stderr_path)?)
            .spawn()
            .with_context(|| format!("start {}", self.binary.display()))?;
        let deadline = Instant::now() + RUN_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("chromium did not finish loading {url} within {RUN_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let dom = String::from_utf8_lossy(&std::fs::read(&stdout_path)?).into_owned();
        let log = String::from_utf8_lossy(&std::fs::read(&stderr_path)?).into_owned();
        let _ = std::fs::remove_dir_all(&profile);
        let _ = std::fs::remove_file(&stdout_path);
        let _ = std::fs::remove_file(&stderr_path);
        if !status.success() {
            bail!("chromium exited with {status} loading {url}; its log:\n{log}");
        }
        Ok(Capture {
            dom,
            console: console_messages(&log),
            log,
        })
    }
}

/// The console lines of a Chromium log: `[...:INFO:CONSOLE:12] "msg",
/// source: URL (12)` (older releases print `CONSOLE(12)`).
pub fn console_messages(log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains(":CONSOLE:") || line.contains(":CONSOLE("))
        .map(str::to_owned)
        .collect()
}

/// The start tags named `tag` in `dom`, each as its attribute list in
/// document order. Enough for checking the DOM Chromium serializes
/// (double-quoted attributes, entities for `"`, `&`, `<` and `>`).
pub fn start_tags(dom: &str, tag: &str) -> Vec<Vec<(String, String)>> {
    let open = format!("<{tag}");
    let mut tags = Vec::new();
    let mut rest = dom;
    while let Some(at) = rest.find(&open) {
        rest = &rest[at + open.len()..];
        if !rest.starts_with([' ', '>', '/']) {
            continue;
        }
        let end = rest.find('>').unwrap_or(rest.len());
        tags.push(attributes(&rest[..end]));
        rest = &rest[end..];
    }
    tags
}

fn attributes(mut text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        text = text.trim_start_matches([' ', '/', '\n']);
        let Some(eq) = text.find('=') else {
            break;
        };
        let name = text[..eq].trim().to_owned();
        let after = &text[eq + 1..];
        let Some(value) = after.strip_prefix('"') else {
            break;
        };
        let Some(close) = value.find('"') else {
            break;
        };
        out.push((name, unescape(&value[..close])));
        text = &value[close + 1..];
    }
    out
}

fn unescape(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_console_lines_in_both_formats() {
        let log = "[1:1:1125/181942.183669:WARNING:sandbox] x\n\
                   [1:1:1125/181942.492777:INFO:CONSOLE:1] \"Uncaught Error: boom\", source: file:///a.html (1)\n\
                   [1:1:1125/181942.492777:INFO:CONSOLE(7)] \"bad\", source: http://x/ (7)\n";
        let got = console_messages(log);
        assert_eq!(got.len(), 2);
        assert!(got[0].contains("Uncaught Error: boom"));
    }

    #[test]
    fn parses_start_tags() {
        let dom = r#"<svg><g class="peer" data-address="a&amp;b"><g class="edge" data-port="80"></g></g><gx a="1"></gx></svg>"#;
        let tags = start_tags(dom, "g");
        assert_eq!(tags.len(), 2);
        assert_eq!(
            tags[0],
            vec![
                ("class".to_owned(), "peer".to_owned()),
                ("data-address".to_owned(), "a&b".to_owned())
            ]
        );
        assert_eq!(tags[1][1], ("data-port".to_owned(), "80".to_owned()));
    }
}
