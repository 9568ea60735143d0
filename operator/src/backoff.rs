//! Per-object exponential backoff for failed reconciles: the first failure of an object retries
//! after [`ErrorBackoff::base`], each further one waits twice as long, up to
//! [`ErrorBackoff::max`]; a successful reconcile resets the object's count. One failing object
//! never slows down the others.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Consecutive failure counts by object, and the delays they lead to.
#[derive(Debug)]
pub struct ErrorBackoff {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Default for ErrorBackoff {
    /// 5 s after the first failure, doubling up to 5 min.
    fn default() -> Self {
        Self::new(Duration::from_secs(5), Duration::from_secs(300))
    }
}

impl ErrorBackoff {
    /// A backoff starting at `base` and capped at `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: Mutex::default(),
        }
    }

    /// Delay after the first failure.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// Longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Delay before retrying after the `failures`-th consecutive failure (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .map_or(self.max, |delay| delay.min(self.max))
    }

    /// Records a failure of the object `key` and returns how long to wait before retrying it.
    pub fn record_failure(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let count = failures.entry(key.to_owned()).or_default();
        *count = count.saturating_add(1);
        self.delay(*count)
    }

    /// Forgets the failures of the object `key` (after it reconciled, or was deleted).
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let backoff = ErrorBackoff::default();
        let delays: Vec<u64> = (1..=9).map(|n| backoff.delay(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn counts_per_object_and_resets() {
        let backoff = ErrorBackoff::new(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(backoff.record_failure("a"), Duration::from_secs(1));
        assert_eq!(backoff.record_failure("a"), Duration::from_secs(2));
        assert_eq!(backoff.record_failure("b"), Duration::from_secs(1));
        assert_eq!(backoff.record_failure("a"), Duration::from_secs(4));
        backoff.reset("a");
        assert_eq!(backoff.record_failure("a"), Duration::from_secs(1));
        assert_eq!(backoff.record_failure("b"), Duration::from_secs(2));
    }
}
