//! Clock-driven session state kept in memory beside the replicated tables:
//! lock-delays and TTL deadlines. Neither is part of the state machine,
//! which reads no clock; both follow Consul's design.
//!
//! * Lock-delay: when an invalidation releases a key, every replica notes
//!   "not acquirable until now + LockDelay" with its own clock as it
//!   applies the entry. The leader consults its note before it proposes an
//!   acquire (a rejected acquire never enters the log), so the decision is
//!   made once, by one clock, and replicas never diverge. It does so only
//!   once every entry before the acquire has been applied (see
//!   `raft::node`), so a release still committing cannot be missed. A new
//!   leader has its own notes, taken when it applied the same entries; a
//!   restarted server does not re-apply what it had applied, so it has no
//!   notes for releases from before its restart.
//! * TTL: only the leader tracks deadlines (2 x TTL, Consul's grace) and
//!   proposes a destroy when one passes; renewals reach the leader and
//!   push the deadline out. A new leader starts every timer afresh.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Consul's `SessionTTLMultiplier`: a TTL session is invalidated after up
/// to twice its TTL without a renewal.
pub const TTL_MULTIPLIER: u32 = 2;

#[derive(Default)]
pub struct Leases {
    lock_delays: Mutex<HashMap<String, Instant>>,
    /// session id -> deadline; only populated on the leader.
    ttl_deadlines: Mutex<HashMap<String, Instant>>,
}

impl Leases {
    /// Starts lock-delays for keys released at `now`.
    pub fn start_lock_delays(&self, keys: &[(String, u64)], now: Instant) {
        if keys.is_empty() {
            return;
        }
        let mut map = self.lock_delays.lock();
        map.retain(|_, until| *until > now);
        for (key, ns) in keys {
            let until = now + Duration::from_nanos(*ns);
            let slot = map.entry(key.clone()).or_insert(until);
            if *slot < until {
                *slot = until;
            }
        }
    }

    /// When `key` becomes acquirable again, if it is in lock-delay at `now`.
    pub fn lock_delay(&self, key: &str, now: Instant) -> Option<Instant> {
        self.lock_delays
            .lock()
            .get(key)
            .copied()
            .filter(|until| *until > now)
    }

    /// (Re)arms a session's TTL timer: invalidated after `TTL_MULTIPLIER * ttl`.
    pub fn reset_ttl(&self, id: &str, ttl: Duration, now: Instant) {
        self.ttl_deadlines
            .lock()
            .insert(id.to_string(), now + ttl * TTL_MULTIPLIER);
    }

    /// Arms a timer only for sessions that have none yet.
    pub fn ensure_ttl(&self, id: &str, ttl: Duration, now: Instant) {
        self.ttl_deadlines
            .lock()
            .entry(id.to_string())
            .or_insert(now + ttl * TTL_MULTIPLIER);
    }

    /// Keeps only the timers of sessions `keep` accepts.
    pub fn retain_ttl(&self, mut keep: impl FnMut(&str) -> bool) {
        self.ttl_deadlines.lock().retain(|id, _| keep(id));
    }

    /// Forgets every lock-delay and TTL timer (the state was restored).
    pub fn reset(&self) {
        self.lock_delays.lock().clear();
        self.ttl_deadlines.lock().clear();
    }

    pub fn clear_ttl(&self) {
        self.ttl_deadlines.lock().clear();
    }

    pub fn clear_ttl_of(&self, id: &str) {
        self.ttl_deadlines.lock().remove(id);
    }

    /// Sessions whose deadline has passed at `now`.
    pub fn expired(&self, now: Instant) -> Vec<String> {
        self.ttl_deadlines
            .lock()
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The earliest deadline, to sleep until.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.ttl_deadlines.lock().values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_delay_expires_and_keeps_the_longest() {
        let l = Leases::default();
        let t0 = Instant::now();
        l.start_lock_delays(&[("k".into(), 1_000_000_000)], t0);
        l.start_lock_delays(&[("k".into(), 500_000_000)], t0);
        assert_eq!(l.lock_delay("k", t0), Some(t0 + Duration::from_secs(1)));
        assert!(l.lock_delay("k", t0 + Duration::from_millis(999)).is_some());
        assert!(l.lock_delay("k", t0 + Duration::from_secs(1)).is_none());
        assert!(l.lock_delay("other", t0).is_none());
    }

    #[test]
    fn ttl_timers_fire_after_twice_the_ttl() {
        let l = Leases::default();
        let t0 = Instant::now();
        l.reset_ttl("s", Duration::from_secs(10), t0);
        assert!(l.expired(t0 + Duration::from_secs(19)).is_empty());
        assert_eq!(
            l.expired(t0 + Duration::from_secs(20)),
            vec!["s".to_string()]
        );
        l.reset_ttl("s", Duration::from_secs(10), t0 + Duration::from_secs(15));
        assert!(l.expired(t0 + Duration::from_secs(20)).is_empty());
        l.ensure_ttl("s", Duration::from_secs(10), t0 + Duration::from_secs(100));
        assert_eq!(l.next_deadline(), Some(t0 + Duration::from_secs(35)));
    }
}
