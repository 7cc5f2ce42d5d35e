//! Prometheus HTTP API client: instant queries at a given time, behind a
//! trait so jobs can run against a fake.
//!
//! The original ran a range query from `t - 15s` to `t` with a one-minute
//! step, which evaluates exactly once, at `t - 15s`, and kept the maximum
//! of the returned points. An instant query at `t - 15s` returns that same
//! value; a matrix answer (from a proxy that only does ranges) is reduced
//! to its maximum the same way.

use std::{future::Future, sync::Mutex, time::Duration};

use jiff::Timestamp;
use serde::Deserialize;
use thiserror::Error;

/// One series of a query result. Labels are a small vector (a result can
/// hold 100k+ series; a map per series costs several times more memory).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn new<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>, value: f64) -> Self {
        Self {
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            value,
        }
    }

    /// The label's value, `""` when absent (Prometheus semantics).
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

#[derive(Debug, Error)]
pub enum PromError {
    #[error(
        "cannot reach Prometheus at {url} (check -prometheus-addr and that Prometheus is running)"
    )]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Prometheus rejected the query ({error_type}): {error}")]
    Api { error_type: String, error: String },
    #[error("Prometheus at {url} answered {status}: {body}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("Prometheus sent an unreadable answer")]
    Body(#[source] reqwest::Error),
    #[error("Prometheus returned a {0} result; expected a vector or a matrix")]
    ResultType(String),
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// The part of the Prometheus API the jobs use.
pub trait PromApi: Send + Sync + 'static {
    /// Evaluates `query` at `at`.
    fn query(
        &self,
        query: &str,
        at: Timestamp,
    ) -> impl Future<Output = Result<Vec<Sample>, PromError>> + Send;
}

/// Prometheus over HTTP.
#[derive(Debug, Clone)]
pub(crate) struct HttpProm {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
}

impl HttpProm {
    /// `addr` may carry a path prefix (`http://host/prometheus/`).
    pub(crate) fn new(addr: &str, timeout: Duration) -> Result<Self, PromError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("planet-federator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(PromError::Client)?;
        Ok(Self {
            http,
            base: addr.trim_end_matches('/').to_owned(),
            timeout,
        })
    }

    /// The startup check: a trivial query must succeed.
    pub(crate) async fn check(&self) -> Result<(), PromError> {
        self.query("vector(1)", Timestamp::now()).await.map(drop)
    }

