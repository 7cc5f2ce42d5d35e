//! The original's BigQuery table schemas (spec §7.5), as `bq load` schema
//! files, and a checker that a row conforms to a schema (names, types,
//! modes) the way a load job would judge it.

use serde_json::{Map, Value, json};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Timestamp,
    String,
    Integer,
}

impl Type {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timestamp => "TIMESTAMP",
            Self::String => "STRING",
            Self::Integer => "INTEGER",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Required,
    Nullable,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "REQUIRED",
            Self::Nullable => "NULLABLE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Type,
    pub mode: Mode,
    pub description: &'static str,
}

const fn col(name: &'static str, kind: Type, mode: Mode, description: &'static str) -> Column {
    Column {
        name,
        kind,
        mode,
        description,
    }
}

use Mode::{Nullable, Required};
use Type::{Integer, String as Str, Timestamp};

/// Traffic table (default `planet_exporter_traffic`), one row per
/// (direction, service, address, remote service, remote address) per hour.
pub const TRAFFIC: &[Column] = &[
    col(
        "inventory_date",
        Timestamp,
        Required,
        "Job time (UTC): the end of the aggregated hour",
    ),
    col("traffic_direction", Str, Required, "egress or ingress"),
    col(
        "local_hostgroup",
        Str,
        Required,
        "Service (hostgroup) of the measuring hosts",
    ),
    col(
        "local_hostgroup_address",
        Str,
        Nullable,
        "Domain of the measuring host",
    ),
    col(
        "remote_hostgroup",
        Str,
        Required,
        "Service (hostgroup) of the peers",
    ),
    col(
        "remote_hostgroup_address",
        Str,
        Nullable,
        "Domain of the peer",
    ),
    col(
        "traffic_bandwidth_bits_min_1h",
        Integer,
        Required,
        "Minimum bandwidth over the hour, bits per second (rounded)",
    ),
    col(
        "traffic_bandwidth_bits_max_1h",
        Integer,
        Required,
        "Maximum bandwidth over the hour, bits per second (rounded)",
    ),
    col(
        "traffic_bandwidth_bits_avg_1h",
        Integer,
        Required,
        "Mean bandwidth over the hour, bits per second (rounded)",
    ),
];

/// Dependency table (default `planet_exporter_dependency`), one row per
/// dependency seen in the 7 days before the job time.
pub const DEPENDENCY: &[Column] = &[
    col(
        "inventory_date",
        Timestamp,
        Required,
        "Job time (UTC): the end of the 7-day window",
    ),
    col(
        "dependency_direction",
        Str,
        Required,
        "upstream or downstream",
    ),
    col("protocol", Str, Required, "tcp"),
    col(
        "local_hostgroup_process_name",
        Str,
        Nullable,
        "Process on the local side",
    ),
    col(
        "local_hostgroup",
        Str,
        Required,
        "Local service (hostgroup)",
    ),
    col(
        "local_hostgroup_address",
        Str,
        Nullable,
        "Local host's address",
    ),
    col(
        "local_hostgroup_address_port",
        Str,
        Nullable,
        "Local service port (downstream only)",
    ),
    col(
        "remote_hostgroup",
        Str,
        Required,
        "Remote service (hostgroup)",
    ),
    col(
        "remote_hostgroup_address",
        Str,
        Nullable,
        "Remote host's address",
    ),
    col(
        "remote_hostgroup_address_port",
        Str,
        Nullable,
        "Remote service port (upstream only)",
    ),
];

