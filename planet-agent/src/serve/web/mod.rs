//! The agent page and its JSON API.
//!
//! - `/` (and any path no other route takes): the dependency page, a
//!   static HTML shell.
//! - `/assets/app.js`, `/assets/style.css`: hand-written vanilla JS and
//!   CSS that draw the page (inline SVG plus tables) from the API.
//! - `/api/v1/dependencies`: the snapshot as JSON ([`crate::serve::api`]).
//!
//! Every asset is compiled into the binary, so the page works offline.
//! Assets are revalidated on each load (`no-cache` plus an `ETag` of
//! their content, answered with 304 when unchanged), so an upgraded agent
//! never serves a stale script; the API is `no-store`.

use std::sync::Arc;

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{model::snapshot::Store, serve::api, serve::metrics::hostname};

/// An asset compiled into the binary.
pub struct Asset {
    pub body: &'static str,
    pub content_type: &'static str,
    /// Quoted strong validator: FNV-1a of the body.
    pub etag: &'static str,
}

macro_rules! asset {
    ($file:literal, $content_type:literal) => {{
        const BODY: &str = include_str!(concat!("assets/", $file));
        const ETAG: &str = {
            const HEX: [u8; 16] = *b"0123456789abcdef";
            const HASH: u64 = fnv1a(BODY.as_bytes());
            const BYTES: [u8; 18] = {
                let mut out = [b'"'; 18];
                let mut i = 0;
                while i < 16 {
                    out[1 + i] = HEX[((HASH >> (60 - 4 * i)) & 0xf) as usize];
                    i += 1;
                }
                out
            };
            match std::str::from_utf8(&BYTES) {
                Ok(s) => s,
                Err(_) => panic!("hex is ASCII"),
            }
        };
        Asset {
            body: BODY,
            content_type: $content_type,
            etag: ETAG,
        }
    }};
}

pub const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");
pub const APP_JS: Asset = asset!("app.js", "text/javascript; charset=utf-8");
pub const STYLE_CSS: Asset = asset!("style.css", "text/css; charset=utf-8");

/// The page may load only what the agent serves.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// 64-bit FNV-1a, at compile time.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// The page's routes; paths no other route takes get the page.
pub fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/api/v1/dependencies", get(dependencies))
        .route(
            "/assets/app.js",
            get(|h: HeaderMap| async move { serve(&APP_JS, &h) }),
        )
        .route(
            "/assets/style.css",
            get(|h: HeaderMap| async move { serve(&STYLE_CSS, &h) }),
        )
        .fallback(|h: HeaderMap| async move { serve(&INDEX, &h) })
        .with_state(store)
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let unchanged = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == asset.etag
        });
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if unchanged {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if asset.content_type.starts_with("text/html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    (headers, asset.body).into_response()
}

async fn dependencies(State(store): State<Arc<Store>>) -> Response {
    let version = store.version();
    let snapshot = store.load();
    let hostname = hostname().unwrap_or_else(|err| {
        tracing::warn!(error = %err, "cannot read the hostname for the API");
        String::new()
    });
    let doc = api::dependencies(&snapshot, version, hostname);
    match serde_json::to_vec(&doc) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        router(Arc::new(Store::new()))
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response
            .headers()
            .get(name)
            .map_or("", |v| v.to_str().unwrap())
    }

    #[test]
    fn etags_are_quoted_content_hashes() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let expected = format!("\"{:016x}\"", fnv1a(APP_JS.body.as_bytes()));
        assert_eq!(APP_JS.etag, expected);
        assert_ne!(APP_JS.etag, STYLE_CSS.etag);
    }

    #[tokio::test]
    async fn assets_have_their_types_and_revalidate() {
        for (path, asset, content_type) in [
            ("/", &INDEX, "text/html; charset=utf-8"),
            ("/anything", &INDEX, "text/html; charset=utf-8"),
            ("/assets/app.js", &APP_JS, "text/javascript; charset=utf-8"),
            ("/assets/style.css", &STYLE_CSS, "text/css; charset=utf-8"),
        ] {
            let response = get(path, None).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(header_of(&response, header::CONTENT_TYPE), content_type);
            assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
            assert_eq!(header_of(&response, header::ETAG), asset.etag);
            let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
            assert_eq!(body, asset.body.as_bytes(), "{path}");

            let again = get(path, Some(asset.etag)).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
            assert!(
                to_bytes(again.into_body(), 1 << 20)
                    .await
                    .unwrap()
                    .is_empty()
            );
            let stale = get(path, Some("\"0000000000000000\"")).await;
            assert_eq!(stale.status(), StatusCode::OK, "{path}");
        }
        let page = get("/", None).await;
        assert!(
            header_of(&page, header::CONTENT_SECURITY_POLICY).contains("default-src 'none'"),
            "the page may load nothing from elsewhere"
        );
    }

    #[test]
    fn the_page_references_only_embedded_assets() {
        for reference in [
            "/assets/app.js",
            "/assets/style.css",
            "/api/v1/dependencies",
        ] {
            assert!(
                INDEX.body.contains(reference) || APP_JS.body.contains(reference),
                "{reference}"
            );
        }
        for asset in [&INDEX, &APP_JS, &STYLE_CSS] {
            // The SVG namespace is a name, not a fetch.
            let body = asset.body.replace("http://www.w3.org/2000/svg", "");
            assert!(!body.contains("http://"), "no absolute URLs");
            assert!(!body.contains("https://"), "no absolute URLs");
            assert!(!body.contains("//cdn"), "no CDN");
        }
    }

    #[tokio::test]
    async fn the_api_serves_the_snapshot_as_json() {
        let store = Arc::new(Store::new());
        store.update(|s| s.local_ip = Some("10.0.0.1".parse().unwrap()));
        let response = router(store.clone())
            .oneshot(
                Request::get("/api/v1/dependencies")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_of(&response, header::CONTENT_TYPE),
            "application/json"
        );
        assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-store");
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let doc: api::Dependencies = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc.schema_version, api::SCHEMA_VERSION);
        assert_eq!(doc.snapshot, store.version());
        assert_eq!(doc.host.ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(doc.host.hostname, hostname().unwrap());
    }
}
