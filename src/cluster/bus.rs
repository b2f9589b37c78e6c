//! The cluster's one pub/sub channel. Every node publishes what the others must know and
//! subscribes to what they publish; a node ignores its own messages.
//!
//! Wire form, one Redis message each: `NODE f SESSION L\nFRAME` (a frame for a session's
//! sockets, `L` is 1 when it may be lost), `NODE r` (clients changed: reload them) and
//! `NODE w JOB` (work was queued for a job's worker); `NODE s` (resync: every socket of the
//! receiving nodes resumes from the store) is what a node tells itself when its link returns.
//!
//! Publishing never waits on Redis: frames go through a queue to one task that sends them in
//! pipelines. While Redis is away they are dropped (the store has every message) and, once
//! it is back, every socket of this node is asked to resume, which reads what it missed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Cluster, redact_error};

/// Messages waiting to be published; beyond this, frames are dropped (and counted).
const QUEUE: usize = 65_536;
/// Messages sent in one pipeline at most.
const BATCH: usize = 512;
/// How often the subscription is pinged, and how long the answer may take.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a subscription may take to set up.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A worker that queued work wakes, wherever its lease is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Operator,
    Tasks,
}

impl Job {
    fn as_str(self) -> &'static str {
        match self {
            Job::Operator => "operator",
            Job::Tasks => "tasks",
        }
    }
}

/// What another node told this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A frame for the sockets of `session` that this node holds.
    Frame { session: i64, lossy: bool, frame: Arc<str> },
    /// Client settings or knowledge changed: reload now rather than at the next poll.
    Reload,
    /// Work was queued for `Job`'s worker.
    Wake(Job),
    /// The link to the other nodes is back after a gap: sockets must catch up from the store.
    Resync,
}

/// Encodes an event as published by `node`.
pub fn encode(node: &str, event: &Event) -> Vec<u8> {
    match event {
        Event::Frame { session, lossy, frame } => {
            format!("{node} f {session} {}\n{frame}", u8::from(*lossy)).into_bytes()
        }
        Event::Reload => format!("{node} r").into_bytes(),
        Event::Wake(job) => format!("{node} w {}", job.as_str()).into_bytes(),
        Event::Resync => format!("{node} s").into_bytes(),
    }
}

/// Decodes a published message into who sent it and what; `None` for anything else.
pub fn decode(payload: &[u8]) -> Option<(&str, Event)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (head, frame) = text.split_once('\n').unwrap_or((text, ""));
    let mut words = head.split(' ');
    let node = words.next().filter(|n| !n.is_empty())?;
    let event = match (words.next()?, words.next(), words.next()) {
        ("f", Some(session), Some(lossy)) if !frame.is_empty() => {
            Event::Frame { session: session.parse().ok()?, lossy: lossy == "1", frame: Arc::from(frame) }
        }
        ("r", None, None) => Event::Reload,
        ("s", None, None) => Event::Resync,
        ("w", Some("operator"), None) => Event::Wake(Job::Operator),
        ("w", Some("tasks"), None) => Event::Wake(Job::Tasks),
        _ => return None,
    };
    Some((node, event))
}

/// The publishing side, cheap to clone; a no-op on a node of its own.
#[derive(Clone)]
pub struct Bus {
    cluster: Cluster,
    queue: Option<mpsc::Sender<Vec<u8>>>,
}

