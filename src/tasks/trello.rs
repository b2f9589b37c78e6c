//! A typed client for the parts of Trello's REST API a chat-made card needs
//! (`shared/contracts/trello.md` §2–§4, errors §5, rate limits §6): a board's lists and labels,
//! the cards of a list, and creating a card. Request and response logic only: no caching, no
//! retries — each failure comes back as a [`TrelloError`] that says whether trying again may
//! help, and the caller decides when.
//!
//! Trello takes its API key and token as the query parameters `key` and `token` (§1; the
//! contract asks clients to use them rather than the OAuth header), so every request URL
//! carries both secrets. None of them ever reaches an error or a `Debug` output: transport
//! errors are taken without their URL, and every error text is scrubbed of both values and of
//! any `key=…`/`token=…` pair it might quote.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use url::Url;

use crate::clients::UpstreamPolicy;

/// Trello's API root (`trello_api_url`'s default); the `/1` is a path prefix every call keeps.
pub const DEFAULT_API_URL: &str = "https://api.trello.com/1";
/// How long connecting to Trello may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one request may take, from connecting to the last byte of the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest card name or description Trello takes (§4), in characters.
pub const MAX_TEXT: usize = 16_384;
/// The wait a 429 suggests when it names none (§6: Trello sends no `Retry-After`; start with
/// about 1–2 s). [`rate_limit_backoff`] gives the jittered, doubling waits after it.
pub const RATE_LIMIT_WAIT: Duration = Duration::from_secs(2);
/// Trello's rate-limit window (§6). A 429 for the whole key (`API_KEY_LIMIT_EXCEEDED`) suggests
/// waiting it out: every token of the key is over, and hammering on locks the key for the rest
/// of the window.
pub const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(10);
/// Attempts of one request when Trello answers 429 (§6), the first included.
pub const RATE_LIMIT_ATTEMPTS: u32 = 3;
/// The largest successful answer read (a list of many long cards stays well below it).
const MAX_BODY: usize = 8 << 20;
/// The most of an error answer read: its text is cut to a few hundred characters anyway.
const MAX_ERROR_BODY: usize = 64 << 10;
/// The list fields read (§2).
const LIST_FIELDS: &str = "id,name,pos,closed";
/// The label fields read (§3).
const LABEL_FIELDS: &str = "id,name,color";
/// The card fields read from a list's cards: the ★ fields of §4 and the marker's `desc`.
const CARD_FIELDS: &str = "id,name,desc,idList,idLabels,idShort,shortLink,shortUrl,url";
const REDACTED: &str = "[redacted]";

/// Why a Trello call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrelloError {
    /// 401: the key or token is refused, or the token has no access to the board
    /// (`invalid key`, `invalid token`, `unauthorized permission requested`). A configuration
    /// error: never retried with the same credentials.
    #[error("Trello credentials invalid or no access: {0}")]
    Unauthorized(String),
    /// 400 (and other 4xx): a malformed id or value (`invalid id`, `invalid value for idList`,
    /// `Invalid objectId`) — configuration or validation, not retried. Also what a bad setting
    /// is refused with before any request.
    #[error("Trello refused the request: {0}")]
    Invalid(String),
    /// 404: no such board or list (or route) — most likely stale configured ids. Not retried.
    #[error("Trello has no such board or list: {0}")]
    NotFound(String),
    /// 429: over the key's or the token's budget (§6). Retryable after `retry_after`: the
    /// server's `Retry-After` if it ever sends one, else [`RATE_LIMIT_WINDOW`] when the whole
    /// key is over, else [`RATE_LIMIT_WAIT`]. The request was rejected, so even a card creation
    /// may be sent again.
    #[error("Trello is rate limiting (HTTP 429), retry after {}s", .retry_after.as_secs_f32())]
    RateLimited { retry_after: Duration },
    /// 5xx, 408, refused connections, timeouts, dropped connections: retryable. After a card
    /// creation this is ambiguous — the card may exist: look for it first ([`Trello::find_card`]).
    #[error("Trello is unavailable: {0}")]
    Unavailable(String),
    /// An answer we can't read (or an unexpected status, a redirect). Like `Unavailable`, a
    /// card creation may have happened.
    #[error("Trello's answer is unreadable: {0}")]
    Protocol(String),
}

impl TrelloError {
    /// Whether the same request may succeed later: rate limits and unavailability.
    pub fn retryable(&self) -> bool {
        matches!(self, TrelloError::RateLimited { .. } | TrelloError::Unavailable(_))
    }

    /// The wait a 429 suggests (see [`TrelloError::RateLimited`]).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TrelloError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    fn map_text(self, f: impl Fn(String) -> String) -> TrelloError {
        match self {
            TrelloError::Unauthorized(t) => TrelloError::Unauthorized(f(t)),
            TrelloError::Invalid(t) => TrelloError::Invalid(f(t)),
            TrelloError::NotFound(t) => TrelloError::NotFound(f(t)),
            TrelloError::Unavailable(t) => TrelloError::Unavailable(f(t)),
            TrelloError::Protocol(t) => TrelloError::Protocol(f(t)),
            other => other,
        }
    }
}

