//! A typed client for the parts of Chatwoot's Application API the hand-over uses
//! (`shared/contracts/chatwoot.md` §3–§4, errors §7). Request and response logic only: no
//! database, no retries — each failure comes back as a [`ChatwootError`] that says whether
//! trying again may help, and the caller (the outbox) decides when.
//!
//! Tokens travel in the `api_access_token` header and nowhere else: they are never part of an
//! error's text or of any `Debug` output.

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use url::Url;

use super::webhook::MessageType;
use crate::clients::UpstreamPolicy;

/// How long connecting to Chatwoot may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one request may take, from connecting to the last byte of the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from Chatwoot.
const MAX_BODY: usize = 8 << 20;
/// The inbox channel type the hand-over needs.
pub const API_CHANNEL: &str = "Channel::Api";

/// Why a Chatwoot call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatwootError {
    /// 401 (and 403): the token, the account or the role is refused. A configuration error:
    /// never retried.
    #[error("Chatwoot refused the access token: {0}")]
    Unauthorized(String),
    /// 404: an unknown or foreign id.
    #[error("Chatwoot has no such record (HTTP 404)")]
    NotFound,
    /// 422 (and other 4xx): Chatwoot's `error` or `message` text.
    #[error("Chatwoot refused the request: {0}")]
    Invalid(String),
    /// 429 "Retry later".
    #[error("Chatwoot is rate limiting (HTTP 429){}", wait_note(*.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx, refused connections, timeouts: retryable.
    #[error("Chatwoot is unavailable: {0}")]
    Unavailable(String),
    /// A success whose body we can't read.
    #[error("Chatwoot's answer is unreadable: {0}")]
    Protocol(String),
}

fn wait_note(retry_after: Option<Duration>) -> String {
    retry_after.map(|d| format!(", retry after {}s", d.as_secs_f32())).unwrap_or_default()
}

impl ChatwootError {
    /// Whether the same request may succeed later: rate limits and unavailability.
    pub fn retryable(&self) -> bool {
        matches!(self, ChatwootError::RateLimited { .. } | ChatwootError::Unavailable(_))
    }

    /// The server's requested wait, when it named one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ChatwootError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    fn map_text(self, f: impl Fn(String) -> String) -> ChatwootError {
        match self {
            ChatwootError::Unauthorized(t) => ChatwootError::Unauthorized(f(t)),
            ChatwootError::Invalid(t) => ChatwootError::Invalid(f(t)),
            ChatwootError::Unavailable(t) => ChatwootError::Unavailable(f(t)),
            ChatwootError::Protocol(t) => ChatwootError::Protocol(f(t)),
            other => other,
        }
    }
}

/// What a [`Chatwoot`] is built from (the client's `operator_*` settings).
#[derive(Clone)]
pub struct ChatwootConfig {
    /// `operator_url`: Chatwoot's base URL (a path prefix is kept).
    pub base: Url,
    /// `operator_account_id`, or the token's single account ([`Chatwoot::profile_account`]).
    pub account_id: i64,
    /// `operator_inbox_id`: the API-channel inbox the assistant is.
    pub inbox_id: i64,
    /// `operator_token`: an administrator's (or integration user's) access token.
    pub admin_token: String,
    /// `operator_bot_token`: the agent bot's access token, for the AI's own posts and hand-offs.
    pub bot_token: Option<String>,
}

impl fmt::Debug for ChatwootConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatwootConfig")
            .field("base", &self.base.as_str())
            .field("account_id", &self.account_id)
            .field("inbox_id", &self.inbox_id)
            .field("admin_token", &REDACTED)
            .field("bot_token", &self.bot_token.as_ref().map(|_| REDACTED))
            .finish()
    }
}

const REDACTED: &str = "[redacted]";

/// A Chatwoot account as one client of ours uses it.
#[derive(Clone)]
pub struct Chatwoot {
    base: Url,
    account_id: i64,
    inbox_id: i64,
    admin_token: String,
    bot_token: Option<String>,
    http: reqwest::Client,
    timeout: Duration,
}

impl fmt::Debug for Chatwoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chatwoot")
            .field("base", &self.base.as_str())
            .field("account_id", &self.account_id)
            .field("inbox_id", &self.inbox_id)
            .field("admin_token", &REDACTED)
            .field("bot_token", &self.bot_token.as_ref().map(|_| REDACTED))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The inbox as its administrator sees it (`GET A/inboxes/{id}`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct InboxInfo {
    pub id: i64,
    /// `Channel::Api` for the inbox the assistant is.
    pub channel_type: String,
    /// The webhook secret of an API channel (administrators only).
    #[serde(default)]
    pub secret: Option<String>,
    /// The Client API's inbox identifier.
    #[serde(default)]
    pub inbox_identifier: Option<String>,
    /// Where an API channel posts its webhooks (should be our `/api/webhook[/{uid}]`).
    #[serde(default)]
    pub webhook_url: Option<String>,
}

impl fmt::Debug for InboxInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxInfo")
            .field("id", &self.id)
            .field("channel_type", &self.channel_type)
            .field("secret", &self.secret.as_ref().map(|_| REDACTED))
            .field("inbox_identifier", &self.inbox_identifier)
            .field("webhook_url", &self.webhook_url)
            .finish()
    }
}

