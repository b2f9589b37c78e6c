//! A fake Trello on loopback that follows `shared/contracts/trello.md`: the board's lists and
//! labels, a list's cards and card creation under the `/1` prefix, with the contract's
//! response shapes, its plain-text (and the few JSON) error bodies byte for byte (§5), its
//! rate limits and `x-rate-limit-*` headers (§6), and boards, lists, labels and cards in memory.
//!
//! Controls for tests: fail the next requests with a status, stall them, change the rate
//! limits, go down (connections refused and open ones dropped) and come back on the same port,
//! create a card and then drop the connection before answering (a crash between the call and
//! recording its result), boards the token can't see, the requests seen and the cards made.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aia_chat::clients::UpstreamPolicy;
use aia_chat::tasks::trello::{Trello, TrelloConfig};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use rand::Rng;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The API key the fake accepts (32 hex digits, like Trello's).
pub const KEY: &str = "7c3e9a1f5b2d4e6a8c0b1d3f5e7a9c2b";
/// The user token the fake accepts (Trello's `ATTA…` form).
pub const TOKEN: &str = "ATTAf4k3t0k3n9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0F00DCAFE";
/// The default board: its id, short link, name and URL.
pub const BOARD_ID: &str = "5f1a2b3c4d5e6f7a8b9c0d1e";
pub const BOARD_SHORT_LINK: &str = "Zk3PqR7w";
pub const BOARD_NAME: &str = "Shop support";
pub const BOARD_URL: &str = "https://trello.com/b/Zk3PqR7w/shop-support";
/// The default board's open lists, in order, and a closed one.
pub const LIST_INBOX: &str = "5f1a2b3c4d5e6f7a8b9c0d21";
pub const LIST_IN_PROGRESS: &str = "5f1a2b3c4d5e6f7a8b9c0d22";
pub const LIST_ARCHIVED: &str = "5f1a2b3c4d5e6f7a8b9c0d23";
/// The default board's labels (the categories a chat may be filed under) and a colour-only one.
pub const LABEL_BUG: &str = "5f1a2b3c4d5e6f7a8b9c0d31";
pub const LABEL_COMPLAINT: &str = "5f1a2b3c4d5e6f7a8b9c0d32";
pub const LABEL_CALLBACK: &str = "5f1a2b3c4d5e6f7a8b9c0d33";
pub const LABEL_QUOTE: &str = "5f1a2b3c4d5e6f7a8b9c0d34";
pub const LABEL_RETURN: &str = "5f1a2b3c4d5e6f7a8b9c0d35";
pub const LABEL_COLOR_ONLY: &str = "5f1a2b3c4d5e6f7a8b9c0d36";
/// A board the token may not see (`unauthorized permission requested`), and its list.
pub const OTHER_BOARD_ID: &str = "6a1b2c3d4e5f6a7b8c9d0e1f";
pub const OTHER_BOARD_SHORT_LINK: &str = "Xy9LmN2b";
pub const OTHER_LIST: &str = "6a1b2c3d4e5f6a7b8c9d0e21";
pub const OTHER_LABEL: &str = "6a1b2c3d4e5f6a7b8c9d0e31";

// The contract's error bodies (§5).
const INVALID_KEY: &str = "invalid key";
const INVALID_TOKEN: &str = "invalid token";
const NO_PERMISSION: &str = "unauthorized permission requested";
const INVALID_ID: &str = "invalid id";
const NOT_FOUND: &str = "The requested resource was not found.";
const NO_BOARD_FOR_CARD: &str = "could not find the board that the card belongs to";
const INVALID_OBJECT_ID: &str = r#"{"message":"Invalid objectId","error":"ERROR"}"#;
const TOKEN_LIMIT: &str = r#"{"error":"API_TOKEN_LIMIT_EXCEEDED","message":"Rate limit exceeded"}"#;
const KEY_LIMIT: &str = r#"{"error":"API_KEY_LIMIT_EXCEEDED","message":"Rate limit exceeded"}"#;
/// The fake's text for a GET with a body (the contract gives no exact text).
const GET_WITH_BODY: &str = "GET requests must not have a body";
const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";

// ---------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct FakeBoard {
    pub id: String,
    pub short_link: String,
    pub name: String,
    /// Whether [`TOKEN`] may see it.
    pub accessible: bool,
    /// The last `idShort` given on this board.
    pub last_id_short: i64,
}

