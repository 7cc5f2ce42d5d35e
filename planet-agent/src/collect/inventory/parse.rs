//! Decoding an inventory body into hosts. Pure: no I/O.
//!
//! Entries are decoded by hand-written serde visitors instead of a derived,
//! strict `Deserialize`. A visitor consumes any JSON value, so a bad entry
//! is skipped and the decoder stays in sync with the input. A failed
//! derived decode in the middle of a stream would leave it out of sync.
//! Every entry starts from a fresh [`Host`], so nothing carries over from
//! the previous one.

use std::{fmt, str::FromStr};

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use thiserror::Error;

use super::Host;

/// Layout of the inventory body (`-task-inventory-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// One JSON array of host objects (planet-exporter's default).
    #[default]
    ArrayJson,
    /// Host objects one after another, separated by whitespace.
    NdJson,
}

impl Format {
    /// The flag value: `arrayjson` or `ndjson`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ArrayJson => "arrayjson",
            Self::NdJson => "ndjson",
        }
    }

    /// The `-task-inventory-format` value as planet-exporter treats it: an
    /// unsupported value logs a warning and falls back to `arrayjson`.
    pub fn from_flag(value: &str) -> Self {
        let format = value.parse().unwrap_or_else(|err: UnknownFormat| {
            tracing::warn!("{err}; falling back to the default format arrayjson");
            Self::ArrayJson
        });
        tracing::info!(%format, "using inventory format");
        format
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = UnknownFormat;

    /// Exactly `arrayjson` or `ndjson`, as planet-exporter compares them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "arrayjson" => Ok(Self::ArrayJson),
            "ndjson" => Ok(Self::NdJson),
            other => Err(UnknownFormat(other.to_owned())),
        }
    }
}

/// A `-task-inventory-format` value that is neither `arrayjson` nor `ndjson`.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("unsupported inventory format {0:?} (expected \"arrayjson\" or \"ndjson\")")]
pub struct UnknownFormat(pub String);

/// The hosts decoded from one body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Decoded hosts in input order. Entries with neither domain nor
    /// hostgroup are already left out (see `uninformative`).
    pub hosts: Vec<Host>,
    /// Entries that were valid JSON but not a usable host object: not an
    /// object, an unknown field, or a non-string field value.
    pub skipped: usize,
    /// Host objects with neither domain nor hostgroup. They are dropped
    /// here, so a body of `{}`s cannot inflate memory.
    pub uninformative: usize,
}

/// Why a body could not be decoded. Any of these fails the whole refresh.
#[derive(Debug, Error)]
pub enum ParseError {
    /// An arrayjson body with nothing but whitespace in it.
    #[error("empty arrayjson body (expected a JSON array)")]
    Empty,
    /// An arrayjson body that is not valid JSON, or whose top-level value
    /// is not an array or `null`.
    #[error("invalid arrayjson body")]
    InvalidArray(#[source] serde_json::Error),
    /// A JSON syntax error in an ndjson body, after `values` good values.
    #[error("invalid ndjson body after {values} values")]
    InvalidStream {
        /// Values decoded before the error (hosts and skipped entries).
        values: usize,
        /// The decoder's error, with line and column.
        #[source]
        source: serde_json::Error,
    },
}

/// Decodes `body` as `format`.
///
/// A leading UTF-8 byte order mark is ignored. Trailing data after an
/// arrayjson array is ignored with a warning, as in planet-exporter.
pub fn parse(format: Format, body: &[u8]) -> Result<Parsed, ParseError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    match format {
        Format::ArrayJson => parse_array(body),
        Format::NdJson => parse_stream(body),
    }
}

fn parse_array(body: &[u8]) -> Result<Parsed, ParseError> {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<HostList>();
    let parsed = match values.next() {
        None => return Err(ParseError::Empty),
        Some(Err(err)) => return Err(ParseError::InvalidArray(err)),
        Some(Ok(HostList(parsed))) => parsed,
    };
    let rest = body.get(values.byte_offset()..).unwrap_or_default();
    let trailing = rest.trim_ascii().len();
    if trailing > 0 {
        tracing::warn!(
            bytes = trailing,
            "unexpected data after the inventory array; ignored"
        );
    }
    Ok(parsed)
}

