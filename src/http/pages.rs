//! The demo page, the widget script and health checks.

use std::io::Write;
use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::base_url;
use crate::app::AppState;
use crate::clients::connect_code;
use crate::demo;

const WIDGET: &str = include_str!("../../assets/widget/ChatBot.js");
const DEMO_PAGE: &str = include_str!("../../assets/demo.html");

fn widget_gzip() -> &'static [u8] {
    static GZ: OnceLock<Vec<u8>> = OnceLock::new();
    GZ.get_or_init(|| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(WIDGET.as_bytes()).expect("in-memory gzip");
        enc.finish().expect("in-memory gzip")
    })
}

/// `GET /js/ChatBot.js`: the widget. Short-lived caching so updates roll out quickly.
pub async fn widget(headers: HeaderMap) -> Response {
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut response = if gzip {
        let mut r = widget_gzip().into_response();
        r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        WIDGET.into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `GET /`: the demo page with the demo client's connect code, or a short notice without it.
pub async fn demo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(client) = state.registry.get(demo::UID) else {
        return Html("<!doctype html><title>aia-chat</title><p>aia-chat is running. Add a client with <code>aia-chat client add UID</code> and paste its connect code into your site.</p>").into_response();
    };
    let code = connect_code(&base_url(&state, &headers), demo::UID, &client.settings);
    let page = DEMO_PAGE.replace("{{CONNECT_CODE_ESCAPED}}", &escape_html(&code)).replace("{{CONNECT_CODE}}", &code);
    let mut response = Html(page).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: serving, not draining, and the database answers.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if !state.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}
