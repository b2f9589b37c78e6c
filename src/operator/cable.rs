//! Operator replies for a server Chatwoot can't call (no public URL): with `operator_cable`
//! on, the server itself opens Chatwoot's ActionCable WebSocket (contract §6) and subscribes
//! to `RoomChannel` as each handed-off contact, with the contact's `pubsub_token` from the
//! Client API (inbox identifier → `POST P/contacts`). Events arrive in push form and are acted
//! on exactly as webhooks are (`inbound`); after every (re)subscription the latest messages and
//! the conversation's status are read over REST, so nothing said while the socket was down is
//! missed, and the message ids keep each reply shown once.
//!
//! One connection per client, open only while some conversation of it is with a person.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::chatwoot::{Chatwoot, MessageSummary};
use super::inbound;
use super::relay::{self, Failure};
use super::webhook::Webhook;
use crate::app::AppState;
use crate::outbound::{self, Io};
use crate::registry::ClientRuntime;
use crate::store::OperatorLink;

/// Connecting and the WebSocket handshake together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Chatwoot pings every ~3 s; this long without a frame means the connection is dead.
const SILENCE: Duration = Duration::from_secs(10);
/// An invalid token gets neither a confirmation nor a rejection.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the contacts are marked online (agents see the visitor is there).
const PRESENCE_EVERY: Duration = Duration::from_secs(30);
/// A connection with nobody to listen for closes after this long.
const IDLE: Duration = Duration::from_secs(30);
/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The ActionCable URL of `client`: `operator_cable_url`, else the Chatwoot URL's `/cable`
/// with `ws` or `wss`.
pub fn cable_url(client: &ClientRuntime) -> Option<Url> {
    let s = &client.settings;
    if !s.get("operator_cable_url").is_empty() {
        return Url::parse(s.get("operator_cable_url")).ok();
    }
    let mut url = Url::parse(s.get("operator_url")).ok()?;
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(scheme).ok()?;
    url.set_query(None);
    url.path_segments_mut().ok()?.pop_if_empty().push("cable");
    Some(url)
}

/// Whether `client` listens over ActionCable.
fn wanted(client: &ClientRuntime) -> bool {
    client.settings.get("operator_cable") == "on" && relay::configured(client)
}

/// The supervisor: keeps one listening connection per client that has cable on and a
/// conversation with a person, restarting it when the client's settings change.
pub async fn run(state: AppState) {
    let http = state.operator_http.clone();
    let mut running: HashMap<i64, (i64, CancellationToken, tokio::task::JoinHandle<()>)> = HashMap::new();
    let mut lease = state.lease(crate::cluster::lease::CABLE, Duration::from_secs(15));
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        // One node listens, so each event is acted on once (its replies reach every node).
        let held = lease.hold(state.store.as_ref()).await;
        let clients: Vec<Arc<ClientRuntime>> =
            if held { state.registry.all().into_iter().filter(|c| wanted(c)).collect() } else { Vec::new() };
        running.retain(|id, (version, cancel, task)| {
            let current = clients.iter().any(|c| c.row.id == *id && c.row.settings_version == *version);
            if !current {
                cancel.cancel();
            }
            current && !task.is_finished()
        });
        for client in clients {
            if running.contains_key(&client.row.id) {
                continue;
            }
            match state.store.operator_links_open(client.row.id).await {
                Ok(open) if open.is_empty() => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reading the operator links failed");
                    continue;
                }
            }
            let cancel = state.shutdown.child_token();
            let task = tokio::spawn(keep_listening(state.clone(), http.clone(), client.clone(), cancel.clone()));
            running.insert(client.row.id, (client.row.settings_version, cancel, task));
        }
    }
    for (_, (_, cancel, task)) in running {
        cancel.cancel();
        let _ = task.await;
    }
}

/// Listens for `client` until cancelled or idle, reconnecting with backoff.
async fn keep_listening(state: AppState, http: reqwest::Client, client: Arc<ClientRuntime>, cancel: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        match listen(&state, &http, &client, &cancel).await {
            Ok(()) => return,
            Err(why) => {
                tracing::warn!(client = %client.row.uid, error = %why, "the Chatwoot ActionCable connection failed; reconnecting")
            }
        }
        failures = if started.elapsed() > Duration::from_secs(60) { 1 } else { failures + 1 };
        let backoff = Duration::from_secs(1 << failures.min(5)).min(MAX_BACKOFF);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}