/// The wait before retry number `attempt` (0 for the first retry) after a 429 (§6): 1–2 s with
/// jitter, doubling each time, never beyond the 10 s window. Give up after
/// [`RATE_LIMIT_ATTEMPTS`] attempts.
pub fn rate_limit_backoff(attempt: u32) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1 << attempt.min(8));
    let jittered = base.mul_f64(1.0 + rand::rng().random::<f64>());
    jittered.min(RATE_LIMIT_WINDOW)
}

/// What a [`Trello`] is built from (the client's `trello_*` settings).
#[derive(Clone)]
pub struct TrelloConfig {
    /// `trello_api_url`: the API root, [`DEFAULT_API_URL`] unless a proxy stands in (a path
    /// prefix like `/1` is kept).
    pub base: Url,
    /// `trello_key`: the API key (sent as the `key` query parameter).
    pub key: String,
    /// `trello_token`: the user token (sent as the `token` query parameter).
    pub token: String,
}

impl fmt::Debug for TrelloConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrelloConfig")
            .field("base", &self.base.as_str())
            .field("key", &REDACTED)
            .field("token", &REDACTED)
            .finish()
    }
}

/// One Trello account (key and token) as one client of ours uses it. Clones share the
/// connection pool and the last [`RateBudget`].
#[derive(Clone)]
pub struct Trello {
    base: Url,
    key: String,
    token: String,
    http: reqwest::Client,
    timeout: Duration,
    budget: Arc<Mutex<Option<RateBudget>>>,
}

impl fmt::Debug for Trello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trello")
            .field("base", &self.base.as_str())
            .field("key", &REDACTED)
            .field("token", &REDACTED)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A list (column) of a board (§2). Names are not unique.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrelloList {
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default)]
    pub closed: bool,
    /// Position on the board (may be fractional).
    #[serde(default)]
    pub pos: Option<f64>,
}

/// A label of a board (§3). The name may be empty (a colour-only label) and is not unique;
/// the colour is free text (`green_dark` exists) or none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Label {
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default)]
    pub color: Option<String>,
}

/// The label called `name` (§3): an exact match first, else one differing only in case;
/// colour-only labels (empty names) never match.
pub fn find_label<'a>(labels: &'a [Label], name: &str) -> Option<&'a Label> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    labels
        .iter()
        .find(|l| l.name == name)
        .or_else(|| labels.iter().find(|l| l.name.trim().to_lowercase() == name.to_lowercase()))
}

/// A card as Trello gives it back, reduced to what we use (§4 ★ fields, plus the description
/// a previous attempt's marker is looked for in).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub desc: String,
    #[serde(default, deserialize_with = "nullable")]
    pub id_list: String,
    #[serde(default, deserialize_with = "nullable")]
    pub id_labels: Vec<String>,
    /// The card's number on its board (changes if the card moves boards).
    #[serde(default)]
    pub id_short: Option<i64>,
    #[serde(default, deserialize_with = "nullable")]
    pub short_link: String,
    /// `https://trello.com/c/{shortLink}`: the link to show people.
    #[serde(default, deserialize_with = "nullable")]
    pub short_url: String,
    /// `https://trello.com/c/{shortLink}/{idShort}-{slug}`.
    #[serde(default, deserialize_with = "nullable")]
    pub url: String,
}

impl Card {
    /// The link to show people: `shortUrl`, else `url`.
    pub fn link(&self) -> &str {
        if self.short_url.is_empty() { &self.url } else { &self.short_url }
    }
}

/// Where a new card goes in its list (§4 `pos`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Position {
    Top,
    Bottom,
    /// A positive number: between the cards whose positions surround it.
    At(f64),
}

/// A card to create (§4). Card creation is not idempotent: put a marker of ours (e.g. the
/// task id) into `desc`, so that after an ambiguous failure [`Trello::find_card`] can tell
/// whether the card was made.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCard {
    /// The list's 24-hex id.
    pub id_list: String,
    /// The title, at most [`MAX_TEXT`] characters.
    pub name: String,
    /// Markdown, at most [`MAX_TEXT`] characters.
    pub desc: String,
    /// Labels of the list's board (unknown ones make Trello refuse the card).
    pub id_labels: Vec<String>,
    pub pos: Position,
    /// An http(s) URL Trello attaches to the card (e.g. the chat in the admin panel).
    pub url_source: Option<String>,
}

/// The JSON body of `POST /1/cards` (§4): the card's fields (the credentials stay in the
/// query), `idLabels` as the comma-separated string.
pub fn card_body(card: &NewCard) -> Value {
    let pos = match card.pos {
        Position::Top => json!("top"),
        Position::Bottom => json!("bottom"),
        Position::At(n) => json!(n),
    };
    let mut body = json!({ "idList": card.id_list, "name": card.name, "desc": card.desc, "pos": pos });
    if !card.id_labels.is_empty() {
        body["idLabels"] = json!(card.id_labels.join(","));
    }
    if let Some(url) = &card.url_source {
        body["urlSource"] = json!(url);
    }
    body
}

