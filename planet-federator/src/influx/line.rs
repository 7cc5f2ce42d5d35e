//! InfluxDB line protocol: a pure, deterministic encoder (the shape of
//! vector's `influx_line_protocol`).
//!
//! `measurement[,tag=value...] field=value[,field=value...] [timestamp]`
//!
//! Escaping differs per element, as InfluxDB's parser expects:
//! - measurement: `,` and space;
//! - tag keys, tag values and field keys: `,`, `=` and space;
//! - string field values: `"` and `\`, inside double quotes.
//!
//! Tags are written sorted by key (InfluxDB's canonical order, and stable
//! output). Tags with an empty key or value are left out, as the original's
//! Go client did. Line breaks cannot be escaped in line protocol, so they
//! are replaced by spaces. A trailing backslash in a key or value is doubled,
//! so it cannot swallow the delimiter after it.

use std::fmt::Write as _;

use thiserror::Error;

/// A field value. Integers get the `i` suffix; floats are written in
/// Rust's shortest round-trip form (never in exponent notation).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Integer(i64),
    String(String),
    Boolean(bool),
}

/// One point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, FieldValue)>,
    /// Nanoseconds since the Unix epoch; `None` lets the server stamp it.
    pub timestamp_ns: Option<i64>,
}

impl Point {
    pub fn new(measurement: impl Into<String>) -> Self {
        Self {
            measurement: measurement.into(),
            tags: Vec::new(),
            fields: Vec::new(),
            timestamp_ns: None,
        }
    }

    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    pub fn field(mut self, key: impl Into<String>, value: FieldValue) -> Self {
        self.fields.push((key.into(), value));
        self
    }

    pub fn timestamp_ns(mut self, ns: i64) -> Self {
        self.timestamp_ns = Some(ns);
        self
    }

    /// The tag's value, if the point has it.
    pub fn get_tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LineError {
    #[error("point has an empty measurement name")]
    EmptyMeasurement,
    #[error("point in {measurement:?} has no writable field (NaN and infinities are not writable)")]
    NoFields { measurement: String },
}

/// Appends `point` as one line (with a trailing `\n`) to `out`. On error
/// `out` is left unchanged.
pub(crate) fn encode(point: &Point, out: &mut String) -> Result<(), LineError> {
    if point.measurement.is_empty() {
        return Err(LineError::EmptyMeasurement);
    }
    let start = out.len();
    escape_into(out, &point.measurement, &[',', ' ']);

    let mut tags: Vec<&(String, String)> = point
        .tags
        .iter()
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .collect();
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, value) in tags {
        out.push(',');
        escape_into(out, key, &[',', '=', ' ']);
        out.push('=');
        escape_into(out, value, &[',', '=', ' ']);
    }

    let mut separator = ' ';
    for (key, value) in &point.fields {
        if key.is_empty() {
            continue;
        }
        if let FieldValue::Float(f) = value
            && !f.is_finite()
        {
            continue;
        }
        out.push(separator);
        separator = ',';
        escape_into(out, key, &[',', '=', ' ']);
        out.push('=');
        encode_field(out, value);
    }
    if separator == ' ' {
        out.truncate(start);
        return Err(LineError::NoFields {
            measurement: point.measurement.clone(),
        });
    }

    if let Some(ts) = point.timestamp_ns {
        let _ = write!(out, " {ts}");
    }
    out.push('\n');
    Ok(())
}

/// Encodes `points`, one line each; returns the body and the points that
/// could not be encoded (with why).
pub fn encode_all<'a>(
    points: impl IntoIterator<Item = &'a Point>,
) -> (Vec<String>, Vec<LineError>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for point in points {
        let mut line = String::with_capacity(160);
        match encode(point, &mut line) {
            Ok(()) => lines.push(line),
            Err(e) => errors.push(e),
        }
    }
    (lines, errors)
}

fn encode_field(out: &mut String, value: &FieldValue) {
    match value {
        FieldValue::Float(f) => {
            let _ = write!(out, "{f}");
        }
        FieldValue::Integer(i) => {
            let _ = write!(out, "{i}i");
        }
        FieldValue::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        FieldValue::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' | '\\' => {
                        out.push('\\');
                        out.push(c);
                    }
                    '\n' | '\r' => out.push(' '),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
    }
}

