//! Periodic jobs run on one node at a time. A job's lease lives in the database (the one
//! thing every node shares even without Redis): the holder renews it on every pass, and when
//! the holder dies the lease runs out and the next node to look takes it over.

use std::time::Duration;

use crate::ids::now_ms;
use crate::store::Store;

/// The operator outbox's worker (hand-offs and messages to Chatwoot).
pub const OPERATOR_OUTBOX: &str = "operator-outbox";
/// The task outbox's worker (cards on the board).
pub const TASKS_OUTBOX: &str = "tasks-outbox";
/// Chatwoot's ActionCable listeners.
pub const CABLE: &str = "operator-cable";
/// Scheduled training runs.
pub const SCHEDULE: &str = "training-schedule";
/// Deleting conversations past their retention.
pub const RETENTION: &str = "retention";
/// Every job with a lease (released together on shutdown).
pub const JOBS: [&str; 5] = [OPERATOR_OUTBOX, TASKS_OUTBOX, CABLE, SCHEDULE, RETENTION];

/// One job's lease as this node sees it.
pub struct Lease {
    name: &'static str,
    owner: String,
    ttl: Duration,
    held: bool,
    /// Off when the database is this node's alone (SQLite): nobody else could run the job,
    /// and a restarted node must not wait for its former self's lease to run out.
    shared: bool,
}

impl Lease {
    /// The lease of job `name`, held by `owner` (this node) for `ttl` after each renewal;
    /// `shared` when other nodes use the same database. Choose `ttl` longer than the job's
    /// pass, so a slow pass does not lose it.
    pub fn new(name: &'static str, owner: &str, ttl: Duration, shared: bool) -> Lease {
        Lease { name, owner: owner.to_string(), ttl, held: false, shared }
    }

    /// Takes or renews the lease; `true` when this node runs the job now. A database error
    /// counts as not held: a node that can't reach the database must not act for the others.
    pub async fn hold(&mut self, store: &dyn Store) -> bool {
        if !self.shared {
            return true;
        }
        let now = now_ms();
        let held = match store.lease_take(self.name, &self.owner, now, now + self.ttl.as_millis() as i64).await {
            Ok(held) => held,
            Err(e) => {
                if self.held {
                    tracing::warn!(job = self.name, error = %e, "could not renew the job's lease; pausing it here");
                }
                false
            }
        };
        if held != self.held {
            if held {
                tracing::info!(job = self.name, node = %self.owner, "this node runs the job");
            } else {
                tracing::info!(job = self.name, node = %self.owner, "another node runs the job now");
            }
            self.held = held;
        }
        held
    }

    /// Gives the lease up (on shutdown), so another node takes over at its next look.
    pub async fn release(&mut self, store: &dyn Store) {
        if std::mem::take(&mut self.held)
            && let Err(e) = store.lease_release(self.name, &self.owner).await
        {
            tracing::warn!(job = self.name, error = %e, "releasing the job's lease failed; it runs out by itself");
        }
    }
}