#[derive(Clone, Debug)]
pub struct FakeList {
    pub id: String,
    pub id_board: String,
    pub name: String,
    pub closed: bool,
    pub pos: f64,
}

#[derive(Clone, Debug)]
pub struct FakeLabel {
    pub id: String,
    pub id_board: String,
    pub name: String,
    pub color: Option<String>,
}

/// A card, with everything it was created with.
#[derive(Clone, Debug)]
pub struct FakeCard {
    pub id: String,
    pub id_board: String,
    pub id_list: String,
    pub id_short: i64,
    pub short_link: String,
    pub name: String,
    pub desc: String,
    pub id_labels: Vec<String>,
    pub pos: f64,
    /// Normalised to `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub due: Option<String>,
    pub url_source: Option<String>,
    pub closed: bool,
    pub date_last_activity: String,
}

impl FakeCard {
    pub fn short_url(&self) -> String {
        format!("https://trello.com/c/{}", self.short_link)
    }

    pub fn url(&self) -> String {
        format!("https://trello.com/c/{}/{}-{}", self.short_link, self.id_short, slug(&self.name))
    }
}

/// What the fake was sent.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query (the query carries the key and token).
    pub path: String,
    pub headers: HeaderMap,
    /// The JSON body (`Null` when there was none or it was not JSON).
    pub body: Value,
    /// The body as received.
    pub raw: String,
}

impl Seen {
    /// The path without the query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }

    /// The query parameters, decoded, in order.
    pub fn query(&self) -> Vec<(String, String)> {
        let query = self.path.split_once('?').map(|(_, q)| q).unwrap_or_default();
        url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
    }

    /// One query parameter, decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// Which budget a 429 says is spent (§5, §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Token,
    Key,
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
    /// `status` with the contract's body for it (§5; 5xx as a proxy's HTML page).
    pub fn status(status: u16) -> Failure {
        let (content_type, body) = match status {
            400 => (TEXT, INVALID_ID.to_string()),
            401 => (TEXT, INVALID_TOKEN.to_string()),
            404 => (TEXT, NOT_FOUND.to_string()),
            429 => (JSON, TOKEN_LIMIT.to_string()),
            500 => (TEXT, "Internal Server Error".to_string()),
            s => {
                let reason = StatusCode::from_u16(s).ok().and_then(|c| c.canonical_reason()).unwrap_or("Error");
                ("text/html", format!("<html><body><h1>{s} {reason}</h1></body></html>"))
            }
        };
        Failure { status: Some(status), content_type, body, headers: Vec::new(), delay: Duration::ZERO }
    }

    /// A 429 for the token's or the key's budget, with the contract's body.
    pub fn rate_limited(scope: Scope) -> Failure {
        let body = match scope {
            Scope::Token => TOKEN_LIMIT,
            Scope::Key => KEY_LIMIT,
        };
        Failure::answer(429, JSON, body)
    }

    /// Adds a header (e.g. `Retry-After`, which real Trello never sends).
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

/// The rate limits (§6): requests per window for the key (all tokens together) and for each
/// token, and how many 429s lock the key out for the rest of the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    pub window: Duration,
    pub key_max: usize,
    pub token_max: usize,
    pub lockout_after: usize,
}

impl RateLimits {
    /// Trello's: 300 per 10 s per key, 100 per 10 s per token, locked after 200 429s.
    pub const CONTRACT: RateLimits =
        RateLimits { window: Duration::from_secs(10), key_max: 300, token_max: 100, lockout_after: 200 };
}

struct Rate {
    limits: RateLimits,
    started: Instant,
    keys: HashMap<String, usize>,
    tokens: HashMap<String, usize>,
    key_429s: HashMap<String, usize>,
}

impl Rate {
    fn new(limits: RateLimits) -> Rate {
        Rate { limits, started: Instant::now(), keys: HashMap::new(), tokens: HashMap::new(), key_429s: HashMap::new() }
    }
}

struct World {
    keys: Vec<String>,
    tokens: Vec<String>,
    boards: Vec<FakeBoard>,
    lists: Vec<FakeList>,
    labels: Vec<FakeLabel>,
    cards: Vec<FakeCard>,
    next_id: u64,
    failures: VecDeque<Failure>,
    drop_after_create: usize,
    rate: Option<Rate>,
    seen: Vec<Seen>,
}

type Shared = Arc<Mutex<World>>;