/// One subscription: a contact's room, for one conversation with a person.
struct Room {
    link: OperatorLink,
    confirmed: bool,
    asked_at: Instant,
}

/// A frame from the server; data frames have no `type`.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: Option<String>,
    identifier: Option<String>,
    message: Option<Value>,
    reason: Option<String>,
}

/// One connection's life: `Ok` when cancelled or idle, `Err` when it broke.
async fn listen(
    state: &AppState,
    http: &reqwest::Client,
    client: &ClientRuntime,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let (chatwoot, found) = relay::connect(state, client, http).await.map_err(|f| match f {
        Failure::Retry(why, _) | Failure::Dead(why) => why,
    })?;
    let inbox = found.inbox_identifier.ok_or("the Chatwoot inbox has no Client API identifier")?;
    let url = cable_url(client).ok_or("operator_cable_url is not a valid URL")?;
    let mut ws = outbound::websocket(state.settings.store.upstream, &url, CONNECT_TIMEOUT).await?;
    tracing::info!(client = %client.row.uid, "listening to Chatwoot over ActionCable");
    let mut listener = Listener { state, client, chatwoot, inbox, rooms: HashMap::new(), tokens: HashMap::new() };
    let mut heard = Instant::now();
    let mut idle_since = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut presence = tokio::time::interval(PRESENCE_EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = ws.close(None).await;
                return Ok(());
            }
            frame = ws.next() => {
                heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => listener.on_frame(&text).await?,
                    Some(Ok(Message::Close(_))) | None => return Err("Chatwoot closed the connection".into()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.to_string()),
                }
            }
            _ = tick.tick() => {
                if heard.elapsed() > SILENCE {
                    return Err(format!("nothing heard for {}s", SILENCE.as_secs()));
                }
                listener.reconcile(&mut ws).await?;
                if !listener.rooms.is_empty() {
                    idle_since = Instant::now();
                } else if idle_since.elapsed() > IDLE {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
            }
            _ = presence.tick() => listener.presence(&mut ws).await?,
        }
    }
}

type Socket = WebSocketStream<Box<dyn Io>>;

struct Listener<'a> {
    state: &'a AppState,
    client: &'a ClientRuntime,
    chatwoot: Chatwoot,
    /// The inbox's Client API identifier.
    inbox: String,
    /// By subscription identifier (the exact JSON string sent).
    rooms: HashMap<String, Room>,
    /// `pubsub_token` by `source_id`.
    tokens: HashMap<String, String>,
}

async fn send(ws: &mut Socket, frame: Value) -> Result<(), String> {
    ws.send(Message::text(frame.to_string())).await.map_err(|e| e.to_string())
}

