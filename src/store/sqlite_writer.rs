//! SQLite's message writer: one connection of its own, used right on the tasks that store
//! messages, with group commit. Whoever finds the connection free commits everything queued so
//! far in one transaction (its own message included) and hands each caller its result; callers
//! that arrive meanwhile queue and are taken by the same committer before it lets go. So an
//! isolated message costs one commit and no thread hop (about 0.1 ms), and a burst shares
//! transactions, so its pages go to the WAL once, not once per message. Through sqlx every
//! statement was a round trip to the connection's worker thread, and with a writer thread of
//! our own the two wake-ups still cost 0.2–0.4 ms on 2 cores, several times the commit itself.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, named_params};
use tokio::sync::oneshot;

use super::NewMessage;
use super::sql::{ADD_USAGE, INSERT_MESSAGE_SEQ};

/// Messages taken into one transaction at most.
const BATCH: usize = 128;

/// What storing one message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    /// Stored as this `seq`.
    New(i64),
    /// A message with the same client id was already there (a resend).
    Duplicate,
}

/// A job's outcome: the message, and its answer's `seq` when one came with it and was stored.
type JobResult = (Written, Option<i64>);

/// A message (and maybe its answer) waiting for a commit.
struct Job {
    message: NewMessage,
    answer: Option<NewMessage>,
    done: oneshot::Sender<rusqlite::Result<JobResult>>,
}

/// The writer's connection and the messages waiting for it.
pub(super) struct Writer {
    conn: tokio::sync::Mutex<Connection>,
    queue: Mutex<Vec<Job>>,
}

impl Writer {
    /// Opens the writer's own connection to the (created and migrated) database file.
    pub(super) fn open(path: &Path) -> Result<Writer, rusqlite::Error> {
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        // Never wait inside SQLite: `commit` waits between attempts instead.
        conn.busy_timeout(Duration::ZERO)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // As on the other connections: freed space is zeroed (erasure requests).
        conn.pragma_update(None, "secure_delete", true)?;
        // Checkpoints run in the background (`spawn_checkpointer`), never inside a commit.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(Writer { conn: tokio::sync::Mutex::new(conn), queue: Mutex::new(Vec::new()) })
    }

    /// Stores `message` and, when it is new, `answer` as its reply, in one transaction; the
    /// answer's `seq` when it was stored. `None` from the channel means the committer that
    /// took the job was dropped mid-wait.
    pub(super) async fn insert(
        &self,
        message: &NewMessage,
        answer: Option<&NewMessage>,
    ) -> Option<rusqlite::Result<JobResult>> {
        let (done, result) = oneshot::channel();
        self.queued().push(Job { message: message.clone(), answer: answer.cloned(), done });
        // Checking the queue again after letting go closes the race with a caller that queued
        // while this one still held the connection (its `try_lock` failed).
        while let Ok(mut conn) = self.conn.try_lock() {
            loop {
                let batch: Vec<Job> = {
                    let mut queue = self.queued();
                    let n = queue.len().min(BATCH);
                    queue.drain(..n).collect()
                };
                if batch.is_empty() {
                    break;
                }
                commit(&mut conn, batch).await;
            }
            drop(conn);
            if self.queued().is_empty() {
                break;
            }
        }
        result.await.ok()
    }

    fn queued(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Commits a batch and answers each job. If the batch fails, its jobs are retried one by one, so
/// one bad message cannot fail its neighbours.
async fn commit(conn: &mut Connection, batch: Vec<Job>) {
    match commit_waiting(conn, &batch).await {
        Ok(results) => {
            for (job, result) in batch.into_iter().zip(results) {
                let _ = job.done.send(Ok(result));
            }
        }
        Err(_) => {
            for job in batch {
                let result = commit_waiting(conn, std::slice::from_ref(&job)).await.map(|mut r| r.remove(0));
                let _ = job.done.send(result);
            }
        }
    }
}

/// While another process holds SQLite's write lock, tries again every millisecond for up to
/// 10 s: SQLite's own busy handler backs off to 100 ms sleeps, and against a training run
/// committing batch after batch it kept missing the gaps (visitors' messages held for up to
/// 0.8 s).
async fn commit_waiting(conn: &mut Connection, jobs: &[Job]) -> rusqlite::Result<Vec<JobResult>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match try_commit(conn, jobs) {
            Err(e) if is_busy(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(1)).await
            }
            other => return other,
        }
    }
}

fn try_commit(conn: &mut Connection, jobs: &[Job]) -> rusqlite::Result<Vec<JobResult>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let written = insert(&tx, &job.message)?;
        let answer = match (written, &job.answer) {
            (Written::New(seq), Some(answer)) => {
                match insert(&tx, &NewMessage { reply_to: Some(seq), ..answer.clone() })? {
                    Written::New(seq) => Some(seq),
                    Written::Duplicate => None,
                }
            }
            _ => None,
        };
        results.push((written, answer));
    }
    tx.commit()?;
    Ok(results)
}

/// Inserts one message and counts its model usage into the client's day.
fn insert(tx: &Transaction<'_>, m: &NewMessage) -> rusqlite::Result<Written> {
    let json = |empty: bool, value: String| (!empty).then_some(value);
    // The SQL is shared with sqlx, whose `$n` SQLite takes for names: bound by name, as the
    // numbers are not in order of appearance everywhere.
    let seq: Option<i64> = tx
        .prepare_cached(INSERT_MESSAGE_SEQ)?
        .query_row(
            named_params! {
                "$1": m.session_id,
                "$2": m.role.as_str(),
                "$3": m.text,
                "$4": m.client_msg_id,
                "$5": m.reply_to,
                "$6": m.source,
                "$7": m.entry_id,
                "$8": m.created_at,
                "$9": m.usage.map(|u| u.prompt),
                "$10": m.usage.map(|u| u.completion),
                "$11": m.author.as_ref().map(|a| a.name.as_str()),
                "$12": m.author.as_ref().and_then(|a| a.avatar_url.as_deref()),
                "$13": json(m.attachments.is_empty(), serde_json::to_string(&m.attachments).unwrap_or_default()),
                "$14": json(m.products.is_empty(), serde_json::to_string(&m.products).unwrap_or_default()),
            },
            |row| row.get(0),
        )
        .optional()?;
    let Some(seq) = seq else { return Ok(Written::Duplicate) };
    if let Some(u) = m.usage {
        tx.prepare_cached(ADD_USAGE)?.execute(named_params! {
            "$1": m.session_id,
            "$2": super::utc_day(m.created_at),
            "$3": u.prompt,
            "$4": u.completion,
        })?;
    }
    Ok(Written::New(seq))
}

/// SQLITE_BUSY: another connection holds the lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy)
}
