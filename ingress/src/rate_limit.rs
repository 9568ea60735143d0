//! Per-credential request rate limiting (GCRA, via `governor`): every client id or API key gets
//! its own bucket; an exhausted bucket answers 429 with `Retry-After`.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// Tracked credentials above which idle buckets are dropped.
const MAX_TRACKED: usize = 10_000;

/// Rate limiter keyed by credential id; disabled when the configured rate is 0.
pub struct CredentialLimiter {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl CredentialLimiter {
    /// `per_second` requests per second with bursts of `burst`; `per_second == 0` disables it.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// Admits one request from `credential`, or says how long to wait.
    pub fn admit(&self, credential: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() > MAX_TRACKED {
            limiter.retain_recent();
        }
        limiter
            .check_key(&credential.to_owned())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                ApiError::RateLimited {
                    retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_limits_per_credential() {
        let limiter = CredentialLimiter::new(1, 2);
        assert!(limiter.admit("a").is_ok());
        assert!(limiter.admit("a").is_ok());
        match limiter.admit("a") {
            Err(ApiError::RateLimited { retry_after_secs }) => assert!(retry_after_secs >= 1),
            other => panic!("expected rate limit, got {other:?}"),
        }
        assert!(
            limiter.admit("b").is_ok(),
            "other credentials are unaffected"
        );
    }

    #[test]
    fn zero_rate_disables() {
        let limiter = CredentialLimiter::new(0, 0);
        for _ in 0..10_000 {
            assert!(limiter.admit("a").is_ok());
        }
    }
}
