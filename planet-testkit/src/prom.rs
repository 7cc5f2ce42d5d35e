//! A small parser for the Prometheus text exposition format (0.0.4), enough
//! for tests: samples with labels and values; comments, `# HELP` and `# TYPE`
//! lines are skipped, and timestamps are ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::iter::Peekable;
use std::str::CharIndices;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// Whether the sample is named `name` and has every `(label, value)` given
    /// (a label that is absent counts as the empty string, as in Prometheus).
    pub fn matches(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.name == name
            && labels
                .iter()
                .all(|(k, v)| self.label(k).unwrap_or("") == *v)
    }
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{{", self.name)?;
        for (i, (k, v)) in self.labels.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{k}={v:?}")?;
        }
        write!(f, "}} {}", self.value)
    }
}

/// A line that is not valid exposition format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses a whole exposition.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = parse_line(line).map_err(|message| ParseError {
            line: i + 1,
            message,
        })?;
        samples.push(sample);
    }
    Ok(samples)
}

/// The samples named `name` that carry every `(label, value)` in `labels`.
pub fn select<'a>(
    samples: &'a [Sample],
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a Sample> + 'a {
    samples.iter().filter(move |s| s.matches(name, labels))
}

/// The sum of the values of the samples named `name` that carry every
/// `(label, value)` in `labels`; 0 when none do.
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    // Not `.sum()`: an empty f64 sum is -0.0, which prints as "-0".
    select(samples, name, labels).fold(0.0, |acc, s| acc + s.value)
}

/// The value of the only sample named `name` with `labels`, or `None` if there
/// is none or more than one.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = select(samples, name, labels);
    let first = found.next()?;
    found.next().is_none().then_some(first.value)
}

type Chars<'a> = Peekable<CharIndices<'a>>;

fn parse_line(line: &str) -> Result<Sample, String> {
    let mut chars = line.char_indices().peekable();
    let name = take_name(line, &mut chars, true);
    if name.is_empty() {
        return Err(format!("expected a metric name: {line:?}"));
    }
    skip_spaces(&mut chars);
    let mut labels = BTreeMap::new();
    if chars.next_if(|&(_, c)| c == '{').is_some() {
        parse_labels(line, &mut chars, &mut labels)?;
    }
    let rest = chars.peek().map_or("", |&(i, _)| &line[i..]);
    let mut fields = rest.split_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| format!("missing value: {line:?}"))?;
    let value = parse_value(value)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {extra:?} after the value"));
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(
    line: &str,
    chars: &mut Chars<'_>,
    labels: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    loop {
        skip_spaces(chars);
        if chars.next_if(|&(_, c)| c == '}').is_some() {
            return Ok(());
        }
        let key = take_name(line, chars, false);
        if key.is_empty() {
            return Err(format!("expected a label name: {line:?}"));
        }
        skip_spaces(chars);
        expect(chars, '=', line)?;
        skip_spaces(chars);
        expect(chars, '"', line)?;
        let value =
            take_quoted(chars).ok_or_else(|| format!("unterminated label value: {line:?}"))?;
        if labels.insert(key.to_owned(), value).is_some() {
            return Err(format!("duplicate label {key:?}"));
        }
        skip_spaces(chars);
        match chars.next() {
            Some((_, ',')) => {}
            Some((_, '}')) => return Ok(()),
            _ => {
                return Err(format!(
                    "expected ',' or '}}' after label {key:?}: {line:?}"
                ));
            }
        }
    }
}

fn take_name<'a>(line: &'a str, chars: &mut Chars<'_>, colons: bool) -> &'a str {
    let start = chars.peek().map_or(line.len(), |&(i, _)| i);
    let mut end = start;
    while let Some(&(i, c)) = chars.peek() {
        let ok = c == '_'
            || c.is_ascii_alphabetic()
            || (colons && c == ':')
            || (i > start && c.is_ascii_digit());
        if !ok {
            break;
        }
        end = i + c.len_utf8();
        chars.next();
    }
    &line[start..end]
}

fn take_quoted(chars: &mut Chars<'_>) -> Option<String> {
    let mut out = String::new();
    loop {
        match chars.next()?.1 {
            '"' => return Some(out),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            },
            c => out.push(c),
        }
    }
}

fn skip_spaces(chars: &mut Chars<'_>) {
    while chars.next_if(|&(_, c)| c == ' ' || c == '\t').is_some() {}
}

