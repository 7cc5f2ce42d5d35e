//! Reading back with InfluxQL over `/query` (InfluxDB 1.x; 2.x through its
//! v1 compatibility API, which needs a DBRP mapping for the bucket). Used by
//! the dependency history, `edges`, the BigQuery export and the tests.

use std::collections::BTreeMap;

use reqwest::header;
use serde::Deserialize;
use thiserror::Error;

use super::write::{HealthError, InfluxClient, Target};

#[derive(Debug, Error)]
pub enum QueryError {
    #[error("cannot reach InfluxDB at {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("InfluxDB answered {status} to a query: {body}")]
    Status {
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("InfluxDB sent an unreadable query answer")]
    Body(#[source] reqwest::Error),
    #[error("InfluxQL error: {0}")]
    Influx(String),
}

/// One series of a statement's result.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Series {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub values: Vec<Vec<serde_json::Value>>,
}

impl Series {
    /// The column's index.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Rows as column-name → value maps.
    pub fn rows(&self) -> impl Iterator<Item = BTreeMap<&str, &serde_json::Value>> {
        self.values.iter().map(|row| {
            self.columns
                .iter()
                .map(String::as_str)
                .zip(row.iter())
                .collect()
        })
    }
}

#[derive(Debug, Deserialize)]
struct Response {
    #[serde(default)]
    results: Vec<StatementResult>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StatementResult {
    #[serde(default)]
    series: Vec<Series>,
    #[serde(default)]
    error: Option<String>,
}

impl InfluxClient {
    /// Runs InfluxQL against the target database; times come back as
    /// integer nanoseconds. Returns the series of every statement, in order.
    pub async fn query(&self, q: &str) -> Result<Vec<Vec<Series>>, QueryError> {
        let (db, rp) = match &self.target {
            Target::V1 {
                database,
                retention_policy,
                ..
            } => (database.clone(), retention_policy.clone()),
            Target::V2 { bucket, .. } => match bucket.split_once('/') {
                Some((db, rp)) => (db.to_owned(), Some(rp.to_owned())),
                None => (bucket.clone(), None),
            },
        };
        self.query_in(q, Some(&db), rp.as_deref()).await
    }

    async fn query_in(
        &self,
        q: &str,
        db: Option<&str>,
        rp: Option<&str>,
    ) -> Result<Vec<Vec<Series>>, QueryError> {
        let url = format!("{}/query", self.base);
        let mut form = vec![("q", q), ("epoch", "ns")];
        if let Some(db) = db {
            form.push(("db", db));
        }
        if let Some(rp) = rp {
            form.push(("rp", rp));
        }
        let mut request = self.http.post(&url).form(&form);
        match &self.target {
            Target::V1 {
                username: Some(u),
                password,
                ..
            } => request = request.basic_auth(u, password.as_deref()),
            Target::V2 { token: Some(t), .. } => {
                request = request.header(header::AUTHORIZATION, format!("Token {t}"));
            }
            _ => {}
        }
        let resp = request
            .send()
            .await
            .map_err(|source| QueryError::Transport { url, source })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(QueryError::Status {
                status,
                body: body.trim().chars().take(512).collect(),
            });
        }
        let body: Response = resp.json().await.map_err(QueryError::Body)?;
        if let Some(e) = body.error {
            return Err(QueryError::Influx(e));
        }
        body.results
            .into_iter()
            .map(|r| match r.error {
                Some(e) => Err(QueryError::Influx(e)),
                None => Ok(r.series),
            })
            .collect()
    }

    /// Runs one statement and returns its series.
    pub async fn query_one(&self, q: &str) -> Result<Vec<Series>, QueryError> {
        Ok(self.query(q).await?.into_iter().next().unwrap_or_default())
    }

    /// `SHOW DATABASES`, for the v1 health check.
    pub(crate) async fn show_databases(&self) -> Result<Vec<String>, HealthError> {
        let url = format!("{}/query", self.base);
        match self.query_in("SHOW DATABASES", None, None).await {
            Ok(results) => Ok(results
                .into_iter()
                .flatten()
                .flat_map(|s| s.values)
                .filter_map(|row| row.first().and_then(|v| v.as_str()).map(str::to_owned))
                .collect()),
            Err(QueryError::Transport { source, .. }) => {
                Err(HealthError::Unreachable { url, source })
            }
            Err(QueryError::Status { status, body })
                if status == reqwest::StatusCode::UNAUTHORIZED
                    || status == reqwest::StatusCode::FORBIDDEN =>
            {
                Err(HealthError::Unauthorized { url, status, body })
            }
            Err(QueryError::Status { status, body }) => {
                Err(HealthError::Status { url, status, body })
            }
            Err(QueryError::Body(source)) => Err(HealthError::Body { url, source }),
            Err(QueryError::Influx(message)) => Err(HealthError::Unhealthy {
                url,
                status: "error".into(),
                message,
            }),
        }
    }
}

/// Quotes an InfluxQL identifier (`"name"`).
pub(crate) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Quotes an InfluxQL string literal (`'value'`).
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_query_answers() {
        let json = r#"{"results":[{"statement_id":0,"series":[{"name":"ingress",
            "tags":{"service":"web"},"columns":["time","sum"],
            "values":[[1764064830000000000,1000000.5]]}]}]}"#;
        let r: Response = serde_json::from_str(json).unwrap();
        let s = &r.results[0].series[0];
        assert_eq!(s.name, "ingress");
        assert_eq!(s.tags["service"], "web");
        let rows: Vec<_> = s.rows().collect();
        assert_eq!(rows[0]["sum"].as_f64(), Some(1_000_000.5));
        assert_eq!(s.column("time"), Some(0));
    }

    #[test]
    fn quoting() {
        assert_eq!(ident(r#"a"b"#), r#""a\"b""#);
        assert_eq!(literal("it's"), r"'it\'s'");
    }
}
