//! The demo page, the widget script and health checks.

use std::io::Write;
use std::sync::OnceLock;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::base_url;
use crate::app::AppState;
use crate::clients::connect_code;
use crate::demo;

const LOADER: &str = include_str!("../../assets/widget/ChatBot.js");
const PANEL: &str = include_str!("../../assets/widget/panel.js");
const DEMO_PAGE: &str = include_str!("../../assets/demo.html");

/// One static file as served: its bytes, gzipped once, and a strong ETag.
struct Asset {
    plain: Vec<u8>,
    gzip: Vec<u8>,
    etag: HeaderValue,
}

impl Asset {
    fn new(text: String) -> Asset {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(text.as_bytes()).expect("in-memory gzip");
        let gzip = enc.finish().expect("in-memory gzip");
        let etag = HeaderValue::from_str(&format!("\"{}\"", &digest(&text)[..16])).expect("hex etag");
        Asset { plain: text.into_bytes(), gzip, etag }
    }
}

/// The widget as browsers get it: without the leading block comment, full-line `//` comments,
/// indentation and blank lines, which are a tenth of the loader's 4 KB budget. Line breaks stay
/// (no ASI surprises); only the widget's own files go through this, so no line of theirs may
/// start a template-literal line with `//` or rely on leading spaces.
fn compact(js: &str) -> String {
    let js = js.trim_start();
    let js = match js.strip_prefix("/*").and_then(|rest| rest.split_once("*/")) {
        Some((_, rest)) => rest,
        None => js,
    };
    let lines = js.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("//"));
    lines.collect::<Vec<_>>().join("\n") + "\n"
}

fn digest(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// The widget's two files: the loader (`ChatBot.js`, tiny, cached briefly so updates roll out)
/// and the panel, whose name carries a hash of its content so browsers may keep it forever.
struct Widget {
    loader: Asset,
    panel: Asset,
    panel_name: String,
}

fn assets() -> &'static Widget {
    static ASSETS: OnceLock<Widget> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let panel_name = format!("chat-panel.{}.js", &digest(PANEL)[..10]);
        Widget {
            loader: Asset::new(compact(&LOADER.replace("__AIA_PANEL__", &panel_name))),
            panel: Asset::new(compact(PANEL)),
            panel_name,
        }
    })
}

/// `GET /js/ChatBot.js`: the widget's loader. Short-lived caching (with revalidation) so
/// updates roll out within minutes.
pub async fn widget(headers: HeaderMap) -> Response {
    serve(&assets().loader, &headers, "public, max-age=300")
}

/// `GET /js/{file}`: the widget's panel under its content-hashed name, immutable. Any other
/// name is a 404, so an old loader asking for a panel that no longer exists fails loudly.
pub async fn script(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let w = assets();
    if file != w.panel_name {
        return StatusCode::NOT_FOUND.into_response();
    }
    serve(&w.panel, &headers, "public, max-age=31536000, immutable")
}

fn serve(asset: &'static Asset, headers: &HeaderMap, cache: &'static str) -> Response {
    let fresh = headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == asset.etag.as_bytes());
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else if gzip {
        let mut r = asset.gzip.as_slice().into_response();
        r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        asset.plain.as_slice().into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::ETAG, asset.etag.clone());
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The panel is an ES module imported across origins: CORS is required, and it is public.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The widget runs inside other people's pages: no HTML parsing sinks, no code from
    /// strings, no string event handlers, so no text (FAQ answers, visitor messages, operator
    /// replies) can ever become markup or script, and strict CSP / Trusted Types pages work.
    #[test]
    fn widget_has_no_html_or_code_sinks() {
        let forbidden = [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setTimeout(\"",
            "setInterval(\"",
            "createContextualFragment",
            "DOMParser",
            "srcdoc",
        ];
        for (name, source) in [("ChatBot.js", LOADER), ("panel.js", PANEL)] {
            for f in forbidden {
                assert!(!source.contains(f), "{name} uses {f}");
            }
            // String event handlers: `setAttribute("onclick", …)` or an `on…` key in h()'s attributes.
            let handler = source.match_indices("\"on").filter(|(i, _)| {
                let word: String = source[i + 1..].chars().take_while(|c| c.is_ascii_alphabetic()).collect();
                word.len() > 4 && word != "online" && word.chars().all(|c| c.is_ascii_lowercase())
            });
            assert_eq!(handler.count(), 0, "{name} sets an event handler from a string");
        }
    }

    #[test]
    fn compacting_keeps_code_and_drops_comments() {
        let js = "/* header */\n(function () {\n  // why\n  const a = \"http://x\"; // kept: not a full line\n\n  return a;\n})();\n";
        assert_eq!(compact(js), "(function () {\nconst a = \"http://x\"; // kept: not a full line\nreturn a;\n})();\n");
        let w = assets();
        assert!(w.loader.plain.windows(w.panel_name.len()).any(|x| x == w.panel_name.as_bytes()));
        assert!(!String::from_utf8_lossy(&w.loader.plain).contains("__AIA_PANEL__"));
    }
}