impl Bus {
    /// The bus of `cluster`; on a clustered node it starts the publisher and the subscriber,
    /// which hands every event of another node to `deliver` until `stop`.
    pub fn start(cluster: &Cluster, deliver: impl Fn(Event) + Send + Sync + 'static, stop: CancellationToken) -> Bus {
        if !cluster.clustered() {
            return Bus { cluster: cluster.clone(), queue: None };
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(publish(cluster.clone(), rx, stop.clone()));
        tokio::spawn(subscribe(cluster.clone(), Arc::new(deliver), stop));
        Bus { cluster: cluster.clone(), queue: Some(tx) }
    }

    /// Tells the other nodes; never waits. Dropped while Redis is away (they resync).
    pub fn publish(&self, event: &Event) {
        let Some(queue) = &self.queue else { return };
        if !self.cluster.linked() {
            return;
        }
        if queue.try_send(encode(self.cluster.node(), event)).is_err() {
            tracing::warn!("the cross-node queue is full; a frame was dropped (the visitor catches up on reconnect)");
        }
    }
}

/// Sends queued messages in pipelines on the command connection.
async fn publish(cluster: Cluster, mut rx: mpsc::Receiver<Vec<u8>>, stop: CancellationToken) {
    let channel = cluster.key("events");
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => return,
            n = rx.recv_many(&mut batch, BATCH) => n,
        };
        if n == 0 {
            return;
        }
        if let Some(mut conn) = cluster.commands() {
            let mut pipe = redis::pipe();
            for payload in &batch {
                pipe.cmd("PUBLISH").arg(&channel).arg(payload).ignore();
            }
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                tracing::debug!(error = %redact_error(&e), dropped = n, "publishing to the other nodes failed");
            }
        }
        batch.clear();
    }
}

/// Keeps a subscription to the channel, reconnecting with backoff; flips the cluster's link
/// state with one clear log line each way.
async fn subscribe(cluster: Cluster, deliver: Arc<dyn Fn(Event) + Send + Sync>, stop: CancellationToken) {
    let Some(redis) = cluster.inner.redis.as_ref() else { return };
    let channel = cluster.key("events");
    let mut backoff = Duration::from_millis(200);
    // A node that starts without Redis may have missed nothing yet: no resync the first time.
    let mut ever_linked = false;
    let mut warned = false;
    loop {
        let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
            let mut pubsub = redis.client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let pubsub = match subscribed {
            Ok(Ok(pubsub)) => pubsub,
            failed => {
                if !warned {
                    let why = match failed {
                        Ok(Err(e)) => redact_error(&e),
                        _ => "timed out".into(),
                    };
                    tracing::warn!(
                        node = cluster.node(),
                        error = %why,
                        "Redis is unreachable: cross-node delivery is paused and this node serves its own sockets only; retrying"
                    );
                    warned = true;
                }
                cluster.set_up(false);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        cluster.set_up(true);
        if ever_linked || warned {
            tracing::info!(
                node = cluster.node(),
                "Redis is reachable again: cross-node delivery restored; sockets resume from the store"
            );
            deliver(Event::Resync);
        } else {
            tracing::info!(node = cluster.node(), "linked to the other nodes through Redis");
        }
        ever_linked = true;
        let (mut sink, mut messages) = pubsub.split();
        // A Redis behind a silent network (no reset, no close) is noticed by a ping.
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.reset();
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => return,
                m = messages.next() => m,
                _ = heartbeat.tick() => {
                    match tokio::time::timeout(HEARTBEAT, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => continue,
                        _ => break,
                    }
                }
            };
            let Some(message) = message else { break };
            match decode(message.get_payload_bytes()) {
                Some((node, _)) if node == cluster.node() => {}
                Some((_, event)) => deliver(event),
                None => tracing::debug!("an unreadable cross-node message was ignored"),
            }
        }
        cluster.set_up(false);
        tracing::warn!(
            node = cluster.node(),
            "lost Redis: cross-node delivery is paused and this node serves its own sockets only; reconnecting"
        );
        warned = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let events = [
            Event::Frame { session: 42, lossy: true, frame: Arc::from("{\"type\":\"delta\",\"text\":\"a\\nb c\"}") },
            Event::Frame { session: -1, lossy: false, frame: Arc::from("x\ny") },
            Event::Reload,
            Event::Resync,
            Event::Wake(Job::Operator),
            Event::Wake(Job::Tasks),
        ];
        for event in events {
            let wire = encode("host-1-abc", &event);
            assert_eq!(decode(&wire), Some(("host-1-abc", event)));
        }
        for junk in ["", "n", "n f 1 0", "n f x 0\n{}", "n w nothing", "n r extra", "\n"] {
            assert_eq!(decode(junk.as_bytes()), None, "{junk:?}");
        }
    }
}