struct Server {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// A running fake Trello.
pub struct FakeTrello {
    pub addr: SocketAddr,
    world: Shared,
    server: Mutex<Option<Server>>,
}

impl FakeTrello {
    /// Starts the fake: key [`KEY`] with token [`TOKEN`]; the board [`BOARD_ID`] (short link
    /// [`BOARD_SHORT_LINK`]) with the lists Inbox, In progress and a closed Archive, and the
    /// labels Bug, Complaint, Callback, Quote, Return and a colour-only one; the board
    /// [`OTHER_BOARD_ID`] the token can't see; the contract's rate limits.
    pub async fn start() -> FakeTrello {
        let mut world = World {
            keys: vec![KEY.into()],
            tokens: vec![TOKEN.into()],
            boards: Vec::new(),
            lists: Vec::new(),
            labels: Vec::new(),
            cards: Vec::new(),
            next_id: 1,
            failures: VecDeque::new(),
            drop_after_create: 0,
            rate: Some(Rate::new(RateLimits::CONTRACT)),
            seen: Vec::new(),
        };
        world.boards.push(board(BOARD_ID, BOARD_SHORT_LINK, BOARD_NAME, true));
        for (id, name, closed, pos) in [
            (LIST_INBOX, "Inbox", false, 16384.0),
            (LIST_IN_PROGRESS, "In progress", false, 32768.0),
            (LIST_ARCHIVED, "Archive", true, 49152.0),
        ] {
            world.lists.push(FakeList { id: id.into(), id_board: BOARD_ID.into(), name: name.into(), closed, pos });
        }
        for (id, name, color) in [
            (LABEL_BUG, "Bug", Some("red")),
            (LABEL_COMPLAINT, "Complaint", Some("orange")),
            (LABEL_CALLBACK, "Callback", Some("sky_dark")),
            (LABEL_QUOTE, "Quote", Some("green")),
            (LABEL_RETURN, "Return", None),
            (LABEL_COLOR_ONLY, "", Some("purple")),
        ] {
            world.labels.push(FakeLabel {
                id: id.into(),
                id_board: BOARD_ID.into(),
                name: name.into(),
                color: color.map(str::to_string),
            });
        }
        world.boards.push(board(OTHER_BOARD_ID, OTHER_BOARD_SHORT_LINK, "Accounting", false));
        world.lists.push(FakeList {
            id: OTHER_LIST.into(),
            id_board: OTHER_BOARD_ID.into(),
            name: "Invoices".into(),
            closed: false,
            pos: 16384.0,
        });
        world.labels.push(FakeLabel {
            id: OTHER_LABEL.into(),
            id_board: OTHER_BOARD_ID.into(),
            name: "Bug".into(),
            color: Some("red".into()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = FakeTrello { addr, world: Arc::new(Mutex::new(world)), server: Mutex::new(None) };
        fake.serve(listener);
        fake
    }

    fn serve(&self, listener: TcpListener) {
        let cancel = CancellationToken::new();
        let app = Router::new().fallback(handle).with_state(self.world.clone());
        let listener = KillableListener { inner: listener, cancel: cancel.clone() };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app.into_make_service_with_connect_info::<Conn>()).await;
        });
        *self.server.lock().unwrap() = Some(Server { cancel, task });
    }

    /// The API root (`trello_api_url`), with Trello's `/1` prefix.
    pub fn base(&self) -> String {
        format!("http://{}/1", self.addr)
    }

    /// The API root, parsed.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&self.base()).unwrap()
    }

    /// The client configuration for this fake.
    pub fn config(&self) -> TrelloConfig {
        TrelloConfig { base: self.url(), key: KEY.into(), token: TOKEN.into() }
    }

    /// A client of this fake.
    pub fn client(&self) -> Trello {
        Trello::new(self.config(), Trello::http_client(UpstreamPolicy::default())).unwrap()
    }