/// How much of Trello's rate budget the last answer said is left (§6 `x-rate-limit-*`
/// headers), for slowing down before a 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateBudget {
    pub key_remaining: Option<u64>,
    pub key_max: Option<u64>,
    pub token_remaining: Option<u64>,
    pub token_max: Option<u64>,
    /// The window the budgets are for (`…-interval-ms`).
    pub interval: Option<Duration>,
}

impl RateBudget {
    /// The budget in `headers`, if they carry any.
    pub fn from_headers(headers: &HeaderMap) -> Option<RateBudget> {
        let num = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
        let budget = RateBudget {
            key_remaining: num("x-rate-limit-api-key-remaining"),
            key_max: num("x-rate-limit-api-key-max"),
            token_remaining: num("x-rate-limit-api-token-remaining"),
            token_max: num("x-rate-limit-api-token-max"),
            interval: num("x-rate-limit-api-token-interval-ms")
                .or_else(|| num("x-rate-limit-api-key-interval-ms"))
                .map(Duration::from_millis),
        };
        (budget != RateBudget::default()).then_some(budget)
    }

    /// Whether the key's or the token's budget is below a tenth of its maximum: time to slow
    /// down (§6).
    pub fn low(&self) -> bool {
        let low =
            |remaining: Option<u64>, max: Option<u64>| matches!((remaining, max), (Some(r), Some(m)) if r * 10 < m);
        low(self.key_remaining, self.key_max) || low(self.token_remaining, self.token_max)
    }
}

/// A board reference as Trello's board routes take it (§2: the 24-hex id or the 8-character
/// short link) from what an administrator pastes: either of those, or the board's URL
/// `https://trello.com/b/<shortLink>/<slug>`. Ids come back in lowercase; short links keep
/// their case (they are case-sensitive).
pub fn board_ref(input: &str) -> Result<String, TrelloError> {
    let input = input.trim();
    if is_trello_id(input) {
        return Ok(input.to_ascii_lowercase());
    }
    if is_short_link(input) {
        return Ok(input.to_string());
    }
    let shown: String = input.chars().take(80).collect();
    let bad = || {
        TrelloError::Invalid(format!(
            "'{shown}' is not a Trello board: give its URL (https://trello.com/b/…), its 8-character short \
             link or its 24-character id"
        ))
    };
    let lower = input.to_ascii_lowercase();
    let with_scheme = if lower.starts_with("trello.com/") || lower.starts_with("www.trello.com/") {
        format!("https://{input}")
    } else {
        input.to_string()
    };
    let url = Url::parse(&with_scheme).map_err(|_| bad())?;
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    if !matches!(url.scheme(), "http" | "https") || !matches!(host.as_str(), "trello.com" | "www.trello.com") {
        return Err(bad());
    }
    let segments: Vec<&str> = url.path_segments().map(|s| s.filter(|s| !s.is_empty()).collect()).unwrap_or_default();
    match segments.as_slice() {
        ["b", board, ..] if is_trello_id(board) => Ok(board.to_ascii_lowercase()),
        ["b", board, ..] if is_short_link(board) => Ok(board.to_string()),
        ["c", ..] => Err(TrelloError::Invalid(format!(
            "'{shown}' is a card's URL; give the board's URL (https://trello.com/b/…)"
        ))),
        _ => Err(bad()),
    }
}

