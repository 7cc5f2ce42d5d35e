//! The federator's HTTP surface: `/metrics` (its own metrics) and a landing
//! page.

use std::{future::Future, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use prometheus::{Encoder, TextEncoder};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

const LANDING: &str = "<!doctype html>
<html><head><meta charset=\"utf-8\"><title>Planet Federator</title></head>
<body><h1>Planet Federator</h1>
<p>planet-federator: fleet dependency and traffic aggregation, Prometheus to InfluxDB.</p>
<p><a href=\"/metrics\">Metrics</a></p>
</body></html>
";

/// The router: `/metrics` renders the registry, anything else the landing page.
pub fn app(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .fallback(landing)
        .with_state(metrics)
}

async fn render(State(metrics): State<Arc<Metrics>>) -> Response {
    let families = metrics.registry().gather();
    let encoder = TextEncoder::new();
    let mut body = Vec::with_capacity(16 * 1024);
    match encoder.encode(&families, &mut body) {
        Ok(()) => (
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            body,
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

async fn landing() -> Html<&'static str> {
    Html(LANDING)
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
