//! Abuse limits with documented defaults: messages per session per minute, open sockets per
//! IP, and new sessions per IP per minute. On a clustered node the rate limits are kept in
//! Redis so they hold across nodes (falling back to this process's limiters while Redis is
//! away); open sockets are counted per node.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::cluster::Cluster;
use crate::cluster::ratelimit::SharedLimiter;

/// Operator webhooks a second from one address: far above what a Chatwoot sends for one
/// shop (every agent message, typing and status change is one call), low enough that a flood
/// of forged calls can't keep the server busy verifying signatures.
const WEBHOOKS_PER_SECOND: u32 = 100;
const WEBHOOK_BURST: u32 = 300;

/// Widget config requests a minute from one address: a page load asks once, so this is a
/// busy office behind one address; a hijacked page polling it in a loop is cut off.
const CONFIGS_PER_MINUTE: u32 = 120;
const CONFIG_BURST: u32 = 60;
/// `history` frames a minute per session: scrolling back pages through a long conversation,
/// not a loop reading the database.
const HISTORY_PER_MINUTE: u32 = 60;
const HISTORY_BURST: u32 = 20;

/// The configured limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    pub messages_per_minute: u32,
    pub message_burst: u32,
    pub sockets_per_ip: u32,
    pub sessions_per_minute: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings { messages_per_minute: 60, message_burst: 10, sockets_per_ip: 64, sessions_per_minute: 30 }
    }
}

/// Live limiter state.
pub struct Limits {
    settings: LimitSettings,
    messages: DefaultKeyedRateLimiter<i64>,
    /// Feedback and identify: writes that are not messages get a budget of their own, so
    /// they can neither flood the database nor use up the visitor's messages.
    writes: DefaultKeyedRateLimiter<i64>,
    sessions: DefaultKeyedRateLimiter<IpAddr>,
    /// Operator webhooks per sending address, checked before a body is read or verified.
    webhooks: DefaultKeyedRateLimiter<IpAddr>,
    /// Widget config requests per address (per node).
    configs: DefaultKeyedRateLimiter<IpAddr>,
    /// `history` frames per session (per node).
    history: DefaultKeyedRateLimiter<i64>,
    sockets: Mutex<HashMap<IpAddr, u32>>,
    /// The same rate limits in Redis, on a clustered node.
    shared: Option<Shared>,
}

/// The cluster-wide twins of the rate limiters.
struct Shared {
    messages: SharedLimiter,
    writes: SharedLimiter,
    sessions: SharedLimiter,
    webhooks: SharedLimiter,
}

/// An open-socket slot for one IP, released on drop.
pub struct SocketPermit {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        let mut sockets = self.limits.sockets.lock().expect("limits lock");
        if let Some(n) = sockets.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                sockets.remove(&self.ip);
            }
        }
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("max(1) is non-zero")
}

/// The address a per-address limit counts. An IPv6 host is usually given a whole /64 and
/// can pick any address in it, so the /64 is one visitor; IPv4 (and IPv4-mapped IPv6) counts
/// as itself.
pub fn address_owner(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 => v4,
    }
}

impl Limits {
    /// Builds the limiters; on a clustered node the rate limits are shared through Redis.
    pub fn new(settings: LimitSettings, cluster: &Cluster) -> Arc<Limits> {
        let minute = std::time::Duration::from_secs(60);
        let shared = cluster.clustered().then(|| Shared {
            messages: SharedLimiter::new(
                cluster,
                "messages",
                minute,
                settings.messages_per_minute,
                settings.message_burst,
            ),
            writes: SharedLimiter::new(cluster, "writes", minute, settings.messages_per_minute, settings.message_burst),
            sessions: SharedLimiter::new(
                cluster,
                "sessions",
                minute,
                settings.sessions_per_minute,
                settings.sessions_per_minute,
            ),
            webhooks: SharedLimiter::new(
                cluster,
                "webhooks",
                std::time::Duration::from_secs(1),
                WEBHOOKS_PER_SECOND,
                WEBHOOK_BURST,
            ),
        });
        let per_session = Quota::per_minute(nz(settings.messages_per_minute)).allow_burst(nz(settings.message_burst));
        Arc::new(Limits {
            settings,
            messages: RateLimiter::keyed(per_session),
            writes: RateLimiter::keyed(per_session),
            sessions: RateLimiter::keyed(Quota::per_minute(nz(settings.sessions_per_minute))),
            webhooks: RateLimiter::keyed(Quota::per_second(nz(WEBHOOKS_PER_SECOND)).allow_burst(nz(WEBHOOK_BURST))),
            configs: RateLimiter::keyed(Quota::per_minute(nz(CONFIGS_PER_MINUTE)).allow_burst(nz(CONFIG_BURST))),
            history: RateLimiter::keyed(Quota::per_minute(nz(HISTORY_PER_MINUTE)).allow_burst(nz(HISTORY_BURST))),
            sockets: Mutex::new(HashMap::new()),
            shared,
        })
    }

