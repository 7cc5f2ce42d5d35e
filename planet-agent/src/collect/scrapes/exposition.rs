//! A parser for the Prometheus text exposition format 0.0.4, as darkstat
//! (≥ 3.0.720) and ebpf_exporter serve it.
//!
//! It reads the grammar, not a line shape: metric and label names are
//! checked, label values are quoted strings with `\\`, `\"` and `\n`
//! escapes (so a value may hold `,`, `=`, `}` or spaces), values are Go
//! floats (`NaN`, `+Inf`, `1e3`), and an optional integer timestamp is
//! accepted and ignored. `# HELP` and `# TYPE` lines are validated; other
//! comments are skipped. Any malformed line fails the whole body with its
//! line number, and so does a body whose last line has no line feed: the
//! format requires one, so a missing one means the body was cut off.

use std::collections::HashMap;

use thiserror::Error;

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name as written (for counters and gauges, the family's name).
    pub name: String,
    /// Label pairs in the order written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed body: samples grouped by metric name, in order of appearance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition {
    samples: Vec<Sample>,
    /// Metric name → indexes into `samples`.
    by_name: HashMap<String, Vec<usize>>,
    /// `# TYPE` declarations.
    types: HashMap<String, String>,
}

impl Exposition {
    /// The samples named `name` (empty when the family is absent).
    pub fn samples(&self, name: &str) -> impl Iterator<Item = &Sample> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|&i| &self.samples[i])
    }

    /// Whether any sample or `# TYPE` line names `name`.
    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name) || self.types.contains_key(name)
    }

    /// The declared type of family `name` (`counter`, `gauge`, …).
    pub fn kind(&self, name: &str) -> Option<&str> {
        self.types.get(name).map(String::as_str)
    }

    /// Every sample, in order.
    pub fn all(&self) -> &[Sample] {
        &self.samples
    }
}

/// Why a body is not a valid exposition.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ExpositionError {
    #[error("body is not UTF-8 (byte {0})")]
    NotUtf8(usize),
    #[error("body is truncated: its last line has no line feed")]
    Truncated,
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
}

/// Parses a whole body.
pub fn parse(body: &[u8]) -> Result<Exposition, ExpositionError> {
    let text = std::str::from_utf8(body).map_err(|e| ExpositionError::NotUtf8(e.valid_up_to()))?;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(ExpositionError::Truncated);
    }
    let mut out = Exposition::default();
    for (index, line) in text.lines().enumerate() {
        let at = |message: String| ExpositionError::Line {
            line: index + 1,
            message,
        };
        let line = line.trim_matches([' ', '\t', '\r']);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if let Some((name, kind)) = parse_comment(comment).map_err(at)? {
                out.types.insert(name, kind);
            }
            continue;
        }
        let sample = Cursor::new(line).sample().map_err(at)?;
        out.by_name
            .entry(sample.name.clone())
            .or_default()
            .push(out.samples.len());
        out.samples.push(sample);
    }
    Ok(out)
}

/// A `# TYPE` line's (name, type); `None` for HELP and plain comments.
fn parse_comment(comment: &str) -> Result<Option<(String, String)>, String> {
    let mut words = comment
        .trim_start_matches([' ', '\t'])
        .splitn(2, [' ', '\t']);
    let keyword = words.next().unwrap_or("");
    let rest = words.next().unwrap_or("").trim_start_matches([' ', '\t']);
    match keyword {
        "HELP" => {
            let name = rest.split([' ', '\t']).next().unwrap_or("");
            check_metric_name(name)?;
            Ok(None)
        }
        "TYPE" => {
            let mut parts = rest.split_whitespace();
            let name = parts.next().unwrap_or("");
            check_metric_name(name)?;
            let kind = parts.next().unwrap_or("");
            if !matches!(
                kind,
                "counter" | "gauge" | "histogram" | "summary" | "untyped"
            ) {
                return Err(format!("unknown metric type {kind:?} for {name}"));
            }
            if parts.next().is_some() {
                return Err(format!("extra text after the TYPE of {name}"));
            }
            Ok(Some((name.to_owned(), kind.to_owned())))
        }
        _ => Ok(None),
    }
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("invalid metric name {name:?}"))
    }
}