    /// The `client set` pairs that point a chat client at this fake (URL, key, token, the
    /// default board and its Inbox list).
    pub fn client_settings(&self) -> Vec<String> {
        vec![
            format!("trello_api_url={}", self.base()),
            format!("trello_key={KEY}"),
            format!("trello_token={TOKEN}"),
            format!("trello_board_id={BOARD_ID}"),
            format!("trello_list_id={LIST_INBOX}"),
        ]
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

    /// The next `n` card creations store the card, then drop the connection without an
    /// answer: the client sees an error although the card exists.
    pub fn drop_after_create(&self, n: usize) {
        self.world().drop_after_create = n;
    }

    /// Sets the rate limits (a fresh window); `None` lifts them (and the headers go).
    pub fn rate_limit(&self, limits: Option<RateLimits>) {
        self.world().rate = limits.map(Rate::new);
    }

    /// Accepts another token for [`KEY`] (it shares the key's budget, not the token's).
    pub fn add_token(&self, token: &str) {
        self.world().tokens.push(token.into());
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

    // --- state --------------------------------------------------------------------------

    /// Adds a board; returns nothing (the id and short link are the caller's).
    pub fn add_board(&self, id: &str, short_link: &str, name: &str, accessible: bool) {
        self.world().boards.push(board(id, short_link, name, accessible));
    }

    /// Adds an open list at the end of a board; returns its id.
    pub fn add_list(&self, board_id: &str, name: &str) -> String {
        let mut w = self.world();
        let id = w.new_id();
        let pos = w.lists.iter().filter(|l| l.id_board == board_id).map(|l| l.pos).fold(0.0, f64::max) + 16384.0;
        w.lists.push(FakeList { id: id.clone(), id_board: board_id.into(), name: name.into(), closed: false, pos });
        id
    }

    /// Adds a label to a board; returns its id.
    pub fn add_label(&self, board_id: &str, name: &str, color: Option<&str>) -> String {
        let mut w = self.world();
        let id = w.new_id();
        w.labels.push(FakeLabel {
            id: id.clone(),
            id_board: board_id.into(),
            name: name.into(),
            color: color.map(str::to_string),
        });
        id
    }

    /// Adds a card at the bottom of a list, as if someone made it by hand; returns its id.
    pub fn add_card(&self, list_id: &str, name: &str, desc: &str) -> String {
        let mut w = self.world();
        let list = w.lists.iter().find(|l| l.id == list_id).cloned().expect("a list of the fake");
        let pos = w.bottom(list_id);
        w.store_card(&list, name, desc, Vec::new(), pos, None, None).id
    }

    /// Every card, in creation order.
    pub fn cards(&self) -> Vec<FakeCard> {
        self.world().cards.clone()
    }

    /// One card by id.
    pub fn card(&self, id: &str) -> Option<FakeCard> {
        self.world().cards.iter().find(|c| c.id == id).cloned()
    }
}

impl Drop for FakeTrello {
    fn drop(&mut self) {
        if let Some(server) = self.server.lock().unwrap().take() {
            server.cancel.cancel();
            server.task.abort();
        }
    }
}

fn board(id: &str, short_link: &str, name: &str, accessible: bool) -> FakeBoard {
    FakeBoard { id: id.into(), short_link: short_link.into(), name: name.into(), accessible, last_id_short: 0 }
}

// ---------------------------------------------------------------------------------------
// A listener whose connections can be dropped, all at once or one by one
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
                    // Cancelled with the server, or alone (drop_after_create).
                    let conn = self.cancel.child_token();
                    let dead = Box::pin(conn.clone().cancelled_owned());
                    return (KillableIo { io, conn, dead }, addr);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that fails its reads and writes once it is cancelled (so hyper drops it, idle
/// keep-alive connections included).
struct KillableIo {
    io: TcpStream,
    conn: CancellationToken,
    dead: Pin<Box<WaitForCancellationFutureOwned>>,
}

/// The handler's handle on its own connection.
#[derive(Clone)]
struct Conn(CancellationToken);

impl Connected<IncomingStream<'_, KillableListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Conn {
        Conn(stream.io().conn.clone())
    }
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

/// A plain-text answer, exactly `text` (no trailing newline).
fn text(status: u16, text: &str) -> Response {
    raw(status, TEXT, text)
}

fn raw(status: u16, content_type: &str, body: &str) -> Response {
    let mut response = (StatusCode::from_u16(status).unwrap(), body.to_string()).into_response();
    response.headers_mut().insert("content-type", content_type.parse().unwrap());
    response
}

/// An error answer, before it becomes a response.
struct Refused {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Refused {
    fn text(status: u16, body: &str) -> Refused {
        Refused { status, content_type: TEXT, body: body.into() }
    }

    fn json(status: u16, body: &str) -> Refused {
        Refused { status, content_type: JSON, body: body.into() }
    }

    fn response(self) -> Response {
        raw(self.status, self.content_type, &self.body)
    }
}

fn ok_json(body: Value) -> Response {
    raw(200, JSON, &body.to_string())
}

fn forced(f: &Failure) -> Response {
    let mut response = raw(f.status.unwrap(), f.content_type, &f.body);
    for (name, value) in &f.headers {
        response.headers_mut().insert(*name, value.parse().unwrap());
    }
    response
}

fn is_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_short_link(s: &str) -> bool {
    s.len() == 8 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The query's parameters, decoded.
fn params(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `oauth_consumer_key` and `oauth_token` from `Authorization: OAuth k="v", …` (§1).
fn oauth(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else { return (None, None) };
    let Some(rest) = value.strip_prefix("OAuth ") else { return (None, None) };
    let mut found = (None, None);
    for part in rest.split(',') {
        let Some((name, value)) = part.trim().split_once('=') else { continue };
        let value = value.trim().trim_matches('"').to_string();
        match name.trim() {
            "oauth_consumer_key" => found.0 = Some(value),
            "oauth_token" => found.1 = Some(value),
            _ => {}
        }
    }
    found
}

async fn handle(
    State(world): State<Shared>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let failure = {
        let mut w = world.lock().unwrap();
        w.seen.push(Seen {
            method: method.to_string(),
            path,
            headers: headers.clone(),
            body: json_body,
            raw: String::from_utf8_lossy(&body).into_owned(),
        });
        w.failures.pop_front()
    };
    if let Some(f) = &failure {
        tokio::time::sleep(f.delay).await;
        if f.status.is_some() {
            return forced(f);
        }
    }
    let (response, drop_connection) = world.lock().unwrap().answer(&method, &uri, &headers, &body);
    if drop_connection {
        // The card is stored; the answer never leaves.
        conn.0.cancel();
    }
    response
}

impl World {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("6650f0a1b2c3{:012x}", self.next_id)
    }

    /// The answer, and whether to drop the connection instead of sending it.
    fn answer(&mut self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> (Response, bool) {
        if method == Method::GET && !body.is_empty() {
            return (text(403, GET_WITH_BODY), false);
        }
        let params = params(uri.query());
        let (oauth_key, oauth_token) = oauth(headers);
        let key = param(&params, "key").map(str::to_string).or(oauth_key);
        let token = param(&params, "token").map(str::to_string).or(oauth_token);
        let Some(key) = key.filter(|k| self.keys.contains(k)) else { return (text(401, INVALID_KEY), false) };
        let Some(token) = token.filter(|t| self.tokens.contains(t)) else {
            return (text(401, INVALID_TOKEN), false);
        };
        if let Some(limited) = self.rate_limited(&key, &token) {
            return (limited, false);
        }
        let segments: Vec<&str> = uri.path().split('/').skip(1).collect();
        let mut drop_connection = false;
        let mut response = match (method.as_str(), segments.as_slice()) {
            ("GET", ["1", "boards", board, "lists"]) => self.lists(board, &params),
            ("GET", ["1", "boards", board, "labels"]) => self.labels(board, &params),
            ("GET", ["1", "lists", list, "cards"]) => self.list_cards(list, &params),
            ("POST", ["1", "cards"]) => match self.create_card(&params, headers, body) {
                Ok(created) => {
                    if self.drop_after_create > 0 {
                        self.drop_after_create -= 1;
                        drop_connection = true;
                    }
                    ok_json(created)
                }
                Err(refused) => refused.response(),
            },
            _ => text(404, NOT_FOUND),
        };
        self.rate_headers(&key, &token, response.headers_mut());
        (response, drop_connection)
    }

    /// Counts the request against the key's and the token's budgets; the 429 when one is spent.
    fn rate_limited(&mut self, key: &str, token: &str) -> Option<Response> {
        let rate = self.rate.as_mut()?;
        if rate.started.elapsed() >= rate.limits.window {
            *rate = Rate::new(rate.limits);
        }
        let locked = rate.key_429s.get(key).copied().unwrap_or(0) > rate.limits.lockout_after;
        let key_count = rate.keys.entry(key.into()).or_default();
        *key_count += 1;
        let key_over = *key_count > rate.limits.key_max;
        let token_count = rate.tokens.entry(token.into()).or_default();
        *token_count += 1;
        let token_over = *token_count > rate.limits.token_max;
        let body = if locked || key_over {
            KEY_LIMIT
        } else if token_over {
            TOKEN_LIMIT
        } else {
            return None;
        };
        *rate.key_429s.entry(key.into()).or_default() += 1;
        Some(raw(429, JSON, body))
    }

    fn rate_headers(&self, key: &str, token: &str, headers: &mut HeaderMap) {
        let Some(rate) = &self.rate else { return };
        let l = rate.limits;
        let used_key = rate.keys.get(key).copied().unwrap_or(0);
        let used_token = rate.tokens.get(token).copied().unwrap_or(0);
        let interval = l.window.as_millis().to_string();
        for (name, value) in [
            ("x-rate-limit-api-key-interval-ms", interval.clone()),
            ("x-rate-limit-api-key-max", l.key_max.to_string()),
            ("x-rate-limit-api-key-remaining", l.key_max.saturating_sub(used_key).to_string()),
            ("x-rate-limit-api-token-interval-ms", interval),
            ("x-rate-limit-api-token-max", l.token_max.to_string()),
            ("x-rate-limit-api-token-remaining", l.token_max.saturating_sub(used_token).to_string()),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
    }

    /// The board a path names by id or short link: 400 for a malformed one, 404 for an
    /// unknown one, 401 for one the token can't see.
    fn board(&self, reference: &str) -> Result<&FakeBoard, Refused> {
        let found = if is_id(reference) {
            self.boards.iter().find(|b| b.id.eq_ignore_ascii_case(reference))
        } else if is_short_link(reference) {
            self.boards.iter().find(|b| b.short_link == reference)
        } else {
            return Err(Refused::text(400, INVALID_ID));
        };
        match found {
            None => Err(Refused::text(404, NOT_FOUND)),
            Some(b) if !b.accessible => Err(Refused::text(401, NO_PERMISSION)),
            Some(b) => Ok(b),
        }
    }

    fn lists(&self, board: &str, params: &[(String, String)]) -> Response {
        let board = match self.board(board) {
            Ok(b) => b.id.clone(),
            Err(refused) => return refused.response(),
        };
        let keep: fn(&FakeList) -> bool = match param(params, "filter").unwrap_or("open") {
            "open" => |l| !l.closed,
            "closed" => |l| l.closed,
            "all" => |_| true,
            "none" => |_| false,
            _ => return text(400, "invalid value for filter"),
        };
        let mut lists: Vec<&FakeList> = self.lists.iter().filter(|l| l.id_board == board && keep(l)).collect();
        lists.sort_by(|a, b| a.pos.total_cmp(&b.pos));
        let fields = param(params, "fields");
        ok_json(Value::Array(lists.into_iter().map(|l| pick(list_json(l), fields)).collect()))
    }

    fn labels(&self, board: &str, params: &[(String, String)]) -> Response {
        let board = match self.board(board) {
            Ok(b) => b.id.clone(),
            Err(refused) => return refused.response(),
        };
        let limit = match param(params, "limit").map(str::parse::<usize>) {
            None => 50,
            Some(Ok(n)) if n <= 1000 => n,
            Some(_) => return text(400, "invalid value for limit"),
        };
        let fields = param(params, "fields");
        let labels: Vec<Value> = self
            .labels
            .iter()
            .filter(|l| l.id_board == board)
            .take(limit)
            .map(|l| pick(self.label_json(l), fields))
            .collect();
        ok_json(Value::Array(labels))
    }

    fn list_cards(&self, list: &str, params: &[(String, String)]) -> Response {
        if !is_id(list) {
            return text(400, INVALID_ID);
        }
        let Some(list) = self.lists.iter().find(|l| l.id.eq_ignore_ascii_case(list)) else {
            return text(404, NOT_FOUND);
        };
        if let Err(refused) = self.board(&list.id_board) {
            return refused.response();
        }
        let mut cards: Vec<&FakeCard> = self.cards.iter().filter(|c| c.id_list == list.id && !c.closed).collect();
        cards.sort_by(|a, b| a.pos.total_cmp(&b.pos));
        let fields = param(params, "fields");
        ok_json(Value::Array(cards.into_iter().map(|c| pick(self.card_json(c), fields)).collect()))
    }

    /// `POST /1/cards` (§4): parameters from the query, overridden by a JSON (or form) body.
    fn create_card(&mut self, params: &[(String, String)], headers: &HeaderMap, body: &[u8]) -> Result<Value, Refused> {
        let mut fields: Map<String, Value> =
            params.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if content_type.starts_with("application/x-www-form-urlencoded") {
            fields.extend(url::form_urlencoded::parse(body).into_owned().map(|(k, v)| (k, Value::String(v))));
        } else if !body.is_empty() {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(object)) => fields.extend(object),
                _ => return Err(Refused::text(400, "invalid value for body")),
            }
        }
        let invalid = |name: &str| Refused::text(400, &format!("invalid value for {name}"));

        let id_list = fields.get("idList").and_then(Value::as_str).unwrap_or_default();
        if !is_id(id_list) {
            return Err(invalid("idList"));
        }
        let Some(list) = self.lists.iter().find(|l| l.id.eq_ignore_ascii_case(id_list)).cloned() else {
            return Err(Refused::text(404, NO_BOARD_FOR_CARD));
        };
        self.board(&list.id_board)?;

        let string = |name: &str| -> Result<String, Refused> {
            match fields.get(name) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) if s.chars().count() <= 16_384 => Ok(s.clone()),
                Some(_) => Err(invalid(name)),
            }
        };
        let name = string("name")?;
        let desc = string("desc")?;

        let label_ids: Vec<String> = match fields.get("idLabels") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => {
                s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
            }
            Some(Value::Array(items)) => {
                let mut ids = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(s) => ids.push(s.to_string()),
                        None => return Err(Refused::json(400, INVALID_OBJECT_ID)),
                    }
                }
                ids
            }
            Some(_) => return Err(Refused::json(400, INVALID_OBJECT_ID)),
        };
        if label_ids.iter().any(|id| !is_id(id)) {
            return Err(Refused::json(400, INVALID_OBJECT_ID));
        }
        if label_ids.iter().any(|id| !self.labels.iter().any(|l| l.id == *id && l.id_board == list.id_board)) {
            return Err(invalid("idLabels"));
        }

