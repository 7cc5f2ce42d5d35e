//! `-web.config.file` on the real binary: TLS with a self-signed
//! certificate and bcrypt basic authentication on every path; plain HTTP
//! to the TLS port gets no answer; a bad file stops the agent at startup
//! with a clear message. The flow task is off: this runs the same with the
//! real eBPF object or the stub.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use planet_testkit::{agent::AgentProcess, http, util};

const AGENT: &str = env!("CARGO_BIN_EXE_planet-agent");
const FLAGS: &[&str] = &["-task-flow-enabled=false", "-web.config.file"];

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = util::unique_temp_path("planet-web-config", "d");
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a certificate, its key and `web.yml` with user `prometheus`;
/// returns the file's path and the certificate.
fn write_config(dir: &TempDir, password: &str) -> (PathBuf, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = certified.cert.pem();
    std::fs::write(dir.0.join("agent.crt"), &cert).unwrap();
    std::fs::write(dir.0.join("agent.key"), certified.key_pair.serialize_pem()).unwrap();
    let hash = bcrypt::hash(password, 6).unwrap();
    let path = dir.0.join("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: agent.crt\n  key_file: agent.key\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    )
    .unwrap();
    (path, cert)
}

fn spawn(config: &std::path::Path) -> AgentProcess {
    let mut args = FLAGS.to_vec();
    args.push(config.to_str().unwrap());
    AgentProcess::spawn(AGENT, "1s", &args).unwrap()
}

#[tokio::test]
async fn tls_and_basic_auth_on_the_real_agent() {
    let dir = TempDir::new();
    let (config, cert) = write_config(&dir, "correct horse");
    let agent = spawn(&config);
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = |path: &str| format!("https://{}{path}", agent.addr());

    // Ready when the right password gets the metrics over TLS.
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        agent.ensure_running().unwrap();
        match client
            .get(url("/metrics"))
            .basic_auth("prometheus", Some("correct horse"))
            .send()
            .await
        {
            Ok(response) if response.status() == 200 => {
                assert_eq!(response.headers()["x-frame-options"], "deny");
                break response.text().await.unwrap();
            }
            other => {
                assert!(
                    Instant::now() < deadline,
                    "agent not serving TLS: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(body.contains("planet_exporter_build_info"), "{body}");

    for path in ["/metrics", "/"] {
        for (user, password) in [
            ("prometheus", Some("wrong")),
            ("admin", Some("correct horse")),
        ] {
            let response = client
                .get(url(path))
                .basic_auth(user, password)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401, "{path} {user}");
            assert!(
                response.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Basic")
            );
        }
        let response = client.get(url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path} without credentials");
    }

    // Plain HTTP to the TLS port: the handshake fails, no HTTP answer.
    let addr = agent.addr();
    let plain =
        tokio::task::spawn_blocking(move || http::get(addr, "/metrics", Duration::from_secs(5)))
            .await
            .unwrap();
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    agent.ensure_running().unwrap();
    let again = client
        .get(url("/metrics"))
        .basic_auth("prometheus", Some("correct horse"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200, "still serving after the plain request");
}

#[test]
fn a_bad_web_config_stops_the_agent_at_startup() {
    let dir = TempDir::new();
    let path = dir.0.join("web.yml");
    std::fs::write(&path, "basic_auth_users:\n  prometheus: not-a-hash\n").unwrap();
    let agent = spawn(&path);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = agent.exit_status() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "agent kept running:\n{}",
            agent.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let logs = agent.logs();
    assert!(
        logs.contains("-web.config.file") && logs.contains("is not a bcrypt hash"),
        "{logs}"
    );
}
