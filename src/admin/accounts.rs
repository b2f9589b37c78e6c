//! Signing in and out, the first account, and what an account may manage.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::password::{self, PasswordError};
use super::throttle::LoginThrottle;
use crate::ids::{now_ms, session_token, token_hash};
use crate::store::{AdminRole, AdminRow, Store, StoreError};

/// How long a sign-in lasts (a working day; signing in again is cheap, a stolen cookie isn't).
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The name of the account made on first start.
pub const FIRST_ADMIN: &str = "admin";
/// Where a generated first password is written, inside the data directory.
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";

/// A signed-in account and what it may manage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: i64,
    pub username: String,
    pub role: AdminRole,
    /// The clients granted to a client admin (empty for server admins, who manage all).
    pub clients: Vec<String>,
    /// The token state-changing requests of this session must repeat.
    pub csrf: String,
}

impl Principal {
    /// Whether the account may see and change client `uid`.
    pub fn may_manage(&self, uid: &str) -> bool {
        self.role == AdminRole::Server || self.clients.iter().any(|c| c == uid)
    }

    /// Whether the account manages the server: all clients, adding and deleting them, accounts.
    pub fn is_server_admin(&self) -> bool {
        self.role == AdminRole::Server
    }
}

/// A new sign-in: the cookie's token (the store keeps only its hash) and the account.
#[derive(Debug)]
pub struct SignedIn {
    pub token: String,
    pub principal: Principal,
}

/// Why signing in failed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Too many wrong passwords for this account from this address: try again after `wait`.
    #[error("too many failed sign-ins; try again in {} s", .0.as_secs().max(1))]
    Throttled(Duration),
    /// Wrong username or password (which one is not said).
    #[error("wrong username or password")]
    Invalid,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Argon2 computations at once. Each takes 19 MiB for ~30 ms: unbounded, a burst of sign-ins
/// (any usernames: unknown ones verify against a decoy) would take a gigabyte; queued, it
/// waits its turn.
const HASHING_AT_ONCE: usize = 2;

/// Runs `work` (a hash or a verification) on the blocking pool, at most [`HASHING_AT_ONCE`]
/// at a time.
pub async fn argon2<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    static TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(HASHING_AT_ONCE);
    let _turn = TURNS.acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
}

/// Checks a username and password and opens a session.
pub async fn sign_in(
    store: &dyn Store,
    throttle: &LoginThrottle,
    username: &str,
    password: &str,
    ip: IpAddr,
) -> Result<SignedIn, SignInError> {
    let username = username.trim().to_lowercase();
    throttle.check(&username, ip, Instant::now()).map_err(SignInError::Throttled)?;
    let row = store.admin_by_name(&username).await?;
    let phc = row.as_ref().map_or_else(|| password::decoy_hash().to_string(), |r| r.password_hash.clone());
    let given = password.to_string();
    let matches = argon2(move || password::verify(&given, &phc)).await.unwrap_or(false);
    let row = match (row, matches) {
        (Some(row), true) => row,
        _ => {
            let wait = throttle.failed(&username, ip, Instant::now());
            tracing::warn!(username = %username, %ip, wait_s = wait.as_secs(), "admin sign-in failed");
            return Err(SignInError::Invalid);
        }
    };
    throttle.succeeded(&username, ip);
    let token = session_token();
    let csrf = session_token();
    let now = now_ms();
    store.admin_session_create(&token_hash(&token), row.id, &csrf, now, now + SESSION_TTL.as_millis() as i64).await?;
    tracing::info!(username = %row.username, %ip, "admin signed in");
    let principal = principal(store, row, csrf).await?;
    Ok(SignedIn { token, principal })
}

/// The account behind a session cookie's token, if the session is still valid.
pub async fn session(store: &dyn Store, token: &str) -> Result<Option<Principal>, StoreError> {
    match store.admin_session_get(&token_hash(token), now_ms()).await? {
        Some(s) => Ok(Some(principal(store, s.admin, s.csrf).await?)),
        None => Ok(None),
    }
}

/// Ends the session of a cookie's token.
pub async fn sign_out(store: &dyn Store, token: &str) -> Result<(), StoreError> {
    store.admin_session_delete(&token_hash(token)).await
}

async fn principal(store: &dyn Store, row: AdminRow, csrf: String) -> Result<Principal, StoreError> {
    let clients = match row.role {
        AdminRole::Server => Vec::new(),
        AdminRole::Client => store.admin_grants(row.id).await?,
    };
    Ok(Principal { id: row.id, username: row.username, role: row.role, clients, csrf })
}

/// Why an account could not be made or changed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("'{0}' is not a valid username (1-64 characters of a-z, 0-9, '.', '_', '-', '@')")]
    BadName(String),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("an account named '{0}' exists already")]
    Taken(String),
    #[error("no account named '{0}'")]
    NoSuchAccount(String),
    #[error("no client '{0}'")]
    NoSuchClient(String),
    #[error("{0} is the last server admin; add another one first")]
    LastServerAdmin(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> AccountError {
        match e {
            StoreError::Conflict(what) => AccountError::Taken(what.trim_start_matches("admin ").to_string()),
            other => AccountError::Store(other),
        }
    }
}

/// The stored form of a username, if it is a valid one.
pub fn username(raw: &str) -> Result<String, AccountError> {
    let name = raw.trim().to_lowercase();
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-@".contains(&b));
    if ok { Ok(name) } else { Err(AccountError::BadName(raw.to_string())) }
}