fn parse_stream(body: &[u8]) -> Result<Parsed, ParseError> {
    let mut parsed = Parsed::default();
    let stream = serde_json::Deserializer::from_slice(body).into_iter::<Entry>();
    for (values, entry) in stream.enumerate() {
        match entry {
            Ok(entry) => parsed.add(values, entry),
            // Any error here is a syntax error (or EOF: a truncated value):
            // the entry visitor accepts every well-formed value. The stream
            // cannot resynchronise, so stop; never retry.
            Err(source) => return Err(ParseError::InvalidStream { values, source }),
        }
    }
    Ok(parsed)
}

impl Parsed {
    fn add(&mut self, index: usize, Entry(entry): Entry) {
        match entry {
            Ok(host) if host.is_uninformative() => self.uninformative += 1,
            Ok(host) => self.hosts.push(host),
            Err(reason) => {
                tracing::debug!(index, %reason, "skipping an inventory entry");
                self.skipped += 1;
            }
        }
    }
}

/// Why an entry was skipped (logged at debug level).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Skip {
    NotAnObject(&'static str),
    UnknownField(String),
    WrongType {
        field: &'static str,
        found: &'static str,
    },
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnObject(found) => write!(f, "expected a host object, found {found}"),
            Self::UnknownField(name) => write!(f, "unknown field {name:?}"),
            Self::WrongType { field, found } => {
                write!(f, "field {field:?} must be a string, found {found}")
            }
        }
    }
}

/// Longest unknown field name kept for the debug log.
const MAX_NAME: usize = 64;

/// The top-level arrayjson value: an array of entries, or `null`.
struct HostList(Parsed);

impl<'de> Deserialize<'de> for HostList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(HostListVisitor)
    }
}

struct HostListVisitor;

impl<'de> Visitor<'de> for HostListVisitor {
    type Value = HostList;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of host objects or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<HostList, E> {
        Ok(HostList(Parsed::default()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HostList, A::Error> {
        let mut parsed = Parsed::default();
        let mut index = 0;
        while let Some(entry) = seq.next_element::<Entry>()? {
            parsed.add(index, entry);
            index += 1;
        }
        Ok(HostList(parsed))
    }
}

/// One value in the body: a host, or why it is skipped. Deserialising an
/// `Entry` never fails on well-formed JSON.
struct Entry(Result<Host, Skip>);

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EntryVisitor)
    }
}

struct EntryVisitor;

