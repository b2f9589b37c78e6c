//! The two SQL implementations of [`Store`]. Both dialects accept the same SQL text here
//! (`$n` placeholders, `ON CONFLICT`, `RETURNING`), so one macro body serves both pools and
//! only connection set-up and migrations differ.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::SqliteSynchronous;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Row, SqlSafeStr};

use super::*;

/// SQLite in WAL mode: an acknowledged message is in the OS before the ack, so it survives a
/// killed process.
pub struct SqliteStore {
    /// The one writer connection: writes queue here instead of in SQLite's sleeping busy
    /// handler, which put 10 ms steps into the latency tail under load.
    pool: SqlitePool,
    reader: SqlitePool,
    writer: sqlite_writer::Writer,
    _checkpointer: tokio_util::sync::DropGuard,
}

/// PostgreSQL, for several nodes sharing one database.
pub struct PostgresStore {
    pool: PgPool,
    reader: PgPool,
}

/// The migrations of one dialect (`migrations/<dialect>/`), embedded in the binary; both
/// dialects have the same numbered steps.
macro_rules! migrations {
    ($dialect:literal) => {
        [
            (1, "init", include_str!(concat!("../../migrations/", $dialect, "/0001_init.sql"))),
            (
                2,
                "knowledge variants",
                include_str!(concat!("../../migrations/", $dialect, "/0002_knowledge_variants.sql")),
            ),
            (
                3,
                "knowledge generations",
                include_str!(concat!("../../migrations/", $dialect, "/0003_knowledge_generations.sql")),
            ),
            (4, "training status", include_str!(concat!("../../migrations/", $dialect, "/0004_training_status.sql"))),
            (5, "model usage", include_str!(concat!("../../migrations/", $dialect, "/0005_model_usage.sql"))),
            (6, "model status", include_str!(concat!("../../migrations/", $dialect, "/0006_model_status.sql"))),
            (
                7,
                "feedback and identity",
                include_str!(concat!("../../migrations/", $dialect, "/0007_feedback_identity.sql")),
            ),
            (8, "operator", include_str!(concat!("../../migrations/", $dialect, "/0008_operator.sql"))),
            (9, "tasks", include_str!(concat!("../../migrations/", $dialect, "/0009_tasks.sql"))),
            (10, "products", include_str!(concat!("../../migrations/", $dialect, "/0010_products.sql"))),
            (
                11,
                "knowledge vectors",
                include_str!(concat!("../../migrations/", $dialect, "/0011_knowledge_vectors.sql")),
            ),
            (12, "admins", include_str!(concat!("../../migrations/", $dialect, "/0012_admins.sql"))),
            (13, "training runs", include_str!(concat!("../../migrations/", $dialect, "/0013_training_runs.sql"))),
            (14, "job leases", include_str!(concat!("../../migrations/", $dialect, "/0014_job_leases.sql"))),
        ]
    };
}

/// The migrator of one dialect. A database migrated by a newer version (migrations this one
/// does not know) is accepted: during a rolling upgrade the old nodes keep serving on the new
/// schema, which is why every migration must keep the previous version working (it adds;
/// what it would remove goes a version later).
fn migrator(files: &[(i64, &'static str, &'static str)]) -> Migrator {
    let mut migrator = Migrator::with_migrations(
        files
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(*version, Cow::Borrowed(*name), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    );
    migrator.set_ignore_missing(true);
    migrator
}

/// The newest migration this version knows (both dialects have the same steps).
pub fn known_schema_version() -> i64 {
    migrations!("sqlite").len() as i64
}

/// Warns when the database was migrated by a newer version than this one (`newest` is the
/// highest migration applied to it, `known` this version's).
fn warn_if_newer(newest: Option<i64>, known: i64) {
    if let Some(newest) = newest.filter(|n| *n > known) {
        tracing::warn!(
            database = newest,
            this_version = known,
            "the database was migrated by a newer aia-chat; this one keeps working on it during an upgrade, but upgrade it too"
        );
    }
}

impl SqliteStore {
    /// Lets other writers in between a long job's transactions. SQLite has one write lock per
    /// database and its busy handler is not fair: a process committing batch after batch
    /// starves the server's message writer, which sleeps 1, 2, 5, 10… ms between attempts
    /// (visitor reply p99 during a 20,000-entry training run: 724 ms without the pause, 16 ms
    /// with 10 ms; see BENCHMARKS.md).
    async fn yield_writes() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    /// Empties the WAL after an erasure: its old frames still hold the deleted rows as they
    /// were written (the database file's copies are zeroed by `secure_delete`). Waits for
    /// readers up to the busy timeout; if one outlasts it, the next erasure or restart
    /// truncates it.
    async fn after_erase(&self) {
        match sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&self.pool).await {
            Ok(row) if row.try_get::<i64, _>(0).unwrap_or(1) == 0 => {}
            Ok(_) => {
                tracing::warn!("the WAL could not be emptied after an erasure (a reader was busy); it will be later")
            }
            Err(e) => tracing::warn!(error = %e, "emptying the WAL after an erasure failed"),
        }
    }

    /// Opens (creating if needed) the database file and migrates it.
    pub async fn connect_file(path: &Path) -> StoreResult<Self> {
        Self::connect_with(SqliteConnectOptions::new().filename(path)).await
    }

    /// Opens a `sqlite:` URL (used by tests and `--database-url sqlite://…`).
    pub async fn connect_url(url: &str) -> StoreResult<Self> {
        Self::connect_with(SqliteConnectOptions::from_str(url)?).await
    }

    async fn connect_with(options: SqliteConnectOptions) -> StoreResult<Self> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Deleted rows are overwritten with zeros, not left in free space of the file: an
            // erasure request must not leave the visitor's messages on disk.
            .pragma("secure_delete", "on")
            // Checkpoints (and their fsyncs) run in the background, never inside a commit.
            .pragma("wal_autocheckpoint", "0")
            .pragma("journal_size_limit", "67108864");
        let pool = SqlitePoolOptions::new().min_connections(1).max_connections(1).connect_with(options.clone()).await?;
        let files = migrations!("sqlite");
        migrator(&files).run(&pool).await?;
        let newest = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(&pool).await;
        warn_if_newer(newest.ok().flatten(), files.len() as i64);
        let reader = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(3)
            .connect_with(options.clone().create_if_missing(false))
            .await?;
        // The checkpointer never waits for a lock: a RESTART checkpoint blocks new writers for
        // as long as it waits, so under a busy handler a long reader or another process's
        // write burst (a training run) held visitors' messages for ~0.4 s. It tries again
        // next second instead.
        let checkpoints = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().create_if_missing(false).busy_timeout(Duration::ZERO))
            .await?;
        let checkpointer = tokio_util::sync::CancellationToken::new();
        spawn_checkpointer(checkpoints, checkpointer.clone());
        // Messages have a connection of their own (`sqlite_writer`).
        let writer = sqlite_writer::Writer::open(options.get_filename())?;
        Ok(Self { pool, reader, writer, _checkpointer: checkpointer.drop_guard() })
    }

    async fn insert_answered(
        &self,
        m: &NewMessage,
        answer: Option<&NewMessage>,
    ) -> StoreResult<(Inserted, Option<Message>)> {
        let (written, answer_seq) =
            self.writer.insert(m, answer).await.ok_or(StoreError::Db(sqlx::Error::PoolClosed))??;
        let question = match written {
            sqlite_writer::Written::New(seq) => Inserted::New(m.clone().stored(seq)),
            // Committed before: read it back like any stored message.
            sqlite_writer::Written::Duplicate => {
                let row = sqlx::query(MESSAGE_BY_CLIENT_ID)
                    .bind(m.session_id)
                    .bind(&m.client_msg_id)
                    .fetch_one(&self.reader)
                    .await?;
                Inserted::Duplicate(message_from(&row)?)
            }
        };
        let answer = match (&question, answer, answer_seq) {
            (Inserted::New(q), Some(a), Some(seq)) => {
                Some(NewMessage { reply_to: Some(q.seq), ..a.clone() }.stored(seq))
            }
            _ => None,
        };
        Ok((question, answer))
    }
}

