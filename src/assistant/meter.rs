//! Model tokens used per client and UTC day and per session, counted in memory on top of what
//! the store held when first asked, so checking a budget before each answer costs no database
//! round trip. The store stays the source of truth: every answer's tokens are written with it,
//! and an entry not cached is read from there. A client's day is read again every
//! [`DAY_REFRESH`], so the other nodes' use counts too (the daily budget holds for the cluster,
//! give or take what they spend in that time).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::store::{Store, StoreResult};

/// How long a client's cached day count is trusted before it is read again from the store.
pub const DAY_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// Sessions remembered at most; past it the cache starts over (and refills from the store).
const MAX_SESSIONS: usize = 100_000;

/// The in-memory token counters.
#[derive(Debug, Default)]
pub struct UsageMeter {
    /// Tokens per (client, day), and when the store was last asked.
    days: Mutex<HashMap<(i64, i64), (i64, std::time::Instant)>>,
    sessions: Mutex<HashMap<i64, i64>>,
    /// Per visitor address and UTC day, across clients; in memory only (per node, since start).
    ips: Mutex<HashMap<(IpAddr, i64), i64>>,
}

impl UsageMeter {
    /// Tokens the client used on `day`.
    pub async fn client_day(&self, store: &dyn Store, client_id: i64, day: i64) -> StoreResult<i64> {
        if let Some((n, read)) = self.days.lock().expect("meter lock").get(&(client_id, day))
            && read.elapsed() < DAY_REFRESH
        {
            return Ok(*n);
        }
        let n = store.usage_day(client_id, day).await?.tokens.total();
        let mut days = self.days.lock().expect("meter lock");
        days.retain(|(_, d), _| *d >= day - 1);
        days.insert((client_id, day), (n, std::time::Instant::now()));
        Ok(n)
    }

    /// Tokens the session's answers used.
    pub async fn session(&self, store: &dyn Store, session: i64) -> StoreResult<i64> {
        if let Some(n) = self.sessions.lock().expect("meter lock").get(&session) {
            return Ok(*n);
        }
        let n = store.session_tokens(session).await?;
        let mut sessions = self.sessions.lock().expect("meter lock");
        if sessions.len() >= MAX_SESSIONS {
            sessions.clear();
        }
        Ok(*sessions.entry(session).or_insert(n))
    }

    /// Tokens answers to `ip` used on `day`.
    pub fn ip_day(&self, ip: IpAddr, day: i64) -> i64 {
        let ip = crate::realtime::limits::address_owner(ip);
        self.ips.lock().expect("meter lock").get(&(ip, day)).copied().unwrap_or(0)
    }

    /// Counts an answer's tokens against the visitor's address.
    pub fn add_ip(&self, ip: IpAddr, day: i64, tokens: i64) {
        let ip = crate::realtime::limits::address_owner(ip);
        let mut ips = self.ips.lock().expect("meter lock");
        if ips.len() >= MAX_SESSIONS {
            ips.retain(|(_, d), _| *d >= day);
        }
        *ips.entry((ip, day)).or_default() += tokens;
    }

    /// An answer that cost `tokens` was stored. Only cached entries change: one not cached is
    /// read from the store, which already counts it.
    pub fn add(&self, client_id: i64, day: i64, session: i64, tokens: i64) {
        if let Some((n, _)) = self.days.lock().expect("meter lock").get_mut(&(client_id, day)) {
            *n += tokens;
        }
        if let Some(n) = self.sessions.lock().expect("meter lock").get_mut(&session) {
            *n += tokens;
        }
    }
}
