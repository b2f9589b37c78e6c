//! `GET /ws`: the visitor's WebSocket. The handshake checks client, origin and the per-IP
//! socket limit before upgrading; then one task per socket reads frames, answers this socket
//! directly (welcome, ack, errors) and relays session events from the hub. A visitor message
//! is stored before it is acknowledged, and answered by a tracked task so shutdown can let
//! the write finish. Ratings (`feedback`) and the visitor's identity (`identify`) are stored
//! too; `typing` from the visitor reaches a human operator who has the conversation.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{ApiError, allowed_client, client_ip};
use crate::app::AppState;
use crate::assistant::{self, Confidence, Persona, prompt};
use crate::ids::{conversation_id, now_ms, session_token, token_hash};
use crate::metrics::{self, Direction};
use crate::operator::{handoff, relay};
use crate::realtime::hub::{Membership, Outbox, SOCKET_QUEUE};
use crate::realtime::limits::SocketPermit;
use crate::realtime::protocol::{
    self, BotView, ClientFrame, ErrorCode, HISTORY_PAGE, MAX_FRAME, MAX_TEXT_FRAME, MessageView, ServerFrame,
    TypingRole, error_frame,
};
use crate::registry::ClientRuntime;
use crate::store::{Feedback, HandoffState, Inserted, Message, NewMessage, Role};
use crate::tasks::flow as tasks;

/// How long a socket may stay open without saying hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a socket may stay silent after hello (the widget pings every 25 s); a visitor
/// whose network vanished without a FIN must not hold a socket forever.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The same typing state is passed on to the operator at most this often.
const TYPING_REFRESH: Duration = Duration::from_secs(5);

/// Query of the socket URL.
#[derive(Debug, Deserialize)]
pub struct SocketQuery {
    #[serde(rename = "clientUid")]
    client_uid: Option<String>,
}

/// `GET /ws?clientUid=UID`: refuses before the upgrade, or hands the socket to its task.
pub async fn upgrade(
    State(state): State<AppState>,
    Query(q): Query<SocketQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if state.shutdown.is_cancelled() {
        return ApiError::shutting_down().into_response();
    }
    let client = match allowed_client(&state, q.client_uid.as_deref(), &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let ip = client_ip(&state, peer, &headers);
    let Some(permit) = state.limits.socket(ip) else {
        return ApiError::rate_limited().into_response();
    };
    let tasks = state.tasks.clone();
    // Every line a socket causes (its answers included) names it; the conversation id is
    // added once the socket says hello.
    let span = tracing::info_span!(
        parent: None,
        "socket",
        id = %format_args!("s-{:08x}", rand::random::<u32>()),
        client = %client.row.uid,
        conversation = tracing::field::Empty
    );
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| {
            let conn = Conn {
                state,
                uid: client.row.uid.clone(),
                client,
                ip,
                session: None,
                outbox: None,
                page: None,
                typing_sent: None,
            };
            tasks.track_future(tracing::Instrument::instrument(run(socket, conn, permit), span))
        })
}

struct Joined {
    id: i64,
    _membership: Membership,
    _open: metrics::OpenSocket,
}

struct Conn {
    state: AppState,
    uid: String,
    client: Arc<ClientRuntime>,
    ip: IpAddr,
    session: Option<Joined>,
    outbox: Option<Outbox>,
    /// The page the widget reported in `hello` or, later, with a `message`, for the model's
    /// prompt.
    page: Option<protocol::PageContext>,
    /// The visitor's last typing state passed on to the operator, and when.
    typing_sent: Option<(bool, std::time::Instant)>,
}

/// What handling one inbound frame asks the socket loop to do.
#[derive(Default)]
struct Outcome {
    frames: Vec<Arc<str>>,
    close: Option<(u16, &'static str)>,
    /// The store failed: maybe because the session was erased by another process.
    failed: bool,
}

impl Outcome {
    fn frame(frame: Arc<str>) -> Outcome {
        Outcome { frames: vec![frame], close: None, failed: false }
    }

    /// Ends a socket whose session was erased (see `protocol::erased_frame`).
    fn erased() -> Outcome {
        Outcome {
            frames: vec![protocol::erased_frame()],
            close: Some((close_code::NORMAL, "conversation deleted")),
            failed: false,
        }
    }