impl Listener<'_> {
    /// Subscribes to the rooms of conversations a person has now, and leaves the others.
    async fn reconcile(&mut self, ws: &mut Socket) -> Result<(), String> {
        let open = self.state.store.operator_links_open(self.client.row.id).await.map_err(|e| e.to_string())?;
        let mut leave = Vec::new();
        for (identifier, room) in &self.rooms {
            let still = open.iter().find(|l| l.session_id == room.link.session_id);
            let unconfirmed = !room.confirmed && room.asked_at.elapsed() > CONFIRM_TIMEOUT;
            if still.is_none_or(|l| l.conversation_id != room.link.conversation_id) || unconfirmed {
                leave.push(identifier.clone());
                if unconfirmed {
                    tracing::warn!(client = %self.client.row.uid, session = room.link.session_id, "ActionCable did not confirm the subscription; asking for a new token");
                    self.tokens.remove(&room.link.source_id);
                }
            }
        }
        for identifier in leave {
            self.rooms.remove(&identifier);
            send(ws, json!({ "command": "unsubscribe", "identifier": identifier })).await?;
        }
        for link in open {
            if self.rooms.values().any(|r| r.link.session_id == link.session_id) {
                continue;
            }
            let token = match self.tokens.get(&link.source_id) {
                Some(t) => t.clone(),
                None => match self.chatwoot.contact_pubsub_token(&self.inbox, &link.source_id).await {
                    Ok(t) => {
                        self.tokens.insert(link.source_id.clone(), t.clone());
                        t
                    }
                    Err(e) => {
                        tracing::warn!(client = %self.client.row.uid, session = link.session_id, error = %e, "no ActionCable token for the contact");
                        continue;
                    }
                },
            };
            let identifier = json!({ "channel": "RoomChannel", "pubsub_token": token }).to_string();
            send(ws, json!({ "command": "subscribe", "identifier": identifier })).await?;
            self.rooms.insert(identifier, Room { link, confirmed: false, asked_at: Instant::now() });
        }
        Ok(())
    }

    /// Marks every confirmed contact online.
    async fn presence(&mut self, ws: &mut Socket) -> Result<(), String> {
        let data = json!({ "action": "update_presence" }).to_string();
        for (identifier, room) in &self.rooms {
            if room.confirmed {
                send(ws, json!({ "command": "message", "identifier": identifier, "data": data })).await?;
            }
        }
        Ok(())
    }

    async fn on_frame(&mut self, text: &str) -> Result<(), String> {
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            tracing::debug!(client = %self.client.row.uid, "an unreadable ActionCable frame");
            return Ok(());
        };
        match frame.kind.as_deref() {
            Some("welcome" | "ping") => Ok(()),
            Some("disconnect") => Err(format!("Chatwoot disconnected: {}", frame.reason.unwrap_or_default())),
            Some("confirm_subscription") => {
                let Some(room) = frame.identifier.and_then(|i| self.rooms.get_mut(&i)) else { return Ok(()) };
                room.confirmed = true;
                let link = room.link.clone();
                self.catch_up(&link).await;
                Ok(())
            }
            Some("reject_subscription") => {
                if let Some(room) = frame.identifier.and_then(|i| self.rooms.remove(&i)) {
                    self.tokens.remove(&room.link.source_id);
                }
                Ok(())
            }
            Some(_) => Ok(()),
            None => {
                let known = frame.identifier.as_ref().is_some_and(|i| self.rooms.contains_key(i));
                if let (true, Some(message)) = (known, frame.message) {
                    self.on_event(message).await;
                }
                Ok(())
            }
        }
    }

    /// A room's event, acted on as its webhook would be.
    async fn on_event(&self, message: Value) {
        let Some(event) = message.get("event").and_then(Value::as_str).map(str::to_string) else { return };
        let data = message.get("data").cloned().unwrap_or(Value::Null);
        match Webhook::from_cable(&event, data) {
            Ok(hook) => self.act(&hook).await,
            Err(e) => {
                tracing::debug!(client = %self.client.row.uid, event, error = %e, "an unreadable ActionCable event")
            }
        }
    }

    async fn act(&self, hook: &Webhook) {
        if let Err(e) = inbound::apply(self.state, self.client, hook).await {
            tracing::warn!(client = %self.client.row.uid, event = %hook.event, error = %e, "an ActionCable event was not acted on");
        }
    }

    /// What happened while we weren't subscribed: the latest messages (each shown once) and
    /// whether the conversation was resolved meanwhile.
    async fn catch_up(&self, link: &OperatorLink) {
        let Some(conversation) = link.conversation_id else { return };
        match self.chatwoot.messages_after(conversation, None).await {
            Ok(messages) => {
                for m in messages {
                    self.act(&as_event(conversation, m)).await;
                }
            }
            Err(e) => {
                tracing::warn!(client = %self.client.row.uid, conversation, error = %e, "catching up on messages failed")
            }
        }
        match self.chatwoot.conversation(conversation).await {
            Ok(info) => {
                let hook = Webhook {
                    event: "conversation_status_changed".into(),
                    id: Some(conversation),
                    status: Some(info.status),
                    inbox_id: info.inbox_id,
                    ..Webhook::default()
                };
                self.act(&hook).await;
            }
            Err(e) => {
                tracing::warn!(client = %self.client.row.uid, conversation, error = %e, "reading the conversation failed")
            }
        }
    }
}

/// A listed message as the `message_created` event it was.
fn as_event(conversation: i64, m: MessageSummary) -> Webhook {
    Webhook {
        event: "message_created".into(),
        id: Some(m.id),
        content: m.content,
        message_type: Some(m.message_type),
        private: m.private,
        source_id: m.source_id,
        sender: m.sender,
        attachments: m.attachments,
        conversation_id: Some(conversation),
        ..Webhook::default()
    }
}
