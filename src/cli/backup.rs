//! `aia-chat backup FILE` and `aia-chat restore FILE`: a consistent copy of the SQLite database
//! while the server runs (SQLite's `VACUUM INTO`, one read transaction, so no write is torn),
//! and its way back into an empty data directory.
//!
//! The server key is never in a backup: the database keeps only its fingerprint. `restore`
//! compares that fingerprint with the key at hand (`AIA_SECRET_KEY` or `DATA_DIR/secret.key`)
//! and refuses, naming both fingerprints, when the stored secrets could not be read with it.
//! PostgreSQL is backed up with its own tools (`pg_dump`), see docs/deployment.md.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::clients::SecretBox;
use crate::config::StoreArgs;

/// The database file in a data directory.
const DB_FILE: &str = "aia-chat.db";

/// Arguments of `backup` and `restore`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The backup file (made by `backup`, read by `restore`).
    file: PathBuf,
}

/// What a database holds, for the summary line.
struct Summary {
    clients: i64,
    conversations: i64,
    messages: i64,
    fingerprint: Option<String>,
}

fn summary(path: &Path) -> anyhow::Result<Summary> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", path.display()))?;
    let count = |table: &str| -> anyhow::Result<i64> {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .with_context(|| format!("{} is not an aia-chat database (no {table} table)", path.display()))
    };
    let fingerprint =
        conn.query_row("SELECT value FROM meta WHERE key = 'secret_key_fingerprint'", [], |r| r.get(0)).ok();
    Ok(Summary {
        clients: count("clients")?,
        conversations: count("sessions")?,
        messages: count("messages")?,
        fingerprint,
    })
}

/// Copies the running server's database to `FILE` (which must not exist yet).
pub fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let settings = args.store.settings()?;
    if settings.database_url.is_some() {
        bail!(
            "backup copies the SQLite database of a data directory; back PostgreSQL up with its own tools, e.g. pg_dump --format=custom (see docs/deployment.md)"
        );
    }
    let db = settings.data_dir.join(DB_FILE);
    if !db.exists() {
        bail!("no database at {}: is --data-dir right?", db.display());
    }
    if args.file.exists() {
        bail!("{} exists already; give a new file name", args.file.display());
    }
    let conn = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", db.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let target = args.file.to_str().context("the backup file's path must be UTF-8")?;
    conn.execute("VACUUM INTO ?1", [target]).with_context(|| format!("writing {}", args.file.display()))?;
    // Conversations are personal data: readable by this user only.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&args.file, std::fs::Permissions::from_mode(0o600))?;
    let s = summary(&args.file)?;
    println!(
        "backed up {} clients, {} conversations, {} messages to {} (the secret key is not in it: keep DATA_DIR/secret.key or AIA_SECRET_KEY, fingerprint {})",
        s.clients,
        s.conversations,
        s.messages,
        args.file.display(),
        s.fingerprint.as_deref().unwrap_or("none")
    );
    Ok(())
}

/// Puts a backup into an empty data directory, once the key at hand matches it.
pub fn restore(args: BackupArgs) -> anyhow::Result<()> {
    let settings = args.store.settings()?;
    if settings.database_url.is_some() {
        bail!("restore fills a data directory's SQLite database; restore PostgreSQL with pg_restore");
    }
    let db = settings.data_dir.join(DB_FILE);
    if db.exists() {
        bail!("{} exists: restore only into an empty data directory (move the old one away first)", db.display());
    }
    let backup = summary(&args.file)?;
    let expected =
        backup.fingerprint.as_deref().context("the backup has no key fingerprint: not an aia-chat backup")?;
    let key = match &settings.secret_key {
        Some(text) => Some(SecretBox::from_text(text)?),
        None => SecretBox::load(&settings.data_dir)?,
    };
    match key {
        None => bail!(
            "no secret key at hand: the backup's secrets (model, Chatwoot and Trello tokens) can only be read with the key whose fingerprint is {expected}; put it in {} or AIA_SECRET_KEY, then restore again",
            settings.data_dir.join("secret.key").display()
        ),
        Some(key) if key.fingerprint() != expected => bail!(
            "the secret key at hand (fingerprint {}) is not the backup's (fingerprint {expected}): its secrets could not be read; give the original key in AIA_SECRET_KEY or {}",
            key.fingerprint(),
            settings.data_dir.join("secret.key").display()
        ),
        Some(_) => {}
    }
    crate::app::create_private_dir(&settings.data_dir)?;
    // Copied under another name and renamed, so a half-written file is never taken for the database.
    let partial = settings.data_dir.join(format!("{DB_FILE}.restoring"));
    std::fs::copy(&args.file, &partial).with_context(|| format!("copying {}", args.file.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&partial, &db)?;
    println!(
        "restored {} clients, {} conversations, {} messages into {}; the key matches (fingerprint {expected})",
        backup.clients,
        backup.conversations,
        backup.messages,
        settings.data_dir.display()
    );
    Ok(())
}