impl InboxInfo {
    /// Refuses any inbox but an API channel: only those take messages posted as the customer
    /// and call a webhook with every agent reply.
    pub fn ensure_api(&self) -> Result<&InboxInfo, ChatwootError> {
        if self.channel_type == API_CHANNEL {
            Ok(self)
        } else {
            Err(ChatwootError::Invalid(format!(
                "inbox {} is a {} inbox; the assistant needs an API-channel inbox ({API_CHANNEL}): \
                 create one under Settings → Inboxes → API and set operator_inbox_id to it",
                self.id, self.channel_type
            )))
        }
    }
}

/// A contact and its session (`source_id`) in our inbox, when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub id: i64,
    pub source_id: Option<String>,
}

/// A contact to create (§4.1) in our inbox. The visitor's unverified name and email go into
/// `custom_attributes`, never into `email`: Chatwoot would merge contacts by it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewContact {
    pub inbox_id: i64,
    /// Our session id for the contact; Chatwoot keeps it as the contact inbox's `source_id`.
    pub source_id: String,
    /// Our stable id for a known visitor (unique per account), when we have one.
    pub identifier: Option<String>,
    pub name: Option<String>,
    /// An object, or `Value::Null` for none.
    pub custom_attributes: Value,
}

/// A conversation to create (§4.3). It is created `pending` (the AI owns it; Chatwoot forces
/// that anyway when the inbox has an active bot).
#[derive(Debug, Clone, PartialEq)]
pub struct NewConversation {
    pub inbox_id: i64,
    pub contact_id: i64,
    pub source_id: String,
    /// Objects, or `Value::Null` for none.
    pub additional_attributes: Value,
    pub custom_attributes: Value,
    /// Sent as `message: {content, message_type: "incoming"}`.
    pub first_message: Option<String>,
}

/// A conversation's id (the display id used in every path) and state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ConversationInfo {
    pub id: i64,
    /// `open`, `pending`, `resolved` or `snoozed`.
    pub status: String,
    #[serde(default)]
    pub inbox_id: Option<i64>,
    #[serde(default)]
    pub custom_attributes: Value,
}

/// Which way a posted message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The customer's words, relayed by us (admin token; API inboxes only).
    Incoming,
    /// Ours to the customer (the AI's answer, a hand-off note).
    Outgoing,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }
}

/// A message to post (§4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub content: String,
    pub message_type: Direction,
    /// An internal note agents see and the customer doesn't.
    pub private: bool,
    /// Ours (prefixed [`super::webhook::SOURCE_PREFIX`]): the echo is recognised by it, and a
    /// re-post after an ambiguous failure is checked against it first.
    pub source_id: Option<String>,
}

/// A message as the messages list gives it (row 9).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MessageSummary {
    pub id: i64,
    #[serde(default)]
    pub source_id: Option<String>,
    pub message_type: MessageType,
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub sender: Option<super::webhook::Sender>,
    #[serde(default)]
    pub attachments: Option<Vec<super::webhook::Attachment>>,
}

/// The request body of the exact contact lookup (§4.1).
pub fn filter_body(identifier: &str) -> Value {
    json!({ "payload": [ { "attribute_key": "identifier", "filter_operator": "equal_to",
                           "values": [identifier], "query_operator": null } ] })
}

/// The request body of `POST A/contacts` (§4.1).
pub fn contact_body(c: &NewContact) -> Value {
    let mut body = json!({ "inbox_id": c.inbox_id, "source_id": c.source_id });
    if let Some(identifier) = &c.identifier {
        body["identifier"] = json!(identifier);
    }
    if let Some(name) = &c.name {
        body["name"] = json!(name);
    }
    if !c.custom_attributes.is_null() {
        body["custom_attributes"] = c.custom_attributes.clone();
    }
    body
}

/// The request body of `POST A/conversations` (§4.3).
pub fn conversation_body(c: &NewConversation) -> Value {
    let mut body = json!({
        "inbox_id": c.inbox_id, "contact_id": c.contact_id, "source_id": c.source_id, "status": "pending",
    });
    if !c.additional_attributes.is_null() {
        body["additional_attributes"] = c.additional_attributes.clone();
    }
    if !c.custom_attributes.is_null() {
        body["custom_attributes"] = c.custom_attributes.clone();
    }
    if let Some(text) = &c.first_message {
        body["message"] = json!({ "content": text, "message_type": "incoming" });
    }
    body
}

/// The request body of `POST A/conversations/{id}/messages` (§4.4).
pub fn message_body(m: &NewMessage) -> Value {
    let mut body = json!({ "content": m.content, "message_type": m.message_type.as_str() });
    if m.private {
        body["private"] = json!(true);
    }
    if let Some(source_id) = &m.source_id {
        body["source_id"] = json!(source_id);
    }
    body
}

// Response shapes: only what we read.

#[derive(Deserialize)]
struct Id {
    id: i64,
}

#[derive(Deserialize)]
struct Profile {
    #[serde(default)]
    accounts: Vec<Id>,
}

