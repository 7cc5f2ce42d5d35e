//! The InfluxDB HTTP client: the v1 `/write` API (database, retention
//! policy, user and password) and the v2 `/api/v2/write` API (org, bucket,
//! token), picked by flag or detected from `/ping`, plus the startup
//! health check.
//!
//! The original only spoke v2 (so it needed InfluxDB 1.8+ or 2.x, with
//! `user:password` as the token and `database/rp` as the bucket on 1.8).
//! Those settings keep working: in v1 mode the database and retention
//! policy default to the two halves of the bucket and the credentials to
//! the two halves of the token.

use std::{fmt, future::Future, str::FromStr, time::Duration};

use reqwest::{StatusCode, header};
use thiserror::Error;

/// Which write API to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiChoice {
    /// Ask `/ping`: `X-Influxdb-Version: 1.x` means v1, anything else v2.
    #[default]
    Auto,
    V1,
    V2,
}

impl FromStr for ApiChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "v1" | "1" => Ok(Self::V1),
            "v2" | "2" => Ok(Self::V2),
            other => Err(format!(
                "unknown InfluxDB API {other:?} (use auto, v1 or v2)"
            )),
        }
    }
}

impl fmt::Display for ApiChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::V1 => "v1",
            Self::V2 => "v2",
        })
    }
}

/// Connection settings, as given on the command line.
#[derive(Clone)]
pub struct InfluxConfig {
    pub addr: String,
    pub api: ApiChoice,
    pub token: String,
    pub org: String,
    pub bucket: String,
    pub database: Option<String>,
    pub retention_policy: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl fmt::Debug for InfluxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        f.debug_struct("InfluxConfig")
            .field("addr", &self.addr)
            .field("api", &self.api)
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .field("database", &self.database)
            .field("retention_policy", &self.retention_policy)
            .field("username", &self.username)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Where and how points are written, once the API is known.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    V1 {
        database: String,
        retention_policy: Option<String>,
        username: Option<String>,
        password: Option<String>,
    },
    V2 {
        org: String,
        bucket: String,
        token: Option<String>,
    },
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        match self {
            Self::V1 {
                database,
                retention_policy,
                username,
                ..
            } => f
                .debug_struct("V1")
                .field("database", database)
                .field("retention_policy", retention_policy)
                .field("username", username)
                .finish_non_exhaustive(),
            Self::V2 { org, bucket, .. } => f
                .debug_struct("V2")
                .field("org", org)
                .field("bucket", bucket)
                .finish_non_exhaustive(),
        }
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

impl InfluxConfig {
    /// The v1 target: explicit settings, else derived from bucket and token
    /// the way InfluxDB 1.8's v2 compatibility API reads them.
    pub fn v1_target(&self) -> Target {
        let (db, rp) = match self.bucket.split_once('/') {
            Some((db, rp)) => (db, non_empty(rp)),
            None => (self.bucket.as_str(), None),
        };
        let (user, pass) = match self.token.split_once(':') {
            Some((u, p)) => (non_empty(u), non_empty(p)),
            None => (None, None),
        };
        Target::V1 {
            database: self
                .database
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| db.to_owned()),
            retention_policy: self
                .retention_policy
                .clone()
                .filter(|r| !r.is_empty())
                .or(rp),
            username: self.username.clone().filter(|u| !u.is_empty()).or(user),
            password: self.password.clone().filter(|p| !p.is_empty()).or(pass),
        }
    }

    /// The v2 target. Without a token, v1-style credentials become the
    /// `user:password` token InfluxDB 1.8 accepts.
    pub fn v2_target(&self) -> Target {
        let token = non_empty(&self.token).or_else(|| match (&self.username, &self.password) {
            (Some(u), Some(p)) if !u.is_empty() => Some(format!("{u}:{p}")),
            _ => None,
        });
        Target::V2 {
            org: self.org.clone(),
            bucket: self.bucket.clone(),
            token,
        }
    }
}

#[derive(Debug, Error)]
pub enum WriteError {
    #[error("cannot reach InfluxDB at {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("InfluxDB answered {status} to a write: {body}")]
    Status {
        status: StatusCode,
        body: String,
        retry_after: Option<Duration>,
    },
}

impl WriteError {
    /// Network errors, timeouts, 408, 429 and 5xx are worth retrying; other
    /// answers (bad data, missing database, no permission) are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
        }
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            Self::Transport { .. } => None,
        }
    }
}

