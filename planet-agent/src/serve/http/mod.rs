//! The HTTP surface: `/metrics`, and the dependency page with its JSON API
//! ([`crate::serve::web`]).

use std::{
    future::Future,
    sync::{Arc, Mutex as StdMutex},
};

use axum::body::Bytes;
use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;

use crate::{
    model::snapshot::Store,
    serve::metrics::Exporter,
    serve::web_config::{TlsListener, WebConfig},
};

mod accept_encoding;
mod lz4_page;

use lz4_page::{Lz4Page, Lz4Reader, Lz4Writer};

/// `/metrics` as last rendered, and the snapshot version it shows.
///
/// The exporter's collectors render the snapshot, streamed family by family
/// into the compressors. The page is kept compressed only, twice: gzip,
/// served as is (Prometheus scrapes with gzip; a few hundred KiB instead of
/// several MiB of text at 10k flows), and LZ4, which decompresses at
/// close to memory speed, for scrapes without gzip. It is reused until a task
/// publishes a new snapshot; then the first scrape renders it while
/// concurrent scrapes get the previous page (at most one render old), so
/// scrape latency never includes a queue of renders. The agent's own
/// per-scrape figures (`process_*`, collector durations) are therefore as
/// of the render, at most one snapshot old. A scrape without gzip gets the
/// LZ4 page decompressed as its connection takes it, with no page-sized
/// buffer.
struct Exposition {
    exporter: Exporter,
    store: Arc<Store>,
    cache: StdMutex<Cache>,
}

#[derive(Default)]
struct Cache {
    page: Option<(u64, Page)>,
    rendering: bool,
}

/// One rendering of the exporter.
#[derive(Clone)]
struct Page {
    gzip: Bytes,
    /// The same text in LZ4 blocks.
    lz4: Lz4Page,
}