    /// Takes an open-socket slot for `ip`, or `None` when it has too many.
    pub fn socket(self: &Arc<Self>, ip: IpAddr) -> Option<SocketPermit> {
        let ip = address_owner(ip);
        let mut sockets = self.sockets.lock().expect("limits lock");
        let n = sockets.entry(ip).or_insert(0);
        if *n >= self.settings.sockets_per_ip {
            crate::metrics::rate_limited("sockets");
            return None;
        }
        *n += 1;
        Some(SocketPermit { limits: self.clone(), ip })
    }

    /// Whether `ip` may start another session now.
    pub async fn new_session(&self, ip: IpAddr) -> bool {
        let ip = address_owner(ip);
        if let Some(allowed) = self.shared(|s| &s.sessions, &ip.to_string()).await {
            return counted("sessions", allowed);
        }
        counted("sessions", self.sessions.check_key(&ip).is_ok())
    }

    /// Whether `ip` may deliver another operator webhook now.
    pub async fn webhook(&self, ip: IpAddr) -> bool {
        let ip = address_owner(ip);
        if let Some(allowed) = self.shared(|s| &s.webhooks, &ip.to_string()).await {
            return counted("webhooks", allowed);
        }
        counted("webhooks", self.webhooks.check_key(&ip).is_ok())
    }

    /// Whether `ip` may fetch the widget's config now.
    pub fn config(&self, ip: IpAddr) -> bool {
        counted("config", self.configs.check_key(&address_owner(ip)).is_ok())
    }

    /// Whether `session` may read another page of its history now.
    pub fn history(&self, session: i64) -> bool {
        counted("history", self.history.check_key(&session).is_ok())
    }

    /// Whether `session` may send another message now.
    pub async fn message(&self, session: i64) -> bool {
        if let Some(allowed) = self.shared(|s| &s.messages, &session.to_string()).await {
            return counted("messages", allowed);
        }
        counted("messages", self.messages.check_key(&session).is_ok())
    }

    /// Whether `session` may store another rating or identity now (same quota as messages,
    /// counted apart from them).
    pub async fn write(&self, session: i64) -> bool {
        if let Some(allowed) = self.shared(|s| &s.writes, &session.to_string()).await {
            return counted("writes", allowed);
        }
        counted("writes", self.writes.check_key(&session).is_ok())
    }

    /// The cluster's answer for `key`, when clustered and Redis answers.
    async fn shared(&self, which: impl Fn(&Shared) -> &SharedLimiter, key: &str) -> Option<bool> {
        which(self.shared.as_ref()?).check(key).await
    }

    /// Forgets limiter state that has fully recovered (called periodically).
    pub fn tidy(&self) {
        self.messages.retain_recent();
        self.writes.retain_recent();
        self.configs.retain_recent();
        self.history.retain_recent();
        self.sessions.retain_recent();
        self.messages.shrink_to_fit();
        self.writes.shrink_to_fit();
        self.sessions.shrink_to_fit();
    }
}

/// Counts a refusal of `limit` in the metrics; passes `allowed` through.
fn counted(limit: &'static str, allowed: bool) -> bool {
    if !allowed {
        crate::metrics::rate_limited(limit);
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_host_is_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_owner(a), address_owner(b));
        assert_ne!(address_owner(a), address_owner(other));
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(address_owner(v4), v4);
        assert_eq!(address_owner("::ffff:203.0.113.7".parse().unwrap()), v4, "IPv4-mapped is the IPv4 address");
    }

    #[tokio::test]
    async fn rotating_through_a_slash_64_does_not_escape_the_limits() {
        let settings = LimitSettings { sockets_per_ip: 2, sessions_per_minute: 2, ..LimitSettings::default() };
        let limits = Limits::new(settings, &Cluster::single());
        let host = |n: u16| -> IpAddr { format!("2001:db8:1:2::{n:x}").parse().unwrap() };
        let _one = limits.socket(host(1)).unwrap();
        let _two = limits.socket(host(2)).unwrap();
        assert!(limits.socket(host(3)).is_none(), "a third address of the same /64");
        assert!(limits.socket("2001:db8:1:3::1".parse().unwrap()).is_some(), "another /64");
        assert!(limits.new_session(host(4)).await && limits.new_session(host(5)).await);
        assert!(!limits.new_session(host(6)).await);
    }
}