    async fn query_http(&self, query: &str, at: Timestamp) -> Result<Vec<Sample>, PromError> {
        let url = format!("{}/api/v1/query", self.base);
        let time = format!("{}.{:03}", at.as_second(), at.subsec_millisecond());
        let timeout = format!("{}ms", self.timeout.as_millis());
        let resp = self
            .http
            .post(&url)
            .form(&[("query", query), ("time", &time), ("timeout", &timeout)])
            .send()
            .await
            .map_err(|source| PromError::Transport {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(PromError::Body)?;
        let parsed: Result<ApiResponse, _> = serde_json::from_slice(&bytes);
        match parsed {
            Ok(ApiResponse {
                status: s,
                data: Some(data),
                ..
            }) if s == "success" => data.into_samples(),
            Ok(ApiResponse {
                error_type, error, ..
            }) if error.is_some() => Err(PromError::Api {
                error_type: error_type.unwrap_or_default(),
                error: error.unwrap_or_default(),
            }),
            _ => Err(PromError::Status {
                url,
                status,
                body: String::from_utf8_lossy(&bytes)
                    .trim()
                    .chars()
                    .take(512)
                    .collect(),
            }),
        }
    }
}

impl PromApi for HttpProm {
    fn query(
        &self,
        query: &str,
        at: Timestamp,
    ) -> impl Future<Output = Result<Vec<Sample>, PromError>> + Send {
        self.query_http(query, at)
    }
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Items,
}

/// Vector and matrix items parse straight into this (no intermediate
/// `serde_json::Value`: answers can hold 100k+ series).
#[derive(Deserialize)]
#[serde(untagged)]
enum Items {
    Series(Vec<Item>),
    Other(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Item {
    #[serde(deserialize_with = "label_pairs")]
    metric: Vec<(String, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// A JSON object of label names to values, as a vector.
fn label_pairs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    struct Pairs;
    impl<'de> serde::de::Visitor<'de> for Pairs {
        type Value = Vec<(String, String)>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of label names to values")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut v = Vec::with_capacity(map.size_hint().unwrap_or(8));
            while let Some(pair) = map.next_entry::<String, String>()? {
                v.push(pair);
            }
            v.shrink_to_fit();
            Ok(v)
        }
    }
    d.deserialize_map(Pairs)
}

/// Prometheus encodes sample values as strings (`"1.5"`, `"NaN"`, `"+Inf"`).
fn parse_value(s: &str) -> f64 {
    match s {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().unwrap_or(f64::NAN),
    }
}

impl Data {
    fn into_samples(self) -> Result<Vec<Sample>, PromError> {
        let Items::Series(items) = self.result else {
            return Err(PromError::ResultType(self.result_type));
        };
        match self.result_type.as_str() {
            "vector" => Ok(items
                .into_iter()
                .map(|i| Sample {
                    labels: i.metric,
                    value: i.value.map_or(f64::NAN, |(_, v)| parse_value(&v)),
                })
                .collect()),
            "matrix" => Ok(items
                .into_iter()
                .map(|i| Sample {
                    labels: i.metric,
                    // The original: the maximum of the points, -1 if none.
                    value: i
                        .values
                        .iter()
                        .map(|(_, v)| parse_value(v))
                        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                        .unwrap_or(-1.0),
                })
                .collect()),
            other => Err(PromError::ResultType(other.to_owned())),
        }
    }
}

/// A canned Prometheus for tests: answers a query with the samples of the
/// first rule whose needle occurs in it, and records every query.
#[derive(Debug, Default)]
pub struct FakeProm {
    rules: Vec<(String, Result<Vec<Sample>, String>)>,
    seen: Mutex<Vec<(String, Timestamp)>>,
}

impl FakeProm {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queries containing `needle` return `samples`.
    pub fn answer(mut self, needle: &str, samples: Vec<Sample>) -> Self {
        self.rules.push((needle.to_owned(), Ok(samples)));
        self
    }

    /// Queries containing `needle` fail with `error`.
    pub fn fail(mut self, needle: &str, error: &str) -> Self {
        self.rules.push((needle.to_owned(), Err(error.to_owned())));
        self
    }

    /// The queries received so far, with their evaluation times.
    pub fn queries(&self) -> Vec<(String, Timestamp)> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl PromApi for FakeProm {
    async fn query(&self, query: &str, at: Timestamp) -> Result<Vec<Sample>, PromError> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((query.to_owned(), at));
        match self
            .rules
            .iter()
            .find(|(needle, _)| query.contains(needle.as_str()))
        {
            Some((_, Ok(samples))) => Ok(samples.clone()),
            Some((_, Err(e))) => Err(PromError::Api {
                error_type: "fake".into(),
                error: e.clone(),
            }),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(json: &str) -> Data {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn parses_vectors() {
        let d = data(
            r#"{"resultType":"vector","result":[
                {"metric":{"direction":"ingress"},"value":[1764064815,"8000.5"]},
                {"metric":{},"value":[1764064815,"NaN"]}]}"#,
        );
        let s = d.into_samples().unwrap();
        assert_eq!(s[0].label("direction"), "ingress");
        assert_eq!(s[0].label("missing"), "");
        assert_eq!(s[0].value, 8000.5);
        assert!(s[1].value.is_nan());
    }

    #[test]
    fn matrix_takes_the_maximum_like_the_original() {
        let d = data(
            r#"{"resultType":"matrix","result":[
                {"metric":{"a":"1"},"values":[[1,"3"],[2,"7"],[3,"5"]]},
                {"metric":{"a":"2"},"values":[]}]}"#,
        );
        let s = d.into_samples().unwrap();
        assert_eq!(s[0].value, 7.0);
        assert_eq!(s[1].value, -1.0);
    }

    #[test]
    fn scalars_are_refused() {
        let d = data(r#"{"resultType":"scalar","result":[1,"1"]}"#);
        assert!(matches!(d.into_samples(), Err(PromError::ResultType(t)) if t == "scalar"));
    }

    #[test]
    fn values_parse() {
        assert_eq!(parse_value("+Inf"), f64::INFINITY);
        assert_eq!(parse_value("-Inf"), f64::NEG_INFINITY);
        assert_eq!(parse_value("1e3"), 1000.0);
    }

    #[tokio::test]
    async fn fake_answers_by_needle_and_records() {
        let fake = FakeProm::new()
            .answer("planet_upstream", vec![Sample::new([("a", "b")], 1.0)])
            .fail("planet_downstream", "boom");
        let at = Timestamp::from_second(1_764_064_815).unwrap();
        assert_eq!(
            fake.query("max(planet_upstream)", at).await.unwrap().len(),
            1
        );
        assert!(fake.query("planet_downstream", at).await.is_err());
        assert!(fake.query("other", at).await.unwrap().is_empty());
        assert_eq!(fake.queries().len(), 3);
    }
}
