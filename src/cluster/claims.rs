//! Which node is answering which visitor message. A message's answer is produced once: the
//! node that acknowledged it claims its `seq` before the ack, and a node that later finds the
//! message unanswered (the visitor reconnected there) answers it only if it can take the claim.
//!
//! Claims live in this process and, on a clustered node, in Redis with a short expiry that
//! the holder keeps renewing: a claim of a node that died runs out within [`TTL`], and the
//! question is answered by whichever node the visitor is on by then. Without Redis (a node of
//! its own, or Redis away) the local claims decide alone.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Cluster, redact_error};

/// How long a claim outlives its last renewal (the longest a dead node's question waits).
pub const TTL: Duration = Duration::from_secs(8);
/// How often held claims are renewed.
const RENEW: Duration = Duration::from_secs(2);

/// The claims of this node (and, through Redis, a view of the others').
pub struct Claims {
    cluster: Cluster,
    local: Mutex<HashSet<i64>>,
}

impl Claims {
    /// Claims of `cluster`'s node; on a clustered node, renews them until `stop`.
    pub fn new(cluster: &Cluster, stop: CancellationToken) -> Arc<Claims> {
        let claims = Arc::new(Claims { cluster: cluster.clone(), local: Mutex::new(HashSet::new()) });
        if cluster.clustered() {
            tokio::spawn(renew(claims.clone(), stop));
        }
        claims
    }

    fn key(&self, seq: i64) -> String {
        self.cluster.key(&format!("answering:{seq}"))
    }

    /// Claims `seq` for this node without waiting (the moment before an ack must not); the
    /// other nodes learn of it in the background. `false` when it is already claimed here.
    pub fn claim_now(self: &Arc<Self>, seq: i64) -> bool {
        if !self.claim_here(seq) {
            return false;
        }
        if self.cluster.clustered() {
            let claims = self.clone();
            tokio::spawn(async move { claims.announce(seq).await });
        }
        true
    }

    fn claim_here(&self, seq: i64) -> bool {
        self.local.lock().expect("claims lock").insert(seq)
    }

    /// Records a claim of this node in Redis (best effort).
    async fn announce(&self, seq: i64) {
        if let Some(mut conn) = self.cluster.commands() {
            let set = redis::cmd("SET")
                .arg(self.key(seq))
                .arg(self.cluster.node())
                .arg("PX")
                .arg(TTL.as_millis() as u64)
                .query_async::<()>(&mut conn)
                .await;
            if let Err(e) = set {
                tracing::debug!(error = %redact_error(&e), "announcing an answer claim failed");
            }
        }
    }

    /// Claims `seq` for this node unless any node holds it.
    pub async fn claim(&self, seq: i64) -> bool {
        if !self.claim_here(seq) {
            return false;
        }
        let Some(mut conn) = self.cluster.commands() else { return true };
        let taken: Result<Option<String>, _> = redis::cmd("SET")
            .arg(self.key(seq))
            .arg(self.cluster.node())
            .arg("NX")
            .arg("PX")
            .arg(TTL.as_millis() as u64)
            .query_async(&mut conn)
            .await;
        match taken {
            Ok(Some(_)) => true,
            Ok(None) => {
                self.local.lock().expect("claims lock").remove(&seq);
                false
            }
            // Redis went away meanwhile: the local claim decides.
            Err(e) => {
                tracing::debug!(error = %redact_error(&e), "taking an answer claim in Redis failed");
                true
            }
        }
    }

    /// Whether some node (this one included) is answering `seq` now.
    pub async fn busy(&self, seq: i64) -> bool {
        if self.local.lock().expect("claims lock").contains(&seq) {
            return true;
        }
        let Some(mut conn) = self.cluster.commands() else { return false };
        let exists: Result<bool, _> = redis::cmd("EXISTS").arg(self.key(seq)).query_async(&mut conn).await;
        exists.unwrap_or(false)
    }

    /// Lets `seq` be answered again (its answer task is over).
    pub fn release(&self, seq: i64) {
        if !self.local.lock().expect("claims lock").remove(&seq) {
            return;
        }
        if let Some(mut conn) = self.cluster.commands() {
            let key = self.key(seq);
            tokio::spawn(async move {
                let _ = redis::cmd("DEL").arg(key).query_async::<()>(&mut conn).await;
            });
        }
    }
}

/// Renews this node's claims in Redis while their answers are being written.
async fn renew(claims: Arc<Claims>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(RENEW);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let held: Vec<i64> = claims.local.lock().expect("claims lock").iter().copied().collect();
        let Some(mut conn) = claims.cluster.commands() else { continue };
        if held.is_empty() {
            continue;
        }
        let mut pipe = redis::pipe();
        for seq in held {
            pipe.cmd("SET")
                .arg(claims.key(seq))
                .arg(claims.cluster.node())
                .arg("PX")
                .arg(TTL.as_millis() as u64)
                .ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            tracing::debug!(error = %redact_error(&e), "renewing answer claims failed");
        }
    }
}
