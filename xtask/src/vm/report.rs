//! What a guest reports and what it means: the result stream the guest's
//! `/init` writes to its second serial port, parsed into one [`Cell`] per
//! flow mode, and the kernel × mode table. Pure: no I/O.
//!
//! The stream is plain lines. Marker lines start with [`MARK`]:
//! `begin <section>`, `end <section> rc=<status>`, `error <text>` and
//! `done`; the lines between a `begin` and its `end` are that section's
//! output (stdout and stderr of one command). Sections: `kernel`
//! (`uname -r`), `modes` (`planet-agent -check-flow-modes`), `list`
//! (`flow_accuracy --list`) and `suite-<mode>` (the accuracy suite with
//! `PLANET_TEST_FLOW_MODE=<mode>`).

use std::{collections::BTreeMap, fmt::Write as _};

/// Prefix of every marker line in the result stream.
pub const MARK: &str = "@@planet-vm";

/// A flow probe mode, as `planet-agent -task-flow-mode` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Tracepoint,
    Fentry,
    Kprobe,
}

impl Mode {
    /// Every mode, in table column order.
    pub const ALL: [Self; 3] = [Self::Tracepoint, Self::Fentry, Self::Kprobe];

    pub fn name(self) -> &'static str {
        match self {
            Self::Tracepoint => "tracepoint",
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// One `begin`..`end` section of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub body: String,
    /// The command's exit status; `None` when the stream ended inside it.
    pub status: Option<i32>,
}

/// The whole result stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stream {
    pub sections: Vec<Section>,
    /// `error` lines: what `/init` could not do (a mount, insmod, ...).
    pub errors: Vec<String>,
    /// `/init` reached its end.
    pub done: bool,
}

impl Stream {
    pub fn parse(text: &str) -> Self {
        let mut stream = Self::default();
        let mut open: Option<Section> = None;
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            let Some(marker) = line.strip_prefix(MARK).and_then(|m| m.strip_prefix(' ')) else {
                if let Some(section) = open.as_mut() {
                    section.body.push_str(line);
                    section.body.push('\n');
                }
                continue;
            };
            let (verb, rest) = marker.split_once(' ').unwrap_or((marker, ""));
            match verb {
                "begin" => {
                    stream.sections.extend(open.take());
                    open = Some(Section {
                        name: rest.trim().to_owned(),
                        body: String::new(),
                        status: None,
                    });
                }
                "end" => {
                    let (name, status) = rest.rsplit_once(" rc=").unwrap_or((rest, ""));
                    match open.take() {
                        Some(mut section) if section.name == name.trim() => {
                            section.status = Some(status.trim().parse().unwrap_or(-1));
                            stream.sections.push(section);
                        }
                        other => {
                            stream.sections.extend(other);
                            stream
                                .errors
                                .push(format!("unmatched end of section {}", name.trim()));
                        }
                    }
                }
                "error" => stream.errors.push(rest.trim().to_owned()),
                "done" => stream.done = true,
                _ => stream.errors.push(format!("unknown marker: {line}")),
            }
        }
        stream.sections.extend(open);
        stream
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }
}

/// What `planet-agent -check-flow-modes` said about one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    Available,
    Unavailable(String),
}

/// Parses `flow-mode <mode>: ok` and `flow-mode <mode>: unavailable: <reason>`
/// lines (other lines, such as log output, are skipped). Every mode must be
/// reported exactly once.
pub fn parse_mode_check(text: &str) -> Result<BTreeMap<Mode, Availability>, String> {
    let mut modes = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("flow-mode ") else {
            continue;
        };
        let (name, verdict) = rest
            .split_once(": ")
            .ok_or_else(|| format!("malformed line: {line:?}"))?;
        let mode = Mode::parse(name).ok_or_else(|| format!("unknown mode in {line:?}"))?;
        let availability = if verdict.trim() == "ok" {
            Availability::Available
        } else if let Some(reason) = verdict.strip_prefix("unavailable: ") {
            Availability::Unavailable(reason.trim().to_owned())
        } else {
            return Err(format!("neither ok nor unavailable: {line:?}"));
        };
        if modes.insert(mode, availability).is_some() {
            return Err(format!("mode {} reported twice", mode.name()));
        }
    }
    let missing: Vec<&str> = Mode::ALL
        .into_iter()
        .filter(|m| !modes.contains_key(m))
        .map(Mode::name)
        .collect();
    if !missing.is_empty() {
        return Err(format!("no line for mode {}", missing.join(", ")));
    }
    Ok(modes)
}