    fn error(code: ErrorCode, id: Option<&str>) -> Outcome {
        Outcome::frame(error_frame(code, id))
    }
}

enum Step {
    Inbound(Option<Result<WsMessage, axum::Error>>),
    Deliver(Arc<str>),
    Dropped,
    Drain,
    Silent,
}

async fn send(ws: &mut WebSocket, frame: &str) -> bool {
    ws.send(WsMessage::Text(frame.into())).await.is_ok()
}

async fn close(ws: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = ws.send(WsMessage::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
}

fn frame_too_big(err: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    err.into_inner().downcast::<WsError>().is_ok_and(|e| matches!(*e, WsError::Capacity(_)))
}

async fn run(mut ws: WebSocket, mut conn: Conn, _permit: SocketPermit) {
    let (tx, mut rx) = mpsc::channel(SOCKET_QUEUE);
    conn.outbox = Some(tx);
    let shutdown = conn.state.shutdown.clone();
    let silence = tokio::time::sleep(HELLO_TIMEOUT);
    tokio::pin!(silence);
    loop {
        let step = tokio::select! {
            biased;
            _ = shutdown.cancelled() => Step::Drain,
            out = rx.recv(), if conn.outbox.is_none() => out.map_or(Step::Dropped, Step::Deliver),
            inbound = ws.recv() => Step::Inbound(inbound),
            _ = &mut silence => Step::Silent,
        };
        match step {
            Step::Deliver(frame) => {
                if !send(&mut ws, &frame).await {
                    return;
                }
                if protocol::is_erased_frame(&frame) {
                    close(&mut ws, close_code::NORMAL, "conversation deleted").await;
                    return;
                }
            }
            Step::Inbound(None) => return,
            Step::Inbound(Some(Err(e))) => {
                if frame_too_big(e) {
                    crate::metrics::refused("frame_over_limit");
                    close(&mut ws, close_code::SIZE, "frame larger than 64 KiB").await;
                }
                return;
            }
            Step::Inbound(Some(Ok(message))) => {
                silence.as_mut().reset(tokio::time::Instant::now() + IDLE_TIMEOUT);
                let outcome = match message {
                    WsMessage::Text(text) if text.len() > MAX_TEXT_FRAME => {
                        crate::metrics::refused("frame_too_large");
                        Outcome::error(ErrorCode::TooLarge, None)
                    }
                    WsMessage::Text(text) => Box::pin(conn.handle(text.as_str())).await,
                    WsMessage::Binary(_) => Outcome::error(ErrorCode::BinaryUnsupported, None),
                    WsMessage::Close(_) => return,
                    WsMessage::Ping(_) | WsMessage::Pong(_) => Outcome::default(),
                };
                for frame in &outcome.frames {
                    if !send(&mut ws, frame).await {
                        return;
                    }
                }
                if let Some((code, reason)) = outcome.close {
                    close(&mut ws, code, reason).await;
                    return;
                }
            }
            Step::Dropped => {
                let frame = ServerFrame::Reconnect { reason: "too_slow", after_ms: 0 }.encode();
                send(&mut ws, &frame).await;
                close(&mut ws, close_code::AGAIN, "too slow; reconnect to catch up").await;
                return;
            }
            Step::Drain => {
                let frame = ServerFrame::Reconnect { reason: "shutdown", after_ms: 1000 }.encode();
                send(&mut ws, &frame).await;
                close(&mut ws, close_code::AWAY, "server restarting").await;
                return;
            }
            Step::Silent if conn.session.is_none() => {
                close(&mut ws, close_code::POLICY, "no hello within 30 s").await;
                return;
            }
            Step::Silent => {
                close(&mut ws, close_code::AWAY, "idle for 90 s").await;
                return;
            }
        }
    }
}

impl Conn {
    async fn handle(&mut self, text: &str) -> Outcome {
        let outcome = self.handle_frame(text).await;
        // A session erased by the CLI (another process, which cannot reach this hub) shows
        // here first: its writes fail. Then the socket ends as if the hub had told it.
        if outcome.failed
            && let Some(session) = self.joined()
            && matches!(self.state.store.session_by_id(session).await, Ok(None))
        {
            return Outcome::erased();
        }
        outcome
    }

    async fn handle_frame(&mut self, text: &str) -> Outcome {
        let frame = match protocol::parse(text) {
            Ok(frame) => frame,
            Err(code) => return Outcome::error(code, None),
        };
        match frame {
            ClientFrame::Ping => Outcome::frame(ServerFrame::Pong.encode()),
            ClientFrame::Hello { v, session, page } => {
                self.page = page.map(|p| p.context());
                self.hello(v, session).await
            }
            ClientFrame::Message { id, text, page } => self.message(id, text, page).await,
            ClientFrame::History { before, limit } => self.history(before, limit).await,
            ClientFrame::Feedback { seq, value } => self.feedback(seq, value).await,
            ClientFrame::Typing { on } => self.typing(on),
            ClientFrame::Identify { name, email } => self.identify(name, email).await,
            ClientFrame::Handoff => self.handoff().await,
        }
    }

    /// The session this socket said hello to, if it has.
    fn joined(&self) -> Option<i64> {
        self.session.as_ref().map(|s| s.id)
    }

    async fn hello(&mut self, v: u32, token: Option<String>) -> Outcome {
        if self.session.is_some() {
            return Outcome::error(ErrorCode::AlreadyHello, None);
        }
        if v != protocol::VERSION {
            let mut out = Outcome::error(ErrorCode::UnsupportedVersion, None);
            out.close = Some((close_code::POLICY, "unsupported protocol version"));
            return out;
        }
        let store = self.state.store.clone();
        let client_id = self.client.row.id;
        let found = match token.as_deref().filter(|t| t.len() <= 128) {
            Some(t) => match store.session_find(client_id, &token_hash(t)).await {
                Ok(found) => found.map(|row| (row, t.to_string())),
                Err(e) => return internal(&e, None),
            },
            None => None,
        };
        let resumed = found.is_some();
        let (row, token) = match found {
            Some(found) => found,
            None => {
                if !self.state.limits.new_session(self.ip).await {
                    return Outcome::error(ErrorCode::RateLimited, None);
                }
                let token = session_token();
                match store.session_create(client_id, &token_hash(&token), &conversation_id(), now_ms()).await {
                    Ok(row) => (row, token),
                    Err(e) => return internal(&e, None),
                }
            }
        };
        // Join before reading history: an event in between arrives twice (the widget
        // dedupes by seq) rather than never.
        tracing::Span::current().record("conversation", row.conversation_id.as_str());
        let outbox = self.outbox.take().expect("outbox is kept until hello");
        let membership = self.state.hub.join(row.id, outbox);
        self.session = Some(Joined { id: row.id, _membership: membership, _open: metrics::OpenSocket::new(&self.uid) });
        let (history, has_more) = match store.messages_page(row.id, None, HISTORY_PAGE).await {
            Ok(page) => page,
            Err(e) => return internal(&e, None),
        };
        if resumed {
            // A question acknowledged before the visitor left (or before a node died) may
            // still wait for its answer.
            let (state, uid, page, ip) = (self.state.clone(), self.uid.clone(), self.page.clone(), self.ip);
            self.state
                .tasks
                .spawn(tracing::Instrument::in_current_span(resume_unanswered(state, uid, row.id, page, ip)));
        }
        let s = &self.client.settings;
        Outcome::frame(
            ServerFrame::Welcome {
                v: protocol::VERSION,
                session: &token,
                conversation_id: &row.conversation_id,
                resumed,
                bot: BotView { name: s.get("bot_name"), greeting: s.get("greeting") },
                history: history.iter().map(MessageView::from).collect(),
                has_more,
            }
            .encode(),
        )
    }

    async fn message(&mut self, id: String, text: String, page: Option<protocol::PageInfo>) -> Outcome {
        let Some(session) = self.joined() else {
            return Outcome::error(ErrorCode::HelloRequired, None);
        };
        // A single-page shop changes pages without reconnecting: the latest page wins.
        if let Some(page) = page {
            self.page = Some(page.context());
        }
        if !protocol::valid_client_id(&id) {
            return Outcome::error(ErrorCode::InvalidId, None);
        }
        let text = match protocol::clean_text(&text) {
            Ok(t) => t,
            Err(code) => return Outcome::error(code, Some(&id)),
        };
        if !self.state.limits.message(session).await {
            return Outcome::error(ErrorCode::RateLimited, Some(&id));
        }
        if self.state.settings.log_messages {
            tracing::info!(id = %id, text = %text, "visitor message");
        }
        let new = NewMessage {
            session_id: session,
            role: Role::Visitor,
            text,
            client_msg_id: Some(id.clone()),
            reply_to: None,
            source: None,
            entry_id: None,
            created_at: now_ms(),
            usage: None,
            author: None,
            attachments: Vec::new(),
            products: Vec::new(),
        };
        if relay::configured(&self.client)
            && let Some(outcome) = self.operator_route(session, &new, &id).await
        {
            return outcome;
        }
        if tasks::configured(&self.client)
            && let Some(outcome) = self.task_route(session, &new, &id).await
        {
            return outcome;
        }
        let faq = match self.answer_at_once(&new.text) {
            Ready::Now(reply, searched) => return self.store_answered(session, &new, &id, reply, searched).await,
            Ready::AfterSearch(faq) => Some(faq),
            Ready::Later => None,
        };
        let state = &self.state;
        // The answer starts while the message is being stored, so the disk write is not on
        // the way to the first token; it is stored only once the message is (and dropped if
        // storing fails: the visitor resends).
        let (stored_tx, stored_rx) = tokio::sync::oneshot::channel();
        self.spawn_answer(session, &new.text, &id, Visitor::Storing(stored_rx), faq);
        match state.store.message_insert(&new).await {
            Ok(Inserted::New(stored)) => {
                metrics::message(&self.uid, Direction::In);
                let ack = ServerFrame::Ack { id: &id, seq: stored.seq, duplicate: false }.encode();
                state.hub.send(session, &ServerFrame::Message { message: (&stored).into() }.encode());
                // The answer task is already working but learns the seq only below; announcing
                // it here, before it can send anything, keeps the indicator ahead of every
                // `delta` and the answer without waiting for the disk write in the task.
                typing_on(state, session, stored.seq);
                // Claimed here, before the ack, so a resend can never start a second answer
                // (and, told to the other nodes, neither can a reconnect elsewhere).
                state.claims.claim_now(stored.seq);
                self.forward_if_handed_off(&stored).await;
                let _ = stored_tx.send(stored);
                Outcome::frame(ack)
            }
            Ok(Inserted::Duplicate(stored)) => {
                drop(stored_tx);
                self.resent(session, stored, &id).await
            }
            Err(e) => internal(&e, Some(&id)),
        }
    }

    /// A message stored earlier came again (the ack was lost): its duplicate ack, and an
    /// answer if it still has none.
    async fn resent(&self, session: i64, stored: Message, id: &str) -> Outcome {
        let unanswered = matches!(self.state.store.reply_to(session, stored.seq).await, Ok(None));
        let ack = ServerFrame::Ack { id, seq: stored.seq, duplicate: true }.encode();
        if unanswered && stored.role == Role::Visitor {
            self.forward_if_handed_off(&stored).await;
            let text = stored.text.clone();
            self.spawn_answer(session, &text, id, Visitor::Resent(Box::new(stored)), None);
        }
        Outcome::frame(ack)
    }

    /// A message on its way to the assistant when a hand-off began (another tab, a "don't
    /// know" streak, a restart finishing a request for a person) is the person's too: it is
    /// forwarded, so it cannot fall between the hand-off's transcript and the forwarded
    /// messages if its answer is lost. Chatwoot refuses a second copy (its source id).
    async fn forward_if_handed_off(&self, stored: &Message) {
        if !relay::configured(&self.client) {
            return;
        }
        let forwarded = match relay::state_of(&self.state, stored.session_id).await {
            Ok(HandoffState::Bot) => Ok(()),
            Ok(_) => relay::forward(&self.state, self.client.row.id, stored.session_id, stored.seq, &stored.text).await,
            Err(e) => Err(e),
        };
        if let Err(e) = forwarded {
            tracing::error!(error = %e, session = stored.session_id, "forwarding a message to the operator failed");
        }
    }

    /// Without a model, the answer when it is known at once: the FAQ's, or (for a product
    /// request the FAQ can't answer) cards from the catalog's cache.
    fn answer_at_once(&self, text: &str) -> Ready {
        let state = &self.state;
        let Some(client) = state.registry.get(&self.uid) else { return Ready::Later };
        // Hybrid retrieval embeds the question first: not a thing to do before the ack.
        if assistant::model_configured(&client.settings) || client.semantic_ready() {
            return Ready::Later;
        }
        let catalog = state.catalogs.for_client(&client, &state.keys, &state.catalog_http);
        let persona = persona(&client, catalog.as_ref());
        let faq = assistant::answer(&client.knowledge, persona, Confidence::default(), text);
        match &catalog {
            Some(catalog) if faq.source == assistant::Source::Fallback => {
                let started = std::time::Instant::now();
                match assistant::products_at_once(catalog, persona, text, faq.clone()) {
                    Some(reply) => {
                        let searched = (reply.source == assistant::Source::Catalog).then_some(started);
                        Ready::Now(reply, searched)
                    }
                    None => Ready::AfterSearch(faq),
                }
            }
            _ => Ready::Now(faq, None),
        }
    }

    /// Stores the visitor's message and its answer known at once in one write, then shows
    /// both; `searched` (when the answer is a product search) feeds the latency histogram.
    async fn store_answered(
        &self,
        session: i64,
        new: &NewMessage,
        id: &str,
        reply: assistant::Reply,
        searched: Option<std::time::Instant>,
    ) -> Outcome {
        let state = &self.state;
        let source = reply.source.as_str();
        let answer = NewMessage {
            session_id: session,
            role: Role::Assistant,
            text: reply.text,
            client_msg_id: None,
            reply_to: None,
            source: Some(reply.source.as_str().to_string()),
            entry_id: reply.entry_id,
            created_at: now_ms(),
            usage: None,
            author: None,
            attachments: Vec::new(),
            products: reply.products,
        };
        let writing = std::time::Instant::now();
        let stored = state.store.message_insert_answered(new, &answer).await;
        let write = writing.elapsed();
        match stored {
            Ok((Inserted::New(stored), answer)) => {
                metrics::message(&self.uid, Direction::In);
                state.hub.send(session, &ServerFrame::Message { message: (&stored).into() }.encode());
                if let Some(answer) = answer {
                    metrics::message(&self.uid, Direction::Out);
                    metrics::answered(&self.uid, source, Some(write));
                    state.hub.send(session, &ServerFrame::Message { message: (&answer).into() }.encode());
                    if let Some(started) = searched {
                        state.catalog_timings.record_hit(started.elapsed(), write);
                    }
                    if answer.source.as_deref() == Some("fallback")
                        && let Some(client) = state.registry.get(&self.uid)
                        && relay::configured(&client)
                        && let Err(e) = hand_off_if_stuck(state, &client, session, self.page.as_ref()).await
                    {
                        tracing::error!(error = %e, session, "queueing the hand-off failed");
                    }
                }
                Outcome::frame(ServerFrame::Ack { id, seq: stored.seq, duplicate: false }.encode())
            }
            Ok((Inserted::Duplicate(stored), _)) => self.resent(session, stored, id).await,
            Err(e) => internal(&e, Some(id)),
        }
    }

    /// Stores a visitor message a route takes (not the assistant) and shows it to every
    /// socket of the session: `(message, true)`. A resend that was dealt with when it first
    /// came gets its duplicate ack as the `Err` (as does a failed write). A resend still
    /// without a reply (the process died before the route was done) comes back claimed as
    /// `(message, false)`, so the route finishes it and releases the claim: every step after
    /// the store is safe to repeat.
    async fn store_for_route(&self, session: i64, new: &NewMessage, id: &str) -> Result<(Message, bool), Outcome> {
        let duplicate = |seq| Outcome::frame(ServerFrame::Ack { id, seq, duplicate: true }.encode());
        match self.state.store.message_insert(new).await {
            Ok(Inserted::New(stored)) => {
                metrics::message(&self.uid, Direction::In);
                self.state.hub.send(session, &ServerFrame::Message { message: (&stored).into() }.encode());
                Ok((stored, true))
            }
            Ok(Inserted::Duplicate(stored)) => {
                if !self.state.claims.claim(stored.seq).await {
                    return Err(duplicate(stored.seq));
                }
                match self.state.store.reply_to(session, stored.seq).await {
                    Ok(None) => Ok((stored, false)),
                    Ok(Some(_)) => {
                        release(&self.state, stored.seq);
                        Err(duplicate(stored.seq))
                    }
                    Err(e) => {
                        release(&self.state, stored.seq);
                        Err(internal(&e, Some(id)))
                    }
                }
            }
            Err(e) => Err(internal(&e, Some(id))),
        }
    }

    /// With a human operator set up: a conversation a person has (or is about to have) is
    /// forwarded to them, and a message that asks for a person starts a hand-off; `None`
    /// leaves the message to the assistant.
    async fn operator_route(&mut self, session: i64, new: &NewMessage, id: &str) -> Option<Outcome> {
        let state = &self.state;
        let current = match relay::state_of(state, session).await {
            Ok(current) => current,
            Err(e) => return Some(internal(&e, Some(id))),
        };
        let asks = current == HandoffState::Bot
            && handoff::asks_for_person(&new.text, self.client.settings.get("handoff_keywords"));
        if current == HandoffState::Bot && !asks {
            return None;
        }
        let (stored, fresh) = match self.store_for_route(session, new, id).await {
            Ok(stored) => stored,
            Err(answered) => return Some(answered),
        };
        let page = self.page.as_ref().and_then(|p| p.url.clone());
        if let Err(e) = for_operator(state, &self.client, &stored, asks, page).await {
            tracing::error!(error = %e, session, "queueing work for the operator failed");
        }
        if !fresh {
            release(state, stored.seq);
        }
        Some(Outcome::frame(ServerFrame::Ack { id, seq: stored.seq, duplicate: !fresh }.encode()))
    }

    /// With tasks set up: a yes or no to an open proposal settles it, and (without a model)
    /// an explicit request becomes a task; the assistant replies instead of answering.
    /// `None` leaves the message to the assistant.
    async fn task_route(&mut self, session: i64, new: &NewMessage, id: &str) -> Option<Outcome> {
        let state = &self.state;
        let decision = match tasks::decide(state, &self.client, session, &new.text).await {
            Ok(Some(decision)) => decision,
            Ok(None) => return None,
            Err(e) => return Some(internal(&e, Some(id))),
        };
        let (stored, fresh) = match self.store_for_route(session, new, id).await {
            Ok(stored) => stored,
            Err(answered) => return Some(answered),
        };
        let page = self.page.as_ref().and_then(|p| p.url.clone());
        let done = for_tasks(state, &self.client, &stored, decision, page).await;
        if !fresh {
            release(state, stored.seq);
        }
        match done {
            Ok(()) => Some(Outcome::frame(ServerFrame::Ack { id, seq: stored.seq, duplicate: !fresh }.encode())),
            Err(e) => Some(internal(&e, Some(id))),
        }
    }

    /// The widget's "talk to a human" action.
    async fn handoff(&mut self) -> Outcome {
        let Some(session) = self.joined() else {
            return Outcome::error(ErrorCode::HelloRequired, None);
        };
        if !relay::configured(&self.client) {
            return Outcome::error(ErrorCode::NoOperator, None);
        }
        if !self.state.limits.write(session).await {
            return Outcome::error(ErrorCode::RateLimited, None);
        }
        let page = self.page.as_ref().and_then(|p| p.url.clone());
        match relay::start_handoff(&self.state, &self.client, session, handoff::Trigger::Asked, page, None, None).await
        {
            Ok(_) => Outcome::default(),
            Err(e) => internal(&e, None),
        }
    }

    /// Starts the tracked task that answers the visitor's message `id`.
    fn spawn_answer(&self, session: i64, text: &str, id: &str, visitor: Visitor, faq: Option<assistant::Reply>) {
        let turn = VisitorTurn {
            session_id: session,
            text: text.to_string(),
            client_msg_id: id.to_string(),
            faq,
            claimed: false,
        };
        let state = self.state.clone();
        let answering = answer(state, self.uid.clone(), turn, visitor, self.page.clone(), self.ip);
        self.state.tasks.spawn(tracing::Instrument::in_current_span(answering));
    }

    /// Stores (or clears) the visitor's rating of an answer and tells every tab.
    async fn feedback(&mut self, seq: i64, value: Option<Feedback>) -> Outcome {
        let Some(session) = self.joined() else {
            return Outcome::error(ErrorCode::HelloRequired, None);
        };
        if !self.state.limits.write(session).await {
            return Outcome::error(ErrorCode::RateLimited, None);
        }
        match self.state.store.message_feedback(session, seq, value).await {
            Ok(true) => {
                self.state.hub.send(session, &ServerFrame::Feedback { seq, value }.encode());
                Outcome::default()
            }
            Ok(false) => Outcome::error(ErrorCode::UnknownMessage, None),
            Err(e) => internal(&e, None),
        }
    }

    /// The visitor is writing: shown to the person who has the conversation (if one has),
    /// the same state at most once per [`TYPING_REFRESH`]. It costs no write.
    fn typing(&mut self, on: bool) -> Outcome {
        let Some(session) = self.joined() else {
            return Outcome::error(ErrorCode::HelloRequired, None);
        };
        // A change goes out at most once a second (a flood of toggles costs nothing).
        let fresh = self.typing_sent.is_some_and(|(was, at)| {
            at.elapsed() < Duration::from_secs(1) || (was == on && at.elapsed() < TYPING_REFRESH)
        });
        if !fresh && relay::configured(&self.client) {
            self.typing_sent = Some((on, std::time::Instant::now()));
            let (state, client) = (self.state.clone(), self.client.clone());
            let typing = async move { relay::visitor_typing(&state, &client, session, on).await };
            self.state.tasks.spawn(tracing::Instrument::in_current_span(typing));
        }
        Outcome::default()
    }

    /// Stores who the host page says the visitor is (UNVERIFIED; the email is never logged).
    async fn identify(&mut self, name: Option<String>, email: Option<String>) -> Outcome {
        let Some(session) = self.joined() else {
            return Outcome::error(ErrorCode::HelloRequired, None);
        };
        let who = match protocol::identity(name.as_deref(), email.as_deref()) {
            Ok(who) => who,
            Err(code) => return Outcome::error(code, None),
        };
        if !self.state.limits.write(session).await {
            return Outcome::error(ErrorCode::RateLimited, None);
        }
        match self.state.store.session_identify(session, who.name.as_deref(), who.email.as_deref()).await {
            Ok(()) => Outcome::frame(ServerFrame::Identified.encode()),
            Err(e) => internal(&e, None),
        }
    }

    async fn history(&mut self, before: i64, limit: Option<u32>) -> Outcome {
        let Some(session) = self.joined() else {
            return Outcome::error(ErrorCode::HelloRequired, None);
        };
        if !self.state.limits.history(session) {
            return Outcome::error(ErrorCode::RateLimited, None);
        }
        let limit = limit.unwrap_or(HISTORY_PAGE).clamp(1, HISTORY_PAGE);
        match self.state.store.messages_page(session, Some(before), limit).await {
            Ok((messages, has_more)) => Outcome::frame(
                ServerFrame::History { messages: messages.iter().map(MessageView::from).collect(), has_more }.encode(),
            ),
            Err(e) => internal(&e, None),
        }
    }
}

/// What the assistant may offer this client's visitors.
fn persona<'a>(client: &'a ClientRuntime, catalog: Option<&'a crate::catalog::search::Catalog>) -> Persona<'a> {
    Persona {
        bot_name: client.settings.get("bot_name"),
        contact_text: client.settings.get("contact_text"),
        handoff: relay::configured(client),
        tasks: tasks::configured(client).then(|| client.settings.get("tasks_require_confirmation") != "off"),
        catalog,
    }
}

/// Tells every tab of the session that an answer to `seq` is being written, once per answer;
/// the `delta` or `message` with that `replyTo` ends it. Lossy: a tab whose queue is full just
/// misses the indicator.
fn typing_on(state: &AppState, session: i64, seq: i64) {
    let frame = ServerFrame::Typing { role: TypingRole::Assistant, on: true, reply_to: Some(seq) }.encode();
    state.hub.send_lossy(session, &frame);
}

fn internal(err: &dyn std::fmt::Display, id: Option<&str>) -> Outcome {
    tracing::error!(error = %err, "socket request failed");
    Outcome { failed: true, ..Outcome::error(ErrorCode::Internal, id) }
}

/// Keeps the latest model failure where the admin sees it (`client show`), at most once a
/// minute per client. A failure to record is only logged: the visitor's answer comes first.
async fn record_model_problem(state: &AppState, client: &crate::registry::ClientRuntime, error: &str) {
    if !state.model_breakers.report_due(&client.row.uid, std::time::Instant::now()) {
        return;
    }
    if let Err(e) = state.store.model_error_record(client.row.id, now_ms(), error).await {
        tracing::warn!(client = %client.row.uid, error = %e, "recording the model failure failed");
    }
}

/// Whether the client's daily token budget or this session's cap is used up; then the
/// built-in answerer takes over, so one visitor can't run up the shop's bill.
async fn over_budget(
    state: &AppState,
    client: &crate::registry::ClientRuntime,
    session: i64,
    ip: IpAddr,
) -> Result<bool, crate::store::StoreError> {
    let limit = |key: &str| client.settings.get(key).parse::<i64>().unwrap_or(0);
    let store = state.store.as_ref();
    let day = state.usage_meter.client_day(store, client.row.id, crate::store::utc_day(now_ms())).await?;
    if day >= limit("model_daily_token_budget") {
        tracing::warn!(client = %client.row.uid, "the daily model token budget is used up; answering from the knowledge");
        return Ok(true);
    }
    if state.usage_meter.ip_day(ip, crate::store::utc_day(now_ms())) >= limit("model_ip_token_cap") {
        return Ok(true);
    }
    Ok(state.usage_meter.session(store, session).await? >= limit("model_session_token_cap"))
}

/// What an answer needs to know of the visitor's message before it is stored.
struct VisitorTurn {
    session_id: i64,
    text: String,
    client_msg_id: String,
    /// The FAQ's answer when it was already worked out (without a model, waiting on a search).
    faq: Option<assistant::Reply>,
    /// A stored message whose seq the caller claimed and found without a reply (a claim
    /// released and taken again could lose to its own release in Redis).
    claimed: bool,
}

/// When a visitor message's answer can be given.
enum Ready {
    /// Now, stored with the message; with when the product search started, if it was one.
    Now(assistant::Reply, Option<std::time::Instant>),
    /// After a product search, with the FAQ's answer for when the search brings nothing.
    AfterSearch(assistant::Reply),
    /// After the model (or something else that needs waiting for).
    Later,
}

/// The visitor's message as the answer sees it: being stored (its `seq` comes when the write
/// commits; nothing comes if it fails), or stored earlier and resent unanswered.
enum Visitor {
    Storing(tokio::sync::oneshot::Receiver<Message>),
    Resent(Box<Message>),
    Gone,
}

impl Visitor {
    /// The stored message if it is known by now, without waiting.
    fn now(&mut self) -> Option<&Message> {
        if let Visitor::Storing(rx) = self {
            *self = match rx.try_recv() {
                Ok(m) => Visitor::Resent(Box::new(m)),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => return None,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => Visitor::Gone,
            };
        }
        match self {
            Visitor::Resent(m) => Some(&**m),
            _ => None,
        }
    }

    /// The stored message once the write has committed; `None` if it failed.
    async fn stored(&mut self) -> Option<&Message> {
        if let Visitor::Storing(rx) = self {
            *self = rx.await.map_or(Visitor::Gone, |m| Visitor::Resent(Box::new(m)));
        }
        match self {
            Visitor::Resent(m) => Some(&**m),
            _ => None,
        }
    }
}

/// Answers one visitor message, stores the answer once the message itself is stored, then
/// delivers it to the session. At most one answer runs per message: a new message's seq is
/// claimed before its ack, and a re-answer (after a resend) first claims the seq and checks
/// that no answer was stored meanwhile, so an answer is never produced twice.
async fn answer(
    state: AppState,
    uid: String,
    turn: VisitorTurn,
    mut visitor: Visitor,
    page: Option<protocol::PageContext>,
    ip: IpAddr,
) {
    if let Visitor::Resent(m) = &visitor
        && turn.claimed
    {
        typing_on(&state, m.session_id, m.seq);
    } else if let Visitor::Resent(m) = &visitor {
        let seq = m.seq;
        if !state.claims.claim(seq).await {
            return;
        }
        match state.store.reply_to(m.session_id, seq).await {
            Ok(None) => typing_on(&state, m.session_id, seq),
            Ok(Some(_)) => return release(&state, seq),
            Err(e) => {
                tracing::error!(error = %e, session = m.session_id, "answering failed; the visitor may resend");
                return release(&state, seq);
            }
        }
    }
    let session = turn.session_id;
    let result = async {
        let Some(client) = state.registry.get(&uid) else { return Ok(()) };
        let catalog = state.catalogs.for_client(&client, &state.keys, &state.catalog_http);
        let persona = persona(&client, catalog.as_ref());
        // Hybrid when the client's vectors are ready; the answer found at once needs none.
        let retrieved = if turn.faq.is_some() && !assistant::model_configured(&client.settings) {
            Vec::new()
        } else {
            client.retrieve(&turn.text, assistant::MODEL_ENTRIES).await
        };
        let builtin = || assistant::answer_from(&client.knowledge, retrieved.first(), persona, Confidence::default());
        // When the cards' search started and what the store took, for the latency histogram.
        let mut searched = None;
        let mut reply = match assistant::model_config(&client.settings, &state.keys, &uid) {
            None => match (turn.faq.clone().unwrap_or_else(builtin), catalog.as_ref()) {
                // Without a model, a product request the FAQ can't answer searches the catalog.
                (faq, Some(catalog)) if faq.source == assistant::Source::Fallback => {
                    let started = std::time::Instant::now();
                    let (reply, store) = assistant::products_or(catalog, persona, &turn.text, faq).await;
                    if reply.source == assistant::Source::Catalog {
                        searched = Some((started, store));
                    }
                    reply
                }
                (faq, _) => faq,
            },
            Some(Err(why)) => {
                tracing::warn!(client = %uid, error = %why, "the model is misconfigured; answering from the knowledge");
                record_model_problem(&state, &client, &format!("model settings: {why}")).await;
                builtin()
            }
            Some(Ok(_)) if !state.model_breakers.allow(&uid, std::time::Instant::now()) => builtin(),
            Some(Ok(model)) => 'model: {
                // The budgets and the conversation before this message (which may or may not
                // be stored yet) are read together: both are on the way to the first token.
                let (over, earlier) = tokio::join!(
                    over_budget(&state, &client, session, ip),
                    state.store.messages_page(session, None, prompt::HISTORY_MESSAGES as u32 + 1)
                );
                if over? {
                    break 'model builtin();
                }
                let (mut history, _) = earlier?;
                let ours = |m: &Message| m.client_msg_id.as_deref() == Some(turn.client_msg_id.as_str());
                // Already there: stored just now, or a resend of an earlier message, which
                // its own task answers; no tokens are spent twice.
                if history.iter().any(ours) && visitor.stored().await.is_none() {
                    return Ok(());
                }
                history.retain(|m| !ours(m));
                // Pieces written before the message's seq is known wait for it.
                let mut held = String::new();
                let asked = std::time::Instant::now();
                let mut first_token = None;
                let (reply, failure) = assistant::answer_with_model(
                    &state.model_http,
                    &model,
                    &client.knowledge,
                    &retrieved,
                    persona,
                    Confidence::default(),
                    &history,
                    page.as_ref(),
                    &turn.text,
                    |text| {
                        first_token.get_or_insert_with(|| asked.elapsed());
                        match visitor.now() {
                            Some(m) => {
                                let text = if held.is_empty() { text } else { held.push_str(text); held.as_str() };
                                let frame = ServerFrame::Delta { reply_to: m.seq, text }.encode();
                                state.hub.send_lossy(session, &frame);
                                held.clear();
                            }
                            None => held.push_str(text),
                        }
                    },
                )
                .await;
                if let Some(first) = first_token {
                    metrics::model_first_token(&uid, first);
                }
                match failure {
                    None => state.model_breakers.success(&uid),
                    Some(e) => {
                        metrics::model_failed(&uid);
                        let open = e.provider_trouble() && state.model_breakers.failure(&uid, std::time::Instant::now());
                        tracing::warn!(client = %uid, error = %e, breaker_open = open, "the model failed; answered from the knowledge");
                        record_model_problem(&state, &client, &e.to_string()).await;
                    }
                }
                reply
            }
        };
        let Some(stored) = visitor.stored().await else { return Ok(()) };
        let seq = stored.seq;
        // The task goes in before the answer: the answer marks the question as done, so a
        // crash in between leaves it unanswered, and answering it again finds the task taken.
        let mut refused = None;
        if let Some(idea) = reply.task.take() {
            let request = tasks::Request {
                category: idea.category.as_deref().and_then(crate::tasks::detect::Category::parse),
                title: idea.title,
                summary: idea.description,
                contact: idea.contact,
                page: page.as_ref().and_then(|p| p.url.clone()),
            };
            let title = request.title.clone();
            let taken = tasks::take(&state, &client, session, seq, request).await?;
            // The model already told the visitor what happens; only a refusal needs words.
            if matches!(taken, tasks::Taken::Capped) {
                refused = Some(relay::server_message(session, Role::System, &tasks::taken_text(&taken, &title)));
            }
        }
        let source = reply.source.as_str();
        let created_at = now_ms();
        let writing = std::time::Instant::now();
        let answer = NewMessage {
            session_id: session,
            role: Role::Assistant,
            text: reply.text,
            client_msg_id: None,
            reply_to: Some(seq),
            source: Some(reply.source.as_str().to_string()),
            entry_id: reply.entry_id,
            created_at,
            usage: reply.usage,
            author: None,
            attachments: Vec::new(),
            products: reply.products,
        };
        // An answer that hands off is stored with the hand-off: a crash cannot keep one
        // without the other. Either way it is shown once it is stored.
        let stored_answer = if reply.handoff {
            let url = page.as_ref().and_then(|p| p.url.clone());
            relay::start_handoff(&state, &client, session, handoff::Trigger::Model, url, None, Some(&answer)).await?
        } else {
            match state.store.message_insert(&answer).await? {
                Inserted::New(m) => {
                    metrics::message(&uid, Direction::Out);
                    state.hub.send(session, &ServerFrame::Message { message: (&m).into() }.encode());
                    Some(m)
                }
                Inserted::Duplicate(_) => None,
            }
        };
        if let Some(u) = reply.usage {
            metrics::model_tokens(&uid, u.prompt, u.completion);
            let day = crate::store::utc_day(created_at);
            state.usage_meter.add(client.row.id, day, session, u.total());
            state.usage_meter.add_ip(ip, day, u.total());
        }
        if let Some(m) = stored_answer {
            let waited = Duration::from_millis(u64::try_from(m.created_at - stored.created_at).unwrap_or(0));
            metrics::answered(&uid, source, Some(waited));
            match searched {
                Some((started, Some(store))) => state.catalog_timings.record_miss(started.elapsed(), store),
                // The cache was filled while this answer waited its turn.
                Some((started, None)) => state.catalog_timings.record_hit(started.elapsed(), writing.elapsed()),
                None => {}
            }
            if let Some(notice) = refused {
                relay::show(&state, &uid, &notice).await?;
            }
            if !reply.handoff && m.source.as_deref() == Some("fallback") && relay::configured(&client) {
                hand_off_if_stuck(&state, &client, session, page.as_ref()).await?;
            }
        }
        Ok::<(), crate::store::StoreError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, session, "answering failed; the visitor may resend");
    }
    if let Some(m) = visitor.stored().await {
        release(&state, m.seq);
    }
}

