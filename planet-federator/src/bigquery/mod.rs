//! BigQuery export (replaces planet-federator-influxdb-to-bq): the hourly
//! traffic and daily dependency aggregations of the federated data, written
//! as newline-delimited JSON files plus schema files for
//! `bq load --source_format=NEWLINE_DELIMITED_JSON`.
//!
//! Same queries, grouping and table schemas as the original (spec §7), with
//! its quirks fixed:
//! - bandwidths are parsed as numbers and **rounded** (the original cut the
//!   JSON text at the decimal point and skipped numbers in exponent form);
//! - `inventory_date` is the job time **in UTC** with an explicit zone (the
//!   original wrote local wall-clock time into a TIMESTAMP, shifting it on
//!   hosts not on UTC);
//! - each query stands alone: an empty or failed ingress (or upstream)
//!   query no longer skips egress (or downstream);
//! - the time offset shifts the **queried window** as well as
//!   `inventory_date` (the original's queries always used `now()`);
//! - the dependency query has no `GROUP BY time(1000d)`, whose bucket edge
//!   could split a 7-day window into two rows per dependency.

pub mod schema;

use std::{
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};
use thiserror::Error;
use tracing::{info, warn};

use crate::influx::{
    InfluxClient,
    query::{QueryError, Series, ident, literal},
};
use planet_cli::errors;
use schema::Column;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BqJob {
    Traffic,
    Dependency,
}

impl BqJob {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Traffic => "traffic",
            Self::Dependency => "dependency",
        }
    }
}

#[derive(Debug, Error)]
pub enum BqError {
    #[error("{job} export: {measurement} query failed")]
    Query {
        job: &'static str,
        measurement: &'static str,
        #[source]
        source: QueryError,
    },
    #[error("cannot write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("row {index} of the {table} export breaks its schema: {violation}")]
    Schema {
        table: String,
        index: usize,
        violation: schema::Violation,
    },
}

/// Where the export goes.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    pub out_dir: PathBuf,
    pub traffic: String,
    pub dependency: String,
    pub project: String,
    pub dataset: String,
}

/// The files of one export run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    pub data: PathBuf,
    pub schema: PathBuf,
    pub rows: usize,
}

/// `inventory_date`: BigQuery's canonical timestamp form, in UTC.
pub(crate) fn inventory_date(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn window(at: Timestamp, length: SignedDuration) -> String {
    let start = at.checked_sub(length).unwrap_or(Timestamp::MIN);
    format!(
        "time > {} AND time <= {}",
        literal(&start.to_string()),
        literal(&at.to_string())
    )
}

/// The traffic query for one direction over the hour before `at`.
pub(crate) fn traffic_query(direction: &str, at: Timestamp) -> String {
    format!(
        "SELECT MIN(\"bandwidth_bps\"), MAX(\"bandwidth_bps\"), MEAN(\"bandwidth_bps\") FROM {} \
         WHERE (\"service\" != '') AND {} \
         GROUP BY \"service\", \"address\", \"remote_service\", \"remote_address\"",
        ident(direction),
        window(at, SignedDuration::from_hours(1)),
    )
}

/// The dependency query for one direction over the 7 days before `at`.
pub(crate) fn dependency_query(direction: &str, at: Timestamp) -> String {
    let tags = if direction == "upstream" {
        "\"service\", \"address\", \"upstream_service\", \"upstream_address\", \"process_name\", \"upstream_port\", \"protocol\""
    } else {
        "\"service\", \"address\", \"downstream_service\", \"downstream_address\", \"process_name\", \"port\", \"protocol\""
    };
    format!(
        "SELECT COUNT(\"service_dependency\") FROM {} WHERE (\"service\" != '') AND {} GROUP BY {tags}",
        ident(direction),
        window(at, SignedDuration::from_hours(7 * 24)),
    )
}

fn put(row: &mut Map<String, Value>, name: &str, value: &str, nullable: bool) {
    // NULLABLE columns get NULL (an absent key) for empty strings, as before.
    if !(nullable && value.is_empty()) {
        row.insert(name.to_owned(), Value::String(value.to_owned()));
    }
}

fn tag<'a>(s: &'a Series, name: &str) -> &'a str {
    s.tags.get(name).map_or("", String::as_str)
}