/// The test names `<test binary> --list` prints (`name: test` lines).
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

/// One case that did not count exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFailure {
    pub case: String,
    /// The panic message, or why there is no result.
    pub message: String,
    /// The case's whole captured output (with the agent's log).
    pub detail: String,
}

/// The outcome of one mode on one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// Every case of the suite passed.
    Exact { cases: usize },
    /// Some cases failed (or have no result).
    Inexact {
        cases: usize,
        failures: Vec<CaseFailure>,
    },
    /// The kernel cannot run this mode; the agent's reason.
    Unavailable(String),
    /// The suite did not run to a verdict.
    Failed(String),
}

impl Cell {
    /// Whether this cell fails `cargo xtask test-vm`.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Inexact { .. } | Self::Failed(_))
    }

    fn summary(&self) -> String {
        match self {
            Self::Exact { cases } => format!("exact ({cases}/{cases} cases)"),
            Self::Inexact { cases, failures } => {
                let names: Vec<&str> = failures.iter().map(|f| f.case.as_str()).collect();
                format!(
                    "INEXACT: {}/{cases} failed ({})",
                    failures.len(),
                    names.join(", ")
                )
            }
            Self::Unavailable(reason) => format!("unavailable: {reason}"),
            Self::Failed(why) => format!("FAILED: {}", first_line(why)),
        }
    }
}

/// Judges one run of the accuracy suite: exact only when every listed case
/// reports `ok` and the binary exits 0. A listed case without a result
/// counts as a failure, so nothing passes by being skipped.
pub fn judge_suite(cases: &[String], section: &Section) -> Cell {
    let Some(status) = section.status else {
        return Cell::Failed(format!(
            "the suite did not finish (output ends: {})",
            tail(&section.body, 3)
        ));
    };
    if cases.is_empty() {
        return Cell::Failed("the suite lists no cases".to_owned());
    }
    let mut results: BTreeMap<&str, &str> = BTreeMap::new();
    for line in section.body.lines() {
        let Some((name, rest)) = line
            .strip_prefix("test ")
            .and_then(|l| l.split_once(" ... "))
        else {
            continue;
        };
        let verdict = rest.split_whitespace().next().unwrap_or("");
        if let Some(case) = cases.iter().find(|c| c.as_str() == name) {
            results.insert(case, verdict);
        }
    }
    let blocks = failure_blocks(cases, &section.body);
    let mut failures = Vec::new();
    for case in cases {
        let detail = blocks.get(case.as_str()).cloned().unwrap_or_default();
        let message = match results.get(case.as_str()).copied() {
            Some("ok") if detail.is_empty() => continue,
            Some("ignored") => "ignored: the case did not run".to_owned(),
            None if detail.is_empty() => "no result: the case did not run to the end".to_owned(),
            _ => panic_message(&detail),
        };
        failures.push(CaseFailure {
            case: case.clone(),
            message,
            detail,
        });
    }
    if !failures.is_empty() {
        return Cell::Inexact {
            cases: cases.len(),
            failures,
        };
    }
    if status != 0 {
        return Cell::Failed(format!(
            "every case passed but the suite exited with status {status}: {}",
            tail(&section.body, 3)
        ));
    }
    Cell::Exact { cases: cases.len() }
}