/// Copies the WAL into the database every second off the write path: an automatic
/// checkpoint would run inside a visitor's commit and hold it for the whole fsync (seen at
/// up to 2 s on slow disks). Once the WAL passes `WAL_RESTART_FRAMES` (its pages mostly
/// copied by then), a RESTART checkpoint lets writers start it over, so it cannot grow
/// without bound under constant traffic. Ends when the store is dropped.
fn spawn_checkpointer(pool: SqlitePool, stop: tokio_util::sync::CancellationToken) {
    const WAL_RESTART_FRAMES: i64 = 4096;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let passive = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await;
            let result = match passive {
                Ok(row) if row.try_get::<i64, _>(1).unwrap_or(0) > WAL_RESTART_FRAMES => {
                    sqlx::query("PRAGMA wal_checkpoint(RESTART)").execute(&pool).await.map(drop)
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        }
    });
}

impl PostgresStore {
    /// PostgreSQL locks rows, not the database: nothing to yield.
    async fn yield_writes() {}

    /// Deleted rows are gone for every query at once; their space is reclaimed by
    /// (auto)vacuum, which only the database's owner controls (see docs/privacy.md).
    async fn after_erase(&self) {}

    /// Connects and migrates (migrations take an advisory lock, so nodes may start together).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
        let files = migrations!("postgres");
        migrator(&files).run(&pool).await?;
        let newest = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(&pool).await;
        warn_if_newer(newest.ok().flatten(), files.len() as i64);
        Ok(Self { reader: pool.clone(), pool })
    }

    async fn insert_answered(
        &self,
        m: &NewMessage,
        answer: Option<&NewMessage>,
    ) -> StoreResult<(Inserted, Option<Message>)> {
        // One transaction: the message, its answer and the usage count together or not at all.
        let mut tx = self.pool.begin().await?;
        let inserted = insert_message_pg(&mut tx, m).await?;
        let answer = match (&inserted, answer) {
            (Inserted::New(q), Some(a)) => answer_pg(&mut tx, q, a).await?,
            _ => None,
        };
        tx.commit().await?;
        Ok((inserted, answer))
    }
}

macro_rules! message_columns {
    () => {
        "seq, session_id, role, text, client_msg_id, reply_to, source, entry_id, created_at, feedback, \
         author_name, author_avatar, attachments, products"
    };
}

/// Inserts a message unless its client id is already there; returns what follows.
macro_rules! insert_message_returning {
    ($returning:expr) => {
        concat!(
            "INSERT INTO messages (session_id, role, text, client_msg_id, reply_to, source, entry_id, created_at, ",
            "prompt_tokens, completion_tokens, author_name, author_avatar, attachments, products) ",
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ",
            "ON CONFLICT (session_id, client_msg_id) DO NOTHING RETURNING ",
            $returning
        )
    };
}

const INSERT_MESSAGE: &str = insert_message_returning!(message_columns!());
/// The SQLite writer knows the rest of the row already.
pub(super) const INSERT_MESSAGE_SEQ: &str = insert_message_returning!("seq");
pub(super) const ADD_USAGE: &str = "INSERT INTO model_usage (client_id, day, answers, prompt_tokens, completion_tokens) \
     SELECT client_id, $2, 1, $3, $4 FROM sessions WHERE id = $1 \
     ON CONFLICT (client_id, day) DO UPDATE SET answers = model_usage.answers + 1, \
     prompt_tokens = model_usage.prompt_tokens + excluded.prompt_tokens, \
     completion_tokens = model_usage.completion_tokens + excluded.completion_tokens";
const MESSAGE_BY_CLIENT_ID: &str =
    concat!("SELECT ", message_columns!(), " FROM messages WHERE session_id = $1 AND client_msg_id = $2");
const MESSAGES_PAGE: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE session_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
);
const REPLY_TO: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE session_id = $1 AND reply_to = $2 ORDER BY seq LIMIT 1"
);

/// Binds a message's values to [`INSERT_MESSAGE`] (or [`INSERT_MESSAGE_SEQ`]), in order.
pub(super) fn bind_message<'q, DB: sqlx::Database>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    m: &'q NewMessage,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    i64: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    query
        .bind(m.session_id)
        .bind(m.role.as_str())
        .bind(m.text.as_str())
        .bind(m.client_msg_id.as_deref())
        .bind(m.reply_to)
        .bind(m.source.as_deref())
        .bind(m.entry_id.as_deref())
        .bind(m.created_at)
        .bind(m.usage.map(|u| u.prompt))
        .bind(m.usage.map(|u| u.completion))
        .bind(m.author.as_ref().map(|a| a.name.as_str()))
        .bind(m.author.as_ref().and_then(|a| a.avatar_url.as_deref()))
        .bind((!m.attachments.is_empty()).then(|| serde_json::to_string(&m.attachments).unwrap_or_default()))
        .bind((!m.products.is_empty()).then(|| serde_json::to_string(&m.products).unwrap_or_default()))
}

/// Inserts one message on a connection; with a client id, a second copy returns the first.
macro_rules! insert_message_fn {
    ($name:ident, $conn:ty) => {
        async fn $name(conn: &mut $conn, m: &NewMessage) -> Result<Inserted, sqlx::Error> {
            let row = bind_message(sqlx::query(INSERT_MESSAGE), m).fetch_optional(&mut *conn).await?;
            if let Some(row) = row {
                if let Some(u) = m.usage {
                    sqlx::query(ADD_USAGE)
                        .bind(m.session_id)
                        .bind(crate::store::utc_day(m.created_at))
                        .bind(u.prompt)
                        .bind(u.completion)
                        .execute(&mut *conn)
                        .await?;
                }
                return Ok(Inserted::New(message_from(&row)?));
            }
            let row = sqlx::query(MESSAGE_BY_CLIENT_ID)
                .bind(m.session_id)
                .bind(&m.client_msg_id)
                .fetch_one(&mut *conn)
                .await?;
            Ok(Inserted::Duplicate(message_from(&row)?))
        }
    };
}

insert_message_fn!(insert_message_pg, sqlx::PgConnection);
insert_message_fn!(insert_message_sqlite, sqlx::SqliteConnection);

/// Stores `answer` as the reply to the just-stored `question`, in the same transaction.
async fn answer_pg(
    conn: &mut sqlx::PgConnection,
    question: &Message,
    answer: &NewMessage,
) -> Result<Option<Message>, sqlx::Error> {
    let answer = NewMessage { reply_to: Some(question.seq), ..answer.clone() };
    Ok(match insert_message_pg(conn, &answer).await? {
        Inserted::New(m) => Some(m),
        Inserted::Duplicate(_) => None,
    })
}

fn message_from<R>(row: &R) -> Result<Message, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'r> sqlx::Decode<'r, R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database>,
{
    Ok(Message {
        seq: row.try_get(0)?,
        session_id: row.try_get(1)?,
        role: Role::parse(&row.try_get::<String, _>(2)?),
        text: row.try_get(3)?,
        client_msg_id: row.try_get(4)?,
        reply_to: row.try_get(5)?,
        source: row.try_get(6)?,
        entry_id: row.try_get(7)?,
        created_at: row.try_get(8)?,
        feedback: row.try_get::<Option<String>, _>(9)?.as_deref().and_then(Feedback::parse),
        author: row
            .try_get::<Option<String>, _>(10)?
            .map(|name| Ok::<_, sqlx::Error>(Author { name, avatar_url: row.try_get(11)? }))
            .transpose()?,
        attachments: row
            .try_get::<Option<String>, _>(12)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default(),
        products: row
            .try_get::<Option<String>, _>(13)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default(),
    })
}