/// The router. `/metrics` renders the exporter; `/api/v1/dependencies`
/// serves the snapshot as JSON; every other path answers with the
/// dependency page, as planet-exporter answered with its landing page.
pub fn app(exporter: Exporter, store: Arc<Store>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(Exposition {
            exporter,
            store: store.clone(),
            cache: StdMutex::new(Cache::default()),
        }))
        .merge(crate::serve::web::router(store))
}

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
enum RenderError {
    #[error("encoding the metrics: {0}")]
    Encode(#[from] prometheus::Error),
    #[error("compressing the metrics: {0}")]
    Compress(#[from] std::io::Error),
}

impl Exposition {
    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Encodes straight into both compressors: the text is never whole in
    /// memory, and the families are written one at a time. Gzip at its
    /// fast level: the exposition's repeated label names and values
    /// compress well even so, and the render is on a scrape's path.
    fn render(&self) -> Result<Page, RenderError> {
        let page = self.encode();
        // Rendering allocates per series, and the compressors their
        // buffers: all freed by now; give the memory back right away.
        crate::allocator::release_freed();
        page
    }

    fn encode(&self) -> Result<Page, RenderError> {
        let mut out = std::io::BufWriter::with_capacity(
            64 * 1024,
            Tee(
                flate2::write::GzEncoder::new(
                    Vec::with_capacity(64 * 1024),
                    flate2::Compression::fast(),
                ),
                Lz4Writer::default(),
            ),
        );
        self.exporter.write_text(&mut out)?;
        let Tee(gzip, lz4) = out
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        let mut gzip = gzip.finish()?;
        // Kept until the next snapshot: no spare capacity.
        gzip.shrink_to_fit();
        Ok(Page {
            gzip: Bytes::from(gzip),
            lz4: lz4.finish()?,
        })
    }
}

/// A writer that writes everything to both of its writers.
struct Tee<A, B>(A, B);

impl<A: std::io::Write, B: std::io::Write> std::io::Write for Tee<A, B> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

async fn metrics(State(exposition): State<Arc<Exposition>>, headers: HeaderMap) -> Response {
    let gzip = accept_encoding::prefers_gzip(
        headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let version = exposition.store.version();
    {
        let mut cache = exposition.cache();
        match &cache.page {
            Some((at, page)) if *at == version || cache.rendering => {
                return page_response(page, gzip);
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
            let response = page_response(&page, gzip);
            cache.page = Some((version, page));
            response
        }
        Ok(Err(err)) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

/// The page in the encoding the request chose.
fn page_response(page: &Page, gzip: bool) -> Response {
    let content_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static(prometheus::TEXT_FORMAT),
    );
    let vary = (header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        let encoding = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        return ([content_type, vary, encoding], page.gzip.clone()).into_response();
    }
    // Each block decompresses straight into its chunk of the response.
    let text = tokio_util::io::ReaderStream::with_capacity(
        PlainText {
            reader: Lz4Reader::new(page.lz4.clone()),
            _in_flight: InFlight::new(),
        },
        lz4_page::BLOCK,
    );
    let length = (
        header::CONTENT_LENGTH,
        HeaderValue::from(page.lz4.text_len()),
    );
    (
        [content_type, vary, length],
        axum::body::Body::from_stream(text),
    )
        .into_response()
}

/// Plain responses being sent.
static PLAIN_IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One plain response in flight. When the last one ends, the memory its
/// chunks took goes back to the system, as after a render: freed chunks
/// of 64 KiB would otherwise stay in the allocator's thread arenas.
struct InFlight;

impl InFlight {
    fn new() -> Self {
        PLAIN_IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if PLAIN_IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            crate::allocator::release_freed();
        }
    }
}

/// The text of a plain response.
struct PlainText {
    reader: Lz4Reader,
    _in_flight: InFlight,
}

impl tokio::io::AsyncRead for PlainText {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

/// Serves `app` on `listener` as `web` says (TLS, basic authentication,
/// headers) until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    web: &WebConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = web.apply(app);
    match &web.tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(tls) => {
            axum::serve(TlsListener::new(listener, tls.clone())?, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get_path(path: &str) -> (StatusCode, String, String) {
        let store = Arc::new(Store::new());
        let exporter = Exporter::new(store.clone()).unwrap();
        let response = app(exporter, store)
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
        let exporter = Exporter::new(store.clone()).unwrap();
        let app = app(exporter, store.clone());
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

    async fn scrape(app: &Router, accept_encoding: Option<&str>) -> axum::response::Response {
        let mut request = Request::get("/metrics");
        if let Some(value) = accept_encoding {
            request = request.header(header::ACCEPT_ENCODING, value);
        }
        app.clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn gunzip(body: &[u8]) -> String {
        use std::io::Read;
        let mut text = String::new();
        flate2::read::GzDecoder::new(body)
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    #[tokio::test]
    async fn gzip_when_accepted_and_the_same_exposition() {
        let store = Arc::new(Store::new());
        let exporter = Exporter::new(store.clone()).unwrap();
        let app = app(exporter, store.clone());
        store.task_ran("flow", true, std::time::Duration::from_millis(1));

        let plain = scrape(&app, None).await;
        assert_eq!(plain.headers().get(header::CONTENT_ENCODING), None);
        let length: usize = plain.headers()[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(plain.headers()[header::VARY], "accept-encoding");
        let plain = to_bytes(plain.into_body(), 1 << 20).await.unwrap();
        let plain = String::from_utf8(plain.to_vec()).unwrap();
        assert_eq!(plain.len(), length);
        assert!(
            plain.contains(r#"planet_task_runs_total{task="flow"} 1"#),
            "{plain}"
        );

        // What Prometheus sends; the same snapshot, so the same rendering.
        let zipped = scrape(&app, Some("gzip")).await;
        assert_eq!(zipped.status(), StatusCode::OK);
        assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(zipped.headers()[header::VARY], "accept-encoding");
        assert!(
            zipped.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        let zipped = to_bytes(zipped.into_body(), 1 << 20).await.unwrap();
        assert!(
            zipped.len() < plain.len(),
            "{} vs {}",
            zipped.len(),
            plain.len()
        );
        assert_eq!(gunzip(&zipped), plain);

        // Refused or not offered: plain.
        for refused in ["gzip;q=0", "br, deflate", "identity"] {
            let response = scrape(&app, Some(refused)).await;
            assert_eq!(
                response.headers().get(header::CONTENT_ENCODING),
                None,
                "{refused}"
            );
            let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
            assert_eq!(body, plain.as_bytes(), "{refused}");
        }

        // A new snapshot is rendered again, both ways.
        store.task_ran("flow", true, std::time::Duration::from_millis(1));
        let zipped = scrape(&app, Some("deflate, gzip;q=0.9")).await;
        assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
        let zipped = gunzip(&to_bytes(zipped.into_body(), 1 << 20).await.unwrap());
        assert!(
            zipped.contains(r#"planet_task_runs_total{task="flow"} 2"#),
            "{zipped}"
        );
        let plain = to_bytes(scrape(&app, None).await.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(zipped.as_bytes(), plain);
    }

    #[tokio::test]
    async fn a_plain_page_of_many_chunks_streams_whole() {
        use std::io::Write;
        let text: String = (0..100_000)
            .map(|i| format!("planet_series{{n=\"{i}\"}} {i}\n"))
            .collect();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(text.as_bytes()).unwrap();
        let mut lz4 = Lz4Writer::default();
        lz4.write_all(text.as_bytes()).unwrap();
        let page = Page {
            gzip: Bytes::from(gzip.finish().unwrap()),
            lz4: lz4.finish().unwrap(),
        };
        let response = page_response(&page, false);
        assert_eq!(
            response.headers()[header::CONTENT_LENGTH],
            text.len().to_string()
        );
        let body = to_bytes(response.into_body(), 1 << 24).await.unwrap();
        assert!(body.len() > 1 << 20);
        assert_eq!(body, text.as_bytes());
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
