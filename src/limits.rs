//! Token buckets, one per key: each agent's calls and sends, each remote address's
//! failed `auth` attempts. A bucket holds up to `burst` tokens and refills at `rate`
//! per second; a call takes one token or is refused with the time until one is back.
//! A call that turns out not to count (a right key) gives its token back.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Above this many buckets, full ones (their key idle long enough to refill) are
/// dropped, so keys an attacker can mint (remote addresses) cannot grow memory.
const PRUNE_ABOVE: usize = 10_000;

pub struct Limiter<K> {
    /// Tokens per second; `None` when unlimited.
    rate: Option<f64>,
    burst: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl<K: Hash + Eq> Limiter<K> {
    /// `rate` tokens per second, at most `burst` at once; a rate of 0 means unlimited.
    pub fn new(rate: f64, burst: u32) -> Limiter<K> {
        let rate = (rate > 0.0).then_some(rate);
        Limiter { rate, burst: f64::from(burst.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token, or says how long until one is there.
    pub fn take<Q>(&self, key: &Q) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.with_bucket(key, |bucket, rate| {
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                Ok(())
            } else {
                Err(until_one(bucket.tokens, rate))
            }
        })
    }

    /// Returns a token taken by a call that turned out not to count.
    pub fn give_back<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let burst = self.burst;
        let _ = self.with_bucket(key, |bucket, _| {
            bucket.tokens = (bucket.tokens + 1.0).min(burst);
            Ok(())
        });
    }

    fn with_bucket<Q, T>(
        &self,
        key: &Q,
        act: impl FnOnce(&mut Bucket, f64) -> Result<T, Duration>,
    ) -> Result<T, Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        T: Default,
    {
        let Some(rate) = self.rate else { return Ok(T::default()) };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE && !buckets.contains_key(key) {
            let burst = self.burst;
            buckets.retain(|_, bucket| refilled(bucket, rate, burst, now) < burst);
        }
        let bucket = match buckets.get_mut(key) {
            Some(bucket) => bucket,
            None => buckets.entry(key.to_owned()).or_insert(Bucket { tokens: self.burst, updated: now }),
        };
        bucket.tokens = refilled(bucket, rate, self.burst, now);
        bucket.updated = now;
        act(bucket, rate)
    }
}

fn refilled(bucket: &Bucket, rate: f64, burst: f64, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    (bucket.tokens + elapsed * rate).min(burst)
}

fn until_one(tokens: f64, rate: f64) -> Duration {
    Duration::from_secs_f64(((1.0 - tokens) / rate).max(0.001))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_calls_wait_for_the_refill() {
        let limiter: Limiter<String> = Limiter::new(10.0, 3);
        for _ in 0..3 {
            assert!(limiter.take("a").is_ok());
        }
        let wait = limiter.take("a").expect_err("the fourth call exceeds the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
        // Another key has its own bucket.
        assert!(limiter.take("b").is_ok());
    }

    #[test]
    fn a_token_given_back_can_be_taken_again_but_never_beyond_the_burst() {
        let limiter: Limiter<String> = Limiter::new(0.001, 1);
        assert!(limiter.take("a").is_ok());
        assert!(limiter.take("a").is_err());
        limiter.give_back("a");
        limiter.give_back("a");
        assert!(limiter.take("a").is_ok());
        assert!(limiter.take("a").is_err(), "the burst caps what is given back");
    }

    #[test]
    fn a_rate_of_zero_is_unlimited() {
        let limiter: Limiter<String> = Limiter::new(0.0, 1);
        for _ in 0..10_000 {
            assert!(limiter.take("a").is_ok());
        }
    }

    #[test]
    fn idle_keys_are_dropped_once_there_are_many() {
        // A fast refill: every bucket is full again by the time the next key comes.
        let limiter: Limiter<u32> = Limiter::new(1e9, 1);
        for key in 0..(2 * PRUNE_ABOVE as u32) {
            let _ = limiter.take(&key);
        }
        let len = limiter.buckets.lock().unwrap_or_else(PoisonError::into_inner).len();
        assert!(len <= PRUNE_ABOVE + 1, "{len} buckets kept for {} keys", 2 * PRUNE_ABOVE);
    }
}