        let pos = match fields.get("pos") {
            None | Some(Value::Null) => self.bottom(&list.id),
            Some(Value::String(s)) if s == "bottom" => self.bottom(&list.id),
            Some(Value::String(s)) if s == "top" => self.top(&list.id),
            Some(v) => match v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())) {
                Some(n) if n > 0.0 && n.is_finite() => n,
                _ => return Err(invalid("pos")),
            },
        };
        let due = match fields.get("due") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() || s == "null" => None,
            Some(Value::String(s)) => Some(normalize_date(s).ok_or_else(|| invalid("due"))?),
            Some(_) => return Err(invalid("due")),
        };
        let url_source = match fields.get("urlSource") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.starts_with("http://") || s.starts_with("https://") => Some(s.clone()),
            Some(_) => return Err(invalid("urlSource")),
        };
        let card = self.store_card(&list, &name, &desc, label_ids, pos, due, url_source);
        Ok(self.card_json(&card))
    }

    fn bottom(&self, list: &str) -> f64 {
        self.cards.iter().filter(|c| c.id_list == list).map(|c| c.pos).fold(0.0, f64::max) + 16384.0
    }

    fn top(&self, list: &str) -> f64 {
        self.cards.iter().filter(|c| c.id_list == list).map(|c| c.pos).reduce(f64::min).unwrap_or(16384.0) / 2.0
    }

    #[allow(clippy::too_many_arguments)]
    fn store_card(
        &mut self,
        list: &FakeList,
        name: &str,
        desc: &str,
        id_labels: Vec<String>,
        pos: f64,
        due: Option<String>,
        url_source: Option<String>,
    ) -> FakeCard {
        let id = self.new_id();
        let board = self.boards.iter_mut().find(|b| b.id == list.id_board).expect("the list's board");
        board.last_id_short += 1;
        let short_link: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(8).map(char::from).collect();
        let card = FakeCard {
            id,
            id_board: list.id_board.clone(),
            id_list: list.id.clone(),
            id_short: board.last_id_short,
            short_link,
            name: name.into(),
            desc: desc.into(),
            id_labels,
            pos,
            due,
            url_source,
            closed: false,
            date_last_activity: format_utc(time::OffsetDateTime::now_utc()),
        };
        self.cards.push(card.clone());
        card
    }

    fn label_json(&self, l: &FakeLabel) -> Value {
        let uses = self.cards.iter().filter(|c| c.id_labels.contains(&l.id)).count();
        json!({ "id": l.id, "idBoard": l.id_board, "name": l.name, "color": l.color, "uses": uses })
    }

    /// The full card object (§4).
    fn card_json(&self, c: &FakeCard) -> Value {
        let labels: Vec<Value> =
            self.labels.iter().filter(|l| c.id_labels.contains(&l.id)).map(|l| self.label_json(l)).collect();
        let attachments = usize::from(c.url_source.is_some());
        json!({
            "id": c.id,
            "badges": {
                "attachmentsByType": { "trello": { "board": 0, "card": 0 } },
                "location": false, "votes": 0, "viewingMemberVoted": false, "subscribed": false,
                "fogbugz": "", "checkItems": 0, "checkItemsChecked": 0, "checkItemsEarliestDue": null,
                "comments": 0, "attachments": attachments, "description": !c.desc.is_empty(),
                "due": c.due, "dueComplete": false, "start": null
            },
            "checkItemStates": [],
            "closed": c.closed,
            "coordinates": null,
            "creationMethod": null,
            "dueComplete": false,
            "dateLastActivity": c.date_last_activity,
            "desc": c.desc,
            "descData": { "emoji": {} },
            "due": c.due,
            "dueReminder": null,
            "email": null,
            "idBoard": c.id_board,
            "idChecklists": [],
            "idLabels": c.id_labels,
            "idList": c.id_list,
            "idMembers": [],
            "idMembersVoted": [],
            "idShort": c.id_short,
            "idAttachmentCover": null,
            "labels": labels,
            "limits": {},
            "locationName": null,
            "manualCoverAttachment": false,
            "name": c.name,
            "pos": number(c.pos),
            "shortLink": c.short_link,
            "shortUrl": c.short_url(),
            "start": null,
            "subscribed": false,
            "url": c.url(),
            "cover": { "idAttachment": null, "color": null, "idUploadedBackground": null, "size": "normal",
                       "brightness": "dark", "idPlugin": null },
            "isTemplate": false,
            "cardRole": null,
            "attachments": [],
            "stickers": []
        })
    }
}

