//! `POST /api/webhook` and `POST /api/webhook/{clientUid}`: Chatwoot's calls. The rate limit
//! and the size cap come before anything else, the signature is checked over the raw bytes
//! before any parsing, and the client is the one whose secret verified it. Then the delivery
//! is deduplicated, the body must point at a conversation of that client, and its effect
//! reaches the visitor: operator replies and notices are stored and sent live, typing is
//! relayed, and a resolved conversation goes back to the bot.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, client_ip};
use crate::app::AppState;
use crate::ids::now_ms;
use crate::operator::relay;
use crate::operator::signature::{self, SignatureError};
use crate::operator::webhook::{Effect, Owner, Webhook};
use crate::realtime::protocol::{ServerFrame, TypingRole};
use crate::registry::ClientRuntime;
use crate::store::{Attachment, Author, HandoffState, NewMessage, OperatorLink, Role, StoreError};

/// Largest webhook body accepted (Chatwoot's message payloads are a few KB).
pub const MAX_BODY: usize = 256 * 1024;

/// What the visitor reads when a person closes the conversation.
const BACK_TO_BOT: &str = "The conversation with our team has ended. The assistant is here again if you need anything.";

/// `POST /api/webhook`: for any client whose secret verifies the call.
pub async fn any_client(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(receive(&state, None, peer, &headers, &body).await)
}

/// `POST /api/webhook/{clientUid}`: for that client only.
pub async fn one_client(
    State(state): State<AppState>,
    Path(uid): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(receive(&state, Some(&uid), peer, &headers, &body).await)
}

fn respond(result: Result<&'static str, ApiError>) -> Response {
    match result {
        Ok(what) => (StatusCode::OK, axum::Json(serde_json::json!({ "ok": true, "result": what }))).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn receive(
    state: &AppState,
    uid: Option<&str>,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'static str, ApiError> {
    if !state.limits.webhook(client_ip(state, peer, headers)) {
        return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many webhooks; retry later."));
    }
    if body.len() > MAX_BODY {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "The webhook body is over 256 KiB."));
    }
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
    apply(state, &client, &hook).await
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

fn foreign(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "not_this_client",
        format!("The webhook's {what} does not belong to this chat client's operator settings."),
    )
}

/// Checks that the body points at this client's conversation, then does what it means.
async fn apply(state: &AppState, client: &ClientRuntime, hook: &Webhook) -> Result<&'static str, ApiError> {
    let effect = hook.effect();
    if let Effect::Ignore(why) = effect {
        tracing::debug!(client = %client.row.uid, event = %hook.event, why, "webhook ignored");
        return Ok(why);
    }
    let address = hook.address();
    let configured = |key: &str| client.settings.get(key).parse::<i64>().ok();
    if let (Some(want), Some(got)) = (configured("operator_account_id"), address.account_id)
        && want != got
    {
        return Err(foreign("account"));
    }
    if let (Some(want), Some(got)) = (configured("operator_inbox_id"), address.inbox_id)
        && want != got
    {
        return Err(foreign("inbox"));
    }
    let internal = |e: StoreError| ApiError::internal(&e);
    let Some(conversation) = address.conversation_id else { return Err(foreign("conversation")) };
    let Some(mut link) =
        state.store.operator_link_by_conversation(client.row.id, conversation).await.map_err(internal)?
    else {
        return Err(foreign("conversation"));
    };
    if address.source_id.as_deref().is_some_and(|s| s != link.source_id) {
        return Err(foreign("contact (source_id)"));
    }
    let session = link.session_id;
    match effect {
        Effect::Reply(reply) => {
            let author = Author {
                name: reply.operator_name.clone().unwrap_or_else(|| "Operator".to_string()),
                avatar_url: reply.avatar_url.clone(),
            };
            let attachments =
                reply.attachments.iter().map(|(name, url)| Attachment { name: name.clone(), url: url.clone() });
            let stored = store_message(
                state,
                session,
                Role::Operator,
                &reply.text,
                Some(reply.message_id),
                Some(author),
                attachments.collect(),
            )
            .await?;
            set_state(state, &mut link, HandoffState::Human).await?;
            Ok(if stored { "delivered" } else { "already delivered" })
        }
        Effect::Notice { message_id, text } => {
            let stored = store_message(state, session, Role::System, &text, Some(message_id), None, Vec::new()).await?;
            Ok(if stored { "notice delivered" } else { "already delivered" })
        }
        Effect::Typing(on) => {
            let frame = ServerFrame::Typing { role: TypingRole::Operator, on, reply_to: None }.encode();
            state.hub.send_lossy(session, &frame);
            Ok("typing relayed")
        }
        Effect::Status(Owner::Human) => {
            set_state(state, &mut link, HandoffState::Human).await?;
            Ok("a person has the conversation")
        }
        Effect::Status(Owner::Bot | Owner::Resolved) => {
            if link.state != HandoffState::Bot {
                set_state(state, &mut link, HandoffState::Bot).await?;
                store_message(state, session, Role::System, BACK_TO_BOT, None, None, Vec::new()).await?;
            }
            Ok("the bot has the conversation")
        }
        Effect::Ignore(why) => Ok(why),
    }
}

async fn set_state(state: &AppState, link: &mut OperatorLink, to: HandoffState) -> Result<(), ApiError> {
    if link.state == to {
        return Ok(());
    }
    link.state = to;
    link.updated_at = now_ms();
    state.store.operator_link_save(link).await.map_err(|e| ApiError::internal(&e))
}

/// Stores a message from the operator's side and sends it to every socket of the session;
/// `false` when that Chatwoot message was stored before (a repeated delivery).
async fn store_message(
    state: &AppState,
    session: i64,
    role: Role,
    text: &str,
    chatwoot_id: Option<i64>,
    author: Option<Author>,
    attachments: Vec<Attachment>,
) -> Result<bool, ApiError> {
    let message = NewMessage {
        client_msg_id: chatwoot_id.map(|id| format!("chatwoot#{id}")),
        author,
        attachments,
        ..relay::server_message(session, role, text)
    };
    relay::show(state, &message).await.map_err(|e| ApiError::internal(&e))
}
