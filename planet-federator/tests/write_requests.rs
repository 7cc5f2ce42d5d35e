//! Request-level tests of the InfluxDB write paths against a local fake
//! server: exact line protocol, headers and query parameters for v2 and v1,
//! API detection, retries, and health-check failures.

pub mod common;

use std::{sync::Arc, time::Duration};

use common::{Recorded, Recorder};
use planet_federator::{
    influx::{
        ApiChoice, FieldValue, InfluxClient, InfluxConfig, Point, Writer, WriterConfig,
        line::encode_all, write::HealthError,
    },
    metrics::{DropReason, Metrics},
};
use tokio::time::Instant;

type Reply = (u16, Vec<(String, String)>, String);

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
    (
        status,
        headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body.to_owned(),
    )
}

/// A fake InfluxDB: `/ping` with `version`, healthy `/health`, a `SHOW
/// DATABASES` listing `planet`, and `write` answering per attempt.
fn influx(version: &'static str, write: fn(usize) -> Reply) -> Arc<common::Responder> {
    Arc::new(move |r: &Recorded, n: usize| match r.path.as_str() {
        "/ping" => reply(204, &[("X-Influxdb-Version", version)], ""),
        "/health" => reply(
            200,
            &[],
            r#"{"name":"influxdb","status":"pass","message":"ready for queries and writes"}"#,
        ),
        "/query" => reply(
            200,
            &[("Content-Type", "application/json")],
            r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["_internal"],["planet"]]}]}]}"#,
        ),
        "/write" | "/api/v2/write" => write(n),
        _ => reply(404, &[], "not found"),
    })
}

fn config(url: &str, api: ApiChoice) -> InfluxConfig {
    InfluxConfig {
        addr: format!("{url}/"),
        api,
        token: String::new(),
        org: "acme".into(),
        bucket: "planet".into(),
        database: None,
        retention_policy: None,
        username: None,
        password: None,
        timeout: Duration::from_secs(5),
    }
}

fn points() -> Vec<Point> {
    vec![
        Point::new("ingress")
            .tag("service", "web")
            .tag("address", "web-1.example")
            .tag("remote_service", "db")
            .tag("remote_address", "db-1.example")
            .field("bandwidth_bps", FieldValue::Float(1_200_000.5))
            .timestamp_ns(1_764_064_830_000_000_000),
        Point::new("upstream")
            .tag("service", "web")
            .tag("address", "web 1,x=y")
            .tag("upstream_service", "db")
            .tag("upstream_address", "db-1.example")
            .tag("upstream_port", "5432")
            .tag("process_name", "nginx")
            .tag("protocol", "tcp")
            .field("service_dependency", FieldValue::Integer(1))
            .timestamp_ns(1_764_064_830_000_000_000),
    ]
}

const BODY: &str = "ingress,address=web-1.example,remote_address=db-1.example,remote_service=db,service=web bandwidth_bps=1200000.5 1764064830000000000\n\
upstream,address=web\\ 1\\,x\\=y,process_name=nginx,protocol=tcp,service=web,upstream_address=db-1.example,upstream_port=5432,upstream_service=db service_dependency=1i 1764064830000000000\n";