#[derive(Deserialize)]
struct InboxRef {
    id: Option<i64>,
}

#[derive(Deserialize)]
struct ContactInboxRow {
    source_id: Option<String>,
    inbox: Option<InboxRef>,
}

#[derive(Deserialize)]
struct ContactRow {
    id: i64,
    identifier: Option<String>,
    #[serde(default)]
    contact_inboxes: Vec<ContactInboxRow>,
}

#[derive(Deserialize)]
struct Payload<T> {
    payload: T,
}

#[derive(Deserialize)]
struct Created {
    contact: Id,
    contact_inbox: Option<ContactInboxRow>,
}

#[derive(Deserialize)]
struct PublicContact {
    pubsub_token: Option<String>,
}

#[derive(Deserialize)]
struct SourceOnly {
    source_id: Option<String>,
}

#[derive(Deserialize)]
struct StatusPayload {
    current_status: String,
}

impl Chatwoot {
    /// A client for one account and inbox, sending over `http` (see [`Chatwoot::http_client`]).
    pub fn new(config: ChatwootConfig, http: reqwest::Client) -> Result<Chatwoot, ChatwootError> {
        let base = checked_base(config.base)?;
        if config.admin_token.trim().is_empty() {
            return Err(ChatwootError::Unauthorized("no access token is configured (operator_token)".into()));
        }
        Ok(Chatwoot {
            base,
            account_id: config.account_id,
            inbox_id: config.inbox_id,
            admin_token: config.admin_token.trim().to_string(),
            bot_token: config.bot_token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
            http,
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// The outbound client with Chatwoot's connect timeout; every request is also limited to
    /// [`REQUEST_TIMEOUT`] by the client. One is enough for every Chatwoot account.
    pub fn http_client(policy: UpstreamPolicy) -> reqwest::Client {
        crate::outbound::streaming_client(policy, CONNECT_TIMEOUT)
    }

    /// The same client with another limit per request (tests use short ones).
    pub fn with_timeout(mut self, timeout: Duration) -> Chatwoot {
        self.timeout = timeout;
        self
    }

    pub fn account_id(&self) -> i64 {
        self.account_id
    }

    pub fn inbox_id(&self) -> i64 {
        self.inbox_id
    }

    /// Whether an agent bot token is configured (hand-offs are then official bot hand-offs).
    pub fn has_bot_token(&self) -> bool {
        self.bot_token.is_some()
    }

    /// The account of `admin_token` (`GET /api/v1/profile`, row 20), for when
    /// `operator_account_id` is not set: it must be the token's only one.
    pub async fn profile_account(http: &reqwest::Client, base: &Url, admin_token: &str) -> Result<i64, ChatwootError> {
        let token = admin_token.trim();
        let scrub = |e: ChatwootError| e.map_text(|t| scrub(t, &[token]));
        let url = endpoint(&checked_base(base.clone())?, &["api", "v1", "profile"]);
        let body = send(http, REQUEST_TIMEOUT, Method::GET, url, token, None).await.map_err(scrub)?;
        let profile: Profile = parse(&body).map_err(scrub)?;
        match profile.accounts.as_slice() {
            [one] => Ok(one.id),
            [] => Err(ChatwootError::Invalid("the token's user belongs to no account".into())),
            _ => Err(ChatwootError::Invalid("the token has several accounts: set operator_account_id".into())),
        }
    }

    /// The inbox (`GET A/inboxes/{id}`, row 18): its channel type, webhook secret and
    /// Client API identifier. See [`InboxInfo::ensure_api`].
    pub async fn inbox(&self, inbox_id: i64) -> Result<InboxInfo, ChatwootError> {
        self.get(&["inboxes", &inbox_id.to_string()], &[], false).await
    }

    /// The inbox as [`Chatwoot::inbox`] reads it, with its display name: the admin's test
    /// button names the inbox it found.
    pub async fn inbox_named(&self, inbox_id: i64) -> Result<(InboxInfo, Option<String>), ChatwootError> {
        let raw: Value = self.get(&["inboxes", &inbox_id.to_string()], &[], false).await?;
        let name = raw.get("name").and_then(Value::as_str).map(str::to_string);
        let info = serde_json::from_value(raw).map_err(|e| self.scrub(ChatwootError::Protocol(e.to_string())))?;
        Ok((info, name))
    }

    /// The contact whose `identifier` is exactly this (`POST A/contacts/filter`, §4.1), with
    /// its session in our inbox if it has one.
    pub async fn find_contact(&self, identifier: &str) -> Result<Option<Contact>, ChatwootError> {
        let found: Payload<Vec<ContactRow>> =
            self.call(Method::POST, &["contacts", "filter"], &[], Some(&filter_body(identifier)), false).await?;
        Ok(found
            .payload
            .into_iter()
            .find(|c| c.identifier.as_deref() == Some(identifier))
            .map(|c| Contact { id: c.id, source_id: self.session_in_inbox(&c.contact_inboxes) }))
    }

    fn session_in_inbox(&self, rows: &[ContactInboxRow]) -> Option<String> {
        rows.iter()
            .find(|r| r.inbox.as_ref().and_then(|i| i.id) == Some(self.inbox_id))
            .and_then(|r| r.source_id.clone())
    }

    /// Creates a contact with a session in the inbox (`POST A/contacts`, §4.1); the
    /// `source_id` is the one Chatwoot kept.
    pub async fn create_contact(&self, new: &NewContact) -> Result<Contact, ChatwootError> {
        let created: Payload<Created> =
            self.call(Method::POST, &["contacts"], &[], Some(&contact_body(new)), false).await?;
        let source_id = created.payload.contact_inbox.and_then(|ci| ci.source_id);
        if source_id.is_none() {
            return Err(ChatwootError::Protocol("the new contact has no session (contact_inbox.source_id)".into()));
        }
        Ok(Contact { id: created.payload.contact.id, source_id })
    }

    /// The contact for `new.identifier`, else a new one: looks first, and when creating meets
    /// a duplicate identifier (another server created it meanwhile), looks again. A contact
    /// found without a session in the inbox gets one with `new.source_id`; one found with a
    /// session keeps it. Without an identifier this is [`Chatwoot::create_contact`].
    pub async fn find_or_create_contact(&self, new: &NewContact) -> Result<Contact, ChatwootError> {
        let Some(identifier) = new.identifier.as_deref() else { return self.create_contact(new).await };
        let found = match self.find_contact(identifier).await? {
            Some(c) => c,
            None => match self.create_contact(new).await {
                Ok(c) => return Ok(c),
                Err(ChatwootError::Invalid(why)) if why.to_ascii_lowercase().contains("identifier") => {
                    self.find_contact(identifier).await?.ok_or(ChatwootError::Invalid(why))?
                }
                Err(e) => return Err(e),
            },
        };
        if found.source_id.is_some() {
            return Ok(found);
        }
        let source_id = self.add_contact_inbox(found.id, new.inbox_id, &new.source_id).await?;
        Ok(Contact { id: found.id, source_id: Some(source_id) })
    }

    /// Gives an existing contact a session in an inbox
    /// (`POST A/contacts/{id}/contact_inboxes`, row 4); returns the session's `source_id`.
    pub async fn add_contact_inbox(
        &self,
        contact_id: i64,
        inbox_id: i64,
        source_id: &str,
    ) -> Result<String, ChatwootError> {
        let body = json!({ "inbox_id": inbox_id, "source_id": source_id });
        let made: SourceOnly = self
            .call(Method::POST, &["contacts", &contact_id.to_string(), "contact_inboxes"], &[], Some(&body), false)
            .await?;
        made.source_id.ok_or_else(|| ChatwootError::Protocol("the contact inbox has no source_id".into()))
    }

    /// Creates a conversation (`POST A/conversations`, §4.3).
    pub async fn create_conversation(&self, new: &NewConversation) -> Result<ConversationInfo, ChatwootError> {
        self.call(Method::POST, &["conversations"], &[], Some(&conversation_body(new)), false).await
    }

    /// One conversation's state (`GET A/conversations/{id}`, row 7).
    pub async fn conversation(&self, conversation_id: i64) -> Result<ConversationInfo, ChatwootError> {
        self.get(&["conversations", &conversation_id.to_string()], &[], false).await
    }

    /// The contact's conversations, in every inbox (`GET A/contacts/{id}/conversations`,
    /// `{payload: [conversation]}` in the swagger): what to look at before creating one again
    /// after an ambiguous failure.
    pub async fn conversations_of_contact(&self, contact_id: i64) -> Result<Vec<ConversationInfo>, ChatwootError> {
        let list: Payload<Vec<ConversationInfo>> =
            self.get(&["contacts", &contact_id.to_string(), "conversations"], &[], false).await?;
        Ok(list.payload)
    }

    /// Posts a message (`POST A/conversations/{id}/messages`, §4.4) with the bot token when
    /// `as_bot` and one is configured, else the admin token; returns the message id. Not
    /// idempotent: after an ambiguous failure look with [`Chatwoot::messages_after`] first.
    pub async fn post_message(
        &self,
        conversation_id: i64,
        message: &NewMessage,
        as_bot: bool,
    ) -> Result<i64, ChatwootError> {
        let posted: Id = self
            .call(
                Method::POST,
                &["conversations", &conversation_id.to_string(), "messages"],
                &[],
                Some(&message_body(message)),
                as_bot,
            )
            .await?;
        Ok(posted.id)
    }

    /// Messages after the one with id `after` (up to 100, oldest first), or the latest 20
    /// (`GET A/conversations/{id}/messages`, row 9; admin token).
    pub async fn messages_after(
        &self,
        conversation_id: i64,
        after: Option<i64>,
    ) -> Result<Vec<MessageSummary>, ChatwootError> {
        let after = after.map(|a| a.to_string());
        let query: Vec<(&str, &str)> = after.iter().map(|a| ("after", a.as_str())).collect();
        let list: Payload<Vec<MessageSummary>> =
            self.get(&["conversations", &conversation_id.to_string(), "messages"], &query, false).await?;
        Ok(list.payload)
    }

    /// Sets a conversation's status (`POST A/conversations/{id}/toggle_status`, §4.5): `open`
    /// with the bot token is the official hand-off. Returns the status Chatwoot reports.
    pub async fn toggle_status(
        &self,
        conversation_id: i64,
        status: &str,
        as_bot: bool,
    ) -> Result<String, ChatwootError> {
        let body = json!({ "status": status });
        let toggled: Payload<StatusPayload> = self
            .call(
                Method::POST,
                &["conversations", &conversation_id.to_string(), "toggle_status"],
                &[],
                Some(&body),
                as_bot,
            )
            .await?;
        Ok(toggled.payload.current_status)
    }

    /// Shows or hides typing (`POST A/conversations/{id}/toggle_typing_status`, row 15,
    /// `{"typing_status": "on"|"off"}`), as the bot when its token is configured.
    pub async fn toggle_typing(&self, conversation_id: i64, on: bool) -> Result<(), ChatwootError> {
        let body = json!({ "typing_status": if on { "on" } else { "off" } });
        let path = ["conversations", &conversation_id.to_string(), "toggle_typing_status"];
        self.request(Method::POST, &path, &[], Some(&body), true).await.map(drop)
    }

    /// The contact session's `pubsub_token` for ActionCable (§6): the Client API's
    /// find-or-create by our `source_id` (`POST P/contacts`, row 21), which needs no token.
    pub async fn contact_pubsub_token(&self, inbox_identifier: &str, source_id: &str) -> Result<String, ChatwootError> {
        let url = endpoint(&self.base, &["public", "api", "v1", "inboxes", inbox_identifier, "contacts"]);
        let body = json!({ "source_id": source_id });
        let bytes = send(&self.http, self.timeout, Method::POST, url, "", Some(&body)).await?;
        let session: PublicContact = parse(&bytes)?;
        session.pubsub_token.filter(|t| !t.is_empty()).ok_or_else(|| {
            ChatwootError::Protocol("the contact session has no pubsub_token (is the inbox an API channel?)".into())
        })
    }

    /// Shows or hides the contact's typing to the agents (Client API `toggle_typing`, row 25).
    pub async fn contact_typing(
        &self,
        inbox_identifier: &str,
        source_id: &str,
        conversation_id: i64,
        on: bool,
    ) -> Result<(), ChatwootError> {
        let conversation = conversation_id.to_string();
        let path = [
            "public",
            "api",
            "v1",
            "inboxes",
            inbox_identifier,
            "contacts",
            source_id,
            "conversations",
            &conversation,
            "toggle_typing",
        ];
        let body = json!({ "typing_status": if on { "on" } else { "off" } });
        send(&self.http, self.timeout, Method::POST, endpoint(&self.base, &path), "", Some(&body)).await?;
        Ok(())
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, &str)],
        as_bot: bool,
    ) -> Result<T, ChatwootError> {
        self.call(Method::GET, path, query, None, as_bot).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        as_bot: bool,
    ) -> Result<T, ChatwootError> {
        let bytes = self.request(method, path, query, body, as_bot).await?;
        parse(&bytes).map_err(|e| self.scrub(e))
    }

    async fn request(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        as_bot: bool,
    ) -> Result<Vec<u8>, ChatwootError> {
        let account = self.account_id.to_string();
        let segments: Vec<&str> = ["api", "v1", "accounts", &account].into_iter().chain(path.iter().copied()).collect();
        let mut url = endpoint(&self.base, &segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let token = if as_bot { self.bot_token.as_deref().unwrap_or(&self.admin_token) } else { &self.admin_token };
        send(&self.http, self.timeout, method, url, token, body).await.map_err(|e| self.scrub(e))
    }

    fn scrub(&self, e: ChatwootError) -> ChatwootError {
        let tokens: Vec<&str> = std::iter::once(self.admin_token.as_str()).chain(self.bot_token.as_deref()).collect();
        e.map_text(|t| scrub(t, &tokens))
    }
}

fn checked_base(base: Url) -> Result<Url, ChatwootError> {
    if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() || base.host().is_none() {
        return Err(ChatwootError::Invalid("the Chatwoot URL must be an http(s) URL".into()));
    }
    Ok(base)
}

/// `base` with `segments` appended to its path (a path prefix like `/support` is kept).
fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut().expect("checked: an http(s) URL").pop_if_empty().extend(segments);
    url
}

/// Text with every token replaced (a defence: error bodies should never echo one).
fn scrub(text: String, tokens: &[&str]) -> String {
    tokens.iter().filter(|t| t.len() >= 4).fold(text, |text, t| text.replace(t, REDACTED))
}

async fn send(
    http: &reqwest::Client,
    timeout: Duration,
    method: Method,
    url: Url,
    token: &str,
    body: Option<&Value>,
) -> Result<Vec<u8>, ChatwootError> {
    let mut request = http.request(method, url).timeout(timeout).header("accept", "application/json");
    // The Client API (`/public/…`) takes no token.
    if !token.is_empty() {
        let mut value = HeaderValue::from_str(token).map_err(|_| {
            ChatwootError::Unauthorized("the access token contains characters an HTTP header can't carry".into())
        })?;
        value.set_sensitive(true);
        request = request.header("api_access_token", value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let mut response = request.send().await.map_err(|e| transport(&e, timeout))?;
    let status = response.status().as_u16();
    let retry = retry_after(response.headers());
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport(&e, timeout))? {
        if bytes.len() + chunk.len() > MAX_BODY {
            if (200..300).contains(&status) {
                return Err(ChatwootError::Protocol(format!("the answer is larger than {} MiB", MAX_BODY >> 20)));
            }
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    if (200..300).contains(&status) { Ok(bytes) } else { Err(classify(status, &bytes, retry)) }
}

fn transport(e: &reqwest::Error, timeout: Duration) -> ChatwootError {
    if e.is_timeout() {
        return ChatwootError::Unavailable(format!("no answer within {}s", timeout.as_secs_f32()));
    }
    if e.is_redirect() {
        return ChatwootError::Protocol(crate::outbound::error_text(e));
    }
    ChatwootError::Unavailable(crate::outbound::error_chain(e))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ChatwootError> {
    serde_json::from_slice(body).map_err(|e| ChatwootError::Protocol(format!("{e} in {}", snippet(body))))
}

/// `Retry-After` in seconds, up to a day.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    crate::outbound::retry_after(headers, Duration::from_secs(86_400))
}

/// Maps a non-2xx answer to its error (§7), reading `{"error": …}`, `{"message": …}`,
/// `{"errors": […]}` or plain text.
pub fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> ChatwootError {
    let text = error_text(body);
    match status {
        401 | 403 => ChatwootError::Unauthorized(text),
        404 => ChatwootError::NotFound,
        408 => ChatwootError::Unavailable(format!("HTTP 408: {text}")),
        429 => ChatwootError::RateLimited { retry_after },
        400..=499 => ChatwootError::Invalid(if status == 422 { text } else { format!("HTTP {status}: {text}") }),
        500..=599 => ChatwootError::Unavailable(format!("HTTP {status}: {text}")),
        _ => ChatwootError::Protocol(format!("unexpected HTTP {status}: {text}")),
    }
}

fn error_text(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = parsed.as_ref().and_then(|v| {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        text("error").or_else(|| text("message")).or_else(|| {
            let list: Vec<&str> = v.get("errors")?.as_array()?.iter().filter_map(Value::as_str).collect();
            (!list.is_empty()).then(|| list.join("; "))
        })
    });
    field.map(|t| t.chars().filter(|c| !c.is_control()).take(300).collect()).unwrap_or_else(|| snippet(body))
}

fn snippet(body: &[u8]) -> String {
    crate::outbound::body_snippet(body, 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Chatwoot {
        Chatwoot::new(
            ChatwootConfig {
                base: Url::parse("https://chat.example/support/").unwrap(),
                account_id: 2,
                inbox_id: 7,
                admin_token: "admin-SECRET-token".into(),
                bot_token: Some("bot-SECRET-token".into()),
            },
            Chatwoot::http_client(UpstreamPolicy::default()),
        )
        .unwrap()
    }

    #[test]
    fn errors_by_status_and_body() {
        let e = classify(401, br#"{"error":"Invalid Access Token"}"#, None);
        assert_eq!(e, ChatwootError::Unauthorized("Invalid Access Token".into()));
        assert!(!e.retryable());
        let e = classify(401, br#"{"errors":["You need to sign in or sign up before continuing."]}"#, None);
        assert_eq!(e, ChatwootError::Unauthorized("You need to sign in or sign up before continuing.".into()));
        let e = classify(403, br#"{"error":"Message status update is only allowed for API inboxes"}"#, None);
        assert!(matches!(e, ChatwootError::Unauthorized(_)) && !e.retryable());
        assert_eq!(classify(404, br#"{"error":"Resource could not be found"}"#, None), ChatwootError::NotFound);
        let e = classify(422, br#"{"message":"Identifier has already been taken","attributes":["identifier"]}"#, None);
        assert_eq!(e, ChatwootError::Invalid("Identifier has already been taken".into()));
        assert!(!e.retryable());
        let e = classify(422, br#"{"error":"source_id should be unique"}"#, None);
        assert_eq!(e, ChatwootError::Invalid("source_id should be unique".into()));
        let e = classify(429, b"Retry later", Some(Duration::from_secs(3)));
        assert_eq!(e, ChatwootError::RateLimited { retry_after: Some(Duration::from_secs(3)) });
        assert!(e.retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(e.to_string(), "Chatwoot is rate limiting (HTTP 429), retry after 3s");
        let e = classify(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", None);
        assert!(e.retryable() && e.to_string().contains("502 Bad Gateway"), "{e}");
        let e = classify(500, br#"{"status":500,"error":"Internal Server Error"}"#, None);
        assert_eq!(e, ChatwootError::Unavailable("HTTP 500: Internal Server Error".into()));
        assert!(classify(408, b"", None).retryable());
        let e = classify(400, b"", None);
        assert_eq!(e, ChatwootError::Invalid("HTTP 400: (empty body)".into()));
        assert!(!e.retryable());
        assert!(matches!(classify(304, b"", None), ChatwootError::Protocol(_)));
    }

    #[test]
    fn retry_after_in_seconds_only() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after", "0.5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(500)));
        h.insert("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "-1".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn the_contracts_responses_parse() {
        // §4.1, byte for byte (the "..." keys included).
        let created = r#"{
          "payload": {
            "contact": {
              "id": 1204, "name": "Dana Example", "email": "dana@example.org", "phone_number": null,
              "identifier": "user-88412", "blocked": false, "thumbnail": "", "availability_status": "offline",
              "additional_attributes": { "company_name": "Example GmbH" }, "custom_attributes": { "plan": "pro" },
              "created_at": 1781690000,
              "contact_inboxes": [
                { "source_id": "asst-session-5f1c",
                  "inbox": { "id": 7, "avatar_url": "", "channel_id": 3, "name": "AI assistant",
                             "channel_type": "Channel::Api", "provider": null } }
              ]
            },
            "contact_inbox": { "source_id": "asst-session-5f1c", "inbox": { "id": 7, "name": "AI assistant", "channel_type": "Channel::Api", "...": "full inbox record" } }
          }
        }"#;
        let c: Payload<Created> = serde_json::from_str(created).unwrap();
        assert_eq!(c.payload.contact.id, 1204);
        assert_eq!(c.payload.contact_inbox.unwrap().source_id.as_deref(), Some("asst-session-5f1c"));
        let contact = serde_json::from_str::<Value>(created).unwrap()["payload"]["contact"].clone();
        let row: ContactRow = serde_json::from_value(contact).unwrap();
        assert_eq!(client().session_in_inbox(&row.contact_inboxes).as_deref(), Some("asst-session-5f1c"));

        // §4.3, trimmed as printed.
        let conversation = r#"{
          "id": 311, "uuid": "6b0c…", "account_id": 2, "inbox_id": 7, "status": "pending", "priority": null,
          "labels": [], "can_reply": true, "muted": false, "unread_count": 1, "snoozed_until": null,
          "additional_attributes": { "origin": "rust-assistant", "page": "/pricing" },
          "custom_attributes": { "assistant_session": "5f1c" },
          "created_at": 1781690012, "timestamp": 1781690012, "last_activity_at": 1781690012,
          "agent_last_seen_at": 0, "contact_last_seen_at": 0, "assignee_last_seen_at": 0,
          "first_reply_created_at": 0, "waiting_since": 1781690012, "updated_at": 1781690012.532,
          "meta": { "sender": { "id": 1204, "name": "Dana Example", "...": "contact" },
                    "channel": "Channel::Api", "hmac_verified": false },
          "messages": [ { "id": 90211, "content": "Hi, I need help with my invoice", "message_type": 0, "...": "push form" } ]
        }"#;
        let c: ConversationInfo = serde_json::from_str(conversation).unwrap();
        assert_eq!((c.id, c.status.as_str(), c.inbox_id), (311, "pending", Some(7)));
        assert_eq!(c.custom_attributes["assistant_session"], "5f1c");

        // §4.4.
        let message = r#"{ "id": 90212, "content": "It says I was charged twice", "inbox_id": 7, "conversation_id": 311,
          "message_type": 0, "content_type": "text", "status": "sent", "content_attributes": {},
          "created_at": 1781690040, "private": false, "source_id": "asst-msg-000431",
          "sender": { "id": 1204, "name": "Dana Example", "type": "contact", "...": "contact push form" } }"#;
        assert_eq!(serde_json::from_str::<Id>(message).unwrap().id, 90212);
        let summary: MessageSummary = serde_json::from_str(message).unwrap();
        assert_eq!(
            summary,
            MessageSummary {
                id: 90212,
                source_id: Some("asst-msg-000431".into()),
                message_type: MessageType::Incoming,
                private: false,
                content: Some("It says I was charged twice".into()),
                sender: Some(super::super::webhook::Sender {
                    id: Some(1204),
                    name: Some("Dana Example".into()),
                    kind: Some("contact".into()),
                    ..Default::default()
                }),
                attachments: None,
            }
        );

        // §4.5.
        let toggled = r#"{ "meta": {}, "payload": { "success": null, "conversation_id": 311, "current_status": "open", "snoozed_until": null } }"#;
        assert_eq!(serde_json::from_str::<Payload<StatusPayload>>(toggled).unwrap().payload.current_status, "open");

        let profile = r#"{"id":5,"name":"Sam","pubsub_token":"x","accounts":[{"id":2,"name":"Example Support","role":"administrator"}]}"#;
        assert_eq!(serde_json::from_str::<Profile>(profile).unwrap().accounts.len(), 1);

        let inbox = r#"{"id":7,"name":"AI assistant","channel_type":"Channel::Api","secret":"s3cr3t","inbox_identifier":"ABCD","webhook_url":"https://x"}"#;
        let inbox: InboxInfo = serde_json::from_str(inbox).unwrap();
        assert!(inbox.ensure_api().is_ok());
        let widget = InboxInfo { channel_type: "Channel::WebWidget".into(), ..inbox.clone() };
        let e = widget.ensure_api().unwrap_err();
        assert!(
            matches!(&e, ChatwootError::Invalid(m) if m.contains("Channel::WebWidget") && m.contains("Channel::Api")),
            "{e}"
        );

        assert!(
            matches!(parse::<Id>(b"<html>oops</html>"), Err(ChatwootError::Protocol(m)) if m.contains("<html>oops"))
        );
    }

    #[test]
    fn request_bodies_follow_the_contract() {
        assert_eq!(
            filter_body("user-88412"),
            json!({ "payload": [ { "attribute_key": "identifier", "filter_operator": "equal_to",
                                   "values": ["user-88412"], "query_operator": null } ] })
        );
        let contact = NewContact {
            inbox_id: 7,
            source_id: "asst-session-5f1c".into(),
            identifier: Some("user-88412".into()),
            name: Some("Dana Example".into()),
            custom_attributes: json!({ "plan": "pro" }),
        };
        assert_eq!(
            contact_body(&contact),
            json!({ "inbox_id": 7, "source_id": "asst-session-5f1c", "name": "Dana Example",
                    "identifier": "user-88412", "custom_attributes": { "plan": "pro" } })
        );
        let bare = NewContact { identifier: None, name: None, custom_attributes: Value::Null, ..contact };
        assert_eq!(contact_body(&bare), json!({ "inbox_id": 7, "source_id": "asst-session-5f1c" }));
        let conversation = NewConversation {
            inbox_id: 7,
            contact_id: 1204,
            source_id: "asst-session-5f1c".into(),
            additional_attributes: json!({ "origin": "rust-assistant", "page": "/pricing" }),
            custom_attributes: json!({ "assistant_session": "5f1c" }),
            first_message: Some("Hi, I need help with my invoice".into()),
        };
        assert_eq!(
            conversation_body(&conversation),
            json!({
              "inbox_id": 7,
              "contact_id": 1204,
              "source_id": "asst-session-5f1c",
              "status": "pending",
              "additional_attributes": { "origin": "rust-assistant", "page": "/pricing" },
              "custom_attributes": { "assistant_session": "5f1c" },
              "message": { "content": "Hi, I need help with my invoice", "message_type": "incoming" }
            })
        );
        let incoming = NewMessage {
            content: "It says I was charged twice".into(),
            message_type: Direction::Incoming,
            private: false,
            source_id: Some("asst-msg-000431".into()),
        };
        assert_eq!(
            message_body(&incoming),
            json!({ "content": "It says I was charged twice", "message_type": "incoming", "source_id": "asst-msg-000431" })
        );
        let note = NewMessage {
            content: "AI hand-off: customer disputes a double charge; already verified identity.".into(),
            message_type: Direction::Outgoing,
            private: true,
            source_id: None,
        };
        assert_eq!(
            message_body(&note),
            json!({ "content": "AI hand-off: customer disputes a double charge; already verified identity.", "message_type": "outgoing", "private": true })
        );
    }

    #[test]
    fn paths_keep_the_base_prefix() {
        let c = client();
        let url = endpoint(&c.base, &["api", "v1", "accounts", "2", "contacts", "filter"]);
        assert_eq!(url.as_str(), "https://chat.example/support/api/v1/accounts/2/contacts/filter");
        let root = Url::parse("http://127.0.0.1:3000").unwrap();
        assert_eq!(endpoint(&root, &["api", "v1", "profile"]).as_str(), "http://127.0.0.1:3000/api/v1/profile");
        let bad = ChatwootConfig { base: Url::parse("mailto:x@y").unwrap(), ..config() };
        assert!(matches!(
            Chatwoot::new(bad, Chatwoot::http_client(UpstreamPolicy::default())),
            Err(ChatwootError::Invalid(_))
        ));
        let empty = ChatwootConfig { admin_token: " ".into(), ..config() };
        assert!(matches!(
            Chatwoot::new(empty, Chatwoot::http_client(UpstreamPolicy::default())),
            Err(ChatwootError::Unauthorized(_))
        ));
        let no_bot = Chatwoot::new(
            ChatwootConfig { bot_token: Some("".into()), ..config() },
            Chatwoot::http_client(UpstreamPolicy::default()),
        );
        assert!(!no_bot.unwrap().has_bot_token());
    }

    fn config() -> ChatwootConfig {
        ChatwootConfig {
            base: Url::parse("https://chat.example/").unwrap(),
            account_id: 2,
            inbox_id: 7,
            admin_token: "admin-SECRET-token".into(),
            bot_token: Some("bot-SECRET-token".into()),
        }
    }

    #[test]
    fn tokens_never_show() {
        let c = client();
        let shown = format!("{c:?} {:?}", config());
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("[redacted]") && shown.contains("chat.example"), "{shown}");
        let inbox = InboxInfo {
            id: 7,
            channel_type: API_CHANNEL.into(),
            secret: Some("whsec-SECRET".into()),
            inbox_identifier: None,
            webhook_url: None,
        };
        assert!(!format!("{inbox:?}").contains("SECRET"));
        // An error body that echoes a token loses it.
        let e = c.scrub(classify(500, b"token admin-SECRET-token / bot-SECRET-token refused", None));
        assert!(!e.to_string().contains("SECRET") && !format!("{e:?}").contains("SECRET"), "{e}");
    }
}
