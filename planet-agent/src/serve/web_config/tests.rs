use std::{net::SocketAddr, path::PathBuf};

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use tower::ServiceExt;

use super::*;

fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
    WebConfig::parse(text, Path::new("/nonexistent"))
}

fn error(text: &str) -> String {
    match parse(text) {
        Ok(config) => panic!("accepted: {text}\n{config:?}"),
        Err(err) => err.to_string(),
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost, and its key.
fn self_signed() -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    (certified.cert.pem(), certified.key_pair.serialize_pem())
}

/// A directory with `cert.pem` and `key.pem`.
fn cert_dir() -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!(
        "planet-web-config-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = self_signed();
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    (dir, cert)
}

#[test]
fn an_empty_file_is_plain_http() {
    for text in ["", "\n", "{}", "basic_auth_users: {}\n"] {
        let config = parse(text).unwrap();
        assert!(config.tls.is_none() && config.auth.is_none(), "{text:?}");
    }
}

#[test]
fn relative_paths_are_taken_from_the_files_directory() {
    let (dir, _) = cert_dir();
    let path = dir.join("web.yml");
    std::fs::write(
        &path,
        "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  min_version: TLS13\n",
    )
    .unwrap();
    let config = WebConfig::load(&path).unwrap();
    assert!(config.tls.is_some());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn inline_certificate_and_key() {
    let (cert, key) = self_signed();
    let text = format!(
        "tls_server_config:\n  cert: |\n{}  key: |\n{}",
        indent(&cert),
        indent(&key)
    );
    assert!(parse(&text).unwrap().tls.is_some());
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

#[test]
fn configuration_errors_are_clear() {
    let hash = bcrypt::hash("pw", 4).unwrap();
    for (text, expected) in [
        (
            "tls_server_config:\n  cert_file: c.pem\n",
            "key_file is missing",
        ),
        (
            "tls_server_config:\n  key_file: k.pem\n",
            "cert_file is missing",
        ),
        (
            "tls_server_config:\n  cert_file: c.pem\n  cert: x\n  key_file: k.pem\n",
            "cert and cert_file are both set",
        ),
        (
            "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n",
            "cannot read /nonexistent/c.pem",
        ),
        (
            "tls_server_config:\n  cert: x\n  key: y\n",
            "inline cert: no PEM certificate",
        ),
        ("tls_servr_config: {}\n", "unknown field `tls_servr_config`"),
        ("basic_auth_users: [alice]\n", "invalid web configuration"),
        (
            "basic_auth_users:\n  alice: plaintext\n",
            "the password of \"alice\" is not a bcrypt hash",
        ),
        (
            &format!("basic_auth_users:\n  'a:b': '{hash}'\n"),
            "must not be empty or contain ':'",
        ),
        (
            "tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
            "tls_server_config.cipher_suites is not supported",
        ),
        (
            "rate_limit:\n  interval: 1s\n  burst: 5\n",
            "rate_limit is not supported",
        ),
        (
            "http_server_config:\n  headers:\n    Server: planet\n",
            "\"Server\" cannot be set",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            "X-Frame-Options must be one of",
        ),
    ] {
        let err = error(text);
        assert!(err.contains(expected), "{text:?}: {err}");
    }
}

#[test]
fn tls_policy_errors() {
    let (cert, key) = self_signed();
    let base = format!(
        "tls_server_config:\n  cert: |\n{}  key: |\n{}",
        indent(&cert),
        indent(&key)
    );
    for (extra, expected) in [
        (
            "  max_version: TLS11\n",
            "no TLS version between TLS12 and TLS11",
        ),
        ("  min_version: TLS14\n", "unknown TLS version \"TLS14\""),
        (
            "  client_auth_type: RequireAnyClientCert\n",
            "client_auth_type \"RequireAnyClientCert\" is not supported",
        ),
        (
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "RequireAndVerifyClientCert needs client_ca",
        ),
        (
            &format!("  client_ca: |\n{}", indent(&cert)),
            "client CAs are configured but client_auth_type is NoClientCert",
        ),
    ] {
        let err = error(&format!("{base}{extra}"));
        assert!(err.contains(expected), "{extra:?}: {err}");
    }
    let mtls = format!(
        "{base}  client_auth_type: VerifyClientCertIfGiven\n  client_ca: |\n{}",
        indent(&cert)
    );
    assert!(parse(&mtls).unwrap().tls.is_some());
}

fn auth_config(extra: &str) -> WebConfig {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    parse(&format!("basic_auth_users:\n  alice: '{hash}'\n{extra}")).unwrap()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn request(
    config: &WebConfig,
    path: &str,
    authorization: Option<&str>,
) -> axum::response::Response {
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(|| async { "metrics" }))
        .fallback(|| async { "landing" });
    let mut request = Request::get(path);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    config
        .apply(router)
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn basic_auth_guards_every_route() {
    let config =
        auth_config("http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n");
    for path in ["/metrics", "/", "/anything"] {
        let ok = request(&config, path, Some(&basic("alice", "s3cret"))).await;
        assert_eq!(ok.status(), StatusCode::OK, "{path}");
        assert_eq!(ok.headers()["x-content-type-options"], "nosniff");
        for authorization in [
            None,
            Some(basic("alice", "wrong")),
            Some(basic("bob", "s3cret")),
            Some(basic("alice", "")),
            Some("Bearer abc".to_owned()),
            Some("Basic !!!".to_owned()),
        ] {
            let denied = request(&config, path, authorization.as_deref()).await;
            assert_eq!(
                denied.status(),
                StatusCode::UNAUTHORIZED,
                "{path} {authorization:?}"
            );
            assert!(
                denied.headers()[header::WWW_AUTHENTICATE]
                    .to_str()
                    .unwrap()
                    .starts_with("Basic"),
            );
            assert_eq!(denied.headers()["x-content-type-options"], "nosniff");
        }
    }
}

/// Serves a trivial router with `config` on a loopback port.
async fn serve(config: WebConfig) -> (SocketAddr, tokio_util::sync::CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let router = axum::Router::new().route("/metrics", axum::routing::get(|| async { "metrics" }));
    let cancelled = stop.clone();
    tokio::spawn(async move {
        crate::serve::http::serve(listener, router, &config, async move {
            cancelled.cancelled().await;
        })
        .await
        .unwrap();
    });
    (addr, stop)
}

fn client(ca: &str, identity: Option<reqwest::Identity>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(std::time::Duration::from_secs(10));
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn tls_with_client_certificates() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert = CertificateParams::new(vec!["scraper".to_owned()])
        .unwrap()
        .signed_by(&client_key, &ca, &ca_key)
        .unwrap();
    let (cert, key) = self_signed();
    let text = format!(
        "tls_server_config:\n  cert: |\n{}  key: |\n{}  client_auth_type: RequireAndVerifyClientCert\n  client_ca: |\n{}",
        indent(&cert),
        indent(&key),
        indent(&ca.pem())
    );
    let (addr, stop) = serve(parse(&text).unwrap()).await;
    let url = format!("https://{addr}/metrics");

    let identity = reqwest::Identity::from_pem(
        format!("{}{}", client_cert.pem(), client_key.serialize_pem()).as_bytes(),
    )
    .unwrap();
    let response = client(&cert, Some(identity))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "metrics");

    let refused = client(&cert, None).get(&url).send().await;
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    stop.cancel();
}