fn escape_into(out: &mut String, s: &str, special: &[char]) {
    for c in s.chars() {
        if special.contains(&c) {
            out.push('\\');
            out.push(c);
        } else if c == '\n' || c == '\r' {
            // A line break becomes an (escaped) space.
            out.push_str("\\ ");
        } else {
            out.push(c);
        }
    }
    if s.ends_with('\\') {
        out.push('\\');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(p: &Point) -> String {
        let mut s = String::new();
        encode(p, &mut s).unwrap();
        s
    }

    #[test]
    fn traffic_point_like_the_original() {
        let p = Point::new("ingress")
            .tag("service", "web")
            .tag("address", "web-1.example")
            .tag("remote_service", "db")
            .tag("remote_address", "db-1.example")
            .field("bandwidth_bps", FieldValue::Float(1_000_000.5))
            .timestamp_ns(1_764_064_830_000_000_000);
        assert_eq!(
            line(&p),
            "ingress,address=web-1.example,remote_address=db-1.example,remote_service=db,service=web \
             bandwidth_bps=1000000.5 1764064830000000000\n"
        );
    }

    #[test]
    fn dependency_point_has_integer_one() {
        let p = Point::new("upstream")
            .tag("service", "web")
            .tag("upstream_port", "5432")
            .field("service_dependency", FieldValue::Integer(1));
        assert_eq!(
            line(&p),
            "upstream,service=web,upstream_port=5432 service_dependency=1i\n"
        );
    }

    #[test]
    fn empty_tags_are_left_out() {
        let p = Point::new("egress")
            .tag("service", "web")
            .tag("address", "")
            .tag("", "x")
            .field("bandwidth_bps", FieldValue::Float(2000.0));
        assert_eq!(line(&p), "egress,service=web bandwidth_bps=2000\n");
    }

    #[test]
    fn measurement_escapes_comma_and_space_only() {
        let p = Point::new("a b,c=d").field("f", FieldValue::Integer(1));
        assert_eq!(line(&p), "a\\ b\\,c=d f=1i\n");
    }

    #[test]
    fn tag_and_field_keys_and_tag_values_escape_comma_equals_space() {
        let p = Point::new("m")
            .tag("k ey,=", "v al,=ue")
            .field("f i,e=ld", FieldValue::Boolean(true));
        assert_eq!(
            line(&p),
            "m,k\\ ey\\,\\==v\\ al\\,\\=ue f\\ i\\,e\\=ld=true\n"
        );
    }

    #[test]
    fn string_fields_escape_quote_and_backslash() {
        let p = Point::new("m").field("s", FieldValue::String(r#"say "hi" C:\dir"#.into()));
        assert_eq!(line(&p), "m s=\"say \\\"hi\\\" C:\\\\dir\"\n");
    }

    #[test]
    fn backslashes_inside_are_literal_and_trailing_ones_doubled() {
        let p = Point::new("m")
            .tag("path", r"C:\dir")
            .tag("trail", r"x\")
            .field("f", FieldValue::Integer(-3));
        assert_eq!(line(&p), "m,path=C:\\dir,trail=x\\\\ f=-3i\n");
    }

    #[test]
    fn line_breaks_become_spaces() {
        let p = Point::new("m\nx")
            .tag("t", "a\nb")
            .field("s", FieldValue::String("l1\nl2".into()));
        assert_eq!(line(&p), "m\\ x,t=a\\ b s=\"l1 l2\"\n");
    }

    #[test]
    fn tags_sorted_fields_in_given_order() {
        let p = Point::new("m")
            .tag("z", "1")
            .tag("a", "2")
            .field("y", FieldValue::Integer(1))
            .field("b", FieldValue::Float(0.25));
        assert_eq!(line(&p), "m,a=2,z=1 y=1i,b=0.25\n");
    }

    #[test]
    fn floats_never_use_exponents() {
        let p = Point::new("m")
            .field("big", FieldValue::Float(1e21))
            .field("small", FieldValue::Float(1.5e-7));
        assert_eq!(line(&p), "m big=1000000000000000000000,small=0.00000015\n");
    }

    #[test]
    fn non_finite_fields_are_skipped_and_empty_points_rejected() {
        let p = Point::new("m")
            .field("nan", FieldValue::Float(f64::NAN))
            .field("ok", FieldValue::Float(1.0));
        assert_eq!(line(&p), "m ok=1\n");
        let p = Point::new("m").field("inf", FieldValue::Float(f64::INFINITY));
        let mut out = String::from("keep\n");
        assert_eq!(
            encode(&p, &mut out),
            Err(LineError::NoFields {
                measurement: "m".into()
            })
        );
        assert_eq!(out, "keep\n");
        assert_eq!(
            encode(&Point::new(""), &mut out),
            Err(LineError::EmptyMeasurement)
        );
    }

    #[test]
    fn unicode_passes_through() {
        let p = Point::new("m")
            .tag("svc", "zürich-ñ")
            .field("f", FieldValue::Integer(1));
        assert_eq!(line(&p), "m,svc=zürich-ñ f=1i\n");
    }

    #[test]
    fn encode_all_collects_errors() {
        let good = Point::new("m").field("f", FieldValue::Integer(1));
        let bad = Point::new("m");
        let (lines, errors) = encode_all([&good, &bad, &good]);
        assert_eq!(lines, vec!["m f=1i\n", "m f=1i\n"]);
        assert_eq!(errors.len(), 1);
    }
}
