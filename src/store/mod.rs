//! Persistence behind one narrow interface. The backend (SQLite or PostgreSQL) is chosen at run
//! time from the database URL; both implementations share their SQL text (`sql.rs`) and are
//! checked by one conformance suite, so behaviour cannot drift between dialects.

pub mod privacy;
mod sql;
mod sqlite_writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

pub use sql::{PostgresStore, SqliteStore, known_schema_version};

/// Failures of the storage layer; callers map them, the HTTP layer never shows their text.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row that must be unique already exists (e.g. a client uid).
    #[error("{0} already exists")]
    Conflict(String),
    /// A referenced row is missing.
    #[error("{0} not found")]
    NotFound(String),
    /// The database itself failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// SQLite's message writer failed (it talks to SQLite directly, see `sqlite_writer`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Schema migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Result alias of the storage layer.
pub type StoreResult<T> = Result<T, StoreError>;

/// A client (website) row with the versions other processes bump to signal changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRow {
    pub id: i64,
    pub uid: String,
    pub created_at: i64,
    pub settings_version: i64,
    pub knowledge_version: i64,
}

/// One stored setting; `value` is ciphertext for secrets (see `clients::secrets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSetting {
    pub key: String,
    pub value: String,
}

/// A change to one setting: `Some` writes the value, `None` removes it (back to default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingWrite {
    pub key: String,
    pub value: Option<String>,
}

/// A FAQ entry as stored; the knowledge index is rebuilt from these.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct KnowledgeEntry {
    pub id: String,
    pub question: String,
    pub answer: String,
    /// Other phrasings of the question, indexed with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl KnowledgeEntry {
    /// An entry with a question and an answer only (no variants, category or page).
    pub fn new(id: &str, question: &str, answer: &str) -> KnowledgeEntry {
        KnowledgeEntry {
            id: id.into(),
            question: question.into(),
            answer: answer.into(),
            variants: Vec::new(),
            category: None,
            url: None,
        }
    }
}

/// What a knowledge replacement changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KnowledgeWrite {
    /// Whether anything was written (false: same entries, same order).
    pub changed: bool,
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    pub unchanged: usize,
}

impl KnowledgeWrite {
    /// Compares the stored `(id, hash)` list with the new entries and their hashes.
    pub fn between(stored: &[(String, String)], entries: &[KnowledgeEntry], hashes: &[String]) -> KnowledgeWrite {
        let old: std::collections::HashMap<&str, &str> = stored.iter().map(|(i, h)| (i.as_str(), h.as_str())).collect();
        let mut w = KnowledgeWrite::default();
        for (e, h) in entries.iter().zip(hashes) {
            match old.get(e.id.as_str()) {
                None => w.added += 1,
                Some(o) if o == h => w.unchanged += 1,
                Some(_) => w.updated += 1,
            }
        }
        let new: std::collections::HashSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        w.removed = stored.iter().filter(|(i, _)| !new.contains(i.as_str())).count();
        let same_order = stored.len() == entries.len() && stored.iter().zip(entries).all(|((i, _), e)| *i == e.id);
        w.changed = w.added + w.updated + w.removed > 0 || !same_order;
        w
    }
}

/// The content hash of an entry: what makes a re-train with no changes write nothing.
pub fn content_hash(e: &KnowledgeEntry) -> String {
    use sha2::Digest;
    let json = serde_json::to_vec(e).expect("entries serialise");
    hex::encode(&sha2::Sha256::digest(&json)[..16])
}

/// A client's training state: the lease of a running run and the outcome of the last ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrainingStatus {
    /// Who holds the lease ("" when none).
    pub lease_owner: String,
    /// Milliseconds since the epoch until which the lease holds; a run renews it per page.
    pub lease_until: i64,
    pub started_at: i64,
    pub pages: i64,
    pub entries: i64,
    pub last_success_at: Option<i64>,
    pub last_error_at: Option<i64>,
    pub last_error: Option<String>,
    /// Entries after the last successful run.
    pub entry_count: Option<i64>,
}