#[derive(Debug, Error)]
pub enum HealthError {
    #[error("InfluxDB at {url} is unreachable (check -influxdb-addr and that InfluxDB is running)")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("InfluxDB at {url} answered {status}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("InfluxDB at {url} rejected the credentials ({status}): {body}")]
    Unauthorized {
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("InfluxDB at {url} is not healthy: status {status:?}, message {message:?}")]
    Unhealthy {
        url: String,
        status: String,
        message: String,
    },
    #[error(
        "database {database:?} does not exist on InfluxDB at {url} \
         (create it: influx -execute 'CREATE DATABASE \"{database}\"')"
    )]
    DatabaseMissing { url: String, database: String },
    #[error("InfluxDB at {url} sent an unreadable answer")]
    Body {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// Somewhere line-protocol bodies can be written (the HTTP client, or a
/// fake in tests).
pub trait LineSink: Send + Sync + 'static {
    fn write(&self, body: String) -> impl Future<Output = Result<(), WriteError>> + Send;
}

/// An InfluxDB server with a known API and target.
#[derive(Debug, Clone)]
pub struct InfluxClient {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) target: Target,
    /// From `/ping`, when known.
    pub version: Option<String>,
}

impl InfluxClient {
    /// A client for `target` without any network round trip.
    pub fn new(addr: &str, target: Target, timeout: Duration) -> Result<Self, HealthError> {
        Ok(Self {
            http: http_client(timeout)?,
            base: addr.trim_end_matches('/').to_owned(),
            target,
            version: None,
        })
    }