fn client_from<R>(row: &R) -> Result<ClientRow, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ClientRow {
        id: row.try_get(0)?,
        uid: row.try_get(1)?,
        created_at: row.try_get(2)?,
        settings_version: row.try_get(3)?,
        knowledge_version: row.try_get(4)?,
    })
}

/// The columns [`session_from`] reads, in order.
macro_rules! session_columns {
    () => {
        "id, client_id, conversation_id, created_at, visitor_name, visitor_email"
    };
}

fn session_from<R>(row: &R) -> Result<SessionRow, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database>,
{
    Ok(SessionRow {
        id: row.try_get(0)?,
        client_id: row.try_get(1)?,
        conversation_id: row.try_get(2)?,
        created_at: row.try_get(3)?,
        visitor_name: row.try_get(4)?,
        visitor_email: row.try_get(5)?,
    })
}

macro_rules! link_columns {
    () => {
        "session_id, client_id, source_id, contact_id, conversation_id, state, handoffs, updated_at"
    };
}

const SAVE_LINK: &str = concat!(
    "INSERT INTO operator_links (",
    link_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (session_id) DO UPDATE SET ",
    "source_id = excluded.source_id, contact_id = excluded.contact_id, ",
    "conversation_id = excluded.conversation_id, state = excluded.state, ",
    "handoffs = excluded.handoffs, updated_at = excluded.updated_at"
);
const PUSH_OUTBOX: &str = "INSERT INTO operator_outbox (client_id, session_id, kind, payload, created_at, next_at) \
     VALUES ($1, $2, $3, $4, $5, $5) RETURNING id";

/// Binds an operator link's values to [`SAVE_LINK`], in order.
fn bind_link<'q, DB: sqlx::Database>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    l: &'q OperatorLink,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    i64: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    query
        .bind(l.session_id)
        .bind(l.client_id)
        .bind(l.source_id.as_str())
        .bind(l.contact_id)
        .bind(l.conversation_id)
        .bind(l.state.as_str())
        .bind(l.handoffs)
        .bind(l.updated_at)
}

fn link_from<R>(row: &R) -> Result<OperatorLink, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'r> sqlx::Decode<'r, R::Database>,
{
    let state: String = row.try_get(5)?;
    Ok(OperatorLink {
        session_id: row.try_get(0)?,
        client_id: row.try_get(1)?,
        source_id: row.try_get(2)?,
        contact_id: row.try_get(3)?,
        conversation_id: row.try_get(4)?,
        state: HandoffState::parse(&state),
        handoffs: row.try_get(6)?,
        updated_at: row.try_get(7)?,
    })
}

macro_rules! task_columns {
    () => {
        "id, client_id, session_id, marker, category, title, summary, contact, page, state, attempts, next_at, \
         last_error, provider_id, reference, url, created_at, updated_at"
    };
}

fn task_from<R>(row: &R) -> Result<TaskRecord, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database>,
{
    let state: String = row.try_get(9)?;
    Ok(TaskRecord {
        id: row.try_get(0)?,
        client_id: row.try_get(1)?,
        session_id: row.try_get(2)?,
        marker: row.try_get(3)?,
        category: row.try_get(4)?,
        title: row.try_get(5)?,
        summary: row.try_get(6)?,
        contact: row.try_get(7)?,
        page: row.try_get(8)?,
        state: TaskState::parse(&state),
        attempts: row.try_get(10)?,
        next_at: row.try_get(11)?,
        last_error: row.try_get(12)?,
        provider_id: row.try_get(13)?,
        reference: row.try_get(14)?,
        url: row.try_get(15)?,
        created_at: row.try_get(16)?,
        updated_at: row.try_get(17)?,
    })
}

macro_rules! admin_columns {
    () => {
        admin_columns!("")
    };
    ($p:literal) => {
        concat!($p, "id, ", $p, "username, ", $p, "password_hash, ", $p, "role, ", $p, "created_at")
    };
}

/// An admin row whose columns start at `at`.
fn admin_from<R>(row: &R, at: usize) -> Result<AdminRow, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let role: String = row.try_get(at + 3)?;
    Ok(AdminRow {
        id: row.try_get(at)?,
        username: row.try_get(at + 1)?,
        password_hash: row.try_get(at + 2)?,
        role: AdminRole::parse(&role),
        created_at: row.try_get(at + 4)?,
    })
}

macro_rules! outbox_columns {
    () => {
        "id, client_id, session_id, kind, payload, created_at, next_at, attempts, last_error, dead_at"
    };
}

fn outbox_from<R>(row: &R) -> Result<OutboxItem, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'r> sqlx::Decode<'r, R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database>,
{
    Ok(OutboxItem {
        id: row.try_get(0)?,
        client_id: row.try_get(1)?,
        session_id: row.try_get(2)?,
        kind: row.try_get(3)?,
        payload: row.try_get(4)?,
        created_at: row.try_get(5)?,
        next_at: row.try_get(6)?,
        attempts: row.try_get(7)?,
        last_error: row.try_get(8)?,
        dead_at: row.try_get(9)?,
    })
}

/// How long webhook delivery ids are remembered (contract §5.2: about a day).
const DELIVERY_MEMORY_MS: i64 = 24 * 3600 * 1000;

/// Rows per transaction when writing knowledge, so visitors' writes never queue behind a
/// long training transaction.
const KNOWLEDGE_BATCH: usize = 1_000;

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