async fn write_through(client: InfluxClient, metrics: Arc<Metrics>) {
    let writer = Writer::start(
        client,
        WriterConfig {
            batch_size: 100,
            capacity: 100,
            retry_initial: Duration::from_millis(20),
            retry_max: Duration::from_millis(50),
        },
        metrics,
    );
    let (lines, errors) = encode_all(&points());
    assert!(errors.is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    writer.handle().enqueue(lines, deadline).await;
    assert_eq!(writer.close(deadline).await, 0, "everything flushed");
}

#[tokio::test]
async fn v2_write_is_exact_line_protocol_with_token_org_bucket() {
    let server = Recorder::start(influx("v2.7.10", |_| reply(204, &[], ""))).await;
    let mut cfg = config(&server.url(), ApiChoice::V2);
    cfg.token = "s3cr3t-token".into();
    let client = InfluxClient::connect(&cfg).await.expect("healthy");
    assert_eq!(client.api(), ApiChoice::V2);
    let metrics = Arc::new(Metrics::new());
    write_through(client, Arc::clone(&metrics)).await;

    let writes = server.requests_to("/api/v2/write");
    assert_eq!(writes.len(), 1);
    let w = &writes[0];
    assert_eq!(w.method, "POST");
    assert_eq!(w.query, "org=acme&bucket=planet&precision=ns");
    assert_eq!(w.headers["authorization"], "Token s3cr3t-token");
    assert_eq!(w.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(w.body, BODY);
    assert!(server.requests_to("/write").is_empty());
    assert_eq!(server.requests_to("/health").len(), 1, "health checked");
    assert_eq!(metrics.points_written.get(), 2);
}

#[tokio::test]
async fn v2_without_token_sends_no_authorization() {
    let server = Recorder::start(influx("2.7.1", |_| reply(204, &[], ""))).await;
    let client = InfluxClient::connect(&config(&server.url(), ApiChoice::Auto))
        .await
        .expect("healthy");
    assert_eq!(client.api(), ApiChoice::V2, "detected from /ping");
    write_through(client, Arc::new(Metrics::new())).await;
    let w = &server.requests_to("/api/v2/write")[0];
    assert!(!w.headers.contains_key("authorization"));
    assert_eq!(w.body, BODY);
}

#[tokio::test]
async fn v1_write_uses_db_rp_and_basic_auth_derived_from_the_originals_flags() {
    let server = Recorder::start(influx("1.6.7~rc0", |_| reply(204, &[], ""))).await;
    let mut cfg = config(&server.url(), ApiChoice::Auto);
    cfg.bucket = "planet/week".into();
    cfg.token = "alice:pw".into();
    let client = InfluxClient::connect(&cfg).await.expect("healthy");
    assert_eq!(client.api(), ApiChoice::V1, "detected from /ping");
    write_through(client, Arc::new(Metrics::new())).await;

    let w = &server.requests_to("/write")[0];
    assert_eq!(w.query, "db=planet&precision=ns&rp=week");
    // base64("alice:pw")
    assert_eq!(w.headers["authorization"], "Basic YWxpY2U6cHc=");
    assert_eq!(w.body, BODY);
    let q = &server.requests_to("/query")[0];
    assert!(q.body.contains("q=SHOW+DATABASES"), "{}", q.body);
    assert_eq!(q.headers["authorization"], "Basic YWxpY2U6cHc=");
}

#[tokio::test]
async fn retries_5xx_then_writes_everything_once() {
    let server = Recorder::start(influx("v2.7.10", |n| {
        if n <= 2 {
            reply(503, &[], r#"{"code":"unavailable"}"#)
        } else {
            reply(204, &[], "")
        }
    }))
    .await;
    let client = InfluxClient::connect(&config(&server.url(), ApiChoice::V2))
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    write_through(client, Arc::clone(&metrics)).await;
    let writes = server.requests_to("/api/v2/write");
    assert_eq!(writes.len(), 3);
    assert!(writes.iter().all(|w| w.body == BODY));
    assert_eq!(metrics.points_retried.get(), 4);
    assert_eq!(metrics.points_written.get(), 2);
    assert_eq!(metrics.dropped_count(DropReason::Rejected), 0);
}

#[tokio::test]
async fn bad_request_is_dropped_not_retried() {
    let server = Recorder::start(influx("v2.7.10", |_| {
        reply(
            400,
            &[],
            r#"{"code":"invalid","message":"unable to parse"}"#,
        )
    }))
    .await;
    let client = InfluxClient::connect(&config(&server.url(), ApiChoice::V2))
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    write_through(client, Arc::clone(&metrics)).await;
    assert_eq!(server.requests_to("/api/v2/write").len(), 1);
    assert_eq!(metrics.dropped_count(DropReason::Rejected), 2);
    assert_eq!(metrics.points_written.get(), 0);
}

#[tokio::test]
async fn unhealthy_v2_fails_clearly() {
    let server = Recorder::start(Arc::new(|r: &Recorded, _| match r.path.as_str() {
        "/ping" => reply(204, &[("X-Influxdb-Version", "v2.7.10")], ""),
        _ => reply(503, &[], r#"{"status":"fail","message":"compacting"}"#),
    }))
    .await;
    let err = InfluxClient::connect(&config(&server.url(), ApiChoice::Auto))
        .await
        .unwrap_err();
    assert!(matches!(err, HealthError::Unhealthy { .. }), "{err:?}");
    assert!(err.to_string().contains("compacting"), "{err}");
}

#[tokio::test]
async fn missing_v1_database_fails_clearly() {
    let server = Recorder::start(influx("1.6.7", |_| reply(204, &[], ""))).await;
    let mut cfg = config(&server.url(), ApiChoice::V1);
    cfg.database = Some("nope".into());
    let err = InfluxClient::connect(&cfg).await.unwrap_err();
    assert!(
        matches!(err, HealthError::DatabaseMissing { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("CREATE DATABASE"), "{err}");
}

#[tokio::test]
async fn unreachable_influxdb_fails_clearly() {
    let port = common::free_port();
    let err = InfluxClient::connect(&config(
        &format!("http://127.0.0.1:{port}"),
        ApiChoice::Auto,
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, HealthError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("unreachable"), "{err}");
}
