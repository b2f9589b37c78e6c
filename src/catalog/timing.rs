//! How long product answers take on our side, kept for the benchmark: from the search request
//! to the cards frame handed to the visitor's sockets, minus the store's own response time
//! (a cache miss), or all of it (a cache hit), and for a hit the durable write inside it
//! (the question and its answer stored together before they are shown). The latest samples
//! are kept in fixed rings, so the memory is bounded however long the server runs.

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// Samples kept per kind.
const KEEP: usize = 65_536;

/// The histograms.
#[derive(Default)]
pub struct Timings {
    added: Mutex<Ring>,
    hit: Mutex<Ring>,
    hit_write: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    micros: Vec<u32>,
    next: usize,
}

impl Ring {
    fn push(&mut self, d: Duration) {
        let us = d.as_micros().min(u128::from(u32::MAX)) as u32;
        if self.micros.len() < KEEP {
            self.micros.push(us);
        } else {
            self.micros[self.next] = us;
            self.next = (self.next + 1) % KEEP;
        }
    }

    fn summary(&self) -> Summary {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let at = |q: f64| {
            (!sorted.is_empty()).then(|| {
                let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
                f64::from(sorted[i]) / 1000.0
            })
        };
        Summary { count: sorted.len(), p50_ms: at(0.50), p95_ms: at(0.95), p99_ms: at(0.99), max_ms: at(1.0) }
    }
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// The histograms, as exported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Our share of a cache miss: the whole time minus the store's response.
    pub added_over_store: Summary,
    /// A cache hit, all of it.
    pub cache_hit: Summary,
    /// The durable write inside a cache hit: what is left is the search and the cards.
    pub cache_hit_write: Summary,
}

impl Timings {
    /// A product answer whose search took `total` to reach the sockets; `store` is the
    /// store's own response time.
    pub fn record_miss(&self, total: Duration, store: Duration) {
        self.added.lock().expect("timings lock").push(total.saturating_sub(store));
    }

    /// A product answer served from the cache that took `total` to reach the sockets, `write`
    /// of it storing the question and the answer.
    pub fn record_hit(&self, total: Duration, write: Duration) {
        self.hit.lock().expect("timings lock").push(total);
        self.hit_write.lock().expect("timings lock").push(write);
    }

    /// The percentiles now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            added_over_store: self.added.lock().expect("timings lock").summary(),
            cache_hit: self.hit.lock().expect("timings lock").summary(),
            cache_hit_write: self.hit_write.lock().expect("timings lock").summary(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_a_bounded_ring() {
        let t = Timings::default();
        for ms in 1..=100 {
            t.record_miss(Duration::from_millis(ms + 20), Duration::from_millis(20));
        }
        t.record_hit(Duration::from_micros(300), Duration::from_micros(200));
        let s = t.snapshot();
        assert_eq!(
            (s.added_over_store.count, s.added_over_store.p50_ms, s.added_over_store.p99_ms),
            (100, Some(50.0), Some(99.0))
        );
        assert_eq!((s.cache_hit.count, s.cache_hit.max_ms, s.cache_hit_write.max_ms), (1, Some(0.3), Some(0.2)));
        for _ in 0..KEEP + 10 {
            t.record_hit(Duration::from_micros(5), Duration::from_micros(1));
        }
        assert_eq!(t.snapshot().cache_hit.count, KEEP);
    }
}