macro_rules! sql_store {
    ($store:ty, $insert:ident) => {
        #[async_trait]
        impl Store for $store {
            async fn meta_init(&self, key: &str, value: &str) -> StoreResult<String> {
                sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                    .bind(key)
                    .bind(value)
                    .execute(&self.pool)
                    .await?;
                let row = sqlx::query("SELECT value FROM meta WHERE key = $1").bind(key).fetch_one(&self.pool).await?;
                Ok(row.try_get(0)?)
            }

            async fn meta_get(&self, key: &str) -> StoreResult<Option<String>> {
                let row = sqlx::query("SELECT value FROM meta WHERE key = $1").bind(key).fetch_optional(&self.reader).await?;
                Ok(row.map(|r| r.try_get(0)).transpose()?)
            }

            async fn schema_version(&self) -> StoreResult<i64> {
                let newest: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(&self.reader).await?;
                Ok(newest.unwrap_or(0))
            }

            async fn client_create(&self, uid: &str, now: i64) -> StoreResult<ClientRow> {
                let result = sqlx::query(
                    "INSERT INTO clients (uid, created_at) VALUES ($1, $2) \
                     RETURNING id, uid, created_at, settings_version, knowledge_version",
                )
                .bind(uid)
                .bind(now)
                .fetch_one(&self.pool)
                .await;
                match result {
                    Ok(row) => Ok(client_from(&row)?),
                    Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!("client {uid}"))),
                    Err(e) => Err(e.into()),
                }
            }

            async fn client_get(&self, uid: &str) -> StoreResult<Option<ClientRow>> {
                let row = sqlx::query(
                    "SELECT id, uid, created_at, settings_version, knowledge_version \
                     FROM clients WHERE uid = $1",
                )
                .bind(uid)
                .fetch_optional(&self.reader)
                .await?;
                Ok(row.map(|r| client_from(&r)).transpose()?)
            }

            async fn client_list(&self) -> StoreResult<Vec<ClientRow>> {
                let rows = sqlx::query(
                    "SELECT id, uid, created_at, settings_version, knowledge_version \
                     FROM clients ORDER BY uid",
                )
                .fetch_all(&self.reader)
                .await?;
                Ok(rows.iter().map(client_from).collect::<Result<_, _>>()?)
            }

            async fn settings_get(&self, client_id: i64) -> StoreResult<Vec<StoredSetting>> {
                let rows = sqlx::query("SELECT key, value FROM client_settings WHERE client_id = $1 ORDER BY key")
                    .bind(client_id)
                    .fetch_all(&self.reader)
                    .await?;
                rows.iter().map(|r| Ok(StoredSetting { key: r.try_get(0)?, value: r.try_get(1)? })).collect()
            }

            async fn settings_put(&self, client_id: i64, writes: &[SettingWrite]) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                let bumped = sqlx::query("UPDATE clients SET settings_version = settings_version + 1 WHERE id = $1")
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await?;
                if bumped.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("client #{client_id}")));
                }
                for write in writes {
                    match &write.value {
                        Some(value) => {
                            sqlx::query(
                                "INSERT INTO client_settings (client_id, key, value) VALUES ($1, $2, $3) \
                                 ON CONFLICT (client_id, key) DO UPDATE SET value = excluded.value",
                            )
                            .bind(client_id)
                            .bind(&write.key)
                            .bind(value)
                            .execute(&mut *tx)
                            .await?;
                        }
                        None => {
                            sqlx::query("DELETE FROM client_settings WHERE client_id = $1 AND key = $2")
                                .bind(client_id)
                                .bind(&write.key)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn knowledge_replace(&self, client_id: i64, entries: &[KnowledgeEntry]) -> StoreResult<KnowledgeWrite> {
                let current: i64 = sqlx::query("SELECT knowledge_generation FROM clients WHERE id = $1")
                    .bind(client_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("client #{client_id}")))?
                    .try_get(0)?;
                let stored: Vec<(String, String)> = sqlx::query(
                    "SELECT entry_id, content_hash FROM knowledge_entries \
                     WHERE client_id = $1 AND generation = $2 ORDER BY position",
                )
                .bind(client_id)
                .bind(current)
                .fetch_all(&self.reader)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, sqlx::Error>>()?;
                let hashes: Vec<String> = entries.iter().map(content_hash).collect();
                let diff = KnowledgeWrite::between(&stored, entries, &hashes);
                if !diff.changed {
                    return Ok(diff);
                }
                // Leftovers of an interrupted run are never the current generation.
                sqlx::query("DELETE FROM knowledge_entries WHERE client_id = $1 AND generation > $2")
                    .bind(client_id)
                    .bind(current)
                    .execute(&self.pool)
                    .await?;
                let next = current + 1;
                for (chunk_no, chunk) in entries.chunks(KNOWLEDGE_BATCH).enumerate() {
                    let mut tx = self.pool.begin().await?;
                    for (i, entry) in chunk.iter().enumerate() {
                        let position = chunk_no * KNOWLEDGE_BATCH + i;
                        sqlx::query(
                            "INSERT INTO knowledge_entries (client_id, generation, entry_id, position, question, \
                             answer, category, url, variants, content_hash) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                        )
                        .bind(client_id)
                        .bind(next)
                        .bind(&entry.id)
                        .bind(position as i64)
                        .bind(&entry.question)
                        .bind(&entry.answer)
                        .bind(&entry.category)
                        .bind(&entry.url)
                        .bind(serde_json::to_string(&entry.variants).expect("strings serialise"))
                        .bind(&hashes[position])
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Self::yield_writes().await;
                }
                sqlx::query(
                    "UPDATE clients SET knowledge_generation = $2, knowledge_version = knowledge_version + 1 \
                     WHERE id = $1",
                )
                .bind(client_id)
                .bind(next)
                .execute(&self.pool)
                .await?;
                loop {
                    let deleted = sqlx::query(
                        "DELETE FROM knowledge_entries WHERE client_id = $1 AND generation = $2 AND entry_id IN \
                         (SELECT entry_id FROM knowledge_entries WHERE client_id = $1 AND generation = $2 LIMIT $3)",
                    )
                    .bind(client_id)
                    .bind(current)
                    .bind(KNOWLEDGE_BATCH as i64)
                    .execute(&self.pool)
                    .await?;
                    if deleted.rows_affected() == 0 {
                        break;
                    }
                    Self::yield_writes().await;
                }
                Ok(diff)
            }

            async fn training_lease(&self, client_id: i64, owner: &str, now: i64, until: i64) -> StoreResult<bool> {
                let row = sqlx::query(
                    "INSERT INTO training_status (client_id, lease_owner, lease_until, started_at, pages, entries) \
                     VALUES ($1, $2, $3, $4, 0, 0) \
                     ON CONFLICT (client_id) DO UPDATE SET lease_owner = excluded.lease_owner, \
                     lease_until = excluded.lease_until, started_at = excluded.started_at, pages = 0, entries = 0 \
                     WHERE training_status.lease_until <= $4 OR training_status.lease_owner = excluded.lease_owner \
                     RETURNING client_id",
                )
                .bind(client_id)
                .bind(owner)
                .bind(until)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.is_some())
            }

            async fn training_progress(
                &self,
                client_id: i64,
                owner: &str,
                pages: i64,
                entries: i64,
                until: i64,
            ) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE training_status SET pages = $3, entries = $4, lease_until = $5 \
                     WHERE client_id = $1 AND lease_owner = $2",
                )
                .bind(client_id)
                .bind(owner)
                .bind(pages)
                .bind(entries)
                .bind(until)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn training_finish(
                &self,
                client_id: i64,
                owner: &str,
                now: i64,
                result: Result<i64, &str>,
            ) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                let (entries, error) = match result {
                    Ok(count) => (Some(count), None),
                    Err(e) => (None, Some(e)),
                };
                sqlx::query(
                    "INSERT INTO training_runs (client_id, owner, started_at, finished_at, pages, entries, error) \
                     SELECT client_id, lease_owner, started_at, $3, pages, COALESCE($4, entries), $5 \
                     FROM training_status WHERE client_id = $1 AND lease_owner = $2",
                )
                .bind(client_id)
                .bind(owner)
                .bind(now)
                .bind(entries)
                .bind(error)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "DELETE FROM training_runs WHERE client_id = $1 AND id NOT IN \
                     (SELECT id FROM training_runs WHERE client_id = $1 ORDER BY finished_at DESC, id DESC LIMIT 50)",
                )
                .bind(client_id)
                .execute(&mut *tx)
                .await?;
                let query = match result {
                    Ok(count) => sqlx::query(
                        "UPDATE training_status SET lease_until = 0, last_success_at = $3, entry_count = $4, \
                         last_error = NULL, last_error_at = NULL WHERE client_id = $1 AND lease_owner = $2",
                    )
                    .bind(client_id)
                    .bind(owner)
                    .bind(now)
                    .bind(count),
                    Err(error) => sqlx::query(
                        "UPDATE training_status SET lease_until = 0, last_error_at = $3, last_error = $4 \
                         WHERE client_id = $1 AND lease_owner = $2",
                    )
                    .bind(client_id)
                    .bind(owner)
                    .bind(now)
                    .bind(error.to_string()),
                };
                query.execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn training_runs(&self, client_id: i64, limit: u32) -> StoreResult<Vec<TrainingRun>> {
                let rows = sqlx::query(
                    "SELECT owner, started_at, finished_at, pages, entries, error FROM training_runs \
                     WHERE client_id = $1 ORDER BY finished_at DESC, id DESC LIMIT $2",
                )
                .bind(client_id)
                .bind(i64::from(limit))
                .fetch_all(&self.reader)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(TrainingRun {
                            owner: r.try_get(0)?,
                            started_at: r.try_get(1)?,
                            finished_at: r.try_get(2)?,
                            pages: r.try_get(3)?,
                            entries: r.try_get(4)?,
                            error: r.try_get(5)?,
                        })
                    })
                    .collect()
            }

            async fn outbox_revive(&self, client_id: i64, id: i64, now: i64) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE operator_outbox SET dead_at = NULL, next_at = $3, attempts = 0 \
                     WHERE id = $2 AND client_id = $1 AND dead_at IS NOT NULL",
                )
                .bind(client_id)
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn training_status(&self, client_id: i64) -> StoreResult<Option<TrainingStatus>> {
                let row = sqlx::query(
                    "SELECT lease_owner, lease_until, started_at, pages, entries, last_success_at, last_error_at, \
                     last_error, entry_count FROM training_status WHERE client_id = $1",
                )
                .bind(client_id)
                .fetch_optional(&self.reader)
                .await?;
                let Some(r) = row else { return Ok(None) };
                Ok(Some(TrainingStatus {
                    lease_owner: r.try_get(0)?,
                    lease_until: r.try_get(1)?,
                    started_at: r.try_get(2)?,
                    pages: r.try_get(3)?,
                    entries: r.try_get(4)?,
                    last_success_at: r.try_get(5)?,
                    last_error_at: r.try_get(6)?,
                    last_error: r.try_get(7)?,
                    entry_count: r.try_get(8)?,
                }))
            }

            async fn vectors_list(&self, client_id: i64, space: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
                let rows = sqlx::query("SELECT text_hash, vector FROM knowledge_vectors WHERE client_id = $1 AND space = $2")
                    .bind(client_id)
                    .bind(space)
                    .fetch_all(&self.reader)
                    .await?;
                rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
            }

            async fn vectors_add(&self, client_id: i64, space: &str, vectors: &[(String, Vec<u8>)]) -> StoreResult<()> {
                for chunk in vectors.chunks(KNOWLEDGE_BATCH) {
                    let mut tx = self.pool.begin().await?;
                    for (hash, vector) in chunk {
                        sqlx::query(
                            "INSERT INTO knowledge_vectors (client_id, space, text_hash, vector) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT DO NOTHING",
                        )
                        .bind(client_id)
                        .bind(space)
                        .bind(hash)
                        .bind(vector)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Self::yield_writes().await;
                }
                Ok(())
            }

            async fn vectors_remove(&self, client_id: i64, space: &str, hashes: &[String]) -> StoreResult<()> {
                for chunk in hashes.chunks(KNOWLEDGE_BATCH) {
                    let mut tx = self.pool.begin().await?;
                    for hash in chunk {
                        sqlx::query("DELETE FROM knowledge_vectors WHERE client_id = $1 AND space = $2 AND text_hash = $3")
                            .bind(client_id)
                            .bind(space)
                            .bind(hash)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Self::yield_writes().await;
                }
                Ok(())
            }

            async fn knowledge_list(&self, client_id: i64) -> StoreResult<Vec<KnowledgeEntry>> {
                let rows = sqlx::query(
                    "SELECT k.entry_id, k.question, k.answer, k.category, k.url, k.variants \
                     FROM knowledge_entries k JOIN clients c ON c.id = k.client_id \
                     WHERE k.client_id = $1 AND k.generation = c.knowledge_generation ORDER BY k.position",
                )
                .bind(client_id)
                .fetch_all(&self.reader)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(KnowledgeEntry {
                            id: r.try_get(0)?,
                            question: r.try_get(1)?,
                            answer: r.try_get(2)?,
                            category: r.try_get(3)?,
                            url: r.try_get(4)?,
                            variants: serde_json::from_str(&r.try_get::<String, _>(5)?).unwrap_or_default(),
                        })
                    })
                    .collect()
            }

            async fn session_create(
                &self,
                client_id: i64,
                token_hash: &str,
                conversation_id: &str,
                now: i64,
            ) -> StoreResult<SessionRow> {
                let row = sqlx::query(concat!(
                    "INSERT INTO sessions (client_id, token_hash, conversation_id, created_at) ",
                    "VALUES ($1, $2, $3, $4) RETURNING ",
                    session_columns!()
                ))
                .bind(client_id)
                .bind(token_hash)
                .bind(conversation_id)
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
                Ok(session_from(&row)?)
            }

            async fn session_find(&self, client_id: i64, token_hash: &str) -> StoreResult<Option<SessionRow>> {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    session_columns!(),
                    " FROM sessions WHERE token_hash = $1 AND client_id = $2"
                ))
                .bind(token_hash)
                .bind(client_id)
                .fetch_optional(&self.reader)
                .await?;
                Ok(row.map(|r| session_from(&r)).transpose()?)
            }

            async fn session_by_id(&self, session_id: i64) -> StoreResult<Option<SessionRow>> {
                let row = sqlx::query(concat!("SELECT ", session_columns!(), " FROM sessions WHERE id = $1"))
                    .bind(session_id)
                    .fetch_optional(&self.reader)
                    .await?;
                Ok(row.map(|r| session_from(&r)).transpose()?)
            }

            async fn message_insert(&self, m: &NewMessage) -> StoreResult<Inserted> {
                Ok(self.insert_answered(m, None).await?.0)
            }

            async fn message_insert_answered(
                &self,
                question: &NewMessage,
                answer: &NewMessage,
            ) -> StoreResult<(Inserted, Option<Message>)> {
                self.insert_answered(question, Some(answer)).await
            }

            async fn messages_page(
                &self,
                session_id: i64,
                before: Option<i64>,
                limit: u32,
            ) -> StoreResult<(Vec<Message>, bool)> {
                let rows = sqlx::query(MESSAGES_PAGE)
                    .bind(session_id)
                    .bind(before.unwrap_or(i64::MAX))
                    .bind(i64::from(limit) + 1)
                    .fetch_all(&self.reader)
                    .await?;
                let more = rows.len() > limit as usize;
                let mut page = rows.iter().take(limit as usize).map(message_from).collect::<Result<Vec<_>, _>>()?;
                page.reverse();
                Ok((page, more))
            }

            async fn conversations(
                &self,
                client_id: i64,
                search: &str,
                offset: u32,
                limit: u32,
            ) -> StoreResult<Vec<ConversationSummary>> {
                let search = search.trim();
                let pattern = format!(
                    "%{}%",
                    search.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
                );
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    session_columns!(),
                    ", (SELECT MAX(m.created_at) FROM messages m WHERE m.session_id = s.id) AS last_at, \
                     (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id), \
                     (SELECT m.text FROM messages m WHERE m.session_id = s.id AND m.role = 'visitor' ORDER BY m.seq LIMIT 1), \
                     (SELECT l.state FROM operator_links l WHERE l.session_id = s.id), \
                     (SELECT COUNT(*) FROM tasks t WHERE t.session_id = s.id), \
                     (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id AND m.feedback = 'up'), \
                     (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id AND m.feedback = 'down') \
                     FROM sessions s WHERE s.client_id = $1 \
                     AND EXISTS (SELECT 1 FROM messages m WHERE m.session_id = s.id \
                       AND ($2 = '' OR s.conversation_id = $2 OR LOWER(m.text) LIKE $3 ESCAPE '\\')) \
                     ORDER BY last_at DESC, s.id DESC LIMIT $4 OFFSET $5"
                ))
                .bind(client_id)
                .bind(search)
                .bind(pattern)
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.reader)
                .await?;
                rows.iter()
                    .map(|r| {
                        let session = session_from(r)?;
                        let handoff: Option<String> = r.try_get(9)?;
                        Ok(ConversationSummary {
                            last_at: r.try_get::<Option<i64>, _>(6)?.unwrap_or(session.created_at),
                            session,
                            messages: r.try_get(7)?,
                            first_question: r.try_get(8)?,
                            handoff: handoff.as_deref().map(HandoffState::parse),
                            tasks: r.try_get(10)?,
                            feedback_up: r.try_get(11)?,
                            feedback_down: r.try_get(12)?,
                        })
                    })
                    .collect()
            }

            async fn sessions_idle(&self, client_id: i64, before: i64, limit: u32) -> StoreResult<Vec<SessionRow>> {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    session_columns!(),
                    " FROM sessions s WHERE s.client_id = $1 AND s.created_at < $2 \
                     AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.session_id = s.id AND m.created_at >= $2) \
                     ORDER BY s.id LIMIT $3"
                ))
                .bind(client_id)
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(session_from).collect::<Result<_, _>>()?)
            }

            async fn sessions_erase(&self, session_ids: &[i64]) -> StoreResult<Vec<(&'static str, u64)>> {
                let mut counts: Vec<(&'static str, u64)> = privacy::visitor_tables().map(|(t, _)| (t, 0)).collect();
                if session_ids.is_empty() {
                    return Ok(counts);
                }
                let mut tx = self.pool.begin().await?;
                for ((table, column), count) in privacy::visitor_tables().zip(counts.iter_mut()) {
                    // Names from the constant list, never from input.
                    let sql = format!("DELETE FROM {table} WHERE {column} = $1");
                    for id in session_ids {
                        let done = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(id).execute(&mut *tx).await?;
                        count.1 += done.rows_affected();
                    }
                }
                tx.commit().await?;
                self.after_erase().await;
                Ok(counts)
            }

            async fn sessions_by_email(&self, client_id: Option<i64>, email: &str) -> StoreResult<Vec<SessionRow>> {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    session_columns!(),
                    " FROM sessions WHERE ($1 IS NULL OR client_id = $1) AND visitor_email IS NOT NULL \
                     AND LOWER(TRIM(visitor_email)) = LOWER(TRIM($2)) ORDER BY id"
                ))
                .bind(client_id)
                .bind(email)
                .fetch_all(&self.reader)
                .await?;
                Ok(rows.iter().map(session_from).collect::<Result<_, _>>()?)
            }

            async fn session_by_public_id(&self, conversation_id: &str) -> StoreResult<Option<SessionRow>> {
                let row = sqlx::query(concat!("SELECT ", session_columns!(), " FROM sessions WHERE conversation_id = $1"))
                    .bind(conversation_id)
                    .fetch_optional(&self.reader)
                    .await?;
                Ok(row.as_ref().map(session_from).transpose()?)
            }

            async fn outbox_of_session(&self, session_id: i64) -> StoreResult<Vec<OutboxItem>> {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    outbox_columns!(),
                    " FROM operator_outbox WHERE session_id = $1 ORDER BY id"
                ))
                .bind(session_id)
                .fetch_all(&self.reader)
                .await?;
                Ok(rows.iter().map(outbox_from).collect::<Result<_, _>>()?)
            }

            async fn session_by_conversation(
                &self,
                client_id: i64,
                conversation_id: &str,
            ) -> StoreResult<Option<SessionRow>> {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    session_columns!(),
                    " FROM sessions s WHERE s.client_id = $1 AND s.conversation_id = $2"
                ))
                .bind(client_id)
                .bind(conversation_id)
                .fetch_optional(&self.reader)
                .await?;
                Ok(row.as_ref().map(session_from).transpose()?)
            }

            async fn tasks_of_session(&self, session_id: i64) -> StoreResult<Vec<TaskRecord>> {
                let rows = sqlx::query(concat!("SELECT ", task_columns!(), " FROM tasks WHERE session_id = $1 ORDER BY id"))
                    .bind(session_id)
                    .fetch_all(&self.reader)
                    .await?;
                Ok(rows.iter().map(task_from).collect::<Result<_, _>>()?)
            }

            async fn message_feedback(
                &self,
                session_id: i64,
                seq: i64,
                feedback: Option<Feedback>,
            ) -> StoreResult<bool> {
                let updated = sqlx::query(
                    "UPDATE messages SET feedback = $3 \
                     WHERE session_id = $1 AND seq = $2 AND role IN ('assistant', 'operator')",
                )
                .bind(session_id)
                .bind(seq)
                .bind(feedback.map(Feedback::as_str))
                .execute(&self.pool)
                .await?;
                Ok(updated.rows_affected() == 1)
            }

            async fn session_identify(
                &self,
                session_id: i64,
                name: Option<&str>,
                email: Option<&str>,
            ) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE sessions SET visitor_name = COALESCE($2, visitor_name), \
                     visitor_email = COALESCE($3, visitor_email) WHERE id = $1",
                )
                .bind(session_id)
                .bind(name)
                .bind(email)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn reply_to(&self, session_id: i64, seq: i64) -> StoreResult<Option<Message>> {
                let row = sqlx::query(REPLY_TO).bind(session_id).bind(seq).fetch_optional(&self.reader).await?;
                Ok(row.map(|r| message_from(&r)).transpose()?)
            }

            async fn usage_day(&self, client_id: i64, day: i64) -> StoreResult<crate::store::DayUsage> {
                let row = sqlx::query(
                    "SELECT answers, prompt_tokens, completion_tokens FROM model_usage \
                     WHERE client_id = $1 AND day = $2",
                )
                .bind(client_id)
                .bind(day)
                .fetch_optional(&self.reader)
                .await?;
                Ok(match row {
                    Some(r) => crate::store::DayUsage {
                        answers: r.try_get(0)?,
                        tokens: crate::store::TokenUsage { prompt: r.try_get(1)?, completion: r.try_get(2)? },
                    },
                    None => crate::store::DayUsage::default(),
                })
            }

            async fn model_error_record(&self, client_id: i64, at: i64, error: &str) -> StoreResult<()> {
                self.record_error(
                    "INSERT INTO model_status (client_id, last_error_at, last_error) VALUES ($1, $2, $3) \
                     ON CONFLICT (client_id) DO UPDATE SET last_error_at = excluded.last_error_at, \
                     last_error = excluded.last_error",
                    client_id,
                    at,
                    error,
                )
                .await
            }

            async fn model_error(&self, client_id: i64) -> StoreResult<Option<(i64, String)>> {
                let row = sqlx::query("SELECT last_error_at, last_error FROM model_status WHERE client_id = $1")
                    .bind(client_id)
                    .fetch_optional(&self.reader)
                    .await?;
                Ok(match row {
                    Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
                    None => None,
                })
            }

            async fn session_tokens(&self, session_id: i64) -> StoreResult<i64> {
                let row = sqlx::query(
                    "SELECT CAST(COALESCE(SUM(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)), 0) AS BIGINT) \
                     FROM messages WHERE session_id = $1",
                )
                .bind(session_id)
                .fetch_one(&self.reader)
                .await?;
                Ok(row.try_get(0)?)
            }

            async fn operator_link(&self, session_id: i64) -> StoreResult<Option<OperatorLink>> {
                let row = sqlx::query(concat!("SELECT ", link_columns!(), " FROM operator_links WHERE session_id = $1"))
                    .bind(session_id)
                    .fetch_optional(&self.reader)
                    .await?;
                Ok(row.map(|r| link_from(&r)).transpose()?)
            }

            async fn operator_link_by_conversation(
                &self,
                client_id: i64,
                conversation_id: i64,
            ) -> StoreResult<Option<OperatorLink>> {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    link_columns!(),
                    " FROM operator_links WHERE client_id = $1 AND conversation_id = $2"
                ))
                .bind(client_id)
                .bind(conversation_id)
                .fetch_optional(&self.reader)
                .await?;
                Ok(row.map(|r| link_from(&r)).transpose()?)
            }

            async fn task_insert(&self, t: &NewTaskRecord) -> StoreResult<TaskRecord> {
                let row = sqlx::query(concat!(
                    "INSERT INTO tasks (client_id, session_id, marker, category, title, summary, contact, page, ",
                    "state, next_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $10) ",
                    "RETURNING ",
                    task_columns!()
                ))
                .bind(t.client_id)
                .bind(t.session_id)
                .bind(&t.marker)
                .bind(&t.category)
                .bind(&t.title)
                .bind(&t.summary)
                .bind(&t.contact)
                .bind(&t.page)
                .bind(t.state.as_str())
                .bind(t.now)
                .fetch_one(&self.pool)
                .await;
                match row {
                    Ok(row) => Ok(task_from(&row)?),
                    Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!("task {}", t.marker))),
                    Err(e) => Err(e.into()),
                }
            }

            async fn task_proposed(&self, session_id: i64) -> StoreResult<Option<TaskRecord>> {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    task_columns!(),
                    " FROM tasks WHERE session_id = $1 AND state = 'proposed' ORDER BY id DESC LIMIT 1"
                ))
                .bind(session_id)
                .fetch_optional(&self.reader)
                .await?;
                Ok(row.map(|r| task_from(&r)).transpose()?)
            }

            async fn task_set_state(&self, id: i64, state: TaskState, now: i64) -> StoreResult<()> {
                sqlx::query("UPDATE tasks SET state = $2, next_at = $3, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(state.as_str())
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn tasks_due(&self, now: i64, limit: u32) -> StoreResult<Vec<TaskRecord>> {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    task_columns!(),
                    " FROM tasks WHERE state = 'queued' AND next_at <= $1 ORDER BY next_at, id LIMIT $2"
                ))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(task_from).collect::<Result<_, _>>()?)
            }

            async fn task_created(
                &self,
                id: i64,
                provider_id: &str,
                reference: &str,
                url: &str,
                now: i64,
            ) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE tasks SET state = 'created', provider_id = $2, reference = $3, url = $4, \
                     last_error = NULL, updated_at = $5 WHERE id = $1",
                )
                .bind(id)
                .bind(provider_id)
                .bind(reference)
                .bind(url)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn task_attempt(&self, id: i64, until: i64) -> StoreResult<()> {
                sqlx::query("UPDATE tasks SET next_at = $2, attempts = attempts + 1 WHERE id = $1")
                    .bind(id)
                    .bind(until)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn task_retry(&self, id: i64, next_at: i64, error: &str) -> StoreResult<()> {
                let sql = "UPDATE tasks SET next_at = $2, last_error = $3, updated_at = $2 WHERE id = $1";
                self.record_error(sql, id, next_at, error).await
            }

            async fn task_failed(&self, id: i64, now: i64, error: &str) -> StoreResult<()> {
                let sql = "UPDATE tasks SET state = 'failed', last_error = $3, updated_at = $2 WHERE id = $1";
                self.record_error(sql, id, now, error).await
            }

            async fn tasks_since(&self, session_id: i64, since: i64) -> StoreResult<i64> {
                let row = sqlx::query(
                    "SELECT COUNT(*) FROM tasks WHERE session_id = $1 AND created_at >= $2 AND state <> 'declined'",
                )
                .bind(session_id)
                .bind(since)
                .fetch_one(&self.reader)
                .await?;
                Ok(row.try_get(0)?)
            }

            async fn tasks_failed(&self, client_id: i64) -> StoreResult<Vec<TaskRecord>> {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    task_columns!(),
                    " FROM tasks WHERE client_id = $1 AND state = 'failed' ORDER BY updated_at DESC, id DESC"
                ))
                .bind(client_id)
                .fetch_all(&self.reader)
                .await?;
                Ok(rows.iter().map(task_from).collect::<Result<_, _>>()?)
            }

            async fn operator_links_open(&self, client_id: i64) -> StoreResult<Vec<OperatorLink>> {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    link_columns!(),
                    " FROM operator_links WHERE client_id = $1 AND state <> 'bot' AND conversation_id IS NOT NULL",
                    " ORDER BY session_id"
                ))
                .bind(client_id)
                .fetch_all(&self.reader)
                .await?;
                Ok(rows.iter().map(link_from).collect::<Result<_, _>>()?)
            }

            async fn operator_link_save(&self, l: &OperatorLink) -> StoreResult<()> {
                bind_link(sqlx::query(SAVE_LINK), l).execute(&self.pool).await?;
                Ok(())
            }

            async fn handoff_queue(
                &self,
                l: &OperatorLink,
                job: &str,
                messages: &[NewMessage],
            ) -> StoreResult<Vec<Message>> {
                let mut tx = self.pool.begin().await?;
                bind_link(sqlx::query(SAVE_LINK), l).execute(&mut *tx).await?;
                sqlx::query(PUSH_OUTBOX)
                    .bind(l.client_id)
                    .bind(l.session_id)
                    .bind("handoff")
                    .bind(job)
                    .bind(l.updated_at)
                    .execute(&mut *tx)
                    .await?;
                let mut stored = Vec::with_capacity(messages.len());
                for m in messages {
                    // Server messages carry no client id: always new.
                    let (Inserted::New(m) | Inserted::Duplicate(m)) = $insert(&mut tx, m).await?;
                    stored.push(m);
                }
                tx.commit().await?;
                Ok(stored)
            }

            async fn outbox_push(
                &self,
                client_id: i64,
                session_id: i64,
                kind: &str,
                payload: &str,
                now: i64,
            ) -> StoreResult<i64> {
                let row = sqlx::query(PUSH_OUTBOX)
                    .bind(client_id)
                    .bind(session_id)
                    .bind(kind)
                    .bind(payload)
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(row.try_get(0)?)
            }

            async fn outbox_due(&self, now: i64, limit: u32) -> StoreResult<Vec<OutboxItem>> {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    outbox_columns!(),
                    " FROM operator_outbox o WHERE dead_at IS NULL AND next_at <= $1 AND NOT EXISTS ",
                    "(SELECT 1 FROM operator_outbox p WHERE p.session_id = o.session_id AND p.dead_at IS NULL ",
                    "AND p.id < o.id) ORDER BY next_at, id LIMIT $2"
                ))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(outbox_from).collect::<Result<_, _>>()?)
            }

            async fn outbox_done(&self, id: i64) -> StoreResult<()> {
                sqlx::query("DELETE FROM operator_outbox WHERE id = $1").bind(id).execute(&self.pool).await?;
                Ok(())
            }

            async fn outbox_retry(&self, id: i64, next_at: i64, error: &str) -> StoreResult<()> {
                let sql =
                    "UPDATE operator_outbox SET next_at = $2, attempts = attempts + 1, last_error = $3 WHERE id = $1";
                self.record_error(sql, id, next_at, error).await
            }

            async fn outbox_dead(&self, id: i64, now: i64, error: &str) -> StoreResult<()> {
                let sql =
                    "UPDATE operator_outbox SET dead_at = $2, attempts = attempts + 1, last_error = $3 WHERE id = $1";
                self.record_error(sql, id, now, error).await
            }

            async fn outbox_dead_letters(&self, client_id: i64) -> StoreResult<Vec<OutboxItem>> {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    outbox_columns!(),
                    " FROM operator_outbox WHERE client_id = $1 AND dead_at IS NOT NULL ORDER BY dead_at DESC, id DESC"
                ))
                .bind(client_id)
                .fetch_all(&self.reader)
                .await?;
                Ok(rows.iter().map(outbox_from).collect::<Result<_, _>>()?)
            }

            async fn webhook_delivery_first(&self, delivery_id: &str, now: i64) -> StoreResult<bool> {
                // One write on the webhook's path; old ids are swept apart (webhook_deliveries_forget).
                let inserted = sqlx::query(
                    "INSERT INTO webhook_deliveries (delivery_id, received_at) VALUES ($1, $2) \
                     ON CONFLICT (delivery_id) DO UPDATE SET received_at = excluded.received_at \
                     WHERE webhook_deliveries.received_at < $3",
                )
                .bind(delivery_id)
                .bind(now)
                .bind(now - DELIVERY_MEMORY_MS)
                .execute(&self.pool)
                .await?;
                Ok(inserted.rows_affected() == 1)
            }

            async fn admin_count(&self) -> StoreResult<i64> {
                Ok(sqlx::query("SELECT COUNT(*) FROM admins").fetch_one(&self.pool).await?.try_get(0)?)
            }

            async fn admin_create(
                &self,
                username: &str,
                password_hash: &str,
                role: AdminRole,
                now: i64,
            ) -> StoreResult<AdminRow> {
                let result = sqlx::query(concat!(
                    "INSERT INTO admins (username, password_hash, role, created_at) VALUES ($1, $2, $3, $4) RETURNING ",
                    admin_columns!()
                ))
                .bind(username)
                .bind(password_hash)
                .bind(role.as_str())
                .bind(now)
                .fetch_one(&self.pool)
                .await;
                match result {
                    Ok(row) => Ok(admin_from(&row, 0)?),
                    Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!("admin {username}"))),
                    Err(e) => Err(e.into()),
                }
            }

            async fn admin_by_name(&self, username: &str) -> StoreResult<Option<AdminRow>> {
                let row = sqlx::query(concat!("SELECT ", admin_columns!(), " FROM admins WHERE username = $1"))
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.as_ref().map(|r| admin_from(r, 0)).transpose()?)
            }

            async fn admin_list(&self) -> StoreResult<Vec<AdminRow>> {
                let rows = sqlx::query(concat!("SELECT ", admin_columns!(), " FROM admins ORDER BY username"))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.iter().map(|r| admin_from(r, 0)).collect::<Result<_, _>>()?)
            }

            async fn admin_delete(&self, id: i64) -> StoreResult<bool> {
                let done = sqlx::query("DELETE FROM admins WHERE id = $1").bind(id).execute(&self.pool).await?;
                Ok(done.rows_affected() == 1)
            }

            async fn admin_set_password(&self, id: i64, password_hash: &str) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("UPDATE admins SET password_hash = $1 WHERE id = $2")
                    .bind(password_hash)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM admin_sessions WHERE admin_id = $1").bind(id).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn admin_grants(&self, admin_id: i64) -> StoreResult<Vec<String>> {
                let rows = sqlx::query(
                    "SELECT c.uid FROM admin_clients g JOIN clients c ON c.id = g.client_id \
                     WHERE g.admin_id = $1 ORDER BY c.uid",
                )
                .bind(admin_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?)
            }

            async fn admin_grant(&self, admin_id: i64, client_id: i64, granted: bool) -> StoreResult<()> {
                let sql = if granted {
                    "INSERT INTO admin_clients (admin_id, client_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
                } else {
                    "DELETE FROM admin_clients WHERE admin_id = $1 AND client_id = $2"
                };
                sqlx::query(sql).bind(admin_id).bind(client_id).execute(&self.pool).await?;
                Ok(())
            }

            async fn admin_session_create(
                &self,
                token_hash: &str,
                admin_id: i64,
                csrf: &str,
                now: i64,
                expires_at: i64,
            ) -> StoreResult<()> {
                sqlx::query("DELETE FROM admin_sessions WHERE expires_at <= $1").bind(now).execute(&self.pool).await?;
                sqlx::query(
                    "INSERT INTO admin_sessions (token_hash, admin_id, csrf, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(token_hash)
                .bind(admin_id)
                .bind(csrf)
                .bind(now)
                .bind(expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn admin_session_get(&self, token_hash: &str, now: i64) -> StoreResult<Option<AdminSessionRow>> {
                let row = sqlx::query(concat!(
                    "SELECT s.csrf, s.created_at, s.expires_at, ",
                    admin_columns!("a."),
                    " FROM admin_sessions s JOIN admins a ON a.id = s.admin_id \
                     WHERE s.token_hash = $1 AND s.expires_at > $2"
                ))
                .bind(token_hash)
                .bind(now)
                .fetch_optional(&self.reader)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(AdminSessionRow {
                    csrf: row.try_get(0)?,
                    created_at: row.try_get(1)?,
                    expires_at: row.try_get(2)?,
                    admin: admin_from(&row, 3)?,
                }))
            }

            async fn admin_session_delete(&self, token_hash: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM admin_sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn client_delete(&self, uid: &str) -> StoreResult<bool> {
                let done = sqlx::query("DELETE FROM clients WHERE uid = $1").bind(uid).execute(&self.pool).await?;
                Ok(done.rows_affected() == 1)
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.reader).await?;
                Ok(())
            }

            async fn outbox_depth(&self) -> StoreResult<OutboxDepth> {
                let row = sqlx::query(
                    "SELECT \
                     (SELECT COUNT(*) FROM operator_outbox WHERE dead_at IS NULL), \
                     (SELECT COUNT(*) FROM operator_outbox WHERE dead_at IS NOT NULL), \
                     (SELECT COUNT(*) FROM tasks WHERE state = 'queued'), \
                     (SELECT COUNT(*) FROM tasks WHERE state = 'failed')",
                )
                .fetch_one(&self.reader)
                .await?;
                Ok(OutboxDepth {
                    operator_pending: row.try_get(0)?,
                    operator_dead: row.try_get(1)?,
                    tasks_pending: row.try_get(2)?,
                    tasks_failed: row.try_get(3)?,
                })
            }

            async fn webhook_deliveries_forget(&self, now: i64) -> StoreResult<u64> {
                let deleted = sqlx::query("DELETE FROM webhook_deliveries WHERE received_at < $1")
                    .bind(now - DELIVERY_MEMORY_MS)
                    .execute(&self.pool)
                    .await?;
                Ok(deleted.rows_affected())
            }

            async fn lease_take(&self, name: &str, owner: &str, now: i64, until: i64) -> StoreResult<bool> {
                let taken = sqlx::query(
                    "INSERT INTO job_leases (name, owner, until) VALUES ($1, $2, $4) \
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until \
                     WHERE job_leases.owner = excluded.owner OR job_leases.until <= $3",
                )
                .bind(name)
                .bind(owner)
                .bind(now)
                .bind(until)
                .execute(&self.pool)
                .await?;
                Ok(taken.rows_affected() == 1)
            }

            async fn lease_release(&self, name: &str, owner: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM job_leases WHERE name = $1 AND owner = $2")
                    .bind(name)
                    .bind(owner)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }

        impl $store {
            /// Runs a statement that records a failure on a row: `$1` the row, `$2` when, `$3`
            /// the error (the model status, task and outbox retries and give-ups).
            async fn record_error(&self, sql: &'static str, id: i64, at: i64, error: &str) -> StoreResult<()> {
                sqlx::query(sql).bind(id).bind(at).bind(error).execute(&self.pool).await?;
                Ok(())
            }
        }
    };
}

sql_store!(SqliteStore, insert_message_sqlite);
sql_store!(PostgresStore, insert_message_pg);
