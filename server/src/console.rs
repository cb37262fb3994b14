//! The web console (`stackpipe-console`): its page at `/` and its files
//! under `/assets/`, with the headers that keep it safe to open: a
//! Content-Security-Policy that runs no script but the console's own (so a
//! string that slipped into the page as markup still could not run), no
//! framing, no MIME sniffing, no referrer.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use stackpipe_console::{asset, etag, Asset};

/// What every page and file of the console is served with.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                   font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The console's routes; `S` is the API's state (the console needs none).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(page)).route("/assets/{*name}", get(file))
}

async fn page(headers: HeaderMap) -> Response {
    match asset("index.html") {
        Some(a) => serve(a, &headers),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match asset(&name) {
        Some(a) => serve(a, &headers),
        None => (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "no such file in the console")
            .into_response(),
    }
}

fn serve(a: &'static Asset, headers: &HeaderMap) -> Response {
    let tag = etag(a);
    let fresh = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut r = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { a.body.into_response() };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    h.insert(header::ETAG, HeaderValue::from_static(tag));
    // Checked on every load (a 304 when unchanged): a new server's console
    // is never mixed with an old one's files.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}