/// The `---- <case> stdout ----` blocks of libtest's failure report.
fn failure_blocks<'a>(cases: &'a [String], body: &str) -> BTreeMap<&'a str, String> {
    let mut blocks = BTreeMap::new();
    let mut current: Option<(&str, String)> = None;
    for line in body.lines() {
        let header = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
            .and_then(|name| cases.iter().find(|c| c.as_str() == name));
        if let Some(case) = header {
            blocks.extend(current.take());
            current = Some((case.as_str(), String::new()));
        } else if line == "failures:" || line.starts_with("test result: ") {
            blocks.extend(current.take());
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    blocks.extend(current);
    blocks
        .into_iter()
        .map(|(case, text)| (case, text.trim().to_owned()))
        .collect()
}

/// The message of the first panic in a case's output: the lines after
/// `thread '<name>' (<tid>) panicked at <file>:<line>:<col>:` up to the
/// backtrace note.
fn panic_message(detail: &str) -> String {
    let mut lines = detail
        .lines()
        .skip_while(|l| !(l.starts_with("thread '") && l.contains(" panicked at ")));
    let Some(_) = lines.next() else {
        return first_line(detail).to_owned();
    };
    let message: Vec<&str> = lines
        .take_while(|l| !l.starts_with("note: run with `RUST_BACKTRACE") && !l.starts_with("---- "))
        .collect();
    let message = message.join("\n");
    if message.trim().is_empty() {
        first_line(detail).to_owned()
    } else {
        message.trim().to_owned()
    }
}

fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = all[all.len().saturating_sub(lines)..].join(" / ");
    if tail.is_empty() {
        "<nothing>".to_owned()
    } else {
        tail
    }
}

/// What one guest's stream says: its kernel release and one cell per mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub release: Option<String>,
    pub cells: BTreeMap<Mode, Cell>,
    /// Problems of the guest as a whole (it fails the run).
    pub errors: Vec<String>,
}

impl Verdict {
    /// Judges a guest's result stream.
    pub fn judge(text: &str) -> Self {
        let stream = Stream::parse(text);
        let release = stream
            .section("kernel")
            .map(|s| first_line(&s.body).trim().to_owned())
            .filter(|r| !r.is_empty());
        let mut verdict = Self {
            release,
            cells: BTreeMap::new(),
            errors: stream.errors.clone(),
        };
        let Some(modes) = stream.section("modes") else {
            verdict.errors.push(
                "no flow-mode report: the guest never ran planet-agent -check-flow-modes"
                    .to_owned(),
            );
            return verdict;
        };
        let availability = match modes.status {
            Some(0) => parse_mode_check(&modes.body),
            status => Err(format!(
                "planet-agent -check-flow-modes exited with {}: {}",
                status.map_or_else(|| "no status".to_owned(), |s| format!("status {s}")),
                tail(&modes.body, 3)
            )),
        };
        let availability = match availability {
            Ok(a) => a,
            Err(e) => {
                verdict.errors.push(format!("flow-mode report: {e}"));
                return verdict;
            }
        };
        let cases = match stream.section("list") {
            Some(list) if list.status == Some(0) => parse_list(&list.body),
            Some(list) => {
                verdict.errors.push(format!(
                    "listing the accuracy suite failed: {}",
                    tail(&list.body, 3)
                ));
                Vec::new()
            }
            None => Vec::new(),
        };
        for (mode, availability) in availability {
            let cell = match availability {
                Availability::Unavailable(reason) => Cell::Unavailable(reason),
                Availability::Available => {
                    match stream.section(&format!("suite-{}", mode.name())) {
                        Some(section) => judge_suite(&cases, section),
                        None => {
                            Cell::Failed("the mode is available but its suite never ran".to_owned())
                        }
                    }
                }
            };
            verdict.cells.insert(mode, cell);
        }
        if !stream.done && verdict.errors.is_empty() {
            verdict
                .errors
                .push("the guest stopped before the end of /init".to_owned());
        }
        verdict
    }

