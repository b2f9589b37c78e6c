//! `POST /api/webhook` and `POST /api/webhook/{clientUid}`: Chatwoot's calls. The rate limit
//! and the size cap come before anything else ([`gate`], before the body is read), the signature is checked over the raw bytes
//! before any parsing, and the client is the one whose secret verified it. Then the delivery
//! is deduplicated and acted on (`operator::inbound`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, client_ip};
use crate::app::AppState;
use crate::ids::now_ms;
use crate::operator::inbound::{self, InboundError};
use crate::operator::signature::{self, SignatureError};
use crate::operator::webhook::Webhook;
use crate::registry::ClientRuntime;

/// Largest webhook body accepted (Chatwoot's message payloads are a few KB).
pub const MAX_BODY: usize = 256 * 1024;

/// `POST /api/webhook`: for any client whose secret verifies the call.
pub async fn any_client(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    respond(receive(&state, None, &headers, &body).await)
}

/// `POST /api/webhook/{clientUid}`: for that client only.
pub async fn one_client(
    State(state): State<AppState>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(receive(&state, Some(&uid), &headers, &body).await)
}

/// Runs before the body is read: the per-address rate limit and the size cap (from the
/// declared length; a longer chunked body is cut by the route's body limit, answered here in
/// the same words), so a flood costs no reading. Counts the refusals in the metrics.
pub async fn gate(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let refuse = |e: ApiError| {
        crate::metrics::webhook(e.code);
        e.into_response()
    };
    if !state.limits.webhook(client_ip(&state, peer, req.headers())).await {
        return refuse(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many webhooks; retry later."));
    }
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return refuse(too_large());
    }
    let response = next.run(req).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return refuse(too_large());
    }
    response
}

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "The webhook body is over 256 KiB.")
}

fn respond(result: Result<&'static str, ApiError>) -> Response {
    crate::metrics::webhook(match &result {
        Ok("duplicate delivery") => "duplicate",
        Ok(_) => "accepted",
        Err(e) => e.code,
    });
    match result {
        Ok(what) => (StatusCode::OK, axum::Json(serde_json::json!({ "ok": true, "result": what }))).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn receive(
    state: &AppState,
    uid: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'static str, ApiError> {
    let candidates: Vec<Arc<ClientRuntime>> = match uid {
        Some(uid) => vec![state.registry.get(uid).ok_or_else(ApiError::unknown_client)?],
        None => state.registry.all().into_iter().filter(|c| !c.settings.get("operator_url").is_empty()).collect(),
    };
    let client = verified_client(state, &candidates, uid.is_none(), headers, body)?;
    if let Some(delivery) = header(headers, "x-chatwoot-delivery").filter(|d| !d.is_empty() && d.len() <= 200) {
        let key = format!("{}:{delivery}", client.row.id);
        if !state.store.webhook_delivery_first(&key, now_ms()).await.map_err(|e| ApiError::internal(&e))? {
            return Ok("duplicate delivery");
        }
    }
    let hook: Webhook = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_webhook", format!("The body is not a Chatwoot webhook: {e}"))
    })?;
    Ok(inbound::apply(state, &client, &hook).await?)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The one client this call is for: whose webhook secret verifies the signature, or — unsigned,
/// and only where an admin allowed it — the one client that accepts unsigned calls.
fn verified_client(
    state: &AppState,
    candidates: &[Arc<ClientRuntime>],
    shared_route: bool,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Arc<ClientRuntime>, ApiError> {
    let refused = |e: SignatureError| ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string());
    let ambiguous = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "ambiguous_client",
            "More than one chat client could take this webhook; point Chatwoot at /api/webhook/{clientUid} instead.",
        )
    };
    let (timestamp, sig) = (header(headers, "x-chatwoot-timestamp"), header(headers, "x-chatwoot-signature"));
    let now = now_ms() / 1000;
    let mut matched = Vec::new();
    let mut why = SignatureError::Unsigned;
    if sig.is_some() {
        why = SignatureError::Mismatch;
        for client in candidates {
            let Some(Ok(secret)) = client.settings.secret(&state.keys, &client.row.uid, "operator_webhook_secret")
            else {
                continue;
            };
            match signature::verify(&secret, timestamp, sig, body, now) {
                Ok(()) => matched.push(client.clone()),
                Err(SignatureError::Mismatch) => {}
                // Not about the secret: the same for every client.
                Err(e) => return Err(refused(e)),
            }
        }
    } else {
        matched =
            candidates.iter().filter(|c| c.settings.get("operator_allow_unsigned_webhooks") == "on").cloned().collect();
    }
    match matched.len() {
        0 if candidates.is_empty() && shared_route => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_operator",
            "No chat client has an operator (Chatwoot) configured.",
        )),
        0 => Err(refused(why)),
        1 => Ok(matched.remove(0)),
        _ => Err(ambiguous()),
    }
}

/// The HTTP answer to an event that could not be acted on.
impl From<InboundError> for ApiError {
    fn from(e: InboundError) -> ApiError {
        match e {
            InboundError::Foreign(what) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_this_client",
                format!("The webhook's {what} does not belong to this chat client's operator settings."),
            ),
            InboundError::Store(e) => ApiError::internal(&e),
        }
    }
}