    /// Detects the API if asked to, then checks the server: `/ping` and the
    /// database's existence for v1, `/health` for v2. Errors say what to fix.
    pub async fn connect(config: &InfluxConfig) -> Result<Self, HealthError> {
        let http = http_client(config.timeout)?;
        let base = config.addr.trim_end_matches('/').to_owned();
        let version = ping(&http, &base).await?;
        let api = match config.api {
            ApiChoice::Auto => detect(version.as_deref()),
            other => other,
        };
        let target = if api == ApiChoice::V1 {
            config.v1_target()
        } else {
            config.v2_target()
        };
        let client = Self {
            http,
            base,
            target,
            version,
        };
        client.check().await?;
        Ok(client)
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The API in use, as `v1` or `v2`.
    pub fn api(&self) -> ApiChoice {
        match self.target {
            Target::V1 { .. } => ApiChoice::V1,
            Target::V2 { .. } => ApiChoice::V2,
        }
    }

    /// The health check for the chosen API.
    pub async fn check(&self) -> Result<(), HealthError> {
        match &self.target {
            Target::V1 { database, .. } => {
                let databases = self.show_databases().await?;
                if databases.iter().any(|d| d == database) {
                    Ok(())
                } else {
                    Err(HealthError::DatabaseMissing {
                        url: self.base.clone(),
                        database: database.clone(),
                    })
                }
            }
            Target::V2 { .. } => self.health().await,
        }
    }

    async fn health(&self) -> Result<(), HealthError> {
        #[derive(serde::Deserialize)]
        struct Health {
            #[serde(default)]
            status: String,
            #[serde(default)]
            message: String,
        }
        let url = format!("{}/health", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| HealthError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        // 503 carries a body with status "fail"; read it either way.
        let health: Result<Health, _> = resp.json().await;
        match health {
            Ok(h) if h.status == "pass" => Ok(()),
            Ok(h) => Err(HealthError::Unhealthy {
                url,
                status: h.status,
                message: h.message,
            }),
            Err(_) if status.is_success() => Ok(()),
            Err(_) => Err(HealthError::Status {
                url,
                status,
                body: String::new(),
            }),
        }
    }

    /// `POST` one line-protocol body to the write endpoint.
    pub async fn write_body(&self, body: String) -> Result<(), WriteError> {
        let request = match &self.target {
            Target::V1 {
                database,
                retention_policy,
                username,
                password,
            } => {
                let mut query = vec![("db", database.as_str()), ("precision", "ns")];
                if let Some(rp) = retention_policy {
                    query.push(("rp", rp.as_str()));
                }
                let r = self.http.post(format!("{}/write", self.base)).query(&query);
                match username {
                    Some(u) => r.basic_auth(u, password.as_deref()),
                    None => r,
                }
            }
            Target::V2 { org, bucket, token } => {
                let r = self
                    .http
                    .post(format!("{}/api/v2/write", self.base))
                    .query(&[
                        ("org", org.as_str()),
                        ("bucket", bucket.as_str()),
                        ("precision", "ns"),
                    ]);
                match token {
                    Some(t) => r.header(header::AUTHORIZATION, format!("Token {t}")),
                    None => r,
                }
            }
        };
        let url = self.base.clone();
        let resp = request
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(|source| WriteError::Transport { url, source })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.text().await.unwrap_or_default();
        Err(WriteError::Status {
            status,
            body: body.trim().chars().take(512).collect(),
            retry_after,
        })
    }
}

impl LineSink for InfluxClient {
    fn write(&self, body: String) -> impl Future<Output = Result<(), WriteError>> + Send {
        self.write_body(body)
    }
}

fn http_client(timeout: Duration) -> Result<reqwest::Client, HealthError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("planet-federator/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(HealthError::Client)
}

/// `GET /ping`: InfluxDB 1.x and 2.x both answer 204 with
/// `X-Influxdb-Version`. Returns that header.
pub(crate) async fn ping(
    http: &reqwest::Client,
    base: &str,
) -> Result<Option<String>, HealthError> {
    let url = format!("{base}/ping");
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|source| HealthError::Unreachable {
            url: url.clone(),
            source,
        })?;
    let status = resp.status();
    let version = resp
        .headers()
        .get("x-influxdb-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if status.is_success() {
        Ok(version)
    } else {
        let body = resp.text().await.unwrap_or_default();
        Err(HealthError::Status { url, status, body })
    }
}

/// The API for a `/ping` version header: 1.x speaks v1 natively; 2.x, 3.x
/// and Cloud speak v2. No header: v2.
pub(crate) fn detect(version: Option<&str>) -> ApiChoice {
    match version {
        Some(v) if v.trim_start_matches('v').starts_with("1.") => ApiChoice::V1,
        _ => ApiChoice::V2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> InfluxConfig {
        InfluxConfig {
            addr: "http://127.0.0.1:8086".into(),
            api: ApiChoice::Auto,
            token: String::new(),
            org: "mothership".into(),
            bucket: "mothership".into(),
            database: None,
            retention_policy: None,
            username: None,
            password: None,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn detects_api_from_version_header() {
        assert_eq!(detect(Some("1.6.7~rc0")), ApiChoice::V1);
        assert_eq!(detect(Some("1.8.10")), ApiChoice::V1);
        assert_eq!(detect(Some("v2.7.10")), ApiChoice::V2);
        assert_eq!(detect(Some("2.7.1")), ApiChoice::V2);
        assert_eq!(detect(Some("3.0.0")), ApiChoice::V2);
        assert_eq!(detect(None), ApiChoice::V2);
    }

    #[test]
    fn v1_target_from_the_originals_v2_settings() {
        let mut c = config();
        c.bucket = "planet/week".into();
        c.token = "alice:s3cret".into();
        assert_eq!(
            c.v1_target(),
            Target::V1 {
                database: "planet".into(),
                retention_policy: Some("week".into()),
                username: Some("alice".into()),
                password: Some("s3cret".into()),
            }
        );
    }

    #[test]
    fn explicit_v1_settings_win() {
        let mut c = config();
        c.bucket = "planet/week".into();
        c.database = Some("other".into());
        c.retention_policy = Some("autogen".into());
        c.username = Some("bob".into());
        c.password = Some("pw".into());
        assert_eq!(
            c.v1_target(),
            Target::V1 {
                database: "other".into(),
                retention_policy: Some("autogen".into()),
                username: Some("bob".into()),
                password: Some("pw".into()),
            }
        );
    }

    #[test]
    fn v2_target_uses_token_or_user_password() {
        let mut c = config();
        c.token = "tok".into();
        assert_eq!(
            c.v2_target(),
            Target::V2 {
                org: "mothership".into(),
                bucket: "mothership".into(),
                token: Some("tok".into()),
            }
        );
        c.token.clear();
        c.username = Some("u".into());
        c.password = Some("p".into());
        assert!(matches!(c.v2_target(), Target::V2 { token: Some(t), .. } if t == "u:p"));
    }

    #[test]
    fn debug_hides_secrets() {
        let mut c = config();
        c.token = "alice:s3cret".into();
        let s = format!("{:?} {:?}", c.v1_target(), c.v2_target());
        assert!(!s.contains("s3cret"), "{s}");
    }

    #[test]
    fn api_choice_parses() {
        assert_eq!("auto".parse::<ApiChoice>(), Ok(ApiChoice::Auto));
        assert_eq!("v1".parse::<ApiChoice>(), Ok(ApiChoice::V1));
        assert_eq!("v2".parse::<ApiChoice>(), Ok(ApiChoice::V2));
        assert!("v3".parse::<ApiChoice>().is_err());
    }
}