    pub fn is_failure(&self) -> bool {
        !self.errors.is_empty() || self.cells.values().any(Cell::is_failure)
    }
}

/// One table row: a kernel series and its guest's verdict.
#[derive(Debug, Clone)]
pub struct Row {
    pub series: String,
    pub verdict: Verdict,
}

/// The kernel × mode table (markdown), then the failing cases with their
/// messages and every guest-level error.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::from("| kernel |");
    for mode in Mode::ALL {
        let _ = write!(out, " {} |", mode.name());
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(Mode::ALL.len()));
    out.push('\n');
    for row in rows {
        let kernel = match &row.verdict.release {
            Some(release) => format!("{} ({release})", row.series),
            None => row.series.clone(),
        };
        let _ = write!(out, "| {} |", cell_text(&kernel));
        for mode in Mode::ALL {
            let text = row
                .verdict
                .cells
                .get(&mode)
                .map_or_else(|| "no result".to_owned(), |cell| cell_text(&cell.summary()));
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }
    for row in rows {
        for error in &row.verdict.errors {
            let _ = writeln!(out, "\n{}: guest error: {error}", row.series);
        }
        for (mode, cell) in &row.verdict.cells {
            match cell {
                Cell::Inexact { failures, .. } => {
                    for failure in failures {
                        let _ = writeln!(
                            out,
                            "\n{} {} {}: {}",
                            row.series,
                            mode.name(),
                            failure.case,
                            head(&failure.message, MESSAGE_LINES)
                        );
                    }
                }
                Cell::Failed(why) => {
                    let _ = writeln!(out, "\n{} {}: {why}", row.series, mode.name());
                }
                Cell::Exact { .. } | Cell::Unavailable(_) => {}
            }
        }
    }
    out
}

/// Lines of a failure message under the table (the whole output of every
/// case is in the guest's `results.log`).
const MESSAGE_LINES: usize = 12;

/// The first `lines` lines of `text`, with a note when more follow.
fn head(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    if all.len() <= lines {
        return text.to_owned();
    }
    format!(
        "{}\n... ({} more lines in the guest's results.log)",
        all[..lines].join("\n"),
        all.len() - lines
    )
}