/// Whether `s` has the shape of a Trello object id (24 hex digits, §1).
pub fn is_trello_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `s` has the shape of a short link (8 letters and digits).
fn is_short_link(s: &str) -> bool {
    s.len() == 8 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Trello {
    /// A client for one key and token, sending over `http` (see [`Trello::http_client`]).
    pub fn new(config: TrelloConfig, http: reqwest::Client) -> Result<Trello, TrelloError> {
        let base = config.base;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() || base.host().is_none() {
            return Err(TrelloError::Invalid("the Trello API URL must be an http(s) URL".into()));
        }
        let (key, token) = (config.key.trim().to_string(), config.token.trim().to_string());
        if key.is_empty() {
            return Err(TrelloError::Unauthorized("no API key is configured (trello_key)".into()));
        }
        if token.is_empty() {
            return Err(TrelloError::Unauthorized("no API token is configured (trello_token)".into()));
        }
        Ok(Trello { base, key, token, http, timeout: REQUEST_TIMEOUT, budget: Arc::new(Mutex::new(None)) })
    }

    /// The outbound client with Trello's connect timeout; every request is also limited to
    /// [`REQUEST_TIMEOUT`] by the client. One is enough for every Trello account.
    pub fn http_client(policy: UpstreamPolicy) -> reqwest::Client {
        crate::outbound::streaming_client(policy, CONNECT_TIMEOUT)
    }

    /// The same client with another limit per request (tests use short ones).
    pub fn with_timeout(mut self, timeout: Duration) -> Trello {
        self.timeout = timeout;
        self
    }

    /// The rate budget the last answer reported, if any did (§6): slow down when it is
    /// [`RateBudget::low`].
    pub fn rate_budget(&self) -> Option<RateBudget> {
        *self.budget.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open lists of a board, by position (`GET /1/boards/{board}/lists`, §2). `board` is
    /// anything [`board_ref`] takes.
    pub async fn lists(&self, board: &str) -> Result<Vec<TrelloList>, TrelloError> {
        let board = board_ref(board)?;
        self.get(&["boards", &board, "lists"], &[("filter", "open"), ("fields", LIST_FIELDS)]).await
    }

    /// Every label of a board (`GET /1/boards/{board}/labels`, §3; `limit=1000`, as boards
    /// may have more than the default 50). `board` is anything [`board_ref`] takes.
    pub async fn labels(&self, board: &str) -> Result<Vec<Label>, TrelloError> {
        let board = board_ref(board)?;
        self.get(&["boards", &board, "labels"], &[("fields", LABEL_FIELDS), ("limit", "1000")]).await
    }

    /// The open cards of a list (`GET /1/lists/{list}/cards`): where a card a previous
    /// attempt may have made is looked for.
    pub async fn list_cards(&self, list_id: &str) -> Result<Vec<Card>, TrelloError> {
        self.get(&["lists", list_id.trim(), "cards"], &[("fields", CARD_FIELDS)]).await
    }

    /// The card of a list whose description contains `marker`, if there is one: after a
    /// creation that failed ambiguously (timeout, 5xx, dropped connection), whether it
    /// happened anyway.
    pub async fn find_card(&self, list_id: &str, marker: &str) -> Result<Option<Card>, TrelloError> {
        if marker.trim().is_empty() {
            return Err(TrelloError::Invalid("an empty marker matches every card".into()));
        }
        Ok(self.list_cards(list_id).await?.into_iter().find(|c| c.desc.contains(marker)))
    }

    /// Creates a card (`POST /1/cards`, §4, fields in a JSON body). Not idempotent: retry
    /// freely only after [`TrelloError::RateLimited`]; after `Unavailable` or `Protocol` look
    /// with [`Trello::find_card`] first.
    pub async fn create_card(&self, card: &NewCard) -> Result<Card, TrelloError> {
        for (what, text) in [("name", &card.name), ("description", &card.desc)] {
            if text.chars().count() > MAX_TEXT {
                return Err(TrelloError::Invalid(format!("the card's {what} is longer than {MAX_TEXT} characters")));
            }
        }
        let bytes = self.request(Method::POST, &["cards"], &[], Some(&card_body(card))).await?;
        parse(&bytes).map_err(|e| self.scrub(e))
    }

    async fn get<T: DeserializeOwned>(&self, path: &[&str], query: &[(&str, &str)]) -> Result<T, TrelloError> {
        let bytes = self.request(Method::GET, path, query, None).await?;
        parse(&bytes).map_err(|e| self.scrub(e))
    }

    async fn request(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Vec<u8>, TrelloError> {
        let url = endpoint(&self.base, path, query, &self.key, &self.token);
        self.send(method, url, body).await.map_err(|e| self.scrub(e))
    }

    async fn send(&self, method: Method, url: Url, body: Option<&Value>) -> Result<Vec<u8>, TrelloError> {
        let mut request = self.http.request(method, url).timeout(self.timeout).header("accept", "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request.send().await.map_err(|e| transport(e, self.timeout))?;
        let status = response.status().as_u16();
        if let Some(budget) = RateBudget::from_headers(response.headers()) {
            *self.budget.lock().unwrap_or_else(|e| e.into_inner()) = Some(budget);
        }
        let retry = retry_after(response.headers());
        let ok = (200..300).contains(&status);
        let cap = if ok { MAX_BODY } else { MAX_ERROR_BODY };
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport(e, self.timeout))? {
            if bytes.len() + chunk.len() > cap {
                if ok {
                    return Err(TrelloError::Protocol(format!("the answer is larger than {} MiB", MAX_BODY >> 20)));
                }
                bytes.extend_from_slice(&chunk[..cap - bytes.len()]);
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        if ok { Ok(bytes) } else { Err(classify(status, &bytes, retry)) }
    }

    fn scrub(&self, e: TrelloError) -> TrelloError {
        e.map_text(|t| scrub(&t, &[&self.key, &self.token]))
    }
}

/// `base` with `segments` appended to its path (the `/1` prefix, or a proxy's, is kept), then
/// `query`, then the credentials.
fn endpoint(base: &Url, segments: &[&str], query: &[(&str, &str)], key: &str, token: &str) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut().expect("checked: an http(s) URL").pop_if_empty().extend(segments);
    url.query_pairs_mut().extend_pairs(query).append_pair("key", key).append_pair("token", token);
    url
}

/// Text with every secret replaced, and the value of any `key=`/`token=` pair too.
fn scrub(text: &str, secrets: &[&str]) -> String {
    let text = secrets.iter().filter(|s| !s.is_empty()).fold(text.to_string(), |t, s| t.replace(s, REDACTED));
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some((at, len)) = ["key=", "token="].iter().filter_map(|p| rest.find(p).map(|i| (i, p.len()))).min() {
        out.push_str(&rest[..at + len]);
        rest = &rest[at + len..];
        let end = rest.find(|c: char| c == '&' || c.is_whitespace() || "()\"'<>;,".contains(c)).unwrap_or(rest.len());
        if end > 0 && &rest[..end] != REDACTED {
            out.push_str(REDACTED);
        } else {
            out.push_str(&rest[..end]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn transport(e: reqwest::Error, timeout: Duration) -> TrelloError {
    // The URL carries the key and token: drop it before anything reads the error.
    let e = e.without_url();
    if e.is_timeout() {
        return TrelloError::Unavailable(format!("no answer within {}s", timeout.as_secs_f32()));
    }
    if e.is_redirect() {
        return TrelloError::Protocol(crate::outbound::error_text(&e));
    }
    TrelloError::Unavailable(crate::outbound::error_chain(&e))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, TrelloError> {
    serde_json::from_slice(body).map_err(|e| TrelloError::Protocol(format!("{e} in {}", snippet(body))))
}

/// A JSON `null` read as the type's default (Trello's optional strings).
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `Retry-After` in seconds (Trello documents none; a proxy may send one).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    crate::outbound::retry_after(headers, Duration::from_secs(3600))
}

/// Maps a non-2xx answer to its error (§5), by status only; the body (plain text, or JSON with
/// `message`/`error`) becomes the text, and for a 429 the `error` code picks the wait.
pub fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> TrelloError {
    let text = error_text(body);
    match status {
        401 => TrelloError::Unauthorized(text),
        400 => TrelloError::Invalid(text),
        404 => TrelloError::NotFound(text),
        408 => TrelloError::Unavailable(format!("HTTP 408: {text}")),
        429 => {
            let key_wide = serde_json::from_slice::<Value>(body)
                .ok()
                .is_some_and(|v| v.get("error").and_then(Value::as_str) == Some("API_KEY_LIMIT_EXCEEDED"));
            let wait = if key_wide { RATE_LIMIT_WINDOW } else { RATE_LIMIT_WAIT };
            TrelloError::RateLimited { retry_after: retry_after.unwrap_or(wait) }
        }
        402..=499 => TrelloError::Invalid(format!("HTTP {status}: {text}")),
        500..=599 => TrelloError::Unavailable(format!("HTTP {status}: {text}")),
        _ => TrelloError::Protocol(format!("unexpected HTTP {status}: {text}")),
    }
}

/// An error body's text (§5): JSON's `message` (else `error`), or the trimmed plain text.
fn error_text(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = parsed.as_ref().and_then(|v| {
        let text = |k: &str| v.get(k).and_then(Value::as_str).filter(|t| !t.trim().is_empty()).map(str::to_string);
        text("message").or_else(|| text("error"))
    });
    field.map(|t| t.chars().filter(|c| !c.is_control()).take(300).collect()).unwrap_or_else(|| snippet(body))
}

fn snippet(body: &[u8]) -> String {
    crate::outbound::body_snippet(body, 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdefSECRETKEY0123456";
    const TOKEN: &str = "ATTAsecretTOKEN0123456789abcdef";

    fn config() -> TrelloConfig {
        TrelloConfig { base: Url::parse(DEFAULT_API_URL).unwrap(), key: KEY.into(), token: TOKEN.into() }
    }

    fn client() -> Trello {
        Trello::new(config(), Trello::http_client(UpstreamPolicy::default())).unwrap()
    }

    #[test]
    fn errors_by_status_with_the_contracts_bodies() {
        for body in ["invalid key", "invalid token", "unauthorized permission requested"] {
            let e = classify(401, body.as_bytes(), None);
            assert_eq!(e, TrelloError::Unauthorized(body.into()));
            assert!(!e.retryable());
        }
        assert_eq!(e_text(401, "invalid key"), "Trello credentials invalid or no access: invalid key");
        for body in ["invalid id", "invalid value for idList", "invalid value for name", "invalid value for filter"] {
            let e = classify(400, body.as_bytes(), None);
            assert_eq!(e, TrelloError::Invalid(body.into()));
            assert!(!e.retryable());
        }
        let e = classify(400, br#"{"message":"Invalid objectId","error":"ERROR"}"#, None);
        assert_eq!(e, TrelloError::Invalid("Invalid objectId".into()));
        for body in ["could not find the board that the card belongs to", "The requested resource was not found."] {
            let e = classify(404, body.as_bytes(), None);
            assert_eq!(e, TrelloError::NotFound(body.into()));
            assert!(!e.retryable());
        }

        // 429 names no wait: the contract's backoff, the whole window when the key is over.
        let e = classify(429, br#"{"error":"API_TOKEN_LIMIT_EXCEEDED","message":"Rate limit exceeded"}"#, None);
        assert_eq!(e, TrelloError::RateLimited { retry_after: RATE_LIMIT_WAIT });
        assert!(e.retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(e.to_string(), "Trello is rate limiting (HTTP 429), retry after 2s");
        let e = classify(429, br#"{"error":"API_KEY_LIMIT_EXCEEDED","message":"Rate limit exceeded"}"#, None);
        assert_eq!(e.retry_after(), Some(RATE_LIMIT_WINDOW));
        let e = classify(429, b"Too Many Requests", Some(Duration::from_secs(5)));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(5)), "a Retry-After, if one comes, wins");

        let e = classify(503, b"<html><body><h1>503 Service Unavailable</h1></body></html>", None);
        assert!(e.retryable() && e.to_string().contains("503 Service Unavailable"), "{e}");
        assert_eq!(
            classify(500, b"Internal Server Error", None),
            TrelloError::Unavailable("HTTP 500: Internal Server Error".into())
        );
        assert!(classify(408, b"", None).retryable());
        let e = classify(403, b"GET requests must not have a body", None);
        assert!(matches!(&e, TrelloError::Invalid(m) if m.starts_with("HTTP 403")) && !e.retryable(), "{e}");
        assert!(matches!(classify(307, b"", None), TrelloError::Protocol(_)));
        assert_eq!(classify(400, b"", None), TrelloError::Invalid("(empty body)".into()));
        let long = "x".repeat(5000);
        assert!(classify(400, long.as_bytes(), None).to_string().len() < 300);
    }

    fn e_text(status: u16, body: &str) -> String {
        classify(status, body.as_bytes(), None).to_string()
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_window() {
        for _ in 0..50 {
            let first = rate_limit_backoff(0);
            assert!(first >= Duration::from_secs(1) && first <= Duration::from_secs(2), "{first:?}");
            let second = rate_limit_backoff(1);
            assert!(second >= Duration::from_secs(2) && second <= Duration::from_secs(4), "{second:?}");
            assert!(rate_limit_backoff(4) <= RATE_LIMIT_WINDOW);
            assert!(rate_limit_backoff(60) <= RATE_LIMIT_WINDOW);
        }
    }

    #[test]
    fn board_refs_from_ids_short_links_and_urls() {
        let id = "5f1a2b3c4d5e6f7a8b9c0d1e";
        assert_eq!(board_ref(id).unwrap(), id);
        assert_eq!(board_ref(" 5F1A2B3C4D5E6F7A8B9C0D1E\n").unwrap(), id, "ids in lowercase");
        assert_eq!(board_ref("Zk3PqR7w").unwrap(), "Zk3PqR7w", "short links keep their case");
        assert_eq!(board_ref("https://trello.com/b/Zk3PqR7w/shop-support").unwrap(), "Zk3PqR7w");
        assert_eq!(board_ref("https://trello.com/b/Zk3PqR7w").unwrap(), "Zk3PqR7w");
        assert_eq!(board_ref("https://trello.com/b/Zk3PqR7w/").unwrap(), "Zk3PqR7w");
        assert_eq!(board_ref("http://www.trello.com/b/Zk3PqR7w/shop-support?menu=filter#x").unwrap(), "Zk3PqR7w");
        assert_eq!(board_ref("trello.com/b/Zk3PqR7w/shop-support").unwrap(), "Zk3PqR7w");
        assert_eq!(board_ref(&format!("https://trello.com/b/{id}/x")).unwrap(), id);
        for bad in [
            "",
            "Shop support",
            "Zk3PqR7",
            "Zk3-qR7w",
            "5f1a2b3c4d5e6f7a8b9c0d1",
            "5f1a2b3c4d5e6f7a8b9c0d1g",
            "https://evil.example/b/Zk3PqR7w/x",
            "https://trello.com/w/shop",
            "https://trello.com/b/too-long-link/x",
            "ftp://trello.com/b/Zk3PqR7w",
        ] {
            let e = board_ref(bad).unwrap_err();
            assert!(matches!(&e, TrelloError::Invalid(m) if m.contains("not a Trello board")), "{bad}: {e}");
        }
        let e = board_ref("https://trello.com/c/Qx7PzK2m/57-customer").unwrap_err();
        assert!(matches!(&e, TrelloError::Invalid(m) if m.contains("card's URL")), "{e}");
        assert!(is_trello_id(id) && !is_trello_id("Zk3PqR7w"));
    }

    #[test]
    fn the_contracts_responses_parse() {
        // §2, as printed.
        let lists = r#"[
          { "id": "5f1a2b3c4d5e6f7a8b9c0d21", "name": "Inbox", "closed": false, "color": null,
            "idBoard": "5f1a2b3c4d5e6f7a8b9c0d1e", "pos": 16384, "subscribed": false, "softLimit": null },
          { "id": "5f1a2b3c4d5e6f7a8b9c0d22", "name": "In progress", "closed": false, "color": null,
            "idBoard": "5f1a2b3c4d5e6f7a8b9c0d1e", "pos": 24576.5, "subscribed": false, "softLimit": "20",
            "type": null, "datasource": {"filter": false}, "limits": {} }
        ]"#;
        let lists: Vec<TrelloList> = serde_json::from_str(lists).unwrap();
        assert_eq!(lists[0].name, "Inbox");
        assert_eq!(lists[1].pos, Some(24576.5));
        let short: Vec<TrelloList> =
            serde_json::from_str(r#"[{"id":"5f1a2b3c4d5e6f7a8b9c0d21","name":"Inbox"}]"#).unwrap();
        assert_eq!((short[0].closed, short[0].pos), (false, None));

        // §3.
        let labels = r#"[
          { "id": "5f1a2b3c4d5e6f7a8b9c0d31", "idBoard": "5f1a2b3c4d5e6f7a8b9c0d1e", "name": "Bug", "color": "red", "uses": 4 },
          { "id": "5f1a2b3c4d5e6f7a8b9c0d32", "idBoard": "5f1a2b3c4d5e6f7a8b9c0d1e", "name": "", "color": "green", "uses": 0 },
          { "id": "5f1a2b3c4d5e6f7a8b9c0d33", "idBoard": "5f1a2b3c4d5e6f7a8b9c0d1e", "name": "Customer request", "color": null, "uses": 1 },
          { "id": "5f1a2b3c4d5e6f7a8b9c0d34", "name": "bug", "color": "green_dark" }
        ]"#;
        let labels: Vec<Label> = serde_json::from_str(labels).unwrap();
        assert_eq!(labels[1].name, "");
        assert_eq!(labels[2].color, None);
        assert_eq!(labels[3].color.as_deref(), Some("green_dark"));
        assert_eq!(find_label(&labels, "Bug").unwrap().id, "5f1a2b3c4d5e6f7a8b9c0d31");
        assert_eq!(find_label(&labels, "bug").unwrap().id, "5f1a2b3c4d5e6f7a8b9c0d34", "exact first");
        assert_eq!(find_label(&labels, "CUSTOMER REQUEST").unwrap().id, "5f1a2b3c4d5e6f7a8b9c0d33");
        assert_eq!(find_label(&labels, ""), None, "colour-only labels match nothing");
        assert_eq!(find_label(&labels, "Refund"), None);

        // §4, the response trimmed to what varies between accounts.
        let card = r#"{
          "id": "6650f0a1b2c3d4e5f6a7b8c9",
          "badges": { "attachments": 1, "description": true, "due": "2026-01-15T17:00:00.000Z" },
          "checkItemStates": [], "closed": false, "coordinates": null, "creationMethod": null,
          "dateLastActivity": "2026-01-10T09:30:12.345Z",
          "desc": "Chat session 8c1e…\n\n**Customer:** Do you offer discounts for 50+ units?",
          "descData": { "emoji": {} }, "due": "2026-01-15T17:00:00.000Z", "email": null,
          "idBoard": "5f1a2b3c4d5e6f7a8b9c0d1e", "idChecklists": [],
          "idLabels": ["5f1a2b3c4d5e6f7a8b9c0d31", "5f1a2b3c4d5e6f7a8b9c0d33"],
          "idList": "5f1a2b3c4d5e6f7a8b9c0d21", "idMembers": [], "idShort": 57,
          "labels": [ { "id": "5f1a2b3c4d5e6f7a8b9c0d31", "idBoard": "5f1a2b3c4d5e6f7a8b9c0d1e", "name": "Bug", "color": "red", "uses": 5 } ],
          "name": "Customer asks about bulk discount", "pos": 8192, "shortLink": "Qx7PzK2m",
          "shortUrl": "https://trello.com/c/Qx7PzK2m",
          "url": "https://trello.com/c/Qx7PzK2m/57-customer-asks-about-bulk-discount",
          "cover": { "idAttachment": null, "size": "normal" }, "isTemplate": false, "cardRole": null
        }"#;
        let card: Card = serde_json::from_str(card).unwrap();
        assert_eq!(card.id, "6650f0a1b2c3d4e5f6a7b8c9");
        assert_eq!(card.id_short, Some(57));
        assert_eq!(card.link(), "https://trello.com/c/Qx7PzK2m");
        assert_eq!(card.id_labels.len(), 2);
        assert!(card.desc.starts_with("Chat session 8c1e"));
        let bare: Card =
            serde_json::from_str(r#"{"id":"6650f0a1b2c3d4e5f6a7b8c9","desc":null,"url":"https://trello.com/c/x/1-y"}"#)
                .unwrap();
        assert_eq!((bare.desc.as_str(), bare.link()), ("", "https://trello.com/c/x/1-y"));

        assert!(
            matches!(parse::<Card>(b"<html>oops</html>"), Err(TrelloError::Protocol(m)) if m.contains("<html>oops"))
        );
    }

    #[test]
    fn the_card_body_follows_the_contract() {
        let card = NewCard {
            id_list: "5f1a2b3c4d5e6f7a8b9c0d21".into(),
            name: "Customer asks about bulk discount".into(),
            desc: "Chat session 8c1e…\n\n**Customer:** Do you offer discounts for 50+ units?".into(),
            id_labels: vec!["5f1a2b3c4d5e6f7a8b9c0d31".into(), "5f1a2b3c4d5e6f7a8b9c0d33".into()],
            pos: Position::Top,
            url_source: Some("https://shop.example.com/admin/chat/8c1e".into()),
        };
        assert_eq!(
            card_body(&card),
            json!({
              "idList": "5f1a2b3c4d5e6f7a8b9c0d21",
              "name": "Customer asks about bulk discount",
              "desc": "Chat session 8c1e…\n\n**Customer:** Do you offer discounts for 50+ units?",
              "idLabels": "5f1a2b3c4d5e6f7a8b9c0d31,5f1a2b3c4d5e6f7a8b9c0d33",
              "pos": "top",
              "urlSource": "https://shop.example.com/admin/chat/8c1e"
            })
        );
        let plain = NewCard { id_labels: vec![], pos: Position::At(24576.5), url_source: None, ..card.clone() };
        let body = card_body(&plain);
        assert_eq!(body.get("idLabels"), None);
        assert_eq!(body.get("urlSource"), None);
        assert_eq!(body["pos"], json!(24576.5));
        assert_eq!(card_body(&NewCard { pos: Position::Bottom, ..plain })["pos"], "bottom");
    }

    #[test]
    fn paths_keep_the_prefix_and_credentials_go_last() {
        let base = Url::parse(DEFAULT_API_URL).unwrap();
        let url = endpoint(&base, &["boards", "Zk3PqR7w", "lists"], &[("filter", "open")], "K", "T");
        assert_eq!(url.as_str(), "https://api.trello.com/1/boards/Zk3PqR7w/lists?filter=open&key=K&token=T");
        let slash = Url::parse("http://127.0.0.1:9/proxy/trello/1/?x=y").unwrap();
        let url = endpoint(&slash, &["cards"], &[], "K", "T");
        assert_eq!(url.as_str(), "http://127.0.0.1:9/proxy/trello/1/cards?key=K&token=T");
        let odd = endpoint(&base, &["lists", "a/b?c", "cards"], &[], "K", "T");
        assert_eq!(odd.path(), "/1/lists/a%2Fb%3Fc/cards", "an id can't leave its path segment");

        let bad = TrelloConfig { base: Url::parse("mailto:x@y").unwrap(), ..config() };
        assert!(matches!(
            Trello::new(bad, Trello::http_client(UpstreamPolicy::default())),
            Err(TrelloError::Invalid(_))
        ));
        let no_key = TrelloConfig { key: " ".into(), ..config() };
        let e = Trello::new(no_key, Trello::http_client(UpstreamPolicy::default())).unwrap_err();
        assert!(matches!(&e, TrelloError::Unauthorized(m) if m.contains("trello_key")), "{e}");
        let no_token = TrelloConfig { token: "".into(), ..config() };
        let e = Trello::new(no_token, Trello::http_client(UpstreamPolicy::default())).unwrap_err();
        assert!(matches!(&e, TrelloError::Unauthorized(m) if m.contains("trello_token")), "{e}");
    }

    #[test]
    fn rate_budget_from_the_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(RateBudget::from_headers(&h), None);
        for (name, value) in [
            ("x-rate-limit-api-key-interval-ms", "10000"),
            ("x-rate-limit-api-key-max", "300"),
            ("x-rate-limit-api-key-remaining", "297"),
            ("x-rate-limit-api-token-interval-ms", "10000"),
            ("x-rate-limit-api-token-max", "100"),
            ("x-rate-limit-api-token-remaining", "98"),
        ] {
            h.insert(name, value.parse().unwrap());
        }
        let budget = RateBudget::from_headers(&h).unwrap();
        assert_eq!(
            budget,
            RateBudget {
                key_remaining: Some(297),
                key_max: Some(300),
                token_remaining: Some(98),
                token_max: Some(100),
                interval: Some(Duration::from_secs(10)),
            }
        );
        assert!(!budget.low());
        assert!(RateBudget { token_remaining: Some(9), ..budget }.low());
        assert!(!RateBudget { token_remaining: Some(10), ..budget }.low());
        assert!(RateBudget { key_remaining: Some(29), ..budget }.low());
    }

    #[test]
    fn secrets_never_show() {
        let c = client();
        let shown = format!("{c:?} {:?}", config());
        assert!(!shown.contains("SECRET") && !shown.contains("secret"), "{shown}");
        assert!(shown.contains("[redacted]") && shown.contains("api.trello.com"), "{shown}");
        // A body that echoes the credentials, or any URL with them, loses them.
        let echoed = format!("bad request to /1/cards?idList=x&key={KEY}&token={TOKEN} (key={KEY})");
        let e = c.scrub(classify(400, echoed.as_bytes(), None));
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("SECRET") && !shown.contains("secret"), "{shown}");
        assert!(shown.contains("idList=x"), "{shown}");
        assert_eq!(
            scrub("GET /1/boards/x/lists?key=abc&token=def failed", &[]),
            "GET /1/boards/x/lists?key=[redacted]&token=[redacted] failed"
        );
        assert_eq!(scrub("a token=[redacted] b", &[]), "a token=[redacted] b");
        assert_eq!(scrub("an empty secret changes nothing", &[""]), "an empty secret changes nothing");
    }
}