/// A position in one sample line.
struct Cursor<'a> {
    line: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(line: &'a str) -> Self {
        Self { line, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.line[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_blanks(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches([' ', '\t']).len();
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            Ok(())
        } else {
            Err(format!("expected {c:?} at column {}", self.pos + 1))
        }
    }

    /// `[A-Za-z_:][A-Za-z0-9_:]*` (metric) or without `:` (label).
    fn name(&mut self, colons: bool) -> Result<&'a str, String> {
        let ok = |c: char, first: bool| {
            c.is_ascii_alphabetic()
                || c == '_'
                || (colons && c == ':')
                || (!first && c.is_ascii_digit())
        };
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|&(i, c)| !ok(c, i == 0))
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 {
            return Err(format!("expected a name at column {}", self.pos + 1));
        }
        self.pos += len;
        Ok(&rest[..len])
    }

    fn quoted(&mut self) -> Result<String, String> {
        self.expect('"')?;
        let mut value = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(value);
                }
                '\\' => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => return Err(format!("invalid escape \\{other}")),
                    None => break,
                },
                c => value.push(c),
            }
        }
        Err("unterminated label value".into())
    }

    fn labels(&mut self) -> Result<Vec<(String, String)>, String> {
        let mut labels: Vec<(String, String)> = Vec::new();
        self.expect('{')?;
        loop {
            self.skip_blanks();
            if self.peek() == Some('}') {
                self.pos += 1;
                return Ok(labels);
            }
            let name = self.name(false)?;
            self.skip_blanks();
            self.expect('=')?;
            self.skip_blanks();
            let value = self.quoted()?;
            if labels.iter().any(|(k, _)| k == name) {
                return Err(format!("label {name} given twice"));
            }
            labels.push((name.to_owned(), value));
            self.skip_blanks();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some('}') => {}
                _ => return Err(format!("expected ',' or '}}' at column {}", self.pos + 1)),
            }
        }
    }

    fn sample(mut self) -> Result<Sample, String> {
        let name = self.name(true)?.to_owned();
        self.skip_blanks();
        let labels = if self.peek() == Some('{') {
            self.labels()?
        } else {
            Vec::new()
        };
        let mut fields = self.rest().split_whitespace();
        let value = fields
            .next()
            .ok_or_else(|| format!("{name}: no value"))
            .and_then(|v| parse_value(v).ok_or_else(|| format!("{name}: invalid value {v:?}")))?;
        if let Some(ts) = fields.next()
            && ts.parse::<i64>().is_err()
        {
            return Err(format!("{name}: invalid timestamp {ts:?}"));
        }
        if let Some(extra) = fields.next() {
            return Err(format!("{name}: unexpected {extra:?} after the value"));
        }
        Ok(Sample {
            name,
            labels,
            value,
        })
    }
}

/// A Go `ParseFloat` value as the format allows: decimal or exponent form,
/// `NaN`, `+Inf`, `-Inf`.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        // Rust also accepts "inf", "infinity" and "nan" in any case.
        _ if s
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && !matches!(b, b'e' | b'E')) =>
        {
            None
        }
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn darkstat_metrics_fixture() {
        let body = include_bytes!("testdata/darkstat-3.0.721-metrics.txt");
        let exp = parse(body).expect("valid");
        assert_eq!(exp.kind("host_bytes_total"), Some("counter"));
        let samples: Vec<_> = exp.samples("host_bytes_total").collect();
        assert_eq!(samples.len(), 6);
        assert_eq!(samples[0].label("ip"), Some("::1"));
        assert_eq!(samples[0].label("dir"), Some("in"));
        assert_eq!(samples[0].label("interface"), Some("lo"));
        assert_eq!(samples[0].value, 905_805.0);
    }

    #[test]
    fn label_values_are_strings_not_split_points() {
        let body = b"# HELP m help with \\\\ escapes\n# TYPE m gauge\n\
            m{a=\"x,y=z}\",b=\"q\\\"u\\\\o\\nte\",} 1.5e3 1700000000000\n  m 7\nm{} -Inf\n";
        let exp = parse(body).expect("valid");
        let s: Vec<_> = exp.samples("m").collect();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].label("a"), Some("x,y=z}"));
        assert_eq!(s[0].label("b"), Some("q\"u\\o\nte"));
        assert_eq!(s[0].value, 1500.0);
        assert_eq!(s[1].value, 7.0);
        assert!(s[1].labels.is_empty());
        assert_eq!(s[2].value, f64::NEG_INFINITY);
        assert!(parse(b"m NaN\n").expect("NaN").all()[0].value.is_nan());
        assert!(exp.has("m") && !exp.has("other"));
    }

    #[test]
    fn empty_body_is_an_empty_exposition() {
        assert_eq!(parse(b"").expect("empty").all().len(), 0);
        assert_eq!(
            parse(b"# just a comment\n\n").expect("comment").all().len(),
            0
        );
    }

    #[test]
    fn malformed_bodies_fail_with_the_line() {
        let line = |n, m: &str| {
            Err(ExpositionError::Line {
                line: n,
                message: m.to_owned(),
            })
        };
        let cases: &[(&[u8], Result<(), ExpositionError>)] = &[
            (b"m 1", Err(ExpositionError::Truncated)),
            (b"m{a=\"1\"} 2\nm{a=\"1", Err(ExpositionError::Truncated)),
            (
                b"ok 1\n<html><body>oops</body></html>\n",
                line(2, "expected a name at column 1"),
            ),
            (b"m{a=\"1\" 2\n", line(1, "expected ',' or '}' at column 9")),
            (b"m{a=1} 2\n", line(1, "expected '\"' at column 5")),
            (b"m{a=\"1\",a=\"2\"} 2\n", line(1, "label a given twice")),
            (b"m{a=\"\\x\"} 2\n", line(1, "invalid escape \\x")),
            (b"m{a=\"1\"}\n", line(1, "m: no value")),
            (b"m one\n", line(1, "m: invalid value \"one\"")),
            (b"m inf\n", line(1, "m: invalid value \"inf\"")),
            (b"m 1 soon\n", line(1, "m: invalid timestamp \"soon\"")),
            (b"m 1 2 3\n", line(1, "m: unexpected \"3\" after the value")),
            (b"1m 2\n", line(1, "expected a name at column 1")),
            (
                b"# TYPE m thing\n",
                line(1, "unknown metric type \"thing\" for m"),
            ),
            (b"# TYPE 9m gauge\n", line(1, "invalid metric name \"9m\"")),
            (b"m 1\n\xff\n", Err(ExpositionError::NotUtf8(4))),
        ];
        for (body, want) in cases {
            let got = parse(body).map(|_| ());
            assert_eq!(&got, want, "{:?}", String::from_utf8_lossy(body));
        }
    }
}
