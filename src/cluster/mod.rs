//! Several identical nodes behind a load balancer ([scale]): PostgreSQL holds every state,
//! Redis carries what one node must tell the others.
//!
//! - [`bus`]: one pub/sub channel for the cluster. A frame for a visitor goes to this node's
//!   sockets at once and to every other node through Redis (streamed deltas included); a
//!   training run or an admin edit makes every node reload its clients; queued work wakes
//!   the node that holds the worker's lease. Losing Redis degrades to this node's own sockets
//!   with a clear log line; when it returns, sockets are asked to resume, so what they missed
//!   comes from the store (the source of truth).
//! - [`lease`]: periodic jobs (outboxes, schedule, retention, Chatwoot's cable) run on one
//!   node at a time; a lease in the database moves to another node when its holder dies.
//! - [`claims`]: which node is answering which visitor message, so a question acknowledged
//!   by a node that died is answered by another after the visitor reconnects, and never twice.
//! - [`ratelimit`]: the visitors' rate limits kept in Redis, so they hold across nodes.
//!
//! Without `--redis-url` a node is a cluster of one: everything stays in process.

pub mod bus;
pub mod claims;
pub mod lease;
pub mod ratelimit;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use bus::{Bus, Event, Job};
pub use claims::Claims;
pub use lease::Lease;

/// This node's identity and its link to the others (none without Redis).
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<ClusterInner>,
}

struct ClusterInner {
    node: String,
    redis: Option<Redis>,
}

/// The Redis side of a clustered node.
struct Redis {
    /// Commands (publish, claims, limits); it reconnects by itself.
    commands: redis::aio::ConnectionManager,
    client: redis::Client,
    /// Whether the last exchange with Redis worked; flipped by the subscriber, which notices
    /// a lost server first.
    up: AtomicBool,
    prefix: String,
}

/// Commands to Redis wait at most this long: a dead Redis must not stall a visitor.
const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

impl Cluster {
    /// A node on its own.
    pub fn single() -> Cluster {
        Cluster { inner: Arc::new(ClusterInner { node: node_name(), redis: None }) }
    }

    /// A node of a cluster whose nodes meet at `url`. Redis need not be up: the node starts
    /// degraded and links up when it comes.
    pub fn connect(url: &str) -> anyhow::Result<Cluster> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("--redis-url: {}", redact_error(&e)))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT * 4))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(std::time::Duration::from_secs(2));
        let commands = redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| anyhow::anyhow!("--redis-url: {}", redact_error(&e)))?;
        Ok(Cluster {
            inner: Arc::new(ClusterInner {
                node: node_name(),
                redis: Some(Redis { commands, client, up: AtomicBool::new(false), prefix: "aia".into() }),
            }),
        })
    }

    /// This node's name: unique per process, in leases, claims and log lines.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Whether this node is one of several (started with `--redis-url`).
    pub fn clustered(&self) -> bool {
        self.inner.redis.is_some()
    }

    /// Whether cross-node delivery works right now (always false on a node of its own).
    pub fn linked(&self) -> bool {
        self.inner.redis.as_ref().is_some_and(|r| r.up.load(Ordering::Relaxed))
    }

    /// A command connection, when Redis is believed up.
    fn commands(&self) -> Option<redis::aio::ConnectionManager> {
        self.inner.redis.as_ref().filter(|r| r.up.load(Ordering::Relaxed)).map(|r| r.commands.clone())
    }

    fn key(&self, rest: &str) -> String {
        let prefix = self.inner.redis.as_ref().map_or("aia", |r| r.prefix.as_str());
        format!("{prefix}:{rest}")
    }

    fn set_up(&self, up: bool) -> bool {
        self.inner.redis.as_ref().is_some_and(|r| r.up.swap(up, Ordering::Relaxed))
    }
}

/// `host-pid-random`: readable in logs and unique even for two nodes on one host.
fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(32).collect();
    format!(
        "{}-{}-{:06x}",
        if host.is_empty() { "node" } else { &host },
        std::process::id(),
        rand::random::<u32>() >> 8
    )
}

/// A Redis error without the URL (it may carry a password).
pub fn redact_error(e: &redis::RedisError) -> String {
    let text = e.to_string();
    match text.find("redis://").or_else(|| text.find("rediss://")) {
        Some(at) => format!("{}(url redacted)", &text[..at]),
        None => text,
    }
}
