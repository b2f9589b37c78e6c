//! Rate limits every node shares: the GCRA (the algorithm `governor` runs in process) as one
//! Lua script in Redis, timed by Redis's own clock so the nodes' clocks don't matter. While
//! Redis is away, [`SharedLimiter::check`] answers `None` and the caller uses its in-process
//! limiter: limits then hold per node, never not at all.

use std::time::Duration;

use super::{Cluster, redact_error};

/// KEYS[1]: the key; ARGV[1]: ms between requests at the steady rate; ARGV[2]: the burst.
/// Returns 1 when the request may go ahead.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > interval * (burst - 1) then return 0 end
tat = tat + interval
redis.call('SET', KEYS[1], tat, 'PX', math.ceil(tat - now) + 1)
return 1
";

/// One kind of limit (messages per session, sessions per address, …) shared by the cluster.
pub struct SharedLimiter {
    cluster: Cluster,
    name: &'static str,
    interval_ms: u64,
    burst: u32,
    script: redis::Script,
}

impl SharedLimiter {
    /// `burst` requests at once, then one every `period / per_period`.
    pub fn new(cluster: &Cluster, name: &'static str, period: Duration, per_period: u32, burst: u32) -> SharedLimiter {
        let interval_ms = (period.as_millis() as u64 / u64::from(per_period.max(1))).max(1);
        SharedLimiter {
            cluster: cluster.clone(),
            name,
            interval_ms,
            burst: burst.max(1),
            script: redis::Script::new(GCRA),
        }
    }

    /// Whether one more request of `key` may go ahead; `None` when Redis can't say.
    pub async fn check(&self, key: &str) -> Option<bool> {
        let mut conn = self.cluster.commands()?;
        let key = self.cluster.key(&format!("limit:{}:{key}", self.name));
        let allowed: Result<i64, _> =
            self.script.key(key).arg(self.interval_ms).arg(self.burst).invoke_async(&mut conn).await;
        match allowed {
            Ok(n) => Some(n == 1),
            Err(e) => {
                tracing::debug!(limit = self.name, error = %redact_error(&e), "the shared rate limit is unavailable; limiting per node");
                None
            }
        }
    }
}