/// The full list object (§2).
fn list_json(l: &FakeList) -> Value {
    json!({ "id": l.id, "name": l.name, "closed": l.closed, "color": null, "idBoard": l.id_board,
            "pos": number(l.pos), "subscribed": false, "softLimit": null })
}

/// A position as Trello writes it: whole numbers without a fraction.
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 1e15 { json!(n as i64) } else { json!(n) }
}

/// `fields=all` (or none) keeps everything; a comma list keeps `id` and the fields named.
fn pick(v: Value, fields: Option<&str>) -> Value {
    let Some(fields) = fields.filter(|f| *f != "all") else { return v };
    let Value::Object(object) = v else { return v };
    let wanted: Vec<&str> = fields.split(',').map(str::trim).collect();
    Value::Object(object.into_iter().filter(|(k, _)| k == "id" || wanted.contains(&k.as_str())).collect())
}

/// A card name as Trello's URL slug: lowercase words joined by `-`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.to_lowercase().chars() {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').chars().take(128).collect()
}

/// A date as Trello stores it: UTC with milliseconds (`2026-01-15T17:00:00.000Z`). Takes
/// `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM[:SS[.fff]]` with `Z`, `±HH:MM` or nothing (UTC).
pub fn normalize_date(s: &str) -> Option<String> {
    use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};
    let s = s.trim();
    let num = |range: std::ops::Range<usize>| -> Option<i32> {
        let part = s.get(range)?;
        part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok())?
    };
    if s.get(4..5) != Some("-") || s.get(7..8) != Some("-") {
        return None;
    }
    let month = Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let date = Date::from_calendar_date(num(0..4)?, month, u8::try_from(num(8..10)?).ok()?).ok()?;
    let rest = s.get(10..)?;
    if rest.is_empty() {
        return Some(format_utc(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc()));
    }
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' '))?;
    let (clock, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let parts: Vec<&str> = hms.split(':').collect();
    let part = |i: usize| -> Option<u8> {
        let p = parts.get(i).copied().unwrap_or("00");
        (p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse().ok())?
    };
    if !(2..=3).contains(&parts.len()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis: u16 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
    let time = Time::from_hms_milli(part(0)?, part(1)?, part(2)?, millis).ok()?;
    let offset = match zone {
        "" | "Z" | "z" => UtcOffset::UTC,
        z => {
            let sign: i8 = if z.starts_with('-') { -1 } else { 1 };
            let (h, m) = z[1..].split_once(':').unwrap_or((z.get(1..3)?, z.get(3..).unwrap_or("00")));
            UtcOffset::from_hms(sign * h.parse::<i8>().ok()?, sign * m.parse::<i8>().ok()?, 0).ok()?
        }
    };
    Some(format_utc(PrimitiveDateTime::new(date, time).assume_offset(offset)))
}

fn format_utc(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}