/// Text safe inside a markdown table cell.
fn cell_text(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "ipv4_blocking: test\nipv6_blocking: test\n\n2 tests, 0 benchmarks\n";

    fn stream(parts: &[&str]) -> String {
        parts.concat()
    }

    fn passing_suite() -> String {
        "\r\nrunning 2 tests\r\ntest ipv4_blocking ... ok\r\ntest ipv6_blocking ... ok\r\n\
         \r\ntest result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\r\n"
            .to_owned()
    }

    const FAILING_SUITE: &str = "\nrunning 2 tests\ntest ipv4_blocking ... ok\n\
        test ipv6_blocking ... FAILED\n\nfailures:\n\n---- ipv6_blocking stdout ----\n\n\
        thread 'ipv6_blocking' (157) panicked at planet-agent/tests/flow_accuracy.rs:205:17:\n\
        counters not exact within 15s:\nBAD client pt-v6blk-c1 upstream flow: observed 10, expected 20\n\
        note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\
        ---- agent (pid 158) output, stop: Ok(0) ----\nINFO attached\n---- end of agent output ----\n\n\n\
        failures:\n    ipv6_blocking\n\ntest result: FAILED. 1 passed; 1 failed; 0 ignored\n";

    fn full(suite_tracepoint: &str, rc: i32) -> String {
        stream(&[
            "@@planet-vm begin kernel\n6.12.95+deb12-cloud-amd64\n@@planet-vm end kernel rc=0\n",
            "@@planet-vm begin modes\nINFO some log line\nflow-mode tracepoint: ok\n",
            "flow-mode fentry: unavailable: not part of this build\n",
            "flow-mode kprobe: unavailable: kernel built without CONFIG_KPROBES\n",
            "@@planet-vm end modes rc=0\n",
            "@@planet-vm begin list\n",
            LIST,
            "@@planet-vm end list rc=0\n",
            "@@planet-vm begin suite-tracepoint\n",
            suite_tracepoint,
            &format!("@@planet-vm end suite-tracepoint rc={rc}\n"),
            "@@planet-vm done\n",
        ])
    }

    #[test]
    fn stream_sections_errors_and_done() {
        let s = Stream::parse(
            "boot noise\n@@planet-vm begin a\nx\r\ny\n@@planet-vm end a rc=3\n\
             @@planet-vm error insmod veth.ko failed\n@@planet-vm begin b\npartial\n",
        );
        assert_eq!(
            s.sections,
            vec![
                Section {
                    name: "a".into(),
                    body: "x\ny\n".into(),
                    status: Some(3)
                },
                Section {
                    name: "b".into(),
                    body: "partial\n".into(),
                    status: None
                },
            ]
        );
        assert_eq!(s.errors, ["insmod veth.ko failed"]);
        assert!(!s.done);
    }

    #[test]
    fn mode_check_lines() {
        let modes = parse_mode_check(
            "flow-mode tracepoint: unavailable: no sock_send_length tracepoint (kernel 6.1)\n\
             2026-01-01 INFO loading\nflow-mode fentry: ok\nflow-mode kprobe: ok\n",
        )
        .unwrap();
        assert_eq!(
            modes[&Mode::Tracepoint],
            Availability::Unavailable("no sock_send_length tracepoint (kernel 6.1)".into())
        );
        assert_eq!(modes[&Mode::Fentry], Availability::Available);
        assert_eq!(modes[&Mode::Kprobe], Availability::Available);
    }

    #[test]
    fn mode_check_rejects_gaps_and_garbage() {
        let err = parse_mode_check("flow-mode tracepoint: ok\n").unwrap_err();
        assert!(err.contains("fentry, kprobe"), "{err}");
        assert!(parse_mode_check("flow-mode uprobe: ok\n").is_err());
        assert!(parse_mode_check("flow-mode kprobe: maybe\n").is_err());
        assert!(
            parse_mode_check("flow-mode kprobe: ok\nflow-mode kprobe: ok\n")
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn list_names() {
        assert_eq!(parse_list(LIST), ["ipv4_blocking", "ipv6_blocking"]);
    }

    #[test]
    fn passing_guest_is_exact_and_lists_unavailable_reasons() {
        let verdict = Verdict::judge(&full(&passing_suite(), 0));
        assert_eq!(
            verdict.release.as_deref(),
            Some("6.12.95+deb12-cloud-amd64")
        );
        assert_eq!(verdict.errors, Vec::<String>::new());
        assert_eq!(verdict.cells[&Mode::Tracepoint], Cell::Exact { cases: 2 });
        assert_eq!(
            verdict.cells[&Mode::Kprobe],
            Cell::Unavailable("kernel built without CONFIG_KPROBES".into())
        );
        assert!(!verdict.is_failure());
    }

    #[test]
    fn failing_case_is_inexact_with_its_message() {
        let verdict = Verdict::judge(&full(FAILING_SUITE, 101));
        let Cell::Inexact { cases, failures } = &verdict.cells[&Mode::Tracepoint] else {
            panic!("{verdict:?}");
        };
        assert_eq!(*cases, 2);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].case, "ipv6_blocking");
        assert_eq!(
            failures[0].message,
            "counters not exact within 15s:\nBAD client pt-v6blk-c1 upstream flow: observed 10, expected 20"
        );
        assert!(failures[0].detail.contains("INFO attached"));
        assert!(verdict.is_failure());
        let table = render(&[Row {
            series: "6.12".into(),
            verdict,
        }]);
        assert!(
            table.contains(
                "| INEXACT: 1/2 failed (ipv6_blocking) | unavailable: not part of this build |"
            ),
            "{table}"
        );
        assert!(table.contains("6.12 tracepoint ipv6_blocking: counters not exact"));
    }

    #[test]
    fn a_case_without_result_is_not_a_pass() {
        let suite = "running 2 tests\ntest ipv4_blocking ... ok\n\
                     test result: ok. 1 passed; 0 failed; 0 ignored; 1 filtered out\n";
        let cell = judge_suite(
            &parse_list(LIST),
            &Section {
                name: "suite-fentry".into(),
                body: suite.into(),
                status: Some(0),
            },
        );
        let Cell::Inexact { failures, .. } = cell else {
            panic!("{cell:?}");
        };
        assert_eq!(failures[0].case, "ipv6_blocking");
        assert!(failures[0].message.starts_with("no result"));
    }

    #[test]
    fn ignored_or_crashed_suites_fail() {
        let cases = parse_list(LIST);
        let ignored = judge_suite(
            &cases,
            &Section {
                name: "s".into(),
                body: "test ipv4_blocking ... ok\ntest ipv6_blocking ... ignored\n".into(),
                status: Some(0),
            },
        );
        assert!(ignored.is_failure(), "{ignored:?}");
        let unfinished = judge_suite(
            &cases,
            &Section {
                name: "s".into(),
                body: "test ipv4_blocking ... ".into(),
                status: None,
            },
        );
        assert!(matches!(unfinished, Cell::Failed(_)), "{unfinished:?}");
        let bad_exit = judge_suite(
            &cases,
            &Section {
                name: "s".into(),
                body: passing_suite(),
                status: Some(134),
            },
        );
        assert!(matches!(bad_exit, Cell::Failed(_)), "{bad_exit:?}");
        assert!(matches!(
            judge_suite(
                &[],
                &Section {
                    name: "s".into(),
                    body: String::new(),
                    status: Some(0)
                }
            ),
            Cell::Failed(_)
        ));
    }

    #[test]
    fn guest_without_mode_report_fails() {
        let verdict = Verdict::judge("@@planet-vm begin kernel\n5.10.0-32-cloud-amd64\n");
        assert!(verdict.is_failure());
        assert!(verdict.cells.is_empty());
        assert!(
            verdict.errors[0].contains("-check-flow-modes"),
            "{verdict:?}"
        );

        let usage = Verdict::judge(
            "@@planet-vm begin modes\nerror: unexpected argument '-check-flow-modes'\n\
             @@planet-vm end modes rc=2\n",
        );
        assert!(usage.errors[0].contains("status 2"), "{usage:?}");
    }

    #[test]
    fn available_mode_without_suite_fails() {
        let text = full(&passing_suite(), 0).replace(
            "flow-mode fentry: unavailable: not part of this build",
            "flow-mode fentry: ok",
        );
        let verdict = Verdict::judge(&text);
        assert!(matches!(verdict.cells[&Mode::Fentry], Cell::Failed(_)));
        assert!(verdict.is_failure());
    }

    #[test]
    fn long_messages_are_cut() {
        assert_eq!(head("a\nb", 2), "a\nb");
        assert_eq!(
            head("a\nb\nc\nd", 2),
            "a\nb\n... (2 more lines in the guest's results.log)"
        );
    }

    #[test]
    fn table_escapes_pipes() {
        let mut cells = BTreeMap::new();
        cells.insert(Mode::Kprobe, Cell::Unavailable("a|b".into()));
        let table = render(&[Row {
            series: "5.10".into(),
            verdict: Verdict {
                release: None,
                cells,
                errors: vec!["timeout after 10m".into()],
            },
        }]);
        assert!(
            table.starts_with("| kernel | tracepoint | fentry | kprobe |\n|---|---|---|---|\n")
        );
        assert!(
            table.contains("| 5.10 | no result | no result | unavailable: a\\|b |"),
            "{table}"
        );
        assert!(table.contains("5.10: guest error: timeout after 10m"));
    }
}