/// The JSON schema file `bq load` takes as its schema argument.
pub fn schema_json(columns: &[Column]) -> Value {
    Value::Array(
        columns
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.kind.as_str(),
                    "mode": c.mode.as_str(),
                    "description": c.description,
                })
            })
            .collect(),
    )
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum Violation {
    #[error("row is not a JSON object")]
    NotAnObject,
    #[error("field {0:?} is not in the schema")]
    UnknownField(String),
    #[error("REQUIRED field {0:?} is missing or null")]
    MissingRequired(&'static str),
    #[error("field {name:?} should be {expected}, found {found}")]
    WrongType {
        name: &'static str,
        expected: &'static str,
        found: String,
    },
}

/// Checks one NDJSON row against `columns`.
pub fn validate_row(columns: &[Column], row: &Value) -> Result<(), Violation> {
    let Value::Object(object) = row else {
        return Err(Violation::NotAnObject);
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !columns.iter().any(|c| c.name == k.as_str()))
    {
        return Err(Violation::UnknownField(unknown.clone()));
    }
    for c in columns {
        check_column(c, object)?;
    }
    Ok(())
}

fn check_column(c: &Column, object: &Map<String, Value>) -> Result<(), Violation> {
    let value = match object.get(c.name) {
        None | Some(Value::Null) => {
            return match c.mode {
                Mode::Required => Err(Violation::MissingRequired(c.name)),
                Mode::Nullable => Ok(()),
            };
        }
        Some(v) => v,
    };
    let ok = match c.kind {
        Type::String => value.is_string(),
        Type::Integer => value.is_i64() || value.as_str().is_some_and(|s| s.parse::<i64>().is_ok()),
        Type::Timestamp => value.as_str().is_some_and(is_bq_timestamp),
    };
    if ok {
        Ok(())
    } else {
        Err(Violation::WrongType {
            name: c.name,
            expected: c.kind.as_str(),
            found: value.to_string(),
        })
    }
}

/// BigQuery's canonical timestamp: `YYYY-MM-DD[( |T)HH:MM:SS[.F]][zone]`,
/// zone `Z`, ` UTC` or `±HH:MM`.
pub(crate) fn is_bq_timestamp(s: &str) -> bool {
    let is_offset = |z: &str| {
        let z = z.as_bytes();
        z.len() == 6
            && matches!(z[0], b'+' | b'-')
            && z[1..3].iter().all(u8::is_ascii_digit)
            && z[3] == b':'
            && z[4..6].iter().all(u8::is_ascii_digit)
    };
    let civil = if let Some(c) = s.strip_suffix(" UTC").or_else(|| s.strip_suffix('Z')) {
        c
    } else {
        match s
            .len()
            .checked_sub(6)
            .and_then(|i| Some((s.get(..i)?, s.get(i..)?)))
        {
            Some((c, z)) if is_offset(z) && c.len() > 10 => c,
            _ => s,
        }
    };
    civil
        .replacen(' ', "T", 1)
        .parse::<jiff::civil::DateTime>()
        .is_ok()
        || civil.parse::<jiff::civil::Date>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_match_the_original() {
        let names: Vec<_> = TRAFFIC.iter().map(|c| (c.name, c.kind, c.mode)).collect();
        assert_eq!(
            names,
            vec![
                ("inventory_date", Timestamp, Required),
                ("traffic_direction", Str, Required),
                ("local_hostgroup", Str, Required),
                ("local_hostgroup_address", Str, Nullable),
                ("remote_hostgroup", Str, Required),
                ("remote_hostgroup_address", Str, Nullable),
                ("traffic_bandwidth_bits_min_1h", Integer, Required),
                ("traffic_bandwidth_bits_max_1h", Integer, Required),
                ("traffic_bandwidth_bits_avg_1h", Integer, Required),
            ]
        );
        let names: Vec<_> = DEPENDENCY
            .iter()
            .map(|c| (c.name, c.kind, c.mode))
            .collect();
        assert_eq!(
            names,
            vec![
                ("inventory_date", Timestamp, Required),
                ("dependency_direction", Str, Required),
                ("protocol", Str, Required),
                ("local_hostgroup_process_name", Str, Nullable),
                ("local_hostgroup", Str, Required),
                ("local_hostgroup_address", Str, Nullable),
                ("local_hostgroup_address_port", Str, Nullable),
                ("remote_hostgroup", Str, Required),
                ("remote_hostgroup_address", Str, Nullable),
                ("remote_hostgroup_address_port", Str, Nullable),
            ]
        );
    }

    #[test]
    fn schema_file_shape() {
        let s = schema_json(TRAFFIC);
        assert_eq!(s[0]["name"], "inventory_date");
        assert_eq!(s[0]["type"], "TIMESTAMP");
        assert_eq!(s[0]["mode"], "REQUIRED");
        assert_eq!(s.as_array().unwrap().len(), TRAFFIC.len());
    }

    #[test]
    fn validator_catches_each_violation() {
        let good = json!({
            "inventory_date": "2026-11-25 11:00:30 UTC",
            "dependency_direction": "upstream",
            "protocol": "tcp",
            "local_hostgroup": "web",
            "remote_hostgroup": "db",
            "remote_hostgroup_address_port": "5432",
        });
        assert_eq!(validate_row(DEPENDENCY, &good), Ok(()));
        let mut bad = good.clone();
        bad["extra"] = json!(1);
        assert_eq!(
            validate_row(DEPENDENCY, &bad),
            Err(Violation::UnknownField("extra".into()))
        );
        let mut bad = good.clone();
        bad["protocol"] = Value::Null;
        assert_eq!(
            validate_row(DEPENDENCY, &bad),
            Err(Violation::MissingRequired("protocol"))
        );
        let mut bad = good.clone();
        bad["inventory_date"] = json!("25/11/2026");
        assert!(matches!(
            validate_row(DEPENDENCY, &bad),
            Err(Violation::WrongType { .. })
        ));
        let row = json!({
            "inventory_date": "2026-11-25T11:00:30Z",
            "traffic_direction": "ingress",
            "local_hostgroup": "web",
            "remote_hostgroup": "db",
            "traffic_bandwidth_bits_min_1h": 1,
            "traffic_bandwidth_bits_max_1h": "2",
            "traffic_bandwidth_bits_avg_1h": 1.5,
        });
        assert!(matches!(
            validate_row(TRAFFIC, &row),
            Err(Violation::WrongType {
                name: "traffic_bandwidth_bits_avg_1h",
                ..
            })
        ));
        assert_eq!(
            validate_row(TRAFFIC, &json!([])),
            Err(Violation::NotAnObject)
        );
    }

    #[test]
    fn timestamps() {
        for ok in [
            "2026-11-25 11:00:30 UTC",
            "2026-11-25T11:00:30Z",
            "2026-11-25 11:00:30.123456+01:00",
            "2026-11-25",
        ] {
            assert!(is_bq_timestamp(ok), "{ok}");
        }
        for bad in [
            "",
            "2026-13-01 00:00:00",
            "11:00:30",
            "2026-11-25 11:00:30 +0100x",
        ] {
            assert!(!is_bq_timestamp(bad), "{bad}");
        }
    }
}
