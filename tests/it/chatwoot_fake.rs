//! A fake Chatwoot (v4.15) on loopback that follows `shared/contracts/chatwoot.md`: the
//! Application API endpoints the hand-over uses, with the contract's response shapes, status
//! codes and error bodies (§7), state in memory (contacts, contact inboxes, conversations,
//! messages), and the other direction — Chatwoot calling our webhook, signed as §5.2 says.
//!
//! Controls for tests: fail the next requests with a status, stall them, rate-limit, go down
//! (connections refused and open ones dropped) and come back on the same port, inboxes of any
//! channel type with or without a secret, several accounts on the profile, the requests seen,
//! and echoes of our own posts as `message_created` webhooks to a configured URL.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aia_chat::clients::UpstreamPolicy;
use aia_chat::operator::chatwoot::{Chatwoot, ChatwootConfig};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The account every default token belongs to.
pub const ACCOUNT_ID: i64 = 2;
/// The API-channel inbox the assistant is.
pub const INBOX_ID: i64 = 7;
/// The administrator's ("integration user") access token.
pub const ADMIN_TOKEN: &str = "fake-admin-token-Zq8vT4nB";
/// The agent bot's access token.
pub const BOT_TOKEN: &str = "fake-bot-token-Hk3pW7mR";
/// The API inbox's webhook secret.
pub const INBOX_SECRET: &str = "fake-inbox-secret-9xW2cL5d";
/// Where the fake's inboxes post their webhooks unless a test says otherwise.
pub const WEBHOOK_URL: &str = "https://assistant.example/api/webhook";
/// The agent bot's id.
pub const BOT_ID: i64 = 42;
/// The administrator's user id.
pub const ADMIN_ID: i64 = 1;
/// A human agent (the one [`agent_reply`] writes as).
pub const AGENT_ID: i64 = 5;

const ACCOUNT_NAME: &str = "Example Support";

// ---------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------

/// An inbox of the fake account.
#[derive(Clone, Debug)]
pub struct FakeInbox {
    pub id: i64,
    pub name: String,
    /// `Channel::Api`, `Channel::WebWidget`, …
    pub channel_type: String,
    /// The API channel's webhook secret (`None`: an old server that doesn't sign).
    pub secret: Option<String>,
    pub inbox_identifier: String,
    /// With an active agent bot, new and reopened conversations are `pending`.
    pub bot_connected: bool,
    /// Where the API channel posts its webhooks (`None`: not set).
    pub webhook_url: Option<String>,
}

#[derive(Clone, Debug)]
pub struct FakeContact {
    pub id: i64,
    pub name: Option<String>,
    pub email: Option<String>,
    pub identifier: Option<String>,
    pub additional_attributes: Value,
    pub custom_attributes: Value,
}

#[derive(Clone, Debug)]
pub struct FakeContactInbox {
    pub id: i64,
    pub contact_id: i64,
    pub inbox_id: i64,
    pub source_id: String,
}

#[derive(Clone, Debug)]
pub struct FakeConversation {
    /// The display id (paths and payloads).
    pub id: i64,
    pub inbox_id: i64,
    pub contact_id: i64,
    pub contact_inbox_id: i64,
    pub status: String,
    pub additional_attributes: Value,
    pub custom_attributes: Value,
    /// The last `toggle_typing_status` (`None` before any).
    pub typing: Option<bool>,
    /// The contact's typing, from the Client API's `toggle_typing` (`None` before any).
    pub contact_typing: Option<bool>,
    /// Who last called `toggle_status`: `"agent_bot"` or `"user"`.
    pub toggled_by: Option<String>,
    pub created_at: i64,
}

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Author {
    Contact,
    /// A user (the admin token's user, or [`AGENT_ID`]).
    User(i64),
    Bot,
}

#[derive(Clone, Debug)]
pub struct FakeMessage {
    pub id: i64,
    pub conversation_id: i64,
    pub content: Option<String>,
    /// 0 incoming, 1 outgoing, 2 activity, 3 template.
    pub message_type: i64,
    pub content_type: String,
    pub private: bool,
    pub source_id: Option<String>,
    pub author: Author,
    pub created_at: i64,
}

/// What the fake was sent.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: HeaderMap,
    /// The JSON body (`Null` when there was none or it was not JSON).
    pub body: Value,
}

impl Seen {
    /// The `api_access_token` header, if sent.
    pub fn token(&self) -> Option<&str> {
        self.headers.get("api_access_token").and_then(|v| v.to_str().ok())
    }
}

/// An answer forced onto a coming request.
#[derive(Clone, Debug)]
pub struct Failure {
    /// `None`: answer normally (after the delay).
    pub status: Option<u16>,
    pub content_type: &'static str,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
    /// Wait this long first (a stall, for timeouts).
    pub delay: Duration,
}