/// Rounds a JSON number to a BigQuery INTEGER.
fn integer(v: Option<&&Value>) -> Option<i64> {
    let f = v?.as_f64()?.round();
    // i64::MAX as f64 rounds up to 2^63, which does not fit.
    // In range (checked first), so the cast does not saturate.
    (-9.2e18..=9.2e18).contains(&f).then_some(f as i64)
}

/// Traffic rows from one direction's query answer.
pub(crate) fn traffic_rows(
    direction: &str,
    series: &[Series],
    at: Timestamp,
) -> (Vec<Value>, usize) {
    let date = inventory_date(at);
    let mut skipped = 0;
    let mut rows = Vec::new();
    for s in series {
        for r in s.rows() {
            let (Some(min), Some(max), Some(mean)) = (
                integer(r.get("min")),
                integer(r.get("max")),
                integer(r.get("mean")),
            ) else {
                skipped += 1;
                continue;
            };
            let mut row = Map::new();
            put(&mut row, "inventory_date", &date, false);
            put(&mut row, "traffic_direction", direction, false);
            put(&mut row, "local_hostgroup", tag(s, "service"), false);
            put(&mut row, "local_hostgroup_address", tag(s, "address"), true);
            put(
                &mut row,
                "remote_hostgroup",
                tag(s, "remote_service"),
                false,
            );
            put(
                &mut row,
                "remote_hostgroup_address",
                tag(s, "remote_address"),
                true,
            );
            row.insert("traffic_bandwidth_bits_min_1h".into(), min.into());
            row.insert("traffic_bandwidth_bits_max_1h".into(), max.into());
            row.insert("traffic_bandwidth_bits_avg_1h".into(), mean.into());
            rows.push(Value::Object(row));
        }
    }
    (rows, skipped)
}

/// Dependency rows (one per series) from one direction's query answer.
pub(crate) fn dependency_rows(direction: &str, series: &[Series], at: Timestamp) -> Vec<Value> {
    let date = inventory_date(at);
    let upstream = direction == "upstream";
    series
        .iter()
        .map(|s| {
            let mut row = Map::new();
            put(&mut row, "inventory_date", &date, false);
            put(&mut row, "dependency_direction", direction, false);
            put(&mut row, "protocol", tag(s, "protocol"), false);
            put(
                &mut row,
                "local_hostgroup_process_name",
                tag(s, "process_name"),
                true,
            );
            put(&mut row, "local_hostgroup", tag(s, "service"), false);
            put(&mut row, "local_hostgroup_address", tag(s, "address"), true);
            let (remote, remote_addr) = if upstream {
                ("upstream_service", "upstream_address")
            } else {
                ("downstream_service", "downstream_address")
            };
            put(&mut row, "remote_hostgroup", tag(s, remote), false);
            put(
                &mut row,
                "remote_hostgroup_address",
                tag(s, remote_addr),
                true,
            );
            if upstream {
                put(
                    &mut row,
                    "remote_hostgroup_address_port",
                    tag(s, "upstream_port"),
                    true,
                );
            } else {
                put(
                    &mut row,
                    "local_hostgroup_address_port",
                    tag(s, "port"),
                    true,
                );
            }
            Value::Object(row)
        })
        .collect()
}

