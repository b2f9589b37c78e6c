//! The widget's public config (`apiPoint`): colors, position, names — never a secret. The
//! request is also the widget's origin check, so CORS is granted to allowed origins only.

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ApiError, allowed_client, base_url, origin};
use crate::app::AppState;
use crate::clients::socket_url;
use crate::realtime::protocol::{MAX_MESSAGE_CHARS, VERSION};

/// Query of the config request.
#[derive(Debug, Deserialize)]
pub struct ConfigQuery {
    #[serde(rename = "clientUid")]
    client_uid: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PublicConfig<'a> {
    client_uid: &'a str,
    protocol: u32,
    bot_name: &'a str,
    greeting: &'a str,
    button_color: &'a str,
    bg_color: &'a str,
    position: &'a str,
    language: &'a str,
    socket_url: String,
    max_message_chars: usize,
    /// Whether a human operator can take over (Chatwoot URL, token and inbox are set): the
    /// widget offers "talk to a human" only then.
    operator: bool,
    /// Whether the widget offers thumbs up/down on answers (the `feedback` frame).
    feedback: bool,
    /// The shop's privacy page, linked from the widget (absent when not set).
    #[serde(skip_serializing_if = "str::is_empty")]
    privacy_url: &'a str,
}

fn with_cors(mut response: Response, headers: &HeaderMap) -> Response {
    let h = response.headers_mut();
    if let Some(value) = origin(headers).and_then(|o| HeaderValue::from_str(o).ok()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Browsers send no `Origin` on a same-origin GET (the demo page fetching its own server's
/// config); they mark it `Sec-Fetch-Site: same-origin`, which page scripts cannot forge, so
/// this server's own origin is the one to check.
fn same_origin(state: &AppState, mut headers: HeaderMap) -> HeaderMap {
    let same = headers.get("sec-fetch-site").is_some_and(|v| v == "same-origin");
    if same
        && !headers.contains_key(header::ORIGIN)
        && let Ok(own) = HeaderValue::from_str(&base_url(state, &headers))
    {
        headers.insert(header::ORIGIN, own);
    }
    headers
}

/// `GET /api/data/ai_chat_bot?clientUid=UID`.
pub async fn config(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Query(q): Query<ConfigQuery>,
    headers: HeaderMap,
) -> Response {
    if !state.limits.config(super::client_ip(&state, peer, &headers)) {
        let e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many config requests; retry later.");
        return with_cors(e.into_response(), &headers);
    }
    let headers = same_origin(&state, headers);
    let client = match allowed_client(&state, q.client_uid.as_deref(), &headers) {
        Ok(c) => c,
        // Refusals carry CORS too, so the widget can tell the site owner why in the console.
        Err(e) if e.code == "forbidden_origin" => return with_cors(e.into_response(), &headers),
        Err(e) => return e.into_response(),
    };
    let s = &client.settings;
    let public = match s.get("socket_url") {
        "" => base_url(&state, &headers),
        url => url.to_string(),
    };
    let body = PublicConfig {
        client_uid: &client.row.uid,
        protocol: VERSION,
        bot_name: s.get("bot_name"),
        greeting: s.get("greeting"),
        button_color: s.get("button_color"),
        bg_color: s.get("bg_color"),
        position: s.get("position"),
        language: s.get("language"),
        socket_url: socket_url(&public).unwrap_or_default(),
        max_message_chars: MAX_MESSAGE_CHARS,
        operator: crate::operator::relay::configured(&client),
        feedback: true,
        privacy_url: s.get("privacy_url"),
    };
    with_cors(axum::Json(body).into_response(), &headers)
}

/// `OPTIONS /api/data/ai_chat_bot`: CORS preflight for allowed origins.
pub async fn preflight(State(state): State<AppState>, Query(q): Query<ConfigQuery>, headers: HeaderMap) -> Response {
    match allowed_client(&state, q.client_uid.as_deref(), &headers) {
        Ok(_) => {
            let mut r = with_cors(StatusCode::NO_CONTENT.into_response(), &headers);
            r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, OPTIONS"));
            r.headers_mut().insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
            r
        }
        Err(e) => e.into_response(),
    }
}