/// A conversation as the admin panel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    pub session: SessionRow,
    /// The newest message's time (the session's start when it has none).
    pub last_at: i64,
    pub messages: i64,
    /// The visitor's first message.
    pub first_question: Option<String>,
    /// The hand-off to a person, if one was ever asked for.
    pub handoff: Option<HandoffState>,
    /// Tasks made from the conversation.
    pub tasks: i64,
    /// Answers the visitor rated up / down.
    pub feedback_up: i64,
    pub feedback_down: i64,
}

/// One finished training run, for the history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingRun {
    /// Who ran it: the CLI, the schedule or an admin (the lease owner).
    pub owner: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub pages: i64,
    /// Entries written (success) or fetched before the failure.
    pub entries: i64,
    /// Why it failed; `None` for a success.
    pub error: Option<String>,
}

impl TrainingStatus {
    /// Whether a run holds the lease at `now`.
    pub fn running(&self, now: i64) -> bool {
        self.lease_until > now
    }
}

/// A visitor session; the bearer token itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: i64,
    pub client_id: i64,
    pub conversation_id: String,
    pub created_at: i64,
    /// The name the host page gave (`identify`); UNVERIFIED, label it wherever it is shown.
    pub visitor_name: Option<String>,
    /// The email the host page gave (`identify`); UNVERIFIED, and never logged.
    pub visitor_email: Option<String>,
}

/// Who answers a session: the bot, or a person (once the hand-off is delivered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffState {
    /// The assistant answers.
    Bot,
    /// A hand-off is on its way to the operator's service; the bot says so instead of answering.
    Waiting,
    /// A person has the conversation; visitor messages go to them.
    Human,
}

impl HandoffState {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            HandoffState::Bot => "bot",
            HandoffState::Waiting => "waiting",
            HandoffState::Human => "human",
        }
    }

    fn parse(s: &str) -> HandoffState {
        match s {
            "waiting" => HandoffState::Waiting,
            "human" => HandoffState::Human,
            _ => HandoffState::Bot,
        }
    }
}

/// Where a follow-up task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for the visitor's yes or no.
    Proposed,
    /// To be created at the provider (retried until created or failed).
    Queued,
    Created,
    /// The visitor said no, or moved on.
    Declined,
    /// Refused for good or too old: kept for the admin.
    Failed,
}

impl TaskState {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Proposed => "proposed",
            TaskState::Queued => "queued",
            TaskState::Created => "created",
            TaskState::Declined => "declined",
            TaskState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> TaskState {
        match s {
            "proposed" => TaskState::Proposed,
            "queued" => TaskState::Queued,
            "created" => TaskState::Created,
            "declined" => TaskState::Declined,
            _ => TaskState::Failed,
        }
    }
}

/// The outboxes' backlog across clients: pending and given-up items per queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    /// Operator (Chatwoot) items still to deliver.
    pub operator_pending: i64,
    /// Operator items given up on (dead letters an admin can retry).
    pub operator_dead: i64,
    /// Task cards queued for their provider.
    pub tasks_pending: i64,
    /// Task cards that failed for good.
    pub tasks_failed: i64,
}

/// A task request to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTaskRecord {
    pub client_id: i64,
    pub session_id: i64,
    /// Unique per request; also written into the card.
    pub marker: String,
    pub category: Option<String>,
    pub title: String,
    pub summary: String,
    /// Contact details the visitor gave (unverified).
    pub contact: Option<String>,
    pub page: Option<String>,
    pub state: TaskState,
    pub now: i64,
}

/// A recorded task: the request, where it stands, and the card once made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    pub id: i64,
    pub client_id: i64,
    pub session_id: i64,
    pub marker: String,
    pub category: Option<String>,
    pub title: String,
    pub summary: String,
    pub contact: Option<String>,
    pub page: Option<String>,
    pub state: TaskState,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
    pub provider_id: Option<String>,
    /// The short reference shown to the visitor.
    pub reference: Option<String>,
    /// The card's link (for the team only).
    pub url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A session's link to its conversation at the operator's service (Chatwoot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorLink {
    pub session_id: i64,
    pub client_id: i64,
    /// Our identifier of the contact's session in the inbox (`aia-…`), never the session token.
    pub source_id: String,
    pub contact_id: Option<i64>,
    pub conversation_id: Option<i64>,
    pub state: HandoffState,
    /// Hand-offs this session started (capped by `handoff_max_per_session`).
    pub handoffs: i64,
    pub updated_at: i64,
}

/// One durable piece of work for the operator's service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub client_id: i64,
    pub session_id: i64,
    /// What to do (`handoff`, `message`, …); the operator module gives it meaning.
    pub kind: String,
    /// The work's data, JSON.
    pub payload: String,
    pub created_at: i64,
    pub next_at: i64,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Set once the item is dead-lettered (too old, or refused for good).
    pub dead_at: Option<i64>,
}