/// How old an unanswered question may be and still get its answer when the visitor comes
/// back; an older one gets [`ASK_AGAIN`] instead.
const RESUME_WINDOW_MS: i64 = 10 * 60 * 1000;
/// A question this young may belong to a node (or this process) that is still working on
/// it and has not claimed it yet: wait before taking it over. A restarted node of its own
/// does not wait for questions stored before it started.
const RESUME_GRACE_MS: i64 = 2000;
/// How long a resumed socket keeps looking after questions another node is answering.
const RESUME_WAIT: Duration = Duration::from_secs(30);
/// How far back a resumed conversation is searched for messages left without a reply.
const RESUME_LOOKBACK: u32 = 100;
/// How many of them are answered; earlier ones are asked again.
const RESUME_ANSWERS: usize = 5;
/// The honest answer to a question that waited too long.
const ASK_AGAIN: &str = "Sorry, your question could not be answered in time. Please ask it again.";

/// Finishes the visitor messages of `session` left without a reply, when the visitor
/// resumes it: the node (or process) that acknowledged them died, or the visitor left
/// mid-answer. Each goes the way a new message would (a hand-off, a task, an answer). A
/// message some node is still working on is left to it; its claim runs out if that node died.
async fn resume_unanswered(
    state: AppState,
    uid: String,
    session: i64,
    page: Option<protocol::PageContext>,
    ip: IpAddr,
) {
    let deadline = tokio::time::Instant::now() + RESUME_WAIT;
    loop {
        let pending = match unanswered(&state, session).await {
            Ok(pending) => pending,
            Err(e) => return tracing::warn!(error = %e, session, "looking for unanswered questions failed"),
        };
        let mut waiting = false;
        let newest = pending.len().saturating_sub(RESUME_ANSWERS);
        for (i, m) in pending.into_iter().enumerate() {
            let age = now_ms() - m.created_at;
            let ours = state.cluster.clustered() || m.created_at >= state.started_ms;
            if age > RESUME_WINDOW_MS || i < newest {
                ask_again(&state, &uid, &m).await;
            } else if (ours && age < RESUME_GRACE_MS) || state.claims.busy(m.seq).await {
                waiting = true;
            } else {
                finish(state.clone(), uid.clone(), m, page.clone(), ip).await;
            }
        }
        if !waiting || tokio::time::Instant::now() > deadline || state.shutdown.is_cancelled() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Tells the visitor that question `m` will not be answered, once (claimed like an answer).
async fn ask_again(state: &AppState, uid: &str, m: &Message) {
    if !state.claims.claim(m.seq).await {
        return;
    }
    if matches!(state.store.reply_to(m.session_id, m.seq).await, Ok(None)) {
        let mut notice = relay::server_message(m.session_id, Role::System, ASK_AGAIN);
        notice.reply_to = Some(m.seq);
        if let Err(e) = relay::show(state, uid, &notice).await {
            tracing::warn!(error = %e, session = m.session_id, "storing the ask-again notice failed");
        }
    }
    release(state, m.seq);
}

/// Finishes a stored visitor message left without its reply, by the route a new message
/// takes: a request for a person, a task (without a model), or an answer.
async fn finish(state: AppState, uid: String, m: Message, page: Option<protocol::PageContext>, ip: IpAddr) {
    let Some(client) = state.registry.get(&uid) else { return };
    if !state.claims.claim(m.seq).await {
        return;
    }
    // Claimed first, then checked: whoever finishes a message, finishes it once.
    let url = page.as_ref().and_then(|p| p.url.clone());
    let outcome = match state.store.reply_to(m.session_id, m.seq).await {
        Ok(None) => routed(&state, &client, &m, url).await,
        Ok(Some(_)) => Ok(true),
        Err(e) => Err(e),
    };
    match outcome {
        // The claim goes with it: `answer` releases it when done.
        Ok(false) => {
            let turn = VisitorTurn {
                session_id: m.session_id,
                text: m.text.clone(),
                client_msg_id: m.client_msg_id.clone().unwrap_or_default(),
                faq: None,
                claimed: true,
            };
            answer(state, uid, turn, Visitor::Resent(Box::new(m)), page, ip).await;
        }
        Ok(true) => release(&state, m.seq),
        Err(e) => {
            release(&state, m.seq);
            tracing::warn!(error = %e, session = m.session_id, "finishing an unanswered message failed");
        }
    }
}

/// Sends a stored message the way of a hand-off or a task when it goes that way; `false`
/// leaves it to the assistant.
async fn routed(
    state: &AppState,
    client: &ClientRuntime,
    m: &Message,
    url: Option<String>,
) -> Result<bool, crate::store::StoreError> {
    if relay::configured(client) && handoff::asks_for_person(&m.text, client.settings.get("handoff_keywords")) {
        for_operator(state, client, m, true, url).await?;
        return Ok(true);
    }
    if tasks::configured(client)
        && let Some(decision) = tasks::decide(state, client, m.session_id, &m.text).await?
    {
        for_tasks(state, client, m, decision, url).await?;
        return Ok(true);
    }
    Ok(false)
}

/// The visitor messages of the assistant's part of the conversation (since a person last
/// had it) that have no reply, oldest first; none while a person has it (theirs have no
/// replies to wait for).
async fn unanswered(state: &AppState, session: i64) -> Result<Vec<Message>, crate::store::StoreError> {
    if relay::state_of(state, session).await? != HandoffState::Bot {
        return Ok(Vec::new());
    }
    let (page, _) = state.store.messages_page(session, None, RESUME_LOOKBACK).await?;
    let start = page.iter().rposition(relay::ends_assistant_part).map_or(0, |i| i + 1);
    let replied: std::collections::HashSet<i64> = page.iter().filter_map(|m| m.reply_to).collect();
    Ok(page.into_iter().skip(start).filter(|m| m.role == Role::Visitor && !replied.contains(&m.seq)).collect())
}

/// After `handoff_after_unanswered` "don't know" answers in a row, a person takes over.
async fn hand_off_if_stuck(
    state: &AppState,
    client: &ClientRuntime,
    session: i64,
    page: Option<&protocol::PageContext>,
) -> Result<(), crate::store::StoreError> {
    let n = client.settings.get("handoff_after_unanswered").parse::<usize>().unwrap_or(0);
    if n == 0 {
        return Ok(());
    }
    let (history, _) = state.store.messages_page(session, None, (2 * n + 2) as u32).await?;
    if handoff::unanswered_streak(&history) >= n {
        let page = page.and_then(|p| p.url.clone());
        relay::start_handoff(state, client, session, handoff::Trigger::Unanswered, page, None, None).await?;
    }
    Ok(())
}

/// The operator's part of a stored visitor message: the hand-off it asks for, or its way to
/// the person who has the conversation. Both are safe to repeat: a hand-off starts once
/// (the notice marks the message), and Chatwoot refuses a second copy of a forwarded message.
async fn for_operator(
    state: &AppState,
    client: &ClientRuntime,
    stored: &Message,
    asks: bool,
    page: Option<String>,
) -> Result<(), crate::store::StoreError> {
    if asks {
        relay::start_handoff(state, client, stored.session_id, handoff::Trigger::Keyword, page, Some(stored.seq), None)
            .await
            .map(|_| ())
    } else {
        relay::forward(state, client.row.id, stored.session_id, stored.seq, &stored.text).await
    }
}

/// The tasks' part of a stored visitor message: settles the proposal or takes the request,
/// and stores the assistant's reply to it. Safe to repeat: a request is taken once per
/// message (its marker), and settling twice settles the same way.
async fn for_tasks(
    state: &AppState,
    client: &ClientRuntime,
    stored: &Message,
    decision: tasks::Decision,
    page: Option<String>,
) -> Result<(), crate::store::StoreError> {
    let session = stored.session_id;
    let text: String = match decision {
        tasks::Decision::Confirm(task) => {
            tasks::confirm(state, &task).await?;
            tasks::settled_text(true).into()
        }
        tasks::Decision::Decline(task) => {
            tasks::decline(state, &task).await?;
            tasks::settled_text(false).into()
        }
        tasks::Decision::Request(found) => {
            let request = tasks::Request {
                title: found.title.clone(),
                summary: stored.text.clone(),
                category: Some(found.category),
                contact: None,
                page,
            };
            let taken = tasks::take(state, client, session, stored.seq, request).await?;
            tasks::taken_text(&taken, &found.title)
        }
    };
    let mut answer = relay::server_message(session, Role::Assistant, &text);
    answer.reply_to = Some(stored.seq);
    if let Err(e) = relay::show(state, &client.row.uid, &answer).await {
        tracing::error!(error = %e, session, "storing the task reply failed");
    }
    Ok(())
}

/// Lets a message be answered again (after a resend) once its answer task is over.
fn release(state: &AppState, seq: i64) {
    state.claims.release(seq);
}
