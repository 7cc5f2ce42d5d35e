//! The federator's HTTP surface: `/metrics` (its own metrics), `/map` (the
//! fleet map from the stored history, as `planet-federator map` draws it)
//! and a landing page.

use std::{future::Future, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use jiff::Timestamp;
use prometheus::{Encoder, TextEncoder};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::{
    cli::parse_bandwidth,
    influx::InfluxClient,
    map::{self, MapError, MapQuery},
    metrics::Metrics,
};
use planet_cli::errors;

const LANDING: &str = "<!doctype html>
<html><head><meta charset=\"utf-8\"><title>Planet Federator</title></head>
<body><h1>Planet Federator</h1>
<p>planet-federator: fleet dependency and traffic aggregation, Prometheus to InfluxDB.</p>
<p><a href=\"/map\">Fleet map</a> (last 24 h; parameters: since, until, service, depth,
min_bandwidth, format=svg|dot|mermaid|json), <a href=\"/metrics\">Metrics</a></p>
</body></html>
";

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    influx: Option<InfluxClient>,
}

/// The router: `/metrics` renders the registry, `/map` the fleet map
/// (when `influx` is given), anything else the landing page.
pub(crate) fn app(metrics: Arc<Metrics>, influx: Option<InfluxClient>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/map", get(fleet_map))
        .fallback(landing)
        .with_state(AppState { metrics, influx })
}

/// `/map` parameters, named like the `map` command's flags.
#[derive(Debug, Deserialize)]
struct MapParams {
    since: Option<String>,
    until: Option<String>,
    service: Option<String>,
    depth: Option<usize>,
    min_bandwidth: Option<String>,
    format: Option<String>,
}

async fn fleet_map(State(state): State<AppState>, Query(p): Query<MapParams>) -> Response {
    let Some(influx) = &state.influx else {
        return (StatusCode::NOT_FOUND, "no InfluxDB configured\n").into_response();
    };
    let min_bandwidth = match p.min_bandwidth.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match parse_bandwidth(s) {
            Ok(v) => Some(v),
            Err(e) => return (StatusCode::BAD_REQUEST, e + "\n").into_response(),
        },
    };
    let q = MapQuery {
        since: p.since.unwrap_or_else(|| "24h".into()),
        until: p.until.unwrap_or_else(|| "now".into()),
        stale_after: Duration::from_secs(15 * 60),
        service: p.service.filter(|s| !s.is_empty()),
        depth: p.depth.unwrap_or(1),
        min_bandwidth,
    };
    let format = p.format.unwrap_or_else(|| "svg".into());
    let rendered = match map::load(influx, &q, Timestamp::now()).await {
        Ok((g, caption)) => map::render(&format, &g, &caption),
        Err(e) => Err(e),
    };
    match rendered {
        Ok(body) => {
            let content_type = match format.as_str() {
                "svg" => "image/svg+xml; charset=utf-8",
                "json" => "application/json",
                "dot" => "text/vnd.graphviz; charset=utf-8",
                _ => "text/plain; charset=utf-8",
            };
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Err(e @ (MapError::History(_) | MapError::Traffic(_))) => {
            (StatusCode::BAD_GATEWAY, errors::chain(&e) + "\n").into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, errors::chain(&e) + "\n").into_response(),
    }
}

async fn render(State(AppState { metrics, .. }): State<AppState>) -> Response {
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
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