/// Hashes off the async runtime (Argon2 takes tens of milliseconds of CPU), in turn.
pub async fn hash(password: &str) -> Result<String, PasswordError> {
    let password = password.to_string();
    argon2(move || password::hash(&password))
        .await
        .unwrap_or_else(|| Err(PasswordError::Hash("the hashing task failed".into())))
}

/// Adds an account; a client admin gets `clients` granted.
pub async fn create(
    store: &dyn Store,
    name: &str,
    password: &str,
    role: AdminRole,
    clients: &[String],
) -> Result<AdminRow, AccountError> {
    let name = username(name)?;
    let mut ids = Vec::new();
    for uid in clients {
        ids.push(store.client_get(uid).await?.ok_or_else(|| AccountError::NoSuchClient(uid.clone()))?.id);
    }
    let row = store.admin_create(&name, &hash(password).await?, role, now_ms()).await?;
    for id in ids {
        store.admin_grant(row.id, id, true).await?;
    }
    Ok(row)
}

/// Replaces an account's password; every session of the account ends. The first admin's
/// generated password file in `data_dir` goes with its password: it would only tell a reader
/// of the disk an old secret, or mislead whoever finds it.
pub async fn set_password(store: &dyn Store, data_dir: &Path, name: &str, password: &str) -> Result<(), AccountError> {
    let row = find(store, name).await?;
    store.admin_set_password(row.id, &hash(password).await?).await?;
    if row.username == FIRST_ADMIN {
        match std::fs::remove_file(data_dir.join(INITIAL_PASSWORD_FILE)) {
            Ok(()) => {
                tracing::info!(file = INITIAL_PASSWORD_FILE, "the first admin's generated password file was removed")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(error = %e, file = INITIAL_PASSWORD_FILE, "removing the first admin's password file failed; delete it by hand")
            }
        }
    }
    Ok(())
}

/// Grants or revokes a client to an account.
pub async fn grant(store: &dyn Store, name: &str, uid: &str, granted: bool) -> Result<(), AccountError> {
    let row = find(store, name).await?;
    let client = store.client_get(uid).await?.ok_or_else(|| AccountError::NoSuchClient(uid.to_string()))?;
    store.admin_grant(row.id, client.id, granted).await?;
    Ok(())
}

/// Makes `clients` exactly the clients granted to an account.
pub async fn set_grants(store: &dyn Store, name: &str, clients: &[String]) -> Result<(), AccountError> {
    let row = find(store, name).await?;
    let mut wanted = Vec::new();
    for uid in clients {
        wanted.push(store.client_get(uid).await?.ok_or_else(|| AccountError::NoSuchClient(uid.clone()))?);
    }
    let current = store.admin_grants(row.id).await?;
    for uid in current.iter().filter(|uid| !clients.contains(uid)) {
        if let Some(client) = store.client_get(uid).await? {
            store.admin_grant(row.id, client.id, false).await?;
        }
    }
    for client in wanted.iter().filter(|c| !current.contains(&c.uid)) {
        store.admin_grant(row.id, client.id, true).await?;
    }
    Ok(())
}

/// Deletes an account, keeping at least one server admin.
pub async fn remove(store: &dyn Store, name: &str) -> Result<(), AccountError> {
    let row = find(store, name).await?;
    if row.role == AdminRole::Server {
        let servers = store.admin_list().await?.iter().filter(|r| r.role == AdminRole::Server).count();
        if servers <= 1 {
            return Err(AccountError::LastServerAdmin(row.username));
        }
    }
    store.admin_delete(row.id).await?;
    Ok(())
}

/// The account of a username.
pub async fn find(store: &dyn Store, name: &str) -> Result<AdminRow, AccountError> {
    let name = username(name)?;
    store.admin_by_name(&name).await?.ok_or(AccountError::NoSuchAccount(name))
}

/// How the first account came to be, for the start-up log.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstAdmin {
    /// Accounts exist already.
    Exists,
    /// Made with the password from `AIA_ADMIN_PASSWORD`.
    FromEnvironment,
    /// Made with a generated password, written (mode 0600) to this file.
    Generated(PathBuf),
}

/// Makes the first server admin when there is no account: with `password` if given, else a
/// generated one written to `DATA_DIR/initial-admin-password` that only its owner can read.
pub async fn ensure_first(
    store: &dyn Store,
    data_dir: &Path,
    password: Option<&str>,
) -> Result<FirstAdmin, anyhow::Error> {
    if store.admin_count().await? > 0 {
        return Ok(FirstAdmin::Exists);
    }
    let (password, outcome) = match password {
        Some(p) => (p.to_string(), FirstAdmin::FromEnvironment),
        None => {
            let generated = password::generate();
            let path = data_dir.join(INITIAL_PASSWORD_FILE);
            // With PostgreSQL nothing else made the data directory.
            crate::app::create_private_dir(data_dir)?;
            write_private(&path, &format!("{generated}\n"))?;
            (generated, FirstAdmin::Generated(path))
        }
    };
    match create(store, FIRST_ADMIN, &password, AdminRole::Server, &[]).await {
        Ok(_) => Ok(outcome),
        // Another node made it first: its password holds, not the one written here.
        Err(AccountError::Taken(_)) => {
            if let FirstAdmin::Generated(path) = &outcome {
                let _ = std::fs::remove_file(path);
            }
            Ok(FirstAdmin::Exists)
        }
        Err(AccountError::Password(e)) => anyhow::bail!("AIA_ADMIN_PASSWORD: {e}"),
        Err(e) => Err(e.into()),
    }
}

/// Writes a file only its owner may read (replacing an older one).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
