//! `[[rate_limit]]`: nginx `limit_req … nodelay` as a token bucket per
//! client address, kept in the GCRA form (one timestamp per key).
//!
//! A rule lets `rate` requests through per second (or minute) and `burst`
//! more at once. Each key stores its *theoretical arrival time* (TAT): the
//! instant its bucket will be full again. With `T` the interval between two
//! tokens and `τ = burst × T`, a request at `now` passes when
//! `max(TAT, now) − now ≤ τ`, and then moves TAT forward by `T`. So an idle
//! client gets `burst + 1` requests at once (nginx counts the same), then one
//! per `T`; a refused request does not move TAT (nginx: rejected requests
//! are not accounted either). A key whose TAT is in the past is the same as
//! a key never seen, which is what makes evicting it harmless.
//!
//! Memory is bounded: the keys live in [`SHARDS`] small LRU maps with a
//! fixed capacity each (together `max_keys`, 100 000 by default: 10.5 MiB
//! per rule once full, measured by `tests/policy_limiter_memory.rs`; nginx
//! keeps ~16 000 states per MiB of zone). A key that has to
//! be evicted while its bucket is not yet full starts over (the same as
//! nginx when its zone is full). The shard is picked by a keyed hash, so a
//! client cannot aim its addresses at one shard; each shard has its own
//! lock, held for one map operation, so the front's threads do not
//! serialize on one lock.
//!
//! Each shard's hash table is made with room for twice its keys, and the
//! cap is kept here rather than by the LRU: a table as full as its keys
//! (the LRU's own sizing) fills with deleted slots as keys are evicted and
//! replaced, and hashbrown then doubles it rather than rehash in place
//! (it rehashes in place only while at most half full), so memory grew
//! once more, some time after the cap was reached. Sized so from the
//! start, memory stops growing when the cap is reached.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

/// Locks per rule. A power of two; with 2..16 front threads collisions on
/// one shard are rare.
pub const SHARDS: usize = 64;

/// Client addresses remembered per rule, by default.
pub const MAX_KEYS: usize = 100_000;

/// What a rule says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Over the limit; a request would pass again after `retry_after`.
    Reject {
        retry_after: Duration,
    },
}

/// The buckets of one rule.
pub struct Limiter {
    /// `T`, in nanoseconds.
    interval: u64,
    /// `τ = burst × T`, in nanoseconds.
    tolerance: u64,
    shards: Box<[Mutex<LruCache<IpAddr, u64>>]>,
    /// Keys kept per shard (the LRUs' own capacity is twice this).
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
    epoch: Instant,
}

impl Limiter {
    /// A limiter letting one request through per `interval`, `burst` more
    /// at once, remembering at most about `max_keys` addresses.
    pub fn new(interval: Duration, burst: u32, max_keys: usize) -> Limiter {
        let interval = u64::try_from(interval.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let per_shard = max_keys.div_ceil(SHARDS).max(1);
        let room = NonZeroUsize::new(per_shard.saturating_mul(2)).unwrap_or(NonZeroUsize::MIN);
        Limiter {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst)),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(room)))
                .collect(),
            per_shard,
            hasher: std::collections::hash_map::RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// Count one request from `key` now.
    pub fn check(&self, key: IpAddr) -> Decision {
        // Nanoseconds since the limiter was made: u64 lasts 584 years.
        let now = self.epoch.elapsed().as_nanos() as u64;
        self.check_at(key, now)
    }

    /// Count one request from `key` at `now` (nanoseconds since the epoch).
    pub fn check_at(&self, key: IpAddr, now: u64) -> Decision {
        let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(&key) {
            Some(tat) => match gcra(*tat, now, self.interval, self.tolerance) {
                Ok(next) => {
                    *tat = next;
                    Decision::Allow
                }
                Err(wait) => Decision::Reject {
                    retry_after: Duration::from_nanos(wait),
                },
            },
            None => {
                // A new key passes (burst + 1 ≥ 1); once the shard holds
                // its share, it replaces the least recently used key.
                if map.len() >= self.per_shard {
                    map.pop_lru();
                }
                map.push(key, now.saturating_add(self.interval));
                Decision::Allow
            }
        }
    }

    /// Addresses remembered now (all shards).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most addresses remembered at once.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }
}