fn expect(chars: &mut Chars<'_>, want: char, line: &str) -> Result<(), String> {
    match chars.next() {
        Some((_, c)) if c == want => Ok(()),
        _ => Err(format!("expected {want:?}: {line:?}")),
    }
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => text.parse().map_err(|_| format!("bad value {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP planet_upstream_bytes_total Bytes of flows this host opened.
# TYPE planet_upstream_bytes_total counter
planet_upstream_bytes_total{direction="egress",local_address="10.0.0.1",port="80",process_name="curl"} 1200
planet_upstream_bytes_total{direction="ingress",local_address="10.0.0.1",port="80",process_name="curl"} 3.4e3
planet_upstream_bytes_total{direction="egress",local_address="10.0.0.1",port="443",process_name="curl",} 100 1700000000000
# a plain comment
odd_labels{path="C:\\dir\\",quote="say \"hi\"",nl="a\nb", spaced = "x" } -2

up 1
nan_metric NaN
inf_metric{le="+Inf"} +Inf
neg_inf -Inf
"#;

    #[test]
    fn parses_samples_labels_and_values() {
        let samples = parse(TEXT).unwrap();
        assert_eq!(samples.len(), 8);
        let first = &samples[0];
        assert_eq!(first.name, "planet_upstream_bytes_total");
        assert_eq!(first.label("direction"), Some("egress"));
        assert_eq!(first.label("port"), Some("80"));
        assert_eq!(first.value, 1200.0);
        assert_eq!(samples[1].value, 3400.0);
        assert_eq!(samples[2].label("port"), Some("443"));
        assert_eq!(samples[2].value, 100.0);
        assert_eq!(samples[4].name, "up");
        assert!(samples[4].labels.is_empty());
    }

    #[test]
    fn unescapes_label_values() {
        let samples = parse(TEXT).unwrap();
        let odd = &samples[3];
        assert_eq!(odd.label("path"), Some(r"C:\dir\"));
        assert_eq!(odd.label("quote"), Some(r#"say "hi""#));
        assert_eq!(odd.label("nl"), Some("a\nb"));
        assert_eq!(odd.label("spaced"), Some("x"));
        assert_eq!(odd.value, -2.0);
    }

    #[test]
    fn parses_special_values() {
        let samples = parse(TEXT).unwrap();
        assert!(samples[5].value.is_nan());
        assert_eq!(samples[6].value, f64::INFINITY);
        assert_eq!(samples[6].label("le"), Some("+Inf"));
        assert_eq!(samples[7].value, f64::NEG_INFINITY);
    }

    #[test]
    fn sums_by_label_subset() {
        let samples = parse(TEXT).unwrap();
        let name = "planet_upstream_bytes_total";
        assert_eq!(sum(&samples, name, &[]), 4700.0);
        assert_eq!(sum(&samples, name, &[("direction", "egress")]), 1300.0);
        assert_eq!(
            sum(&samples, name, &[("direction", "egress"), ("port", "80")]),
            1200.0
        );
        assert_eq!(sum(&samples, name, &[("process_name", "wget")]), 0.0);
        assert_eq!(sum(&samples, "missing", &[]).to_string(), "0");
        // An absent label matches the empty string.
        assert_eq!(sum(&samples, name, &[("remote_hostgroup", "")]), 4700.0);
        assert_eq!(value(&samples, name, &[("port", "443")]), Some(100.0));
        assert_eq!(value(&samples, name, &[("port", "80")]), None);
        assert_eq!(value(&samples, "up", &[]), Some(1.0));
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "metric{a=\"1\" 2",
            "metric{a=1} 2",
            "metric{a=\"1\"}",
            "metric{a=\"1\"} two",
            "metric 1 2 3",
            "{a=\"1\"} 1",
            "metric{a=\"1\",a=\"2\"} 1",
            "metric{a=\"unterminated} 1",
        ] {
            let err = parse(&format!("ok 1\n{bad}\n")).unwrap_err();
            assert_eq!(err.line, 2, "{bad}: {err}");
        }
    }

    #[test]
    fn displays_samples() {
        let samples = parse("m{b=\"2\",a=\"x\\\"y\"} 3\n").unwrap();
        assert_eq!(samples[0].to_string(), r#"m{a="x\"y",b="2"} 3"#);
    }
}
