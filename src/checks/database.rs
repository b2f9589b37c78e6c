//! The database check, the doctor's first: the store opens (and is migrated, as a server's start
//! would), its schema is this version's, the server key at hand is the one the database was
//! created with, and every secret of the client decrypts with it. It never creates a database,
//! a data directory or a key: where there is none, it says so.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::{Outcome, Report, failed, passed};
use crate::clients::{ClientSettings, SETTINGS, SecretBox};
use crate::config::StoreSettings;
use crate::store::Store;

/// What the database check found, and what the other checks need from it.
pub enum Database {
    /// The client's settings could be read, with the key they are sealed under: the other
    /// checks can run (the report may still have failed, e.g. on a secret that doesn't decrypt).
    Ready { report: Report, store: Arc<dyn Store>, keys: SecretBox, settings: ClientSettings },
    /// The database or its key is unusable; nothing else can be checked.
    Broken(Report),
    /// The database has no client by this uid.
    NoClient,
}

/// The fingerprint of the key the database was created with (`app::open_store` records it).
const FINGERPRINT: &str = "secret_key_fingerprint";

/// Checks the database `settings` name for client `uid`.
pub async fn check(settings: &StoreSettings, uid: &str) -> Database {
    let started = Instant::now();
    let done = |o: Outcome| o.report("database", started);
    let (store, which) = match open(settings).await {
        Ok(opened) => opened,
        Err(o) => return Database::Broken(done(o)),
    };
    let place = format!("database ({which})");
    let row = match store.client_get(uid).await {
        Ok(Some(row)) => row,
        Ok(None) => return Database::NoClient,
        Err(e) => return Database::Broken(done(unreadable(&place, e))),
    };
    let read = async {
        let stored = store.settings_get(row.id).await?;
        let fingerprint = store.meta_get(FINGERPRINT).await?;
        let schema = store.schema_version().await?;
        Ok::<_, crate::store::StoreError>((ClientSettings::from_stored(stored), fingerprint, schema))
    };
    let (client, expected, schema) = match read.await {
        Ok(found) => found,
        Err(e) => return Database::Broken(done(unreadable(&place, e))),
    };
    let (keys, key_from) = match key(settings) {
        Ok(found) => found,
        Err(o) => return Database::Broken(done(*o)),
    };
    let key_place = format!("server key ({key_from})");
    if let Some(expected) = &expected
        && keys.fingerprint() != expected
    {
        return Database::Broken(done(failed(
            "The server key is not the one this database was created with: no stored secret can be read.",
            key_place,
            format!(
                "the key at hand has fingerprint {}; the database's has fingerprint {expected}",
                keys.fingerprint()
            ),
            format!(
                "Give the original key (fingerprint {expected}) in AIA_SECRET_KEY or {}; backups never hold it.",
                settings.data_dir.join("secret.key").display()
            ),
        )));
    }
    let secrets: Vec<&str> = SETTINGS.iter().filter(|d| d.secret() && client.is_set(d.key)).map(|d| d.key).collect();
    let broken: Vec<&str> =
        secrets.iter().copied().filter(|key| matches!(client.secret(&keys, uid, key), Some(Err(_)))).collect();
    let known = crate::store::known_schema_version();
    let details = json!({
        "database": which, "schema": schema, "schema_known": known, "fingerprint": keys.fingerprint(),
        "key_from": key_from, "secrets": secrets.len(), "undecryptable": broken,
    });
    let mut o = if broken.is_empty() {
        passed("The database opens, its schema is current and the server key matches it.".into(), details)
    } else {
        failed(
            "Some of the client's secrets cannot be decrypted with the server key.",
            format!("settings of client {uid}"),
            format!("{} cannot be decrypted", broken.join(", ")),
            format!(
                "Set {} again (aia-chat client set {uid} {}=…, or in the admin panel): a secret opens only under \
                 the setting and the client it was stored for.",
                broken.join(", "),
                broken[0]
            ),
        )
        .with_details(details)
    };
    o.notes.push(format!("database: {which}"));
    o.notes.push(if schema > known {
        format!("schema: migration {schema}, newer than this aia-chat knows ({known}): upgrade this one too")
    } else {
        format!("schema: migration {schema} of {known}")
    });
    o.notes.push(match &expected {
        Some(_) => format!("key: fingerprint {} from {key_from}, the database's", keys.fingerprint()),
        None => format!("key: fingerprint {} from {key_from}; the database records none yet", keys.fingerprint()),
    });
    o.notes.push(format!("secrets: {} set, {} decrypt", secrets.len(), secrets.len() - broken.len()));
    Database::Ready { report: done(o), store, keys, settings: client }
}

/// Opens the store without creating one: a missing SQLite file is a finding, not a new
/// database. Returns the store and how to name it (never a URL, which may carry a password).
async fn open(settings: &StoreSettings) -> Result<(Arc<dyn Store>, String), Outcome> {
    let which = match &settings.database_url {
        Some(_) if settings.shared() => "PostgreSQL (--database-url)".to_string(),
        Some(_) => "SQLite (--database-url)".to_string(),
        None => {
            let file = settings.data_dir.join("aia-chat.db");
            if !file.exists() {
                return Err(failed(
                    "There is no database here.",
                    format!("database ({})", file.display()),
                    format!("{} does not exist", file.display()),
                    "Give the server's data directory with --data-dir (AIA_DATA_DIR), or its database with \
                     --database-url (AIA_DATABASE_URL).",
                ));
            }
            format!("SQLite {}", file.display())
        }
    };
    match crate::store::open(settings.database_url.as_deref(), &settings.data_dir).await {
        Ok(store) => Ok((store, which)),
        Err(e) => Err(failed(
            "The database cannot be opened.",
            format!("database ({which})"),
            e.to_string(),
            "Check --data-dir or --database-url (AIA_DATA_DIR, AIA_DATABASE_URL) and that this user may read and \
             write the database.",
        )),
    }
}

fn unreadable(place: &str, e: crate::store::StoreError) -> Outcome {
    failed(
        "The database cannot be read.",
        place,
        e.to_string(),
        "Check that the database is reachable and that this user may read it.",
    )
}

/// The server key, from `AIA_SECRET_KEY` or the data directory (never created here), and
/// where it came from.
fn key(settings: &StoreSettings) -> Result<(SecretBox, String), Box<Outcome>> {
    let file = settings.data_dir.join("secret.key");
    let fix = format!(
        "Give the server's key in AIA_SECRET_KEY or in {}: 32 bytes as 64 hex characters (a new one \
         opens none of the stored secrets).",
        file.display()
    );
    let (found, from) = match &settings.secret_key {
        Some(text) => (SecretBox::from_text(text).map(Some), "AIA_SECRET_KEY".to_string()),
        None => (SecretBox::load(&settings.data_dir), file.display().to_string()),
    };
    match found {
        Ok(Some(keys)) => Ok((keys, from)),
        Ok(None) => Err(Box::new(failed(
            "The server key is missing: no stored secret can be read.",
            format!("server key ({from})"),
            format!("AIA_SECRET_KEY is not set and {from} does not exist"),
            fix,
        ))),
        Err(e) => {
            Err(Box::new(failed("The server key cannot be used.", format!("server key ({from})"), e.to_string(), fix)))
        }
    }
}