impl Failure {
    /// `status` with the contract's body for it (§7).
    pub fn status(status: u16) -> Failure {
        let (content_type, body) = match status {
            401 => ("application/json", r#"{"error":"Invalid Access Token"}"#.to_string()),
            404 => ("application/json", r#"{"error":"Resource could not be found"}"#.to_string()),
            422 => ("application/json", r#"{"error":"Unprocessable"}"#.to_string()),
            429 => ("text/plain", "Retry later".to_string()),
            500 => ("application/json", r#"{"status":500,"error":"Internal Server Error"}"#.to_string()),
            s => ("text/html", format!("<html><body><h1>{s} Service Unavailable</h1></body></html>")),
        };
        Failure { status: Some(status), content_type, body, headers: Vec::new(), delay: Duration::ZERO }
    }

    /// Adds a header (e.g. `Retry-After`).
    pub fn header(mut self, name: &'static str, value: &str) -> Failure {
        self.headers.push((name, value.to_string()));
        self
    }

    /// Any answer, e.g. a 200 with a body the real server wouldn't send.
    pub fn answer(status: u16, content_type: &'static str, body: &str) -> Failure {
        Failure { status: Some(status), content_type, body: body.into(), headers: Vec::new(), delay: Duration::ZERO }
    }

    /// A normal answer after `delay`.
    pub fn stall(delay: Duration) -> Failure {
        Failure { status: None, content_type: "", body: String::new(), headers: Vec::new(), delay }
    }
}

struct RateLimit {
    max: usize,
    window: Duration,
    retry_after: Option<u64>,
    started: Instant,
    count: usize,
}

struct World {
    account_id: i64,
    /// Accounts the admin token's user belongs to (the profile's `accounts`).
    profile_accounts: Vec<i64>,
    bot_enabled: bool,
    inboxes: Vec<FakeInbox>,
    contacts: Vec<FakeContact>,
    contact_inboxes: Vec<FakeContactInbox>,
    conversations: Vec<FakeConversation>,
    messages: Vec<FakeMessage>,
    next_contact: i64,
    next_contact_inbox: i64,
    next_conversation: i64,
    next_message: i64,
    failures: VecDeque<Failure>,
    rate: Option<RateLimit>,
    seen: Vec<Seen>,
    echo_url: Option<String>,
    echoes: Vec<Delivered>,
    /// ActionCable: the confirmed subscriptions of every open connection.
    cable_subs: Vec<CableSub>,
    cable_conns: u64,
    /// Cancelled to drop every open ActionCable connection.
    cable_drop: CancellationToken,
    /// `update_presence` commands received.
    cable_presence: usize,
}

/// A confirmed `RoomChannel` subscription.
struct CableSub {
    conn: u64,
    identifier: String,
    pubsub_token: String,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
}

type Shared = Arc<Mutex<World>>;

struct Server {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// A running fake Chatwoot.
pub struct FakeChatwoot {
    pub addr: SocketAddr,
    world: Shared,
    server: Mutex<Option<Server>>,
}

impl FakeChatwoot {
    /// Starts the fake: account [`ACCOUNT_ID`], the API inbox [`INBOX_ID`] signed with
    /// [`INBOX_SECRET`] and with the agent bot connected, tokens [`ADMIN_TOKEN`] and
    /// [`BOT_TOKEN`].
    pub async fn start() -> FakeChatwoot {
        let world = World {
            account_id: ACCOUNT_ID,
            profile_accounts: vec![ACCOUNT_ID],
            bot_enabled: true,
            inboxes: vec![FakeInbox {
                id: INBOX_ID,
                name: "AI assistant".into(),
                channel_type: "Channel::Api".into(),
                secret: Some(INBOX_SECRET.into()),
                inbox_identifier: "pR4nWqY1tZ8sXv2KcM6bLd9e".into(),
                bot_connected: true,
                webhook_url: Some(WEBHOOK_URL.into()),
            }],
            contacts: Vec::new(),
            contact_inboxes: Vec::new(),
            conversations: Vec::new(),
            messages: Vec::new(),
            next_contact: 1200,
            next_contact_inbox: 880,
            next_conversation: 310,
            next_message: 90200,
            failures: VecDeque::new(),
            rate: None,
            seen: Vec::new(),
            echo_url: None,
            echoes: Vec::new(),
            cable_subs: Vec::new(),
            cable_conns: 0,
            cable_drop: CancellationToken::new(),
            cable_presence: 0,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = FakeChatwoot { addr, world: Arc::new(Mutex::new(world)), server: Mutex::new(None) };
        fake.serve(listener);
        fake
    }

    fn serve(&self, listener: TcpListener) {
        let cancel = CancellationToken::new();
        let app =
            Router::new().route("/cable", axum::routing::get(cable)).fallback(handle).with_state(self.world.clone());
        let listener = KillableListener { inner: listener, cancel: cancel.clone() };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *self.server.lock().unwrap() = Some(Server { cancel, task });
    }

    /// The base URL (`operator_url`).
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL, parsed.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&self.base()).unwrap()
    }

    /// The client configuration for this fake (admin and bot tokens).
    pub fn config(&self) -> ChatwootConfig {
        ChatwootConfig {
            base: self.url(),
            account_id: ACCOUNT_ID,
            inbox_id: INBOX_ID,
            admin_token: ADMIN_TOKEN.into(),
            bot_token: Some(BOT_TOKEN.into()),
        }
    }

    /// A client of this fake (admin and bot tokens).
    pub fn client(&self) -> Chatwoot {
        Chatwoot::new(self.config(), Chatwoot::http_client(UpstreamPolicy::default())).unwrap()
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    // --- controls -----------------------------------------------------------------------

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.world().seen.clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear_seen(&self) {
        self.world().seen.clear();
    }

    /// The next `n` requests fail with `status` and the contract's body for it.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.fail_next_with(n, Failure::status(status));
    }

    /// The next `n` requests get `failure`.
    pub fn fail_next_with(&self, n: usize, failure: Failure) {
        self.world().failures.extend(std::iter::repeat_n(failure, n));
    }

    /// More than `max` requests in a `window` get 429 `Retry later` (with `Retry-After` when
    /// given); `None` lifts the limit.
    pub fn rate_limit(&self, limit: Option<(usize, Duration)>, retry_after: Option<u64>) {
        self.world().rate =
            limit.map(|(max, window)| RateLimit { max, window, retry_after, started: Instant::now(), count: 0 });
    }

    /// Goes down: the port refuses connections and open connections are dropped.
    pub async fn down(&self) {
        let server = self.server.lock().unwrap().take();
        if let Some(server) = server {
            server.cancel.cancel();
            server.task.abort();
            let _ = server.task.await;
        }
    }

    /// Comes back up on the same port.
    pub async fn up(&self) {
        if self.server.lock().unwrap().is_some() {
            return;
        }
        self.serve(crate::support::rebind(self.addr).await);
    }

    /// Adds (or replaces) an inbox.
    pub fn add_inbox(&self, id: i64, channel_type: &str, secret: Option<&str>) {
        let mut w = self.world();
        w.inboxes.retain(|i| i.id != id);
        w.inboxes.push(FakeInbox {
            id,
            name: format!("Inbox {id}"),
            channel_type: channel_type.into(),
            secret: secret.map(str::to_string),
            inbox_identifier: format!("inbox-identifier-{id}"),
            bot_connected: false,
            webhook_url: Some(WEBHOOK_URL.into()),
        });
    }

    /// Sets where an inbox posts its webhooks (`None`: nowhere).
    pub fn set_inbox_webhook_url(&self, id: i64, url: Option<&str>) {
        if let Some(i) = self.world().inboxes.iter_mut().find(|i| i.id == id) {
            i.webhook_url = url.map(str::to_string);
        }
    }

    /// Sets an inbox's webhook secret (`None`: unsigned webhooks, as before 4.13).
    pub fn set_inbox_secret(&self, id: i64, secret: Option<&str>) {
        if let Some(i) = self.world().inboxes.iter_mut().find(|i| i.id == id) {
            i.secret = secret.map(str::to_string);
        }
    }

    /// Connects or disconnects the agent bot of an inbox.
    pub fn set_bot_connected(&self, id: i64, connected: bool) {
        if let Some(i) = self.world().inboxes.iter_mut().find(|i| i.id == id) {
            i.bot_connected = connected;
        }
    }

    /// Whether the bot token is accepted at all.
    pub fn set_bot_enabled(&self, enabled: bool) {
        self.world().bot_enabled = enabled;
    }

    /// The accounts the admin token's user belongs to.
    pub fn set_profile_accounts(&self, accounts: &[i64]) {
        self.world().profile_accounts = accounts.to_vec();
    }

    /// Echo our own posts as signed `message_created` webhooks to `url` (`None`: don't).
    pub fn set_echo(&self, url: Option<&str>) {
        self.world().echo_url = url.map(str::to_string);
    }

    /// The echoes delivered so far.
    pub fn echoes(&self) -> Vec<Delivered> {
        self.world().echoes.clone()
    }

    /// Waits (up to 5 s) until `n` echoes were delivered.
    pub async fn wait_echoes(&self, n: usize) -> Vec<Delivered> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let echoes = self.echoes();
            if echoes.len() >= n {
                return echoes;
            }
            assert!(Instant::now() < deadline, "{n} echoes expected, {} delivered", echoes.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // --- state --------------------------------------------------------------------------

    pub fn contacts(&self) -> Vec<FakeContact> {
        self.world().contacts.clone()
    }

    pub fn contact_inboxes(&self) -> Vec<FakeContactInbox> {
        self.world().contact_inboxes.clone()
    }

    pub fn conversations(&self) -> Vec<FakeConversation> {
        self.world().conversations.clone()
    }

    pub fn conversation(&self, id: i64) -> Option<FakeConversation> {
        self.world().conversations.iter().find(|c| c.id == id).cloned()
    }

    /// A conversation's messages, oldest first.
    pub fn messages(&self, conversation_id: i64) -> Vec<FakeMessage> {
        self.world().messages.iter().filter(|m| m.conversation_id == conversation_id).cloned().collect()
    }

    /// Adds a contact directly (as if created elsewhere).
    pub fn add_contact(&self, identifier: Option<&str>, name: Option<&str>) -> i64 {
        let mut w = self.world();
        let id = w.next_contact;
        w.next_contact += 1;
        w.contacts.push(FakeContact {
            id,
            name: name.map(str::to_string),
            email: None,
            identifier: identifier.map(str::to_string),
            additional_attributes: json!({}),
            custom_attributes: json!({}),
        });
        id
    }

    /// What webhooks about conversation `id` carry.
    pub fn webhook_conv(&self, id: i64) -> WebhookConv {
        let w = self.world();
        let c = w.conversations.iter().find(|c| c.id == id).expect("a conversation of the fake");
        let ci = w.contact_inboxes.iter().find(|ci| ci.id == c.contact_inbox_id).expect("its contact inbox");
        WebhookConv {
            conversation_id: c.id,
            account_id: w.account_id,
            inbox_id: c.inbox_id,
            contact_id: c.contact_id,
            contact_inbox_id: ci.id,
            source_id: ci.source_id.clone(),
            status: c.status.clone(),
        }
    }

    /// A human agent replies in conversation `id`: the message is stored, pushed to the
    /// contact's ActionCable subscribers as `message.created`, and the `message_created`
    /// webhook body for it returned (send it with [`send_webhook`]).
    pub fn agent_writes(&self, id: i64, text: &str) -> Value {
        let mut w = self.world();
        let message_id = w.store_message(id, Some(text.into()), 1, false, None, Author::User(AGENT_ID));
        let m = w.messages.iter().find(|m| m.id == message_id).cloned().expect("just stored");
        let data = w.message_cable(&m);
        w.cable_push(id, "message.created", data);
        drop(w);
        agent_reply(&self.webhook_conv(id), message_id, text)
    }

    /// An agent changes conversation `id`'s status: stored, pushed to ActionCable subscribers
    /// as `conversation.status_changed`, and the `conversation_status_changed` body returned.
    pub fn agent_sets_status(&self, id: i64, status: &str) -> Value {
        if let Some(c) = self.world().conversations.iter_mut().find(|c| c.id == id) {
            c.status = status.into();
            c.toggled_by = Some("user".into());
        }
        let conv = self.webhook_conv(id);
        let mut data = conversation_payload(&conv);
        data["account_id"] = json!(conv.account_id);
        self.world().cable_push(id, "conversation.status_changed", data);
        status_changed(&conv, status)
    }

    /// Drops every open ActionCable connection (clients must reconnect and resubscribe).
    pub fn cable_drop(&self) {
        let mut w = self.world();
        w.cable_drop.cancel();
        w.cable_drop = CancellationToken::new();
        w.cable_subs.clear();
    }

    /// The confirmed ActionCable subscriptions now.
    pub fn cable_subscriptions(&self) -> usize {
        self.world().cable_subs.len()
    }

    /// ActionCable connections opened so far.
    pub fn cable_connections(&self) -> u64 {
        self.world().cable_conns
    }

    /// The `client set` pairs that point a chat client at this fake (tokens, secret, ids).
    pub fn client_settings(&self) -> Vec<String> {
        vec![
            format!("operator_url={}", self.base()),
            format!("operator_token={ADMIN_TOKEN}"),
            format!("operator_bot_token={BOT_TOKEN}"),
            format!("operator_webhook_secret={INBOX_SECRET}"),
            format!("operator_account_id={ACCOUNT_ID}"),
            format!("operator_inbox_id={INBOX_ID}"),
        ]
    }

    /// Sends a webhook as Chatwoot does (see [`send_webhook`]).
    pub async fn send_webhook(&self, url: &str, body: &Value, secret: Option<&str>) -> Delivered {
        send_webhook(url, body, secret).await
    }
}

impl Drop for FakeChatwoot {
    fn drop(&mut self) {
        if let Some(server) = self.server.lock().unwrap().take() {
            server.cancel.cancel();
            server.task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------
// A listener that can drop its connections
// ---------------------------------------------------------------------------------------

struct KillableListener {
    inner: TcpListener,
    cancel: CancellationToken,
}

impl axum::serve::Listener for KillableListener {
    type Io = KillableIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (KillableIo, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((io, addr)) => {
                    let dead = Box::pin(self.cancel.clone().cancelled_owned());
                    return (KillableIo { io, dead }, addr);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that fails its reads and writes once the fake goes down (so hyper drops it,
/// idle keep-alive connections included).
struct KillableIo {
    io: TcpStream,
    dead: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl KillableIo {
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.dead.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::ErrorKind::ConnectionReset.into()),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for KillableIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------------------

fn json_response(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn error(status: u16, text: &str) -> Response {
    json_response(status, json!({ "error": text }))
}

fn not_found() -> Response {
    error(404, "Resource could not be found")
}

fn forced(f: &Failure) -> Response {
    let mut response = (StatusCode::from_u16(f.status.unwrap()).unwrap(), f.body.clone()).into_response();
    let h = response.headers_mut();
    h.insert("content-type", f.content_type.parse().unwrap());
    for (name, value) in &f.headers {
        h.insert(*name, value.parse().unwrap());
    }
    response
}

/// Who the token belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    Admin,
    Bot,
}

/// The routes, as (method, path segments after `/api/v1/`).
#[derive(Debug)]
enum Route {
    Profile,
    /// The Client API's find-or-create (no token).
    PublicContact(String),
    /// The Client API's contact typing: (inbox identifier, source id, conversation).
    PublicTyping(String, String, i64),
    Inbox(i64),
    CreateContact,
    FilterContacts,
    ContactInboxes(i64),
    ContactConversations(i64),
    CreateConversation,
    Conversation(i64),
    PostMessage(i64),
    ListMessages(i64),
    ToggleStatus(i64),
    ToggleTyping(i64),
}

impl Route {
    /// Whether an agent bot may call it (§2).
    fn bot_allowed(&self) -> bool {
        matches!(
            self,
            Route::CreateConversation
                | Route::Conversation(_)
                | Route::PostMessage(_)
                | Route::ToggleStatus(_)
                | Route::ToggleTyping(_)
        )
    }
}

/// (account id in the path, route).
fn route(method: &Method, path: &str) -> Option<(Option<i64>, Route)> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let id = |s: &str| s.parse::<i64>().ok();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["api", "v1", "profile"]) => Some((None, Route::Profile)),
        ("POST", ["public", "api", "v1", "inboxes", identifier, "contacts"]) => {
            Some((None, Route::PublicContact(identifier.to_string())))
        }
        (
            "POST",
            ["public", "api", "v1", "inboxes", identifier, "contacts", source, "conversations", c, "toggle_typing"],
        ) => Some((None, Route::PublicTyping(identifier.to_string(), source.to_string(), id(c)?))),
        (m, ["api", "v1", "accounts", account, rest @ ..]) => {
            let account = Some(id(account)?);
            let r = match (m, rest) {
                ("GET", ["inboxes", i]) => Route::Inbox(id(i)?),
                ("POST", ["contacts"]) => Route::CreateContact,
                ("POST", ["contacts", "filter"]) => Route::FilterContacts,
                ("POST", ["contacts", c, "contact_inboxes"]) => Route::ContactInboxes(id(c)?),
                ("GET", ["contacts", c, "conversations"]) => Route::ContactConversations(id(c)?),
                ("POST", ["conversations"]) => Route::CreateConversation,
                ("GET", ["conversations", c]) => Route::Conversation(id(c)?),
                ("POST", ["conversations", c, "messages"]) => Route::PostMessage(id(c)?),
                ("GET", ["conversations", c, "messages"]) => Route::ListMessages(id(c)?),
                ("POST", ["conversations", c, "toggle_status"]) => Route::ToggleStatus(id(c)?),
                ("POST", ["conversations", c, "toggle_typing_status"]) => Route::ToggleTyping(id(c)?),
                _ => return None,
            };
            Some((account, r))
        }
        _ => None,
    }
}

async fn handle(State(world): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let failure = {
        let mut w = world.lock().unwrap();
        w.seen.push(Seen {
            method: method.to_string(),
            path: path.clone(),
            headers: headers.clone(),
            body: json_body.clone(),
        });
        w.failures.pop_front()
    };
    if let Some(f) = &failure {
        tokio::time::sleep(f.delay).await;
        if f.status.is_some() {
            return forced(f);
        }
    }
    let (response, echoes) = {
        let mut w = world.lock().unwrap();
        if let Some(limited) = w.rate_limited() {
            return limited;
        }
        let mut echoes = Vec::new();
        let response = w.answer(&method, uri.path(), uri.query(), &headers, &json_body, &mut echoes);
        let url = w.echo_url.clone();
        let secret = w.inboxes.iter().find(|i| i.id == INBOX_ID).and_then(|i| i.secret.clone());
        (response, url.map(|u| (u, secret, echoes)))
    };
    if let Some((url, secret, bodies)) = echoes
        && !bodies.is_empty()
    {
        let world = world.clone();
        tokio::spawn(async move {
            for body in bodies {
                let delivered = send_webhook(&url, &body, secret.as_deref()).await;
                world.lock().unwrap().echoes.push(delivered);
            }
        });
    }
    response
}

fn token_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("api_access_token")
        .or_else(|| headers.get("api-access-token"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn object(v: &Value) -> Value {
    if v.is_object() { v.clone() } else { json!({}) }
}

impl World {
    fn rate_limited(&mut self) -> Option<Response> {
        let rate = self.rate.as_mut()?;
        if rate.started.elapsed() >= rate.window {
            rate.started = Instant::now();
            rate.count = 0;
        }
        rate.count += 1;
        if rate.count <= rate.max {
            return None;
        }
        let mut f = Failure::status(429);
        if let Some(secs) = rate.retry_after {
            f = f.header("retry-after", &secs.to_string());
        }
        Some(forced(&f))
    }

    fn answer(
        &mut self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &Value,
        echoes: &mut Vec<Value>,
    ) -> Response {
        let Some((account, route)) = route(method, path) else { return not_found() };
        // The Client API takes no token.
        match &route {
            Route::PublicContact(identifier) => return self.public_contact(identifier, body),
            Route::PublicTyping(identifier, source, c) => return self.public_typing(identifier, source, *c, body),
            _ => {}
        }
        let caller = match token_of(headers).as_deref() {
            None => {
                return json_response(401, json!({ "errors": ["You need to sign in or sign up before continuing."] }));
            }
            Some(ADMIN_TOKEN) => Caller::Admin,
            Some(BOT_TOKEN) if self.bot_enabled => Caller::Bot,
            Some(_) => return error(401, "Invalid Access Token"),
        };
        if caller == Caller::Bot && !route.bot_allowed() {
            return error(401, "Access to this endpoint is not authorized for bots");
        }
        if let Some(account) = account {
            match caller {
                Caller::Admin if !self.profile_accounts.contains(&account) => {
                    return error(401, "You are not authorized to access this account");
                }
                Caller::Bot if account != self.account_id => {
                    return error(401, "Bot is not authorized to access this account");
                }
                _ if account != self.account_id => return not_found(),
                _ => {}
            }
        }
        match route {
            Route::PublicContact(_) | Route::PublicTyping(..) => unreachable!("answered above"),
            Route::Profile => self.profile(),
            Route::Inbox(id) => match self.inboxes.iter().find(|i| i.id == id) {
                Some(inbox) => json_response(200, inbox_json(inbox, true)),
                None => not_found(),
            },
            Route::CreateContact => self.create_contact(body),
            Route::FilterContacts => self.filter_contacts(body),
            Route::ContactInboxes(id) => self.add_contact_inbox(id, body),
            Route::ContactConversations(id) => {
                if !self.contacts.iter().any(|c| c.id == id) {
                    return not_found();
                }
                let list: Vec<Value> = self
                    .conversations
                    .iter()
                    .filter(|c| c.contact_id == id)
                    .map(|c| self.conversation_json(c))
                    .collect();
                json_response(200, json!({ "payload": list }))
            }
            Route::CreateConversation => self.create_conversation(caller, body, echoes),
            Route::Conversation(id) => match self.conversations.iter().find(|c| c.id == id) {
                Some(c) => json_response(200, self.conversation_json(c)),
                None => not_found(),
            },
            Route::PostMessage(id) => self.post_message(caller, id, body, echoes),
            Route::ListMessages(id) => self.list_messages(id, query),
            Route::ToggleStatus(id) => self.toggle_status(caller, id, body),
            Route::ToggleTyping(id) => match self.conversations.iter_mut().find(|c| c.id == id) {
                Some(c) => {
                    match body["typing_status"].as_str() {
                        Some("on") => c.typing = Some(true),
                        Some("off") => c.typing = Some(false),
                        _ => {}
                    }
                    StatusCode::OK.into_response()
                }
                None => not_found(),
            },
        }
    }

    fn profile(&self) -> Response {
        let accounts: Vec<Value> = self
            .profile_accounts
            .iter()
            .map(|id| {
                json!({ "id": id, "name": format!("Account {id}"), "status": "active", "active_at": null,
                        "role": "administrator", "permissions": ["administrator"], "availability": "online",
                        "availability_status": "online", "auto_offline": true, "custom_role_id": null, "custom_role": null })
            })
            .collect();
        json_response(
            200,
            json!({
                "id": ADMIN_ID, "access_token": ADMIN_TOKEN, "account_id": self.profile_accounts.first(),
                "available_name": "Integration", "avatar_url": "", "confirmed": true, "display_name": null,
                "message_signature": null, "email": "integration@support.example", "hmac_identifier": "",
                "inviter_id": null, "name": "Integration", "provider": "email", "pubsub_token": "Pz7tWq2Lr9sVx4Kc",
                "role": "administrator", "ui_settings": {}, "uid": "integration@support.example", "type": "SuperAdmin",
                "custom_attributes": {}, "accounts": accounts
            }),
        )
    }

    fn create_contact(&mut self, body: &Value) -> Response {
        let identifier = text(&body["identifier"]).filter(|s| !s.is_empty());
        let email = text(&body["email"]).filter(|s| !s.is_empty());
        if identifier.is_some() && self.contacts.iter().any(|c| c.identifier == identifier) {
            return json_response(
                422,
                json!({ "message": "Identifier has already been taken", "attributes": ["identifier"] }),
            );
        }
        if email.is_some() && self.contacts.iter().any(|c| c.email == email) {
            return json_response(422, json!({ "message": "Email has already been taken", "attributes": ["email"] }));
        }
        let inbox_id = int(&body["inbox_id"]);
        if let Some(inbox) = inbox_id
            && !self.inboxes.iter().any(|i| i.id == inbox)
        {
            return not_found();
        }
        let source_id = text(&body["source_id"]).unwrap_or_else(uuid);
        if let Some(inbox) = inbox_id
            && self.contact_inboxes.iter().any(|ci| ci.inbox_id == inbox && ci.source_id == source_id)
        {
            return json_response(
                422,
                json!({ "message": "Source has already been taken", "attributes": ["source_id"] }),
            );
        }
        let id = self.next_contact;
        self.next_contact += 1;
        self.contacts.push(FakeContact {
            id,
            name: text(&body["name"]),
            email,
            identifier,
            additional_attributes: object(&body["additional_attributes"]),
            custom_attributes: object(&body["custom_attributes"]),
        });
        let contact_inbox = match inbox_id {
            Some(inbox_id) => {
                let ci = self.new_contact_inbox(id, inbox_id, source_id);
                json!({ "source_id": ci.source_id, "inbox": inbox_json(self.inbox(inbox_id), true) })
            }
            None => json!({ "inbox": null, "source_id": null }),
        };
        let contact = self.contact_json(id);
        json_response(200, json!({ "payload": { "contact": contact, "contact_inbox": contact_inbox } }))
    }

    fn filter_contacts(&self, body: &Value) -> Response {
        let Some(filters) = body["payload"].as_array().filter(|f| !f.is_empty()) else {
            return error(422, "Invalid payload");
        };
        let mut result: Option<Vec<i64>> = None;
        let mut join = "AND".to_string();
        for f in filters {
            let key = f["attribute_key"].as_str().unwrap_or_default();
            let op = f["filter_operator"].as_str().unwrap_or_default();
            let values: Vec<String> =
                f["values"].as_array().map(|v| v.iter().filter_map(text).collect()).unwrap_or_default();
            if !["identifier", "email", "name"].contains(&key) {
                return error(422, &format!("Invalid attribute key - [{key}]"));
            }
            if !["equal_to", "not_equal_to", "contains", "does_not_contain"].contains(&op) {
                return error(
                    422,
                    &format!(
                        "Invalid operator. The allowed operators for {key} are [equal_to,not_equal_to,contains,does_not_contain]."
                    ),
                );
            }
            let hits: Vec<i64> = self
                .contacts
                .iter()
                .filter(|c| {
                    let field = match key {
                        "identifier" => c.identifier.clone(),
                        "email" => c.email.clone(),
                        _ => c.name.clone(),
                    }
                    .unwrap_or_default();
                    let eq = values.iter().any(|v| v.eq_ignore_ascii_case(&field));
                    let has = values.iter().any(|v| field.to_lowercase().contains(&v.to_lowercase()));
                    match op {
                        "equal_to" => eq,
                        "not_equal_to" => !eq,
                        "contains" => has,
                        _ => !has,
                    }
                })
                .map(|c| c.id)
                .collect();
            result = Some(match result {
                None => hits,
                Some(prev) if join.eq_ignore_ascii_case("OR") => prev.into_iter().chain(hits).collect(),
                Some(prev) => prev.into_iter().filter(|p| hits.contains(p)).collect(),
            });
            join = f["query_operator"].as_str().unwrap_or("AND").to_string();
        }
        let mut ids = result.unwrap_or_default();
        ids.sort_unstable();
        ids.dedup();
        let payload: Vec<Value> = ids.iter().map(|id| self.contact_json(*id)).collect();
        json_response(200, json!({ "meta": { "count": payload.len(), "current_page": 1 }, "payload": payload }))
    }

    fn add_contact_inbox(&mut self, contact_id: i64, body: &Value) -> Response {
        if !self.contacts.iter().any(|c| c.id == contact_id) {
            return not_found();
        }
        let Some(inbox_id) = int(&body["inbox_id"]).filter(|id| self.inboxes.iter().any(|i| i.id == *id)) else {
            return not_found();
        };
        let source_id = text(&body["source_id"]).unwrap_or_else(uuid);
        if self.contact_inboxes.iter().any(|ci| ci.inbox_id == inbox_id && ci.source_id == source_id) {
            return json_response(
                422,
                json!({ "message": "Source has already been taken", "attributes": ["source_id"] }),
            );
        }
        let ci = self.new_contact_inbox(contact_id, inbox_id, source_id);
        json_response(200, json!({ "source_id": ci.source_id, "inbox": inbox_json(self.inbox(inbox_id), false) }))
    }

    fn create_conversation(&mut self, caller: Caller, body: &Value, echoes: &mut Vec<Value>) -> Response {
        let Some(inbox_id) = int(&body["inbox_id"]).filter(|id| self.inboxes.iter().any(|i| i.id == *id)) else {
            return not_found();
        };
        let contact_id = int(&body["contact_id"]);
        if let Some(c) = contact_id
            && !self.contacts.iter().any(|x| x.id == c)
        {
            return not_found();
        }
        let source_id = text(&body["source_id"]);
        let existing = source_id
            .as_ref()
            .and_then(|s| self.contact_inboxes.iter().find(|ci| ci.inbox_id == inbox_id && &ci.source_id == s))
            .cloned();
        let contact_inbox = match (existing, contact_id, source_id) {
            (Some(ci), Some(c), _) if ci.contact_id != c => {
                return error(422, "Contact inbox does not belong to the contact");
            }
            (Some(ci), _, _) => ci,
            (None, Some(c), source) => self.new_contact_inbox(c, inbox_id, source.unwrap_or_else(uuid)),
            (None, None, _) => return error(422, "Contact inbox not found"),
        };
        let inbox = self.inbox(inbox_id).clone();
        let status = if inbox.bot_connected {
            "pending".to_string()
        } else {
            text(&body["status"]).filter(|s| STATUSES.contains(&s.as_str())).unwrap_or_else(|| "open".into())
        };
        let id = self.next_conversation;
        self.next_conversation += 1;
        self.conversations.push(FakeConversation {
            id,
            inbox_id,
            contact_id: contact_inbox.contact_id,
            contact_inbox_id: contact_inbox.id,
            status,
            additional_attributes: object(&body["additional_attributes"]),
            custom_attributes: object(&body["custom_attributes"]),
            typing: None,
            contact_typing: None,
            toggled_by: None,
            created_at: now(),
        });
        if let Some(content) = text(&body["message"]["content"]) {
            let incoming = body["message"]["message_type"].as_str() == Some("incoming");
            let author = match (incoming, caller) {
                (true, _) => Author::Contact,
                (false, Caller::Bot) => Author::Bot,
                (false, Caller::Admin) => Author::User(ADMIN_ID),
            };
            let message_id = self.store_message(id, Some(content), if incoming { 0 } else { 1 }, false, None, author);
            echoes.push(self.message_webhook(message_id));
        }
        let c = self.conversations.iter().find(|c| c.id == id).unwrap();
        json_response(200, self.conversation_json(c))
    }

    fn post_message(&mut self, caller: Caller, id: i64, body: &Value, echoes: &mut Vec<Value>) -> Response {
        let Some(conversation) = self.conversations.iter().find(|c| c.id == id).cloned() else { return not_found() };
        let message_type = match &body["message_type"] {
            Value::Null => 1,
            v => match v.as_str() {
                Some("incoming") => 0,
                Some("outgoing") => 1,
                Some("template") => 3,
                _ => return error(422, "Message type is not included in the list"),
            },
        };
        let private = body["private"].as_bool().unwrap_or(false);
        let source_id = text(&body["source_id"]);
        let content = text(&body["content"]);
        if content.as_deref().is_none_or(str::is_empty) {
            return error(422, "Content can't be blank");
        }
        if message_type == 0 && self.inbox(conversation.inbox_id).channel_type != "Channel::Api" {
            return error(422, "Incoming messages are only allowed in Api inboxes");
        }
        if let Some(s) = &source_id
            && self.messages.iter().any(|m| m.conversation_id == id && m.source_id.as_ref() == Some(s))
        {
            return error(422, "source_id should be unique");
        }
        let author = match (message_type, caller) {
            (0, _) => Author::Contact,
            (_, Caller::Bot) => Author::Bot,
            (_, Caller::Admin) => Author::User(ADMIN_ID),
        };
        let message_id = self.store_message(id, content, message_type, private, source_id, author);
        // A customer's message reopens a resolved conversation (pending again with the bot).
        if message_type == 0 && !private {
            let bot = self.inbox(conversation.inbox_id).bot_connected;
            if let Some(c) = self.conversations.iter_mut().find(|c| c.id == id)
                && c.status == "resolved"
            {
                c.status = if bot { "pending".into() } else { "open".into() };
            }
        }
        echoes.push(self.message_webhook(message_id));
        let m = self.messages.iter().find(|m| m.id == message_id).unwrap().clone();
        json_response(200, self.message_rest(&m))
    }

    fn list_messages(&self, id: i64, query: Option<&str>) -> Response {
        let Some(c) = self.conversations.iter().find(|c| c.id == id) else { return not_found() };
        let after = query
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("after="))
            .and_then(|v| v.parse::<i64>().ok());
        let all: Vec<&FakeMessage> = self.messages.iter().filter(|m| m.conversation_id == id).collect();
        let picked: Vec<&FakeMessage> = match after {
            Some(after) => all.into_iter().filter(|m| m.id > after).take(100).collect(),
            None => {
                let skip = all.len().saturating_sub(20);
                all.into_iter().skip(skip).collect()
            }
        };
        let payload: Vec<Value> = picked.into_iter().map(|m| self.message_rest(m)).collect();
        json_response(
            200,
            json!({
                "meta": { "labels": [], "additional_attributes": c.additional_attributes,
                          "contact": self.contact_json(c.contact_id), "assignee": null,
                          "agent_last_seen_at": null, "assignee_last_seen_at": null },
                "payload": payload
            }),
        )
    }

    fn toggle_status(&mut self, caller: Caller, id: i64, body: &Value) -> Response {
        let Some(c) = self.conversations.iter_mut().find(|c| c.id == id) else { return not_found() };
        let status = match text(&body["status"]) {
            Some(s) if STATUSES.contains(&s.as_str()) => s,
            Some(s) => return error(422, &format!("'{s}' is not a valid status")),
            None if c.status == "open" => "resolved".into(),
            None => "open".into(),
        };
        c.status = status.clone();
        c.toggled_by = Some(if caller == Caller::Bot { "agent_bot" } else { "user" }.into());
        json_response(
            200,
            json!({ "meta": {}, "payload": { "success": null, "conversation_id": id, "current_status": status, "snoozed_until": null } }),
        )
    }

    /// `POST P/contacts` (§4.2): find-or-create the contact session by `source_id`.
    fn public_contact(&mut self, identifier: &str, body: &Value) -> Response {
        let Some(inbox) = self.inboxes.iter().find(|i| i.inbox_identifier == identifier).map(|i| i.id) else {
            return not_found();
        };
        let source_id = text(&body["source_id"]).unwrap_or_else(uuid);
        let existing =
            self.contact_inboxes.iter().find(|ci| ci.inbox_id == inbox && ci.source_id == source_id).cloned();
        let ci = match existing {
            Some(ci) => ci,
            None => {
                let contact = self.next_contact;
                self.next_contact += 1;
                self.contacts.push(FakeContact {
                    id: contact,
                    name: text(&body["name"]),
                    email: None,
                    identifier: None,
                    additional_attributes: json!({}),
                    custom_attributes: object(&body["custom_attributes"]),
                });
                self.new_contact_inbox(contact, inbox, source_id)
            }
        };
        let contact = self.contacts.iter().find(|c| c.id == ci.contact_id).cloned().expect("its contact");
        json_response(
            200,
            json!({ "source_id": ci.source_id, "pubsub_token": pubsub_token(ci.id), "id": contact.id,
                    "name": contact.name, "email": contact.email, "phone_number": null }),
        )
    }

    /// `POST P/contacts/{source_id}/conversations/{id}/toggle_typing` (row 25).
    fn public_typing(&mut self, identifier: &str, source: &str, id: i64, body: &Value) -> Response {
        let Some(inbox) = self.inboxes.iter().find(|i| i.inbox_identifier == identifier).map(|i| i.id) else {
            return not_found();
        };
        let Some(ci) = self.contact_inboxes.iter().find(|ci| ci.inbox_id == inbox && ci.source_id == source).cloned()
        else {
            return not_found();
        };
        let Some(c) = self.conversations.iter_mut().find(|c| c.id == id && c.contact_inbox_id == ci.id) else {
            return not_found();
        };
        match body["typing_status"].as_str() {
            Some("on") => c.contact_typing = Some(true),
            Some("off") => c.contact_typing = Some(false),
            _ => return error(422, "typing_status must be on or off"),
        }
        StatusCode::OK.into_response()
    }

    /// A message in ActionCable's push form (§6), with the nested conversation and sender.
    fn message_cable(&self, m: &FakeMessage) -> Value {
        let c = self.conversations.iter().find(|c| c.id == m.conversation_id).unwrap();
        let ci = self.contact_inboxes.iter().find(|ci| ci.id == c.contact_inbox_id).unwrap();
        let mut data = self.message_push(m);
        data["conversation"] = json!({ "assignee_id": AGENT_ID, "unread_count": 0, "last_activity_at": m.created_at,
                                       "contact_inbox": { "source_id": ci.source_id } });
        data["sender"] = self.sender(m.author, c.contact_id);
        data
    }

    /// Sends an event to the subscribers of conversation `id`'s contact session.
    fn cable_push(&mut self, id: i64, event: &str, data: Value) {
        let Some(c) = self.conversations.iter().find(|c| c.id == id) else { return };
        let token = pubsub_token(c.contact_inbox_id);
        for sub in self.cable_subs.iter().filter(|s| s.pubsub_token == token) {
            let frame = json!({ "identifier": sub.identifier, "message": { "event": event, "data": data } });
            let _ = sub.tx.send(frame.to_string());
        }
    }

    // --- helpers ----------------------------------------------------------------------

    fn inbox(&self, id: i64) -> &FakeInbox {
        self.inboxes.iter().find(|i| i.id == id).expect("a known inbox")
    }

    fn new_contact_inbox(&mut self, contact_id: i64, inbox_id: i64, source_id: String) -> FakeContactInbox {
        let ci = FakeContactInbox { id: self.next_contact_inbox, contact_id, inbox_id, source_id };
        self.next_contact_inbox += 1;
        self.contact_inboxes.push(ci.clone());
        ci
    }

    fn store_message(
        &mut self,
        conversation_id: i64,
        content: Option<String>,
        message_type: i64,
        private: bool,
        source_id: Option<String>,
        author: Author,
    ) -> i64 {
        let id = self.next_message;
        self.next_message += 1;
        self.messages.push(FakeMessage {
            id,
            conversation_id,
            content,
            message_type,
            content_type: "text".into(),
            private,
            source_id,
            author,
            created_at: now(),
        });
        id
    }

    fn contact_json(&self, id: i64) -> Value {
        let c = self.contacts.iter().find(|c| c.id == id).expect("a known contact");
        let inboxes: Vec<Value> = self
            .contact_inboxes
            .iter()
            .filter(|ci| ci.contact_id == id)
            .map(|ci| json!({ "source_id": ci.source_id, "inbox": inbox_json(self.inbox(ci.inbox_id), false) }))
            .collect();
        json!({
            "id": c.id, "name": c.name.clone().unwrap_or_default(), "email": c.email, "phone_number": null,
            "identifier": c.identifier, "blocked": false, "thumbnail": "", "availability_status": "offline",
            "additional_attributes": c.additional_attributes, "custom_attributes": c.custom_attributes,
            "last_activity_at": null, "created_at": 1781690000, "contact_inboxes": inboxes
        })
    }

    /// A contact as a message's sender (webhook form: no `type`).
    fn contact_sender(&self, id: i64) -> Value {
        let c = self.contacts.iter().find(|c| c.id == id).expect("a known contact");
        json!({
            "id": c.id, "name": c.name.clone().unwrap_or_default(), "email": c.email, "phone_number": null,
            "identifier": c.identifier, "thumbnail": "", "additional_attributes": c.additional_attributes,
            "custom_attributes": c.custom_attributes, "account": { "id": self.account_id, "name": ACCOUNT_NAME }
        })
    }

    fn sender(&self, author: Author, contact_id: i64) -> Value {
        match author {
            Author::Contact => self.contact_sender(contact_id),
            Author::User(id) => user_sender(id),
            Author::Bot => bot_sender(),
        }
    }

    fn message_push(&self, m: &FakeMessage) -> Value {
        let c = self.conversations.iter().find(|c| c.id == m.conversation_id).unwrap();
        let (sender_type, sender_id) = match m.author {
            Author::Contact => ("Contact", c.contact_id),
            Author::User(id) => ("User", id),
            Author::Bot => ("AgentBot", BOT_ID),
        };
        json!({
            "id": m.id, "content": m.content, "account_id": self.account_id, "inbox_id": c.inbox_id,
            "conversation_id": c.id, "message_type": m.message_type, "content_type": m.content_type,
            "status": "sent", "private": m.private, "source_id": m.source_id, "sender_type": sender_type,
            "sender_id": sender_id, "content_attributes": {}, "additional_attributes": {},
            "external_source_ids": {}, "processed_message_content": m.content, "sentiment": {},
            "created_at": m.created_at, "updated_at": iso(m.created_at)
        })
    }

    fn message_rest(&self, m: &FakeMessage) -> Value {
        let c = self.conversations.iter().find(|c| c.id == m.conversation_id).unwrap();
        let mut sender = self.sender(m.author, c.contact_id);
        if m.author == Author::Contact {
            sender["type"] = json!("contact");
        }
        json!({
            "id": m.id, "content": m.content, "inbox_id": c.inbox_id, "conversation_id": c.id,
            "message_type": m.message_type, "content_type": m.content_type, "status": "sent",
            "content_attributes": {}, "created_at": m.created_at, "private": m.private,
            "source_id": m.source_id, "sender": sender
        })
    }

    /// A conversation in the REST form (§4.3).
    fn conversation_json(&self, c: &FakeConversation) -> Value {
        let last: Vec<Value> = self
            .messages
            .iter()
            .rfind(|m| m.conversation_id == c.id && !m.private && m.message_type != 2)
            .map(|m| self.message_push(m))
            .into_iter()
            .collect();
        json!({
            "id": c.id, "uuid": format!("6b0c{:028x}", c.id), "account_id": self.account_id, "inbox_id": c.inbox_id,
            "status": c.status, "priority": null, "labels": [], "can_reply": true, "muted": false,
            "unread_count": 0, "snoozed_until": null, "additional_attributes": c.additional_attributes,
            "custom_attributes": c.custom_attributes, "created_at": c.created_at, "timestamp": c.created_at,
            "last_activity_at": c.created_at, "agent_last_seen_at": 0, "contact_last_seen_at": 0,
            "assignee_last_seen_at": 0, "first_reply_created_at": 0, "waiting_since": c.created_at,
            "updated_at": c.created_at as f64 + 0.532,
            "meta": { "sender": self.contact_sender(c.contact_id), "channel": self.inbox(c.inbox_id).channel_type,
                      "assignee": null, "hmac_verified": false },
            "messages": last
        })
    }

    /// The `message_created` webhook for a stored message (§5.4).
    fn message_webhook(&self, message_id: i64) -> Value {
        let m = self.messages.iter().find(|m| m.id == message_id).unwrap();
        let c = self.conversations.iter().find(|c| c.id == m.conversation_id).unwrap();
        let ci = self.contact_inboxes.iter().find(|ci| ci.id == c.contact_inbox_id).unwrap();
        let conv = WebhookConv {
            conversation_id: c.id,
            account_id: self.account_id,
            inbox_id: c.inbox_id,
            contact_id: c.contact_id,
            contact_inbox_id: ci.id,
            source_id: ci.source_id.clone(),
            status: c.status.clone(),
        };
        let message_type = ["incoming", "outgoing", "activity", "template"][m.message_type as usize];
        let mut body = message_event(
            &conv,
            m.id,
            m.content.as_deref(),
            message_type,
            m.private,
            m.source_id.as_deref(),
            self.sender(m.author, c.contact_id),
        );
        body["conversation"]["messages"] = json!([self.message_push(m)]);
        body
    }
}

const STATUSES: [&str; 4] = ["open", "resolved", "pending", "snoozed"];

fn inbox_json(inbox: &FakeInbox, full: bool) -> Value {
    let mut v = json!({
        "id": inbox.id, "avatar_url": "", "channel_id": inbox.id + 100, "name": inbox.name,
        "channel_type": inbox.channel_type, "provider": null
    });
    if full {
        let extra = json!({
            "greeting_enabled": false, "greeting_message": null, "working_hours_enabled": false,
            "enable_email_collect": true, "csat_survey_enabled": false, "enable_auto_assignment": true,
            "auto_assignment_config": {}, "out_of_office_message": null, "working_hours": [],
            "timezone": "UTC", "callback_webhook_url": null, "allow_messages_after_resolved": true,
            "lock_to_single_conversation": false, "sender_name_type": "friendly", "business_name": null,
            "webhook_url": inbox.webhook_url, "inbox_identifier": inbox.inbox_identifier,
            "hmac_mandatory": false, "hmac_token": "hM4cT0k3nXy9"
        });
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        if inbox.channel_type != "Channel::Api" {
            v["inbox_identifier"] = Value::Null;
        } else if let Some(secret) = &inbox.secret {
            v["secret"] = json!(secret);
        }
    }
    v
}

fn user_sender(id: i64) -> Value {
    if id == AGENT_ID {
        json!({ "id": AGENT_ID, "name": "Sam Agent", "email": "sam@support.example", "type": "user" })
    } else {
        json!({ "id": id, "name": "Integration", "email": "integration@support.example", "type": "user" })
    }
}

fn bot_sender() -> Value {
    json!({ "id": BOT_ID, "name": "AI assistant", "avatar_url": "", "type": "agent_bot" })
}

// ---------------------------------------------------------------------------------------
// Webhooks: bodies
// ---------------------------------------------------------------------------------------

/// What a webhook says about its conversation.
#[derive(Clone, Debug)]
pub struct WebhookConv {
    pub conversation_id: i64,
    pub account_id: i64,
    pub inbox_id: i64,
    pub contact_id: i64,
    pub contact_inbox_id: i64,
    pub source_id: String,
    pub status: String,
}

impl WebhookConv {
    /// The contract's example conversation (311 in inbox 7 of account 2, session
    /// `asst-session-5f1c`), with `status`.
    pub fn example(status: &str) -> WebhookConv {
        WebhookConv {
            conversation_id: 311,
            account_id: ACCOUNT_ID,
            inbox_id: INBOX_ID,
            contact_id: 1204,
            contact_inbox_id: 880,
            source_id: "asst-session-5f1c".into(),
            status: status.into(),
        }
    }
}

/// The conversation push form plus `account` (§5.5, nested in message events).
pub fn conversation_payload(c: &WebhookConv) -> Value {
    json!({
        "id": c.conversation_id, "inbox_id": c.inbox_id, "status": c.status, "channel": "Channel::Api",
        "can_reply": true, "labels": [], "priority": null, "unread_count": 0, "snoozed_until": null,
        "additional_attributes": {}, "custom_attributes": {},
        "first_reply_created_at": null, "waiting_since": 0,
        "agent_last_seen_at": 0, "contact_last_seen_at": 0, "last_activity_at": now(),
        "timestamp": now(), "created_at": 1781690012, "updated_at": now() as f64 + 0.44,
        "account": { "id": c.account_id, "name": ACCOUNT_NAME },
        "contact_inbox": { "id": c.contact_inbox_id, "contact_id": c.contact_id, "inbox_id": c.inbox_id,
                           "source_id": c.source_id, "hmac_verified": false, "pubsub_token": "Xq3vB8nK2mP5wR7tY4zL6cJd",
                           "created_at": "2026-06-17T09:00:10.101Z", "updated_at": "2026-06-17T09:00:10.101Z" },
        "meta": { "sender": { "id": c.contact_id, "name": "Dana Example", "type": "contact" },
                  "assignee": null, "assignee_type": null, "team": null, "hmac_verified": false },
        "messages": []
    })
}

fn message_event(
    c: &WebhookConv,
    message_id: i64,
    content: Option<&str>,
    message_type: &str,
    private: bool,
    source_id: Option<&str>,
    sender: Value,
) -> Value {
    let mut conversation = conversation_payload(c);
    let int_type = match message_type {
        "incoming" => 0,
        "outgoing" => 1,
        "activity" => 2,
        _ => 3,
    };
    if !private {
        conversation["messages"] = json!([{ "id": message_id, "content": content, "message_type": int_type, "created_at": now(), "private": false }]);
    }
    json!({
        "event": "message_created",
        "id": message_id,
        "content": content,
        "content_type": "text",
        "content_attributes": {},
        "additional_attributes": {},
        "message_type": message_type,
        "private": private,
        "source_id": source_id,
        "created_at": iso(now()),
        "sender": sender,
        "inbox": { "id": c.inbox_id, "name": "AI assistant" },
        "account": { "id": c.account_id, "name": ACCOUNT_NAME },
        "conversation": conversation
    })
}

/// A human agent's reply (§5.4): `message_created`, outgoing, from user [`AGENT_ID`].
pub fn agent_reply(c: &WebhookConv, message_id: i64, text: &str) -> Value {
    let mut body = message_event(c, message_id, Some(text), "outgoing", false, None, user_sender(AGENT_ID));
    body["conversation"]["meta"]["assignee"] = json!({
        "id": AGENT_ID, "name": "Sam Agent", "available_name": "Sam", "type": "user",
        "availability_status": "online", "avatar_url": "", "thumbnail": ""
    });
    body["conversation"]["meta"]["assignee_type"] = json!("User");
    body
}

/// An agent's private note (never for the visitor).
pub fn private_note(c: &WebhookConv, message_id: i64, text: &str) -> Value {
    message_event(c, message_id, Some(text), "outgoing", true, None, user_sender(AGENT_ID))
}

/// A template message (greeting, out-of-office): no sender.
pub fn template_message(c: &WebhookConv, message_id: i64, text: &str) -> Value {
    message_event(c, message_id, Some(text), "template", false, None, Value::Null)
}

/// The echo of the customer's message we posted (`incoming`, contact sender without `type`).
pub fn incoming_echo(c: &WebhookConv, message_id: i64, text: &str, source_id: Option<&str>) -> Value {
    let sender = json!({ "id": c.contact_id, "name": "Dana Example", "email": null, "phone_number": null,
                         "identifier": null, "thumbnail": "", "additional_attributes": {}, "custom_attributes": {} });
    message_event(c, message_id, Some(text), "incoming", false, source_id, sender)
}

/// The echo of the AI's own post (outgoing from the agent bot).
pub fn bot_echo(c: &WebhookConv, message_id: i64, text: &str, source_id: Option<&str>) -> Value {
    message_event(c, message_id, Some(text), "outgoing", false, source_id, bot_sender())
}

/// `conversation_typing_on` / `_off` (§5.6) by user [`AGENT_ID`].
pub fn typing(c: &WebhookConv, on: bool, is_private: bool) -> Value {
    json!({
        "event": if on { "conversation_typing_on" } else { "conversation_typing_off" },
        "is_private": is_private,
        "user": { "id": AGENT_ID, "name": "Sam Agent", "email": "sam@support.example", "type": "user" },
        "conversation": conversation_payload(c)
    })
}

/// `conversation_status_changed` (§5.5) to `status`; `changed_attributes` is null.
pub fn status_changed(c: &WebhookConv, status: &str) -> Value {
    let c = WebhookConv { status: status.into(), ..c.clone() };
    let mut body = conversation_payload(&c);
    let fields = body.as_object_mut().unwrap();
    let mut out = serde_json::Map::new();
    out.insert("event".into(), json!("conversation_status_changed"));
    out.insert("changed_attributes".into(), Value::Null);
    out.append(fields);
    Value::Object(out)
}

/// The same body with the top-level `message_type` as an integer (0/1/2/3).
pub fn integer_message_type(mut body: Value) -> Value {
    let int = match body["message_type"].as_str() {
        Some("incoming") => 0,
        Some("outgoing") => 1,
        Some("activity") => 2,
        Some("template") => 3,
        _ => return body,
    };
    body["message_type"] = json!(int);
    body
}

// ---------------------------------------------------------------------------------------
// Webhooks: delivery
// ---------------------------------------------------------------------------------------

/// How a webhook is delivered.
#[derive(Clone, Debug, Default)]
pub struct Delivery {
    /// Signs with this secret; `None` sends no timestamp or signature (pre-4.13 servers).
    pub secret: Option<String>,
    /// `X-Chatwoot-Delivery`; `None` makes a new UUID (reuse one to duplicate).
    pub delivery_id: Option<String>,
    /// Seconds subtracted from the timestamp (600 makes it stale).
    pub age_secs: i64,
}

impl Delivery {
    /// Signed with `secret`, now, with a new delivery id.
    pub fn signed(secret: &str) -> Delivery {
        Delivery { secret: Some(secret.into()), ..Default::default() }
    }

    /// No timestamp, no signature.
    pub fn unsigned() -> Delivery {
        Delivery::default()
    }

    /// Signed with a secret that is not the inbox's.
    pub fn forged() -> Delivery {
        Delivery::signed("not-the-inbox-secret")
    }

    /// Timestamped 10 minutes ago (and signed for that timestamp).
    pub fn stale(mut self) -> Delivery {
        self.age_secs = 600;
        self
    }

    /// With this delivery id (a duplicate of an earlier delivery).
    pub fn with_id(mut self, id: &str) -> Delivery {
        self.delivery_id = Some(id.into());
        self
    }
}

/// What our webhook answered.
#[derive(Clone, Debug)]
pub struct Delivered {
    /// The event name of the body.
    pub event: String,
    pub delivery_id: String,
    /// `None`: no answer within Chatwoot's 5 s, or no connection.
    pub status: Option<u16>,
    pub body: String,
    pub elapsed: Duration,
}

/// Posts `body` to `url` as Chatwoot does: signed with `secret` when given, with a new
/// delivery id, now.
pub async fn send_webhook(url: &str, body: &Value, secret: Option<&str>) -> Delivered {
    let delivery = match secret {
        Some(s) => Delivery::signed(s),
        None => Delivery::unsigned(),
    };
    deliver(url, &serde_json::to_vec(body).unwrap(), &delivery).await
}

/// Posts these exact body bytes to `url` with Chatwoot's headers (§5.1–5.2).
pub async fn deliver(url: &str, body: &[u8], d: &Delivery) -> Delivered {
    let delivery_id = d.delivery_id.clone().unwrap_or_else(uuid);
    let mut request = crate::support::http()
        .post(url)
        .timeout(Duration::from_secs(5))
        .header("content-type", "application/json")
        .header("user-agent", "Chatwoot")
        .header("x-chatwoot-delivery", &delivery_id)
        .body(body.to_vec());
    if let Some(secret) = &d.secret {
        let ts = (now() - d.age_secs).to_string();
        let signature = aia_chat::operator::signature::sign(secret, &ts, body);
        request = request.header("x-chatwoot-timestamp", ts).header("x-chatwoot-signature", signature);
    }
    let event = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["event"].as_str().map(str::to_string))
        .unwrap_or_default();
    let started = Instant::now();
    let (status, text) = match request.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (Some(status), r.text().await.unwrap_or_default())
        }
        Err(e) => (None, e.to_string()),
    };
    Delivered { event, delivery_id, status, body: text, elapsed: started.elapsed() }
}

// ---------------------------------------------------------------------------------------
// Small things
// ---------------------------------------------------------------------------------------

/// Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A random UUID (v4 layout).
pub fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-4{}-{}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        ["8", "9", "a", "b"][(b[8] & 3) as usize],
        &h[17..20],
        &h[20..32]
    )
}

/// Unix seconds as `2026-06-17T09:12:03.000Z`.
pub fn iso(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

// ---------------------------------------------------------------------------------------
// A webhook receiver (stands in for our server where only the delivery matters)
// ---------------------------------------------------------------------------------------

/// One webhook as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A loopback endpoint that records every POST and answers 200.
pub struct WebhookSink {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl WebhookSink {
    pub async fn start() -> WebhookSink {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let store = received.clone();
        let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(Received { headers, body });
                StatusCode::OK
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/webhook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        WebhookSink { url, received }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------
// ActionCable (§6)
// ---------------------------------------------------------------------------------------

/// The `pubsub_token` of a contact session (24 characters, stable per contact inbox).
pub fn pubsub_token(contact_inbox_id: i64) -> String {
    format!("Xq3{contact_inbox_id:0>21}")
}

async fn cable(State(world): State<Shared>, upgrade: axum::extract::ws::WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| cable_connection(world, socket))
}

/// One ActionCable connection: `welcome`, a ping every 3 s, `RoomChannel` subscriptions by a
/// contact's `pubsub_token` (an unknown token gets no answer at all), and pushed events.
async fn cable_connection(world: Shared, mut socket: axum::extract::ws::WebSocket) {
    use axum::extract::ws::Message;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (conn, dropped) = {
        let mut w = world.lock().unwrap();
        w.cable_conns += 1;
        (w.cable_conns, w.cable_drop.clone())
    };
    let mut ping = tokio::time::interval(Duration::from_secs(3));
    if socket.send(Message::text(json!({ "type": "welcome" }).to_string())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            _ = dropped.cancelled() => break,
            _ = ping.tick() => {
                if socket.send(Message::text(json!({ "type": "ping", "message": now() }).to_string())).await.is_err() {
                    break;
                }
            }
            Some(out) = rx.recv() => {
                if socket.send(Message::text(out)).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let command: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let identifier = command["identifier"].as_str().unwrap_or_default().to_string();
                    let parsed: Value = serde_json::from_str(&identifier).unwrap_or(Value::Null);
                    let token = parsed["pubsub_token"].as_str().unwrap_or_default().to_string();
                    let mut w = world.lock().unwrap();
                    match command["command"].as_str() {
                        Some("subscribe")
                            if parsed["channel"] == "RoomChannel"
                                && w.contact_inboxes.iter().any(|ci| pubsub_token(ci.id) == token) =>
                        {
                            let sub = CableSub { conn, identifier: identifier.clone(), pubsub_token: token, tx: tx.clone() };
                            w.cable_subs.push(sub);
                            let _ = tx.send(json!({ "identifier": identifier, "type": "confirm_subscription" }).to_string());
                        }
                        Some("unsubscribe") => w.cable_subs.retain(|s| !(s.conn == conn && s.identifier == identifier)),
                        Some("message") => w.cable_presence += 1,
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    world.lock().unwrap().cable_subs.retain(|s| s.conn != conn);
}
