//! Login throttling: after a few wrong passwords for one account from one address, each further
//! attempt must wait twice as long as the last (1 s, 2 s, 4 s … up to 5 min). There is no hard
//! lockout: an attacker elsewhere cannot lock the real admin out, and a forgetful admin waits
//! minutes, not forever. A quiet hour forgets the failures.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong passwords allowed before any wait.
pub const FREE_FAILURES: u32 = 3;
/// The first wait; each later failure doubles it.
pub const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Failures older than this are forgotten.
const MEMORY: Duration = Duration::from_secs(3600);
/// Above this many remembered pairs, stale ones are swept on the next failure.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    until: Instant,
}

/// Failed sign-ins per (account, address). Per process: with several nodes each one throttles
/// on its own, which multiplies an attacker's rate by the node count, no more.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<(String, IpAddr), Failures>>,
}

impl LoginThrottle {
    /// `Err(wait)` when the pair must still wait before trying again.
    pub fn check(&self, username: &str, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let failures = self.failures.lock().expect("throttle lock");
        match failures.get(&key(username, ip)) {
            Some(f) if now < f.until && now.duration_since(f.last) < MEMORY => Err(f.until - now),
            _ => Ok(()),
        }
    }

    /// Records a wrong password; returns how long the pair must now wait (zero while free).
    pub fn failed(&self, username: &str, ip: IpAddr, now: Instant) -> Duration {
        let mut failures = self.failures.lock().expect("throttle lock");
        if failures.len() > SWEEP_ABOVE {
            failures.retain(|_, f| now.duration_since(f.last) < MEMORY);
        }
        let entry = failures.entry(key(username, ip)).or_insert(Failures { count: 0, last: now, until: now });
        if now.duration_since(entry.last) >= MEMORY {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
        let wait = wait_after(entry.count);
        entry.until = now + wait;
        wait
    }

    /// Forgets the pair's failures after a correct password.
    pub fn succeeded(&self, username: &str, ip: IpAddr) {
        self.failures.lock().expect("throttle lock").remove(&key(username, ip));
    }
}

/// The wait after the `count`-th consecutive failure.
pub fn wait_after(count: u32) -> Duration {
    match count.checked_sub(FREE_FAILURES) {
        None | Some(0) => Duration::ZERO,
        Some(n) => FIRST_WAIT.saturating_mul(1u32.checked_shl(n - 1).unwrap_or(u32::MAX)).min(MAX_WAIT),
    }
}

/// Usernames are case-insensitive; an IPv6 client owns a whole /64, so that is the address.
fn key(username: &str, ip: IpAddr) -> (String, IpAddr) {
    (username.trim().to_lowercase(), crate::realtime::limits::address_owner(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_after_the_free_failures_and_stop_growing() {
        let waits: Vec<u64> = (1..=14).map(|n| wait_after(n).as_secs()).collect();
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(wait_after(u32::MAX), MAX_WAIT);
    }

    #[test]
    fn a_pair_waits_others_do_not_and_success_forgets() {
        let t = LoginThrottle::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let now = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.failed("Admin", a, now), Duration::ZERO);
        }
        assert!(t.check("admin", a, now).is_ok());
        assert_eq!(t.failed("admin", a, now), FIRST_WAIT);
        assert_eq!(t.check("ADMIN", a, now), Err(FIRST_WAIT));
        assert!(t.check("admin", b, now).is_ok(), "another address is not locked out");
        assert!(t.check("other", a, now).is_ok(), "another account is not locked out");
        assert!(t.check("admin", a, now + FIRST_WAIT).is_ok(), "the wait ends");
        t.succeeded("admin", a);
        assert_eq!(t.failed("admin", a, now), Duration::ZERO);
    }

    #[test]
    fn an_ipv6_prefix_is_one_address_and_an_hour_forgets() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..=FREE_FAILURES {
            let ip: IpAddr = format!("2001:db8::{i}").parse().unwrap();
            t.failed("admin", ip, now);
        }
        assert!(t.check("admin", "2001:db8::99".parse().unwrap(), now).is_err());
        let later = now + MEMORY;
        assert_eq!(t.failed("admin", "2001:db8::1".parse().unwrap(), later), Duration::ZERO);
    }
}