/// Runs one export for job time `at` and writes its files.
pub(crate) async fn export(
    client: &InfluxClient,
    tables: &Tables,
    job: BqJob,
    at: Timestamp,
) -> Result<Written, BqError> {
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let directions: [&'static str; 2] = match job {
        BqJob::Traffic => ["ingress", "egress"],
        BqJob::Dependency => ["upstream", "downstream"],
    };
    for direction in directions {
        let q = match job {
            BqJob::Traffic => traffic_query(direction, at),
            BqJob::Dependency => dependency_query(direction, at),
        };
        match client.query_one(&q).await {
            Ok(series) => match job {
                BqJob::Traffic => {
                    let (r, skipped) = traffic_rows(direction, &series, at);
                    if skipped > 0 {
                        warn!(
                            direction,
                            rows = skipped,
                            "traffic rows without numbers skipped"
                        );
                    }
                    rows.extend(r);
                }
                BqJob::Dependency => rows.extend(dependency_rows(direction, &series, at)),
            },
            Err(source) => {
                warn!(job = job.name(), direction, error = %errors::chain(&source), "query failed; exporting the other direction");
                failures.push(BqError::Query {
                    job: job.name(),
                    measurement: direction,
                    source,
                });
            }
        }
    }
    if failures.len() == directions.len() {
        return Err(failures.remove(0));
    }
    let (table, columns) = match job {
        BqJob::Traffic => (&tables.traffic, schema::TRAFFIC),
        BqJob::Dependency => (&tables.dependency, schema::DEPENDENCY),
    };
    let written = write_files(&tables.out_dir, table, columns, &rows, at)?;
    let target = match (tables.project.as_str(), tables.dataset.as_str()) {
        ("", "") => format!("<dataset>.{table}"),
        ("", d) => format!("{d}.{table}"),
        (p, d) => format!("{p}:{d}.{table}"),
    };
    info!(
        job = job.name(),
        rows = written.rows,
        file = %written.data.display(),
        "export written; load it with: bq load --source_format=NEWLINE_DELIMITED_JSON {target} {} {}",
        written.data.display(),
        written.schema.display()
    );
    match failures.pop() {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

/// Writes `<table>.schema.json` and `<table>-<time>.ndjson` (atomically),
/// after checking every row against the schema.
pub(crate) fn write_files(
    dir: &Path,
    table: &str,
    columns: &[Column],
    rows: &[Value],
    at: Timestamp,
) -> Result<Written, BqError> {
    for (index, row) in rows.iter().enumerate() {
        schema::validate_row(columns, row).map_err(|violation| BqError::Schema {
            table: table.to_owned(),
            index,
            violation,
        })?;
    }
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| BqError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let schema_path = dir.join(format!("{table}.schema.json"));
    let schema_text =
        serde_json::to_string_pretty(&schema::schema_json(columns)).unwrap_or_default() + "\n";
    atomic_write(&schema_path, schema_text.as_bytes()).map_err(io_err(&schema_path))?;

    let data_path = dir.join(format!("{table}-{}.ndjson", at.strftime("%Y%m%dT%H%M%SZ")));
    let mut body = Vec::with_capacity(rows.len() * 256);
    for row in rows {
        serde_json::to_writer(&mut body, row).map_err(|e| BqError::Io {
            path: data_path.clone(),
            source: e.into(),
        })?;
        body.push(b'\n');
    }
    atomic_write(&data_path, &body).map_err(io_err(&data_path))?;
    Ok(Written {
        data: data_path,
        schema: schema_path,
        rows: rows.len(),
    })
}

fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at() -> Timestamp {
        "2026-11-25T11:00:30Z".parse().unwrap()
    }

    fn series(tags: &[(&str, &str)], columns: &[&str], values: Vec<Vec<Value>>) -> Series {
        Series {
            name: "x".into(),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            values,
        }
    }

    #[test]
    fn queries_use_an_explicit_window() {
        let q = traffic_query("ingress", at());
        assert_eq!(
            q,
            "SELECT MIN(\"bandwidth_bps\"), MAX(\"bandwidth_bps\"), MEAN(\"bandwidth_bps\") FROM \"ingress\" \
             WHERE (\"service\" != '') AND time > '2026-11-25T10:00:30Z' AND time <= '2026-11-25T11:00:30Z' \
             GROUP BY \"service\", \"address\", \"remote_service\", \"remote_address\""
        );
        let q = dependency_query("downstream", at());
        assert!(q.contains("time > '2026-11-18T11:00:30Z'"), "{q}");
        assert!(q.contains("\"downstream_service\""), "{q}");
        assert!(!q.contains("time(1000d)"), "{q}");
    }

    #[test]
    fn traffic_rows_round_and_null_empty_addresses() {
        let s = series(
            &[
                ("service", "web"),
                ("address", ""),
                ("remote_service", "db"),
                ("remote_address", "db-1.example"),
            ],
            &["time", "min", "max", "mean"],
            vec![
                vec![json!(0), json!(999.5), json!(1.5e6), json!(2000.49)],
                vec![json!(0), Value::Null, json!(1), json!(1)],
            ],
        );
        let (rows, skipped) = traffic_rows("ingress", &[s], at());
        assert_eq!(skipped, 1);
        assert_eq!(
            rows,
            vec![json!({
                "inventory_date": "2026-11-25 11:00:30 UTC",
                "traffic_direction": "ingress",
                "local_hostgroup": "web",
                "remote_hostgroup": "db",
                "remote_hostgroup_address": "db-1.example",
                "traffic_bandwidth_bits_min_1h": 1000,
                "traffic_bandwidth_bits_max_1h": 1_500_000,
                "traffic_bandwidth_bits_avg_1h": 2000,
            })]
        );
        for r in &rows {
            schema::validate_row(schema::TRAFFIC, r).unwrap();
        }
    }

    #[test]
    fn dependency_rows_put_ports_on_the_right_side() {
        let up = series(
            &[
                ("service", "web"),
                ("address", "web-1.example"),
                ("upstream_service", "db"),
                ("upstream_address", "db-1.example"),
                ("upstream_port", "5432"),
                ("process_name", "nginx"),
                ("protocol", "tcp"),
            ],
            &["time", "count"],
            vec![vec![json!(0), json!(120)]],
        );
        let rows = dependency_rows("upstream", &[up], at());
        assert_eq!(rows[0]["remote_hostgroup_address_port"], "5432");
        assert!(rows[0].get("local_hostgroup_address_port").is_none());
        let down = series(
            &[
                ("service", "db"),
                ("downstream_service", "web"),
                ("port", "5432"),
                ("protocol", "tcp"),
            ],
            &["time", "count"],
            vec![vec![json!(0), json!(120)]],
        );
        let rows2 = dependency_rows("downstream", &[down], at());
        assert_eq!(rows2[0]["local_hostgroup_address_port"], "5432");
        assert_eq!(rows2[0]["remote_hostgroup"], "web");
        assert!(rows2[0].get("local_hostgroup_process_name").is_none());
        for r in rows.iter().chain(&rows2) {
            schema::validate_row(schema::DEPENDENCY, r).unwrap();
        }
    }

    #[test]
    fn files_are_written_and_checked() {
        let dir = std::env::temp_dir().join(format!("planet-bq-unit-{}", std::process::id()));
        let (rows, _) = traffic_rows(
            "egress",
            &[series(
                &[("service", "web"), ("remote_service", "db")],
                &["time", "min", "max", "mean"],
                vec![vec![json!(0), json!(1), json!(2), json!(3)]],
            )],
            at(),
        );
        let w = write_files(&dir, "t", schema::TRAFFIC, &rows, at()).unwrap();
        assert_eq!(w.rows, 1);
        assert!(w.data.ends_with("t-20261125T110030Z.ndjson"));
        let text = fs::read_to_string(&w.data).unwrap();
        assert_eq!(text.lines().count(), 1);
        let schema: Value = serde_json::from_str(&fs::read_to_string(&w.schema).unwrap()).unwrap();
        assert_eq!(schema, schema::schema_json(schema::TRAFFIC));
        let bad = vec![json!({"inventory_date": "x"})];
        assert!(matches!(
            write_files(&dir, "t", schema::TRAFFIC, &bad, at()),
            Err(BqError::Schema { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
