//! The HTTP surface: `/metrics` and a landing page.

use std::{future::Future, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;

const LANDING: &str = "<!doctype html>
<html><head><meta charset=\"utf-8\"><title>Planet Exporter</title></head>
<body><h1>Planet Exporter</h1>
<p>planet-agent: this host's network dependencies, with bytes per process and peer.</p>
<p><a href=\"/metrics\">Metrics</a></p>
</body></html>
";

/// The router. `/metrics` renders the registry; every other path answers
/// with the landing page, as planet-exporter did.
pub fn app(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(landing)
        .with_state(registry)
}

async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    let families = registry.gather();
    let encoder = TextEncoder::new();
    let mut body = Vec::with_capacity(64 * 1024);
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

/// Serves `app` on `listener` until `shutdown` resolves, then finishes
/// in-flight requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::snapshot::Store;

    async fn get_path(path: &str) -> (StatusCode, String, String) {
        let registry = crate::metrics::registry(Arc::new(Store::new())).unwrap();
        let response = app(Arc::new(registry))
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn metrics_are_text_exposition() {
        let (status, content_type, body) = get_path("/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        assert!(body.contains("planet_flow_programs_attached 0"), "{body}");
    }

    #[tokio::test]
    async fn any_other_path_is_the_landing_page() {
        for path in ["/", "/anything", "/metrics/"] {
            let (status, _, body) = get_path(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(body.contains("<a href=\"/metrics\">"), "{path}: {body}");
        }
    }
}