/// What an admin account may manage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminRole {
    /// Every client, and the admin accounts.
    Server,
    /// Only the clients granted to the account (a shop owner at an agency).
    Client,
}

impl AdminRole {
    /// The stable text stored in the database and sent by the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Server => "server",
            AdminRole::Client => "client",
        }
    }

    /// Reads the stored text; anything unknown gets the smaller role.
    pub fn parse(s: &str) -> AdminRole {
        match s {
            "server" => AdminRole::Server,
            _ => AdminRole::Client,
        }
    }
}

/// An admin account as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminRow {
    pub id: i64,
    /// Lower-case, unique.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub role: AdminRole,
    pub created_at: i64,
}

impl std::fmt::Debug for AdminRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminRow")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A signed-in admin browser, found by the hash of its cookie's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSessionRow {
    pub admin: AdminRow,
    /// The token every state-changing request of the session repeats.
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Visitor,
    Assistant,
    Operator,
    System,
}

impl Role {
    /// The stable text stored in the database and sent in frames.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Visitor => "visitor",
            Role::Assistant => "assistant",
            Role::Operator => "operator",
            Role::System => "system",
        }
    }

    fn parse(s: &str) -> Role {
        match s {
            "visitor" => Role::Visitor,
            "assistant" => Role::Assistant,
            "operator" => Role::Operator,
            _ => Role::System,
        }
    }
}

/// The visitor's rating of an answer, kept on the message so every tab and a later visit
/// show it (and, later, so the shop owner sees which answers miss).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Feedback {
    Up,
    Down,
}

impl Feedback {
    /// The stable text stored in the database and sent in frames.
    pub fn as_str(self) -> &'static str {
        match self {
            Feedback::Up => "up",
            Feedback::Down => "down",
        }
    }

    fn parse(s: &str) -> Option<Feedback> {
        match s {
            "up" => Some(Feedback::Up),
            "down" => Some(Feedback::Down),
            _ => None,
        }
    }
}

/// A stored message of a conversation; `seq` orders and pages the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub seq: i64,
    pub session_id: i64,
    pub role: Role,
    pub text: String,
    pub client_msg_id: Option<String>,
    pub reply_to: Option<i64>,
    pub source: Option<String>,
    pub entry_id: Option<String>,
    pub created_at: i64,
    /// The visitor's rating, on assistant and operator messages only.
    pub feedback: Option<Feedback>,
    /// Who wrote an operator message.
    pub author: Option<Author>,
    /// Files that came with the message, as links.
    pub attachments: Vec<Attachment>,
    /// Product cards the answer shows.
    pub products: Vec<ProductCard>,
}

/// The person behind an operator message, as the operator's service names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    /// http(s) only.
    pub avatar_url: Option<String>,
}

/// A file sent with a message, shown as a link (http and https only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    pub name: String,
    pub url: String,
}

/// A product an answer showed as a card. The price is kept as the shop gave it (decimal
/// text), so nothing is lost to floating point on the way.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProductCard {
    pub name: String,
    /// Absolute http(s) link to the product page.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_stock: Option<bool>,
}

/// A message to store (the store assigns `seq`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub session_id: i64,
    pub role: Role,
    pub text: String,
    pub client_msg_id: Option<String>,
    pub reply_to: Option<i64>,
    pub source: Option<String>,
    pub entry_id: Option<String>,
    pub created_at: i64,
    /// Model tokens the answer cost, counted into the client's day as it is stored.
    pub usage: Option<TokenUsage>,
    /// Who wrote an operator message.
    pub author: Option<Author>,
    /// Files that came with the message.
    pub attachments: Vec<Attachment>,
    /// Product cards the answer shows.
    pub products: Vec<ProductCard>,
}

