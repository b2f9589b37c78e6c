//! A circuit breaker per client's model: after repeated provider failures (unreachable,
//! timing out, 5xx, broken streams) the model is skipped for a while and visitors get the
//! built-in answers at once instead of waiting for another failure; then one probe request
//! tests it again, and each failed probe doubles the pause (up to five minutes).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Consecutive failures that open the breaker.
const THRESHOLD: u32 = 3;
/// The first pause; doubled per failed probe.
const FIRST_PAUSE: Duration = Duration::from_secs(15);
const MAX_PAUSE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, Default)]
struct Circuit {
    failures: u32,
    pause: Duration,
    /// Open until then (`None`: closed).
    open_until: Option<Instant>,
    /// A probe is under way: others keep skipping the model until it reports.
    probing: bool,
}

/// Failures are recorded for the admin at most this often per client.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Breakers of every client, by uid.
#[derive(Debug, Default)]
pub struct Breakers {
    circuits: Mutex<HashMap<String, Circuit>>,
    reported: Mutex<HashMap<String, Instant>>,
}

impl Breakers {
    /// Whether `uid`'s model may be called now. When the pause is over, exactly one caller
    /// is let through as the probe.
    pub fn allow(&self, uid: &str, now: Instant) -> bool {
        let mut circuits = self.circuits.lock().expect("breaker lock");
        let Some(c) = circuits.get_mut(uid) else { return true };
        match c.open_until {
            None => true,
            Some(until) if now < until || c.probing => false,
            Some(_) => {
                c.probing = true;
                true
            }
        }
    }

    /// Whether a failure of `uid`'s model should be recorded for the admin now: the first
    /// one, then at most one a minute, so a broken setting doesn't cost a write per visitor.
    pub fn report_due(&self, uid: &str, now: Instant) -> bool {
        let mut reported = self.reported.lock().expect("breaker lock");
        match reported.get(uid) {
            Some(at) if now.saturating_duration_since(*at) < REPORT_EVERY => false,
            _ => {
                reported.insert(uid.to_string(), now);
                true
            }
        }
    }

    /// The model answered.
    pub fn success(&self, uid: &str) {
        self.circuits.lock().expect("breaker lock").remove(uid);
    }

    /// The provider failed; returns whether the breaker is (now) open.
    pub fn failure(&self, uid: &str, now: Instant) -> bool {
        let mut circuits = self.circuits.lock().expect("breaker lock");
        let c = circuits.entry(uid.to_string()).or_default();
        c.failures += 1;
        if c.probing || c.open_until.is_some() {
            c.pause = (c.pause * 2).min(MAX_PAUSE);
        } else if c.failures >= THRESHOLD {
            c.pause = FIRST_PAUSE;
        } else {
            return false;
        }
        c.probing = false;
        c.open_until = Some(now + c.pause);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_repeated_failures_probes_once_and_backs_off() {
        let b = Breakers::default();
        let t = Instant::now();
        assert!(b.allow("shop", t));
        assert!(!b.failure("shop", t) && !b.failure("shop", t), "two failures keep it closed");
        b.success("shop");
        assert!(!b.failure("shop", t) && !b.failure("shop", t));
        assert!(b.failure("shop", t), "the third in a row opens it");
        assert!(!b.allow("shop", t + Duration::from_secs(14)));
        assert!(b.allow("other", t), "per client");
        let later = t + FIRST_PAUSE;
        assert!(b.allow("shop", later), "one probe after the pause");
        assert!(!b.allow("shop", later), "only one");
        assert!(b.failure("shop", later));
        assert!(!b.allow("shop", later + Duration::from_secs(29)), "the pause doubled");
        assert!(b.allow("shop", later + Duration::from_secs(30)));
        b.success("shop");
        assert!(b.allow("shop", later + Duration::from_secs(30)), "a good probe closes it");
        for _ in 0..20 {
            b.failure("x", t);
        }
        assert!(b.allow("x", t + MAX_PAUSE), "the pause is capped");
        assert!(b.report_due("x", t) && !b.report_due("x", t + Duration::from_secs(59)));
        assert!(b.report_due("x", t + REPORT_EVERY) && b.report_due("y", t));
    }
}
