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
    pool: SqlitePool,
}

/// PostgreSQL, for several nodes sharing one database.
pub struct PostgresStore {
    pool: PgPool,
}

fn migrator(files: &[(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        files
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(*version, Cow::Borrowed(*name), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    )
}

impl SqliteStore {
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
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().min_connections(1).max_connections(4).connect_with(options).await?;
        migrator(&[(1, "init", include_str!("../../migrations/sqlite/0001_init.sql"))]).run(&pool).await?;
        Ok(Self { pool })
    }
}

impl PostgresStore {
    /// Connects and migrates (migrations take an advisory lock, so nodes may start together).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
        migrator(&[(1, "init", include_str!("../../migrations/postgres/0001_init.sql"))]).run(&pool).await?;
        Ok(Self { pool })
    }
}

const MESSAGE_COLUMNS: &str = "seq, session_id, role, text, client_msg_id, reply_to, source, entry_id, created_at";

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

fn session_from<R>(row: &R) -> Result<SessionRow, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(SessionRow {
        id: row.try_get(0)?,
        client_id: row.try_get(1)?,
        conversation_id: row.try_get(2)?,
        created_at: row.try_get(3)?,
    })
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

macro_rules! sql_store {
    ($store:ty) => {
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
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|r| client_from(&r)).transpose()?)
            }

            async fn client_list(&self) -> StoreResult<Vec<ClientRow>> {
                let rows = sqlx::query(
                    "SELECT id, uid, created_at, settings_version, knowledge_version \
                     FROM clients ORDER BY uid",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.iter().map(client_from).collect::<Result<_, _>>()?)
            }

            async fn settings_get(&self, client_id: i64) -> StoreResult<Vec<StoredSetting>> {
                let rows = sqlx::query("SELECT key, value FROM client_settings WHERE client_id = $1 ORDER BY key")
                    .bind(client_id)
                    .fetch_all(&self.pool)
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

            async fn knowledge_replace(&self, client_id: i64, entries: &[KnowledgeEntry]) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                let bumped = sqlx::query("UPDATE clients SET knowledge_version = knowledge_version + 1 WHERE id = $1")
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await?;
                if bumped.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("client #{client_id}")));
                }
                sqlx::query("DELETE FROM knowledge_entries WHERE client_id = $1")
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await?;
                for (position, entry) in entries.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO knowledge_entries \
                         (client_id, entry_id, position, question, answer, category, url) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(client_id)
                    .bind(&entry.id)
                    .bind(position as i64)
                    .bind(&entry.question)
                    .bind(&entry.answer)
                    .bind(&entry.category)
                    .bind(&entry.url)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn knowledge_list(&self, client_id: i64) -> StoreResult<Vec<KnowledgeEntry>> {
                let rows = sqlx::query(
                    "SELECT entry_id, question, answer, category, url FROM knowledge_entries \
                     WHERE client_id = $1 ORDER BY position",
                )
                .bind(client_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(KnowledgeEntry {
                            id: r.try_get(0)?,
                            question: r.try_get(1)?,
                            answer: r.try_get(2)?,
                            category: r.try_get(3)?,
                            url: r.try_get(4)?,
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
                let row = sqlx::query(
                    "INSERT INTO sessions (client_id, token_hash, conversation_id, created_at) \
                     VALUES ($1, $2, $3, $4) RETURNING id, client_id, conversation_id, created_at",
                )
                .bind(client_id)
                .bind(token_hash)
                .bind(conversation_id)
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
                Ok(session_from(&row)?)
            }

            async fn session_find(&self, client_id: i64, token_hash: &str) -> StoreResult<Option<SessionRow>> {
                let row = sqlx::query(
                    "SELECT id, client_id, conversation_id, created_at FROM sessions \
                     WHERE token_hash = $1 AND client_id = $2",
                )
                .bind(token_hash)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|r| session_from(&r)).transpose()?)
            }

            async fn message_insert(&self, m: &NewMessage) -> StoreResult<Inserted> {
                let sql = format!(
                    "INSERT INTO messages \
                     (session_id, role, text, client_msg_id, reply_to, source, entry_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (session_id, client_msg_id) DO NOTHING RETURNING {MESSAGE_COLUMNS}"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(m.session_id)
                    .bind(m.role.as_str())
                    .bind(&m.text)
                    .bind(&m.client_msg_id)
                    .bind(m.reply_to)
                    .bind(&m.source)
                    .bind(&m.entry_id)
                    .bind(m.created_at)
                    .fetch_optional(&self.pool)
                    .await?;
                if let Some(row) = row {
                    return Ok(Inserted::New(message_from(&row)?));
                }
                let sql =
                    format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = $1 AND client_msg_id = $2");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(m.session_id)
                    .bind(&m.client_msg_id)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(Inserted::Duplicate(message_from(&row)?))
            }

            async fn messages_page(
                &self,
                session_id: i64,
                before: Option<i64>,
                limit: u32,
            ) -> StoreResult<(Vec<Message>, bool)> {
                let sql = format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = $1 AND seq < $2 \
                     ORDER BY seq DESC LIMIT $3"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(session_id)
                    .bind(before.unwrap_or(i64::MAX))
                    .bind(i64::from(limit) + 1)
                    .fetch_all(&self.pool)
                    .await?;
                let more = rows.len() > limit as usize;
                let mut page = rows.iter().take(limit as usize).map(message_from).collect::<Result<Vec<_>, _>>()?;
                page.reverse();
                Ok((page, more))
            }

            async fn reply_to(&self, session_id: i64, seq: i64) -> StoreResult<Option<Message>> {
                let sql = format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = $1 AND reply_to = $2 \
                     ORDER BY seq LIMIT 1"
                );
                let row =
                    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(session_id).bind(seq).fetch_optional(&self.pool).await?;
                Ok(row.map(|r| message_from(&r)).transpose()?)
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }
        }
    };
}

sql_store!(SqliteStore);
sql_store!(PostgresStore);
