//! The HTTP surface: `/metrics`, and the dependency page with its JSON API
//! ([`crate::web`]).

use std::{
    future::Future,
    sync::{Arc, Mutex as StdMutex},
};

use axum::body::Bytes;
use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;

use crate::snapshot::Store;

/// `/metrics` as last rendered, and the snapshot version it shows.
///
/// The registry's collectors render the snapshot. The encoded page is
/// reused until a task publishes a new snapshot; then the first scrape
/// renders it while concurrent scrapes get the previous page (at most one
/// render old), so scrape latency never includes a queue of renders.
struct Exposition {
    registry: Registry,
    store: Arc<Store>,
    cache: StdMutex<Cache>,
}

#[derive(Default)]
struct Cache {
    page: Option<(u64, Bytes)>,
    rendering: bool,
}

/// The router. `/metrics` renders the registry; `/api/v1/dependencies`
/// serves the snapshot as JSON; every other path answers with the
/// dependency page, as planet-exporter answered with its landing page.
pub fn app(registry: Registry, store: Arc<Store>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(Exposition {
            registry,
            store: store.clone(),
            cache: StdMutex::new(Cache::default()),
        }))
        .merge(crate::web::router(store))
}

impl Exposition {
    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn render(&self) -> Result<Bytes, prometheus::Error> {
        let mut body = Vec::with_capacity(256 * 1024);
        let encoded = TextEncoder::new().encode(&self.registry.gather(), &mut body);
        // Rendering allocates per series; give the memory back right away.
        // SAFETY: malloc_trim only walks glibc's own heap.
        unsafe { libc::malloc_trim(0) };
        encoded.map(|()| Bytes::from(body))
    }
}

async fn metrics(State(exposition): State<Arc<Exposition>>) -> Response {
    let content_type = [(
        header::CONTENT_TYPE,
        TextEncoder::new().format_type().to_owned(),
    )];
    let version = exposition.store.version();
    {
        let mut cache = exposition.cache();
        match &cache.page {
            Some((at, page)) if *at == version || cache.rendering => {
                return (content_type, page.clone()).into_response();
            }
            _ => cache.rendering = true,
        }
    }
    let renderer = exposition.clone();
    let rendered = tokio::task::spawn_blocking(move || renderer.render()).await;
    let mut cache = exposition.cache();
    cache.rendering = false;
    match rendered {
        Ok(Ok(page)) => {
            cache.page = Some((version, page.clone()));
            (content_type, page).into_response()
        }
        Ok(Err(err)) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
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

    async fn get_path(path: &str) -> (StatusCode, String, String) {
        let store = Arc::new(Store::new());
        let registry = crate::metrics::registry(store.clone()).unwrap();
        let response = app(registry, store)
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
    async fn a_new_snapshot_is_rendered_and_an_unchanged_one_reused() {
        let store = Arc::new(Store::new());
        let registry = crate::metrics::registry(store.clone()).unwrap();
        let app = app(registry, store.clone());
        let get = || async {
            let response = app
                .clone()
                .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
                .await
                .unwrap();
            String::from_utf8(
                to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap()
                    .to_vec(),
            )
            .unwrap()
        };
        let first = get().await;
        assert!(first.contains("planet_flow_programs_attached 0"));
        assert_eq!(get().await, first, "same snapshot, same page");
        store.task_ran("flow", true, std::time::Duration::from_millis(1));
        let second = get().await;
        assert!(
            second.contains(r#"planet_task_runs_total{task="flow"} 1"#),
            "{second}"
        );
    }

    #[tokio::test]
    async fn any_other_path_is_the_dependency_page() {
        for path in ["/", "/anything", "/metrics/"] {
            let (status, content_type, body) = get_path(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(content_type, "text/html; charset=utf-8", "{path}");
            assert!(body.contains("<a href=\"/metrics\">"), "{path}: {body}");
            assert!(body.contains("/assets/app.js"), "{path}: {body}");
        }
    }

    #[tokio::test]
    async fn the_api_is_routed() {
        let (status, content_type, body) = get_path("/api/v1/dependencies").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        assert!(body.contains("\"schema_version\":1"), "{body}");
    }
}