impl NewMessage {
    /// The message as stored under `seq`: a store that knows the rest of the row needs not
    /// read it back.
    pub fn stored(self, seq: i64) -> Message {
        Message {
            seq,
            session_id: self.session_id,
            role: self.role,
            text: self.text,
            client_msg_id: self.client_msg_id,
            reply_to: self.reply_to,
            source: self.source,
            entry_id: self.entry_id,
            created_at: self.created_at,
            feedback: None,
            author: self.author,
            attachments: self.attachments,
            products: self.products,
        }
    }
}

/// Tokens of a model answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub prompt: i64,
    pub completion: i64,
}

impl TokenUsage {
    /// Both counts together, what budgets are in.
    pub fn total(self) -> i64 {
        self.prompt + self.completion
    }
}

/// A client's model use on one UTC day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayUsage {
    pub answers: i64,
    pub tokens: TokenUsage,
}

/// The UTC day (days since 1970-01-01) of a time in milliseconds, as usage is kept.
pub fn utc_day(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

/// Outcome of storing a message that carries a client id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored now.
    New(Message),
    /// The (session, client id) pair was stored before; this is the earlier message.
    Duplicate(Message),
}

/// The storage interface: everything the server and the CLI persist goes through it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Returns the stored value for `key`, storing `value` first if there was none.
    async fn meta_init(&self, key: &str, value: &str) -> StoreResult<String>;
    /// The stored value for `key`, if any; never writes (the doctor only looks).
    async fn meta_get(&self, key: &str) -> StoreResult<Option<String>>;
    /// The newest migration applied to the database (one a newer aia-chat applied counts).
    async fn schema_version(&self) -> StoreResult<i64>;
    /// Creates a client; `Conflict` if the uid exists.
    async fn client_create(&self, uid: &str, now: i64) -> StoreResult<ClientRow>;
    /// Finds a client by uid.
    async fn client_get(&self, uid: &str) -> StoreResult<Option<ClientRow>>;
    /// All clients with their versions, ordered by uid; cheap enough to poll every second.
    async fn client_list(&self) -> StoreResult<Vec<ClientRow>>;
    /// All stored settings of a client.
    async fn settings_get(&self, client_id: i64) -> StoreResult<Vec<StoredSetting>>;
    /// Applies all writes atomically and bumps the client's settings version.
    async fn settings_put(&self, client_id: i64, writes: &[SettingWrite]) -> StoreResult<()>;
    /// Replaces a client's knowledge: written as a new generation in transactions of at most
    /// 1,000 rows, then switched to atomically (bumping the knowledge version). Nothing is
    /// written when every entry's content hash and the order are unchanged.
    async fn knowledge_replace(&self, client_id: i64, entries: &[KnowledgeEntry]) -> StoreResult<KnowledgeWrite>;
    /// Takes the training lease of a client until `until` unless another owner holds an
    /// unexpired one; true when taken. Resets the run's progress.
    async fn training_lease(&self, client_id: i64, owner: &str, now: i64, until: i64) -> StoreResult<bool>;
    /// Records a run's progress and renews its lease (only while `owner` holds it).
    async fn training_progress(
        &self,
        client_id: i64,
        owner: &str,
        pages: i64,
        entries: i64,
        until: i64,
    ) -> StoreResult<()>;
    /// Ends a run: releases the lease and records success (the entry count) or the error.
    async fn training_finish(
        &self,
        client_id: i64,
        owner: &str,
        now: i64,
        result: Result<i64, &str>,
    ) -> StoreResult<()>;
    /// A client's training state, if it ever trained.
    async fn training_status(&self, client_id: i64) -> StoreResult<Option<TrainingStatus>>;
    /// The newest finished runs, newest first (50 are kept per client).
    async fn training_runs(&self, client_id: i64, limit: u32) -> StoreResult<Vec<TrainingRun>>;
    /// A client's knowledge in stored order.
    async fn knowledge_list(&self, client_id: i64) -> StoreResult<Vec<KnowledgeEntry>>;
    /// A client's stored vectors in one embedding space: `(text hash, vector bytes)`.
    async fn vectors_list(&self, client_id: i64, space: &str) -> StoreResult<Vec<(String, Vec<u8>)>>;
    /// Stores vectors by text hash, in transactions of at most 1,000; a hash already stored
    /// keeps its vector (two nodes embedding the same text write the same thing).
    async fn vectors_add(&self, client_id: i64, space: &str, vectors: &[(String, Vec<u8>)]) -> StoreResult<()>;
    /// Drops the vectors of texts no entry uses any more.
    async fn vectors_remove(&self, client_id: i64, space: &str, hashes: &[String]) -> StoreResult<()>;
    /// Starts a session.
    async fn session_create(
        &self,
        client_id: i64,
        token_hash: &str,
        conversation_id: &str,
        now: i64,
    ) -> StoreResult<SessionRow>;
    /// Finds a session of this client by the hash of its token.
    async fn session_find(&self, client_id: i64, token_hash: &str) -> StoreResult<Option<SessionRow>>;
    /// A session by its id (the operator outbox knows sessions by id only).
    async fn session_by_id(&self, session_id: i64) -> StoreResult<Option<SessionRow>>;
    /// Stores a message; with a client id, a second copy returns the first (`Duplicate`).
    async fn message_insert(&self, message: &NewMessage) -> StoreResult<Inserted>;
    /// Stores a visitor's message and, when it is new, `answer` as its reply (`reply_to` set
    /// to its seq) in the same commit: an answer known at once (the FAQ's, or products from
    /// the cache) then costs one durable write instead of two. A duplicate stores no answer.
    async fn message_insert_answered(
        &self,
        question: &NewMessage,
        answer: &NewMessage,
    ) -> StoreResult<(Inserted, Option<Message>)>;
    /// Up to `limit` messages older than `before` (all when `None`), oldest first, and
    /// whether still older ones exist.
    async fn messages_page(
        &self,
        session_id: i64,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<(Vec<Message>, bool)>;
    /// A client's conversations with at least one message, newest activity first; `search`
    /// (when not empty) keeps those with a message containing it (case-insensitive for ASCII)
    /// or with that conversation id.
    async fn conversations(
        &self,
        client_id: i64,
        search: &str,
        offset: u32,
        limit: u32,
    ) -> StoreResult<Vec<ConversationSummary>>;
    /// Up to `limit` of a client's sessions that started before `before` and have no message
    /// since: what retention erases (with [`Store::sessions_erase`]).
    async fn sessions_idle(&self, client_id: i64, before: i64, limit: u32) -> StoreResult<Vec<SessionRow>>;
    /// Deletes the sessions with every row of every visitor table ([`privacy::TABLES`]) in one
    /// transaction, so an erasure is whole or not at all; the rows deleted per table. On SQLite
    /// the deleted bytes are overwritten and the WAL emptied, so they are not left on disk.
    async fn sessions_erase(&self, session_ids: &[i64]) -> StoreResult<Vec<(&'static str, u64)>>;
    /// The sessions whose visitor gave `email` (`identify`), compared trimmed and
    /// case-insensitively (for ASCII), of one client or of all; oldest first.
    async fn sessions_by_email(&self, client_id: Option<i64>, email: &str) -> StoreResult<Vec<SessionRow>>;
    /// A session by its public conversation id, whichever client it belongs to (the ids are
    /// unique across clients).
    async fn session_by_public_id(&self, conversation_id: &str) -> StoreResult<Option<SessionRow>>;
    /// Every outbox item of a session, dead-lettered ones included, oldest first.
    async fn outbox_of_session(&self, session_id: i64) -> StoreResult<Vec<OutboxItem>>;
    /// A client's session by its public conversation id.
    async fn session_by_conversation(&self, client_id: i64, conversation_id: &str) -> StoreResult<Option<SessionRow>>;
    /// The tasks made from a session, oldest first.
    async fn tasks_of_session(&self, session_id: i64) -> StoreResult<Vec<TaskRecord>>;
    /// Sets the visitor's rating of the assistant or operator message `seq` of this session
    /// (`None` clears it); false when the session has no such message, so a visitor can only
    /// rate answers they were given.
    async fn message_feedback(&self, session_id: i64, seq: i64, feedback: Option<Feedback>) -> StoreResult<bool>;
    /// Records who the host page says the session's visitor is (UNVERIFIED); `None` keeps what
    /// was stored, so the page may send the name and the address separately.
    async fn session_identify(&self, session_id: i64, name: Option<&str>, email: Option<&str>) -> StoreResult<()>;
    /// The first stored answer to the message `seq`, if any.
    async fn reply_to(&self, session_id: i64, seq: i64) -> StoreResult<Option<Message>>;
    /// A client's model use on a UTC day (see [`utc_day`]).
    async fn usage_day(&self, client_id: i64, day: i64) -> StoreResult<DayUsage>;
    /// Records why the client's model failed, at `at` (the last one wins).
    async fn model_error_record(&self, client_id: i64, at: i64, error: &str) -> StoreResult<()>;
    /// When and why the client's model last failed, if it ever did.
    async fn model_error(&self, client_id: i64) -> StoreResult<Option<(i64, String)>>;
    /// Model tokens a session's answers have cost so far.
    async fn session_tokens(&self, session_id: i64) -> StoreResult<i64>;
    /// The operator link of a session, if it ever asked for a person.
    async fn operator_link(&self, session_id: i64) -> StoreResult<Option<OperatorLink>>;
    /// The session behind a Chatwoot conversation of `client_id`, for a verified webhook.
    async fn operator_link_by_conversation(
        &self,
        client_id: i64,
        conversation_id: i64,
    ) -> StoreResult<Option<OperatorLink>>;
    /// Records a task request; `Conflict` when its marker exists (one request, one task).
    async fn task_insert(&self, task: &NewTaskRecord) -> StoreResult<TaskRecord>;
    /// The task of `session_id` waiting for the visitor's yes or no, if any.
    async fn task_proposed(&self, session_id: i64) -> StoreResult<Option<TaskRecord>>;
    /// Moves a task to `state`, due at `now` (a proposal confirmed or declined).
    async fn task_set_state(&self, id: i64, state: TaskState, now: i64) -> StoreResult<()>;
    /// Queued tasks due at `now`, oldest first.
    async fn tasks_due(&self, now: i64, limit: u32) -> StoreResult<Vec<TaskRecord>>;
    /// Records the created card.
    async fn task_created(&self, id: i64, provider_id: &str, reference: &str, url: &str, now: i64) -> StoreResult<()>;
    /// An attempt starts: counted, and the task is not due again before `until` (if the
    /// process dies mid-call, the next attempt knows one was made).
    async fn task_attempt(&self, id: i64, until: i64) -> StoreResult<()>;
    /// The attempt failed: due again at `next_at`.
    async fn task_retry(&self, id: i64, next_at: i64, error: &str) -> StoreResult<()>;
    /// Gives up on a task (kept, with the reason, for the admin).
    async fn task_failed(&self, id: i64, now: i64, error: &str) -> StoreResult<()>;
    /// Tasks of `session_id` requested since `since`, declined ones not counted (the cap).
    async fn tasks_since(&self, session_id: i64, since: i64) -> StoreResult<i64>;
    /// A client's failed tasks, newest first.
    async fn tasks_failed(&self, client_id: i64) -> StoreResult<Vec<TaskRecord>>;
    /// The links of `client_id` a person has or is about to have (with a Chatwoot
    /// conversation): what the ActionCable subscription listens to.
    async fn operator_links_open(&self, client_id: i64) -> StoreResult<Vec<OperatorLink>>;
    /// Creates or replaces a session's operator link.
    async fn operator_link_save(&self, link: &OperatorLink) -> StoreResult<()>;
    /// Starts a hand-off in one transaction: the link (now waiting for a person), its job
    /// and `messages` (the notice to the visitor, after the answer that asked for it, if
    /// any) are stored together or not at all, so a crash between them cannot leave a
    /// conversation waiting for a person nobody was asked for, nor an answer promising one.
    async fn handoff_queue(&self, link: &OperatorLink, job: &str, messages: &[NewMessage])
    -> StoreResult<Vec<Message>>;
    /// Queues work for the operator's service; returns its id.
    async fn outbox_push(
        &self,
        client_id: i64,
        session_id: i64,
        kind: &str,
        payload: &str,
        now: i64,
    ) -> StoreResult<i64>;
    /// Work due now, oldest first: only the oldest live item of each session, so a
    /// conversation's items are done in order (dead-lettered items no longer block).
    async fn outbox_due(&self, now: i64, limit: u32) -> StoreResult<Vec<OutboxItem>>;
    /// Removes finished work.
    async fn outbox_done(&self, id: i64) -> StoreResult<()>;
    /// Schedules another attempt.
    async fn outbox_retry(&self, id: i64, next_at: i64, error: &str) -> StoreResult<()>;
    /// Gives up on an item; it stays visible to the admin.
    async fn outbox_dead(&self, id: i64, now: i64, error: &str) -> StoreResult<()>;
    /// A client's dead-lettered work, newest first.
    async fn outbox_dead_letters(&self, client_id: i64) -> StoreResult<Vec<OutboxItem>>;
    /// Gives a dead-lettered item of the client another round of attempts (an admin's
    /// retry); false if there is no such dead item.
    async fn outbox_revive(&self, client_id: i64, id: i64, now: i64) -> StoreResult<bool>;
    /// Records a webhook delivery id; `false` when it was seen within the last day (a repeat).
    async fn webhook_delivery_first(&self, delivery_id: &str, now: i64) -> StoreResult<bool>;
    /// Forgets webhook delivery ids older than a day at `now` (a periodic sweep, so the
    /// webhook's own path makes one write); how many.
    async fn webhook_deliveries_forget(&self, now: i64) -> StoreResult<u64>;
    /// How many admin accounts exist (none: the first start creates one).
    async fn admin_count(&self) -> StoreResult<i64>;
    /// Adds an account; `Conflict` when the username is taken.
    async fn admin_create(
        &self,
        username: &str,
        password_hash: &str,
        role: AdminRole,
        now: i64,
    ) -> StoreResult<AdminRow>;
    /// The account of a (lower-case) username.
    async fn admin_by_name(&self, username: &str) -> StoreResult<Option<AdminRow>>;
    /// Every account, by username.
    async fn admin_list(&self) -> StoreResult<Vec<AdminRow>>;
    /// Removes an account and its sessions; false if there was none.
    async fn admin_delete(&self, id: i64) -> StoreResult<bool>;
    /// Replaces the password hash and signs the account out everywhere.
    async fn admin_set_password(&self, id: i64, password_hash: &str) -> StoreResult<()>;
    /// The uids of the clients granted to an account.
    async fn admin_grants(&self, admin_id: i64) -> StoreResult<Vec<String>>;
    /// Grants (or, with `granted` false, revokes) a client to an account.
    async fn admin_grant(&self, admin_id: i64, client_id: i64, granted: bool) -> StoreResult<()>;
    /// Records a signed-in browser (expired ones are dropped on the way).
    async fn admin_session_create(
        &self,
        token_hash: &str,
        admin_id: i64,
        csrf: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()>;
    /// The unexpired session of a token hash, with its account.
    async fn admin_session_get(&self, token_hash: &str, now: i64) -> StoreResult<Option<AdminSessionRow>>;
    /// Signs a browser out.
    async fn admin_session_delete(&self, token_hash: &str) -> StoreResult<()>;
    /// Deletes a client with everything it owns; false if there was none.
    async fn client_delete(&self, uid: &str) -> StoreResult<bool>;
    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> StoreResult<()>;
    /// What waits in the outboxes of every client (read when metrics are scraped).
    async fn outbox_depth(&self) -> StoreResult<OutboxDepth>;
    /// Takes or renews the lease of periodic job `name` until `until`: it succeeds when the
    /// lease is free, ran out by `now`, or is `owner`'s already. One node runs each job.
    async fn lease_take(&self, name: &str, owner: &str, now: i64, until: i64) -> StoreResult<bool>;
    /// Gives up `owner`'s lease of `name` (no-op when another node holds it).
    async fn lease_release(&self, name: &str, owner: &str) -> StoreResult<()>;
}

/// Opens (and migrates) the store named by `database_url`, or the SQLite file in `data_dir`.
pub async fn open(database_url: Option<&str>, data_dir: &Path) -> StoreResult<Arc<dyn Store>> {
    match database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(PostgresStore::connect(url).await?))
        }
        Some(url) => Ok(Arc::new(SqliteStore::connect_url(url).await?)),
        None => Ok(Arc::new(SqliteStore::connect_file(&data_dir.join("aia-chat.db")).await?)),
    }
}
