//! `-web.config.file`: TLS, basic authentication and response headers for
//! the HTTP server, in the Prometheus exporter-toolkit format
//! (<https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md>),
//! so one file serves Planet and the Go exporters alike.
//!
//! Supported: `tls_server_config` (`cert`/`cert_file`, `key`/`key_file`,
//! `client_ca`/`client_ca_file`, `client_auth_type` `NoClientCert`,
//! `VerifyClientCertIfGiven` or `RequireAndVerifyClientCert`,
//! `min_version`/`max_version` within TLS 1.2–1.3,
//! `prefer_server_cipher_suites`), `http_server_config` (`headers`; `http2`
//! is accepted, HTTP/1.1 is served), and bcrypt `basic_auth_users`. Options
//! this server cannot honour are startup errors rather than silently
//! ignored. Relative paths are relative to the file's directory, as in the
//! toolkit. The file is read once at startup.

mod auth;
mod tls;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::{
    Router,
    http::{HeaderName, HeaderValue},
};
use serde::Deserialize;

pub use auth::BasicAuth;
pub use tls::TlsListener;

/// Why a web configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid web configuration: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("tls_server_config: {0} is missing")]
    Missing(&'static str),
    #[error("tls_server_config: {0} and {0}_file are both set; use one")]
    Both(&'static str),
    #[error("tls_server_config: {what}: no PEM {expected} found")]
    NoPem {
        what: String,
        expected: &'static str,
    },
    #[error("tls_server_config: {what}: {source}")]
    Pem {
        what: String,
        source: rustls_pki_types::pem::Error,
    },
    #[error("tls_server_config: {0}")]
    Tls(#[from] rustls::Error),
    #[error("tls_server_config: client CA: {0}")]
    ClientCa(String),
    #[error(
        "tls_server_config: client_auth_type {0:?} is not supported (use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
    )]
    ClientAuthType(String),
    #[error("tls_server_config: client CAs are configured but client_auth_type is NoClientCert")]
    CaWithoutClientAuth,
    #[error("tls_server_config: client_auth_type {0} needs client_ca or client_ca_file")]
    ClientAuthWithoutCa(String),
    #[error("tls_server_config: unknown TLS version {0:?} (TLS10, TLS11, TLS12 or TLS13)")]
    TlsVersion(String),
    #[error(
        "tls_server_config: no TLS version between {min} and {max} is supported (TLS12 and TLS13 are)"
    )]
    NoTlsVersion { min: String, max: String },
    #[error("{0} is not supported by planet-agent; remove it from the web configuration")]
    Unsupported(&'static str),
    #[error("basic_auth_users: the password of {user:?} is not a bcrypt hash: {source}")]
    Hash {
        user: String,
        source: bcrypt::BcryptError,
    },
    #[error("basic_auth_users: a user name must not be empty or contain ':'")]
    UserName,
    #[error(
        "http_server_config.headers: {0:?} cannot be set (Content-Security-Policy, X-Frame-Options, X-Content-Type-Options, X-XSS-Protection, Strict-Transport-Security can)"
    )]
    Header(String),
    #[error("http_server_config.headers: {name} must be one of {allowed:?}, not {value:?}")]
    HeaderValue {
        name: &'static str,
        value: String,
        allowed: &'static [&'static str],
    },
    #[error("http_server_config.headers: {0}: not a valid header value")]
    InvalidHeaderValue(String),
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    rate_limit: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    #[serde(default)]
    client_allowed_sans: Vec<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    #[serde(default)]
    cipher_suites: Vec<String>,
    #[expect(
        dead_code,
        reason = "accepted: rustls always prefers the server's order"
    )]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    curve_preferences: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    #[expect(dead_code, reason = "accepted for compatibility; HTTP/1.1 is served")]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// What the HTTP server does: plain or TLS, with or without basic
/// authentication, plus extra response headers. The default is plain HTTP
/// without authentication.
#[derive(Clone, Default)]
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub auth: Option<Arc<BasicAuth>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth.as_ref().map(|a| a.users()))
            .field("headers", &self.headers)
            .finish()
    }
}

impl WebConfig {
    /// Reads and checks `path`: every certificate, key and hash is loaded
    /// now, so a bad file stops the agent at startup.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let text = read(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&String::from_utf8_lossy(&text), base)
    }

    /// Parses a configuration; relative file names are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, WebConfigError> {
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_norway::from_str(text)?
        };
        if file.rate_limit.is_some() {
            return Err(WebConfigError::Unsupported("rate_limit"));
        }
        let tls = match file.tls_server_config {
            Some(config) => tls::server_config(config, base)?.map(Arc::new),
            None => None,
        };
        let auth = if file.basic_auth_users.is_empty() {
            None
        } else {
            Some(Arc::new(BasicAuth::new(file.basic_auth_users)?))
        };
        let headers = match file.http_server_config {
            Some(http) => headers(http.headers)?,
            None => Vec::new(),
        };
        Ok(Self { tls, auth, headers })
    }

    /// `router` with authentication and the configured headers on every
    /// route (the headers also on 401 answers, as in the toolkit).
    pub fn apply(&self, router: Router) -> Router {
        let router = match &self.auth {
            Some(auth) => auth::require(router, auth.clone()),
            None => router,
        };
        if self.headers.is_empty() {
            router
        } else {
            auth::with_headers(router, Arc::new(self.headers.clone()))
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, WebConfigError> {
    std::fs::read(path).map_err(|source| WebConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The headers the toolkit allows: name, lower-case name, allowed values
/// (empty: any).
const HEADERS: [(&str, &str, &[&str]); 5] = [
    ("Content-Security-Policy", "content-security-policy", &[]),
    (
        "X-Frame-Options",
        "x-frame-options",
        &["deny", "sameorigin"],
    ),
    (
        "X-Content-Type-Options",
        "x-content-type-options",
        &["nosniff"],
    ),
    ("X-XSS-Protection", "x-xss-protection", &[]),
    (
        "Strict-Transport-Security",
        "strict-transport-security",
        &[],
    ),
];

fn headers(
    configured: BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, WebConfigError> {
    let mut out = Vec::new();
    for (name, value) in configured {
        let (known, lower, allowed) = HEADERS
            .iter()
            .find(|(known, _, _)| known.eq_ignore_ascii_case(&name))
            .ok_or_else(|| WebConfigError::Header(name.clone()))?;
        if value.is_empty() {
            continue;
        }
        if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(&value)) {
            return Err(WebConfigError::HeaderValue {
                name: known,
                value,
                allowed,
            });
        }
        let header_value = HeaderValue::from_str(&value)
            .map_err(|_| WebConfigError::InvalidHeaderValue((*known).to_owned()))?;
        out.push((HeaderName::from_static(lower), header_value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