/// GCRA: `Ok(new TAT)` when a request at `now` passes, else `Err(ns to
/// wait)` until one would.
fn gcra(tat: u64, now: u64, interval: u64, tolerance: u64) -> Result<u64, u64> {
    let tat = tat.max(now);
    let ahead = tat - now;
    if ahead > tolerance {
        Err(ahead - tolerance)
    } else {
        Ok(tat.saturating_add(interval))
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_nanos().div_ceil(1_000_000_000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000_000_000;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    fn passed(l: &Limiter, key: IpAddr, now: u64, n: usize) -> usize {
        (0..n)
            .filter(|_| l.check_at(key, now) == Decision::Allow)
            .count()
    }

    #[test]
    fn burst_plus_one_at_once_then_one_per_interval() {
        // 5/s, burst 10: 11 at once, then one every 200 ms.
        let l = Limiter::new(Duration::from_millis(200), 10, MAX_KEYS);
        let a = ip(1);
        assert_eq!(passed(&l, a, 0, 20), 11);
        assert_eq!(
            l.check_at(a, 0),
            Decision::Reject {
                retry_after: Duration::from_millis(200)
            }
        );
        assert_eq!(passed(&l, a, 199 * MS, 5), 0);
        assert_eq!(passed(&l, a, 200 * MS, 5), 1);
        // A second full burst once the bucket is full again (TAT 2400 ms).
        assert_eq!(passed(&l, a, 2400 * MS, 20), 11);
        // Another address has its own bucket.
        assert_eq!(passed(&l, ip(2), 2400 * MS, 20), 11);
    }

    #[test]
    fn no_burst_is_one_per_interval() {
        // 30/m: one request every 2 s.
        let l = Limiter::new(Duration::from_secs(2), 0, MAX_KEYS);
        let a = ip(7);
        assert_eq!(passed(&l, a, 0, 3), 1);
        match l.check_at(a, SEC / 2) {
            Decision::Reject { retry_after } => {
                assert_eq!(retry_after, Duration::from_millis(1500));
                assert_eq!(retry_after_secs(retry_after), 2);
            }
            d => panic!("{d:?}"),
        }
        assert_eq!(passed(&l, a, 2 * SEC, 3), 1);
    }

    #[test]
    fn keys_are_bounded() {
        let l = Limiter::new(Duration::from_millis(100), 1, 1000);
        let cap = l.capacity();
        assert!((1000..1000 + SHARDS).contains(&cap), "{cap}");
        for n in 0..10_000 {
            assert_eq!(l.check_at(ip(n), n as u64), Decision::Allow);
        }
        assert!(l.len() <= cap);
        assert!(l.len() > cap * 9 / 10, "{} of {cap}", l.len());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(60)), 60);
    }

    proptest! {
        /// Over any run of request times, what passes never exceeds the
        /// bucket's promise: at most burst + 1 + elapsed / T.
        #[test]
        fn never_more_than_rate_plus_burst(
            interval_ms in 1u64..2000,
            burst in 0u32..50,
            gaps in proptest::collection::vec(0u64..500, 1..300),
        ) {
            let l = Limiter::new(Duration::from_millis(interval_ms), burst, 16);
            let key = ip(42);
            let mut now = 0u64;
            let mut passed = 0u64;
            for gap in gaps {
                now += gap * MS;
                match l.check_at(key, now) {
                    Decision::Allow => passed += 1,
                    Decision::Reject { retry_after } => {
                        // Waiting that long is enough for one more.
                        prop_assert!(retry_after > Duration::ZERO);
                        prop_assert!(retry_after <= Duration::from_millis(interval_ms));
                    }
                }
                let allowed = u64::from(burst) + 1 + now / (interval_ms * MS);
                prop_assert!(passed <= allowed, "{} > {}", passed, allowed);
            }
        }

        /// A client that waits the announced Retry-After always passes.
        #[test]
        fn waiting_retry_after_passes(interval_ms in 1u64..5000, burst in 0u32..20, extra in 0usize..40) {
            let l = Limiter::new(Duration::from_millis(interval_ms), burst, 16);
            let key = ip(9);
            let n = burst as usize + 1 + extra;
            let ok = (0..n).filter(|_| l.check_at(key, 0) == Decision::Allow).count();
            prop_assert_eq!(ok, burst as usize + 1);
            if let Decision::Reject { retry_after } = l.check_at(key, 0) {
                prop_assert_eq!(l.check_at(key, retry_after.as_nanos() as u64), Decision::Allow);
            } else {
                prop_assert!(false, "expected a rejection");
            }
        }
    }
}