impl EntryVisitor {
    fn not_an_object<E>(found: &'static str) -> Result<Entry, E> {
        Ok(Entry(Err(Skip::NotAnObject(found))))
    }
}

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
        // Fresh for every entry: no carry-over from the previous one.
        let mut host = Host::default();
        let mut skip = None;
        while let Some(key) = map.next_key::<Key>()? {
            let (name, slot) = match key {
                Key::IpAddress => ("ip_address", &mut host.ip_address),
                Key::Domain => ("domain", &mut host.domain),
                Key::Hostgroup => ("hostgroup", &mut host.hostgroup),
                Key::Unknown(name) => {
                    map.next_value::<IgnoredAny>()?;
                    skip.get_or_insert(Skip::UnknownField(name));
                    continue;
                }
            };
            match map.next_value::<FieldValue>()? {
                FieldValue::Text(text) => *slot = text,
                // Go leaves the field as it is for `null`.
                FieldValue::Null => {}
                FieldValue::Other(found) => {
                    skip.get_or_insert(Skip::WrongType { field: name, found });
                }
            }
        }
        Ok(Entry(skip.map_or(Ok(host), Err)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Entry, A::Error> {
        drain_seq(seq)?;
        Self::not_an_object("an array")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Entry, E> {
        Self::not_an_object("null")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Entry, E> {
        Self::not_an_object("a boolean")
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Entry, E> {
        Self::not_an_object("a number")
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Entry, E> {
        Self::not_an_object("a number")
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Entry, E> {
        Self::not_an_object("a number")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Entry, E> {
        Self::not_an_object("a string")
    }
}

/// A key of a host object.
enum Key {
    IpAddress,
    Domain,
    Hostgroup,
    Unknown(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
        Ok(if name.eq_ignore_ascii_case("ip_address") {
            Key::IpAddress
        } else if name.eq_ignore_ascii_case("domain") {
            Key::Domain
        } else if name.eq_ignore_ascii_case("hostgroup") {
            Key::Hostgroup
        } else {
            Key::Unknown(truncated(name, MAX_NAME).to_owned())
        })
    }
}

/// The value of a known field, whatever its JSON type.
enum FieldValue {
    Text(String),
    Null,
    Other(&'static str),
}

impl<'de> Deserialize<'de> for FieldValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldValueVisitor)
    }
}

struct FieldValueVisitor;

impl<'de> Visitor<'de> for FieldValueVisitor {
    type Value = FieldValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<FieldValue, E> {
        Ok(FieldValue::Text(text.to_owned()))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<FieldValue, E> {
        Ok(FieldValue::Text(text))
    }

    fn visit_unit<E: de::Error>(self) -> Result<FieldValue, E> {
        Ok(FieldValue::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<FieldValue, E> {
        Ok(FieldValue::Other("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<FieldValue, E> {
        Ok(FieldValue::Other("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<FieldValue, E> {
        Ok(FieldValue::Other("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<FieldValue, E> {
        Ok(FieldValue::Other("a number"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<FieldValue, A::Error> {
        drain_seq(seq)?;
        Ok(FieldValue::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldValue, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(FieldValue::Other("an object"))
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// At most `max` bytes of `text`, cut at a character boundary
/// (`str::floor_char_boundary` needs Rust 1.91; the workspace MSRV is 1.87).
fn truncated(text: &str, max: usize) -> &str {
    let end = (0..=max.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(ip: &str, domain: &str, hostgroup: &str) -> Host {
        Host::new(ip, domain, hostgroup)
    }

    fn ok(format: Format, body: &str) -> Parsed {
        parse(format, body.as_bytes())
            .unwrap_or_else(|err| panic!("{format} {body:?}: {}", planet_cli::errors::chain(&err)))
    }

    fn hosts(format: Format, body: &str) -> Vec<Host> {
        ok(format, body).hosts
    }

    #[test]
    fn format_from_str() {
        assert_eq!("arrayjson".parse(), Ok(Format::ArrayJson));
        assert_eq!("ndjson".parse(), Ok(Format::NdJson));
        for bad in ["", "jsonarray", "NDJSON", "ndjson "] {
            assert_eq!(
                bad.parse::<Format>(),
                Err(UnknownFormat(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert_eq!(Format::default(), Format::ArrayJson);
        assert_eq!(Format::from_flag("ndjson"), Format::NdJson);
        assert_eq!(Format::from_flag("jsonarray"), Format::ArrayJson);
        assert_eq!(Format::NdJson.to_string(), "ndjson");
        assert_eq!(
            UnknownFormat("x".into()).to_string(),
            "unsupported inventory format \"x\" (expected \"arrayjson\" or \"ndjson\")"
        );
    }

    /// The shipped example files (planet-exporter `setup/inventories`).
    #[test]
    fn example_files() {
        let expected = vec![
            host("10.0.1.2", "xyz.service.consul", "xyz"),
            host("172.16.1.2", "abc.service.consul", "abc"),
            host("10.3.0.0/16", "", "unknown-but-its-network-xyz"),
        ];
        let array = r#"
        [
          {"ip_address": "10.0.1.2", "domain": "xyz.service.consul", "hostgroup": "xyz"},
          {"ip_address": "172.16.1.2", "domain": "abc.service.consul", "hostgroup": "abc"},
          {"ip_address": "10.3.0.0/16", "domain": "", "hostgroup": "unknown-but-its-network-xyz"}
        ]
        "#;
        let nd = r#"{"ip_address": "10.0.1.2", "domain": "xyz.service.consul", "hostgroup": "xyz"}
{"ip_address": "172.16.1.2", "domain": "abc.service.consul", "hostgroup": "abc"}
{"ip_address": "10.3.0.0/16", "domain": "", "hostgroup": "unknown-but-its-network-xyz"}
"#;
        assert_eq!(hosts(Format::ArrayJson, array), expected);
        assert_eq!(hosts(Format::NdJson, nd), expected);
    }

    /// Inputs both formats accept, with their outcome (hosts, skipped).
    #[test]
    fn entries_table() {
        let a = host("10.0.0.1", "a", "ga");
        let cases: &[(&str, &str, Vec<Host>, usize)] = &[
            (
                "one",
                r#"{"ip_address":"10.0.0.1","domain":"a","hostgroup":"ga"}"#,
                vec![a.clone()],
                0,
            ),
            (
                "missing fields are empty",
                r#"{"domain":"d"}"#,
                vec![host("", "d", "")],
                0,
            ),
            (
                "null is empty",
                r#"{"ip_address":"1.2.3.4","domain":null,"hostgroup":"g"}"#,
                vec![host("1.2.3.4", "", "g")],
                0,
            ),
            (
                "keys are case-insensitive",
                r#"{"IP_Address":"10.0.0.1","DOMAIN":"a","HostGroup":"ga"}"#,
                vec![a.clone()],
                0,
            ),
            (
                "repeated key: last wins",
                r#"{"ip_address":"9.9.9.9","ip_address":"10.0.0.1","domain":"a","hostgroup":"ga"}"#,
                vec![a.clone()],
                0,
            ),
            (
                "null after a value keeps it",
                r#"{"ip_address":"10.0.0.1","domain":"a","domain":null,"hostgroup":"ga"}"#,
                vec![a.clone()],
                0,
            ),
            (
                "escapes",
                r#"{"ip_address":"10.0.0.1","domain":"\u0061","hostgroup":"g\na"}"#,
                vec![host("10.0.0.1", "a", "g\na")],
                0,
            ),
            (
                "unknown field",
                r#"{"ip_address":"10.0.0.1","domain":"a","port":80}"#,
                vec![],
                1,
            ),
            (
                "unknown field with a nested value",
                r#"{"ip_address":"10.0.0.1","domain":"a","x":{"y":[1,{"z":null}]}}"#,
                vec![],
                1,
            ),
            (
                "number instead of string",
                r#"{"ip_address":10,"domain":"a"}"#,
                vec![],
                1,
            ),
            (
                "bool instead of string",
                r#"{"ip_address":"10.0.0.1","domain":true}"#,
                vec![],
                1,
            ),
            (
                "array instead of string",
                r#"{"ip_address":["10.0.0.1"],"domain":"a"}"#,
                vec![],
                1,
            ),
            (
                "object instead of string",
                r#"{"ip_address":{"v":"10.0.0.1"},"domain":"a"}"#,
                vec![],
                1,
            ),
            (
                "both empty are dropped, not skipped",
                r#"{"ip_address":"10.0.0.1"}"#,
                vec![],
                0,
            ),
        ];
        for (name, entry, want, skipped) in cases {
            let array = ok(Format::ArrayJson, &format!("[{entry}]"));
            assert_eq!(&array.hosts, want, "arrayjson: {name}");
            assert_eq!(array.skipped, *skipped, "arrayjson skipped: {name}");
            let nd = ok(Format::NdJson, &format!("{entry}\n"));
            assert_eq!(&nd.hosts, want, "ndjson: {name}");
            assert_eq!(nd.skipped, *skipped, "ndjson skipped: {name}");
        }
    }

    #[test]
    fn skipped_entries_do_not_stop_the_rest() {
        let body_entries = [
            r#"{"ip_address":"10.0.0.1","domain":"a"}"#,
            r#"{"ip_address":"10.0.0.2","domain":"b","extra":1}"#,
            "5",
            r#""text""#,
            "null",
            "true",
            "[1,2]",
            r#"{"ip_address":"10.0.0.3","hostgroup":"c"}"#,
            "{}",
        ];
        let want = vec![host("10.0.0.1", "a", ""), host("10.0.0.3", "", "c")];
        let array = ok(Format::ArrayJson, &format!("[{}]", body_entries.join(",")));
        assert_eq!(array.hosts, want);
        assert_eq!((array.skipped, array.uninformative), (6, 1));
        let nd = ok(Format::NdJson, &body_entries.join("\n"));
        assert_eq!(nd.hosts, want);
        assert_eq!((nd.skipped, nd.uninformative), (6, 1));
    }

    /// serde_json skips ignored values without recursion, so deep nesting
    /// inside an entry is just a skipped entry, not a stack overflow.
    #[test]
    fn deep_nesting_is_skipped() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let field = format!(r#"{{"domain":{deep}}}"#);
        for entry in [&deep, &field] {
            let array = ok(
                Format::ArrayJson,
                &format!("[{entry},{{\"domain\":\"a\"}}]"),
            );
            assert_eq!((array.hosts.len(), array.skipped), (1, 1));
            let nd = ok(Format::NdJson, &format!("{entry}\n{{\"domain\":\"a\"}}"));
            assert_eq!((nd.hosts.len(), nd.skipped), (1, 1));
        }
        // Unbalanced deep nesting is a syntax error.
        let open = "[".repeat(100_000);
        assert!(parse(Format::ArrayJson, format!("[{open}").as_bytes()).is_err());
        assert!(parse(Format::NdJson, open.as_bytes()).is_err());
    }

    #[test]
    fn arrayjson_top_level() {
        // `null` and `[]` are zero hosts.
        for body in ["null", " null\n", "[]", "\n[ ]\n", "\u{feff}[]"] {
            assert_eq!(ok(Format::ArrayJson, body), Parsed::default(), "{body:?}");
        }
        // Trailing data is ignored (with a warning), as planet-exporter did.
        for body in [
            r#"[{"domain":"a"}] [{"domain":"b"}]"#,
            r#"[{"domain":"a"}]<html>"#,
            r#"[{"domain":"a"}]]]"#,
            "[{\"domain\":\"a\"}]\n\n",
        ] {
            assert_eq!(
                hosts(Format::ArrayJson, body),
                vec![host("", "a", "")],
                "{body:?}"
            );
        }
    }

    #[test]
    fn arrayjson_errors() {
        let cases = [
            ("empty body", ""),
            ("whitespace", " \n\t "),
            (
                "object instead of array",
                r#"{"ip_address":"10.0.0.1","domain":"a"}"#,
            ),
            ("string", r#""hosts""#),
            ("number", "42"),
            (
                "html error page",
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            ),
            (
                "truncated",
                r#"[{"ip_address":"10.0.0.1","domain":"a"},{"ip_add"#,
            ),
            ("unterminated array", r#"[{"domain":"a"}"#),
            ("missing comma", r#"[{"domain":"a"} {"domain":"b"}]"#),
            ("trailing comma", r#"[{"domain":"a"},]"#),
            ("control character in a string", "[\"\u{0}\"]"),
        ];
        for (name, body) in cases {
            let err = parse(Format::ArrayJson, body.as_bytes()).expect_err(name);
            let expected_empty = body.trim().is_empty();
            assert_eq!(
                matches!(err, ParseError::Empty),
                expected_empty,
                "{name}: {err:?}"
            );
        }
        assert_eq!(
            planet_cli::errors::chain(&parse(Format::ArrayJson, b"{}").expect_err("object")),
            "invalid arrayjson body: invalid type: map, expected a JSON array of host objects or null at line 1 column 2"
        );
        // Bytes that are not UTF-8 inside a string.
        assert!(parse(Format::ArrayJson, b"[{\"domain\":\"\xff\"}]").is_err());
    }

    #[test]
    fn ndjson_layouts() {
        let want = vec![host("10.0.0.1", "a", ""), host("10.0.0.2", "b", "")];
        for body in [
            "{\"ip_address\":\"10.0.0.1\",\"domain\":\"a\"}\n{\"ip_address\":\"10.0.0.2\",\"domain\":\"b\"}",
            "{\"ip_address\":\"10.0.0.1\",\"domain\":\"a\"}{\"ip_address\":\"10.0.0.2\",\"domain\":\"b\"}",
            "\r\n  {\"ip_address\":\"10.0.0.1\",\"domain\":\"a\"}\r\n\r\n{\"ip_address\":\"10.0.0.2\",\"domain\":\"b\"}\r\n",
            // Pretty-printed: not line-based.
            "{\n  \"ip_address\": \"10.0.0.1\",\n  \"domain\": \"a\"\n}\n{\n  \"ip_address\": \"10.0.0.2\",\n  \"domain\": \"b\"\n}\n",
        ] {
            assert_eq!(hosts(Format::NdJson, body), want, "{body:?}");
        }
        for body in ["", "\n\n", "  \t"] {
            assert_eq!(ok(Format::NdJson, body), Parsed::default(), "{body:?}");
        }
        // An array is one value that is not a host object.
        let array = ok(Format::NdJson, r#"[{"domain":"a"},{"domain":"b"}]"#);
        assert_eq!((array.hosts.len(), array.skipped), (0, 1));
    }

    /// planet-exporter reused one record: a field missing from an entry
    /// kept the previous entry's value.
    #[test]
    fn ndjson_no_carry_over() {
        let body = "{\"ip_address\":\"10.0.0.1\",\"domain\":\"a\",\"hostgroup\":\"g\"}\n{\"ip_address\":\"10.0.0.2\",\"hostgroup\":\"h\"}\n{\"ip_address\":\"10.0.0.3\",\"domain\":\"c\"}";
        assert_eq!(
            hosts(Format::NdJson, body),
            vec![
                host("10.0.0.1", "a", "g"),
                host("10.0.0.2", "", "h"),
                host("10.0.0.3", "c", ""),
            ]
        );
    }

    /// planet-exporter looped forever on these; here they end with an error.
    #[test]
    fn ndjson_syntax_errors_end_the_parse() {
        let good = r#"{"ip_address":"10.0.0.1","domain":"a"}"#;
        let cases = [
            (
                "html error page",
                "<html><body>502 Bad Gateway</body></html>".to_owned(),
                0,
            ),
            (
                "truncated line",
                format!("{good}\n{{\"ip_address\":\"10.0.0.2\",\"dom"),
                1,
            ),
            (
                "garbage after entries",
                format!("{good}\n{good}\nnot json"),
                2,
            ),
            (
                "unterminated string",
                format!("{good}\n{{\"domain\":\"a"),
                1,
            ),
            ("bare word", "hello".to_owned(), 0),
            ("number glued to a word", "5x".to_owned(), 0),
            ("closing brace", "}".to_owned(), 0),
        ];
        for (name, body, values) in cases {
            match parse(Format::NdJson, body.as_bytes()) {
                Err(ParseError::InvalidStream { values: got, .. }) => {
                    assert_eq!(got, values, "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn long_unknown_field_names_are_cut() {
        let name = "é".repeat(100);
        let body = format!("{{\"{name}\":1}}");
        let Entry(Err(Skip::UnknownField(kept))) =
            serde_json::from_str::<Entry>(&body).expect("entry")
        else {
            panic!("not skipped");
        };
        assert_eq!(kept, "é".repeat(MAX_NAME / 2));
        assert_eq!(truncated("abc", 64), "abc");
        assert_eq!(truncated("aé", 2), "a");
        assert_eq!(truncated("", 0), "");
    }
}
