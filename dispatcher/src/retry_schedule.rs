//! When to retry a failed delivery: the delay schedule, jitter and `Retry-After`.
//!
//! A schedule lists the delay before each retry, so a delivery gets at most
//! `1 + delays.len()` attempts. After attempt `n` (counting from 1) fails, the retry waits
//! about `delays[n - 1]` — call it `d`:
//!
//! - **Without `Retry-After`**: uniformly random in `[0.8 d, 1.2 d]` (±20 % jitter), so
//!   deliveries that failed together do not retry together.
//! - **With `Retry-After: r`**: `r` clamped to `[d, 2 d]`, plus upward-only jitter of up to
//!   `0.2 d`, capped at `2 d`. The retry therefore never fires before `d` nor before `r` (when
//!   `r ≤ 2 d`), and never later than `2 d`: an endpoint can slow its retries down by at most a
//!   factor of two, and cannot speed them up.
//!
//! Randomness comes from an injected [`rand::Rng`], so tests use a seeded generator.

use std::time::Duration;

use rand::Rng;

use crate::error::{Error, Result};

/// The default delays before retries 1–7: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const DEFAULT_RETRY_DELAYS: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];
/// Longest accepted single delay: 30 days.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most accepted delays (retries) in a schedule.
pub const MAX_RETRIES: usize = 100;

/// A validated retry schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl Default for RetrySchedule {
    /// The [`DEFAULT_RETRY_DELAYS`].
    fn default() -> Self {
        Self {
            delays: DEFAULT_RETRY_DELAYS.to_vec(),
        }
    }
}

impl RetrySchedule {
    /// A schedule of `delays`: 1 to [`MAX_RETRIES`] delays, each above zero and at most
    /// [`MAX_RETRY_DELAY`].
    pub fn new(delays: Vec<Duration>) -> Result<Self> {
        if delays.is_empty() {
            return Err(Error::InvalidRetrySchedule(
                "it must list at least one delay".into(),
            ));
        }
        if delays.len() > MAX_RETRIES {
            return Err(Error::InvalidRetrySchedule(format!(
                "it lists {} delays; at most {MAX_RETRIES} are allowed",
                delays.len()
            )));
        }
        if let Some(position) = delays.iter().position(|d| d.is_zero()) {
            return Err(Error::InvalidRetrySchedule(format!(
                "delay {} is zero; every delay must be above zero",
                position + 1
            )));
        }
        if let Some(position) = delays.iter().position(|d| *d > MAX_RETRY_DELAY) {
            return Err(Error::InvalidRetrySchedule(format!(
                "delay {} is longer than {}",
                position + 1,
                humantime::format_duration(MAX_RETRY_DELAY)
            )));
        }
        Ok(Self { delays })
    }

    /// The delays before each retry, in order.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// Most attempts a delivery gets: the first plus one per delay.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The un-jittered delay after attempt `attempt` (counting from 1; 0 is read as 1) failed,
    /// or `None` when that was the last attempt.
    pub fn scheduled_delay(&self, attempt: u32) -> Option<Duration> {
        let index = usize::try_from(attempt.max(1) - 1).ok()?;
        self.delays.get(index).copied()
    }

    /// How long to wait before the next attempt after attempt `attempt` (counting from 1)
    /// failed, given the response's `Retry-After` if any; `None` when the schedule is
    /// exhausted and the delivery must fail. See the module documentation for the exact rule.
    pub fn next_delay<R: Rng + ?Sized>(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Option<Duration> {
        let scheduled = self.scheduled_delay(attempt)?;
        let nanos = nanos(scheduled);
        let fifth = nanos / 5;
        Some(match retry_after {
            None => Duration::from_nanos(rng.random_range(nanos - fifth..=nanos + fifth)),
            Some(requested) => {
                let ceiling = scheduled.saturating_mul(2);
                let base = requested.clamp(scheduled, ceiling);
                let jitter = Duration::from_nanos(rng.random_range(0..=fifth));
                base.saturating_add(jitter).min(ceiling)
            }
        })
    }
}

/// `duration` in nanoseconds; schedules are capped at 30 days, far below `u64::MAX` ns.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn schedule(delays: &[u64]) -> RetrySchedule {
        RetrySchedule::new(delays.iter().map(|s| secs(*s)).collect())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn default_schedule_allows_eight_attempts() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.max_attempts(), 8);
        let expected = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];
        for (attempt, delay) in (1u32..).zip(expected) {
            assert_eq!(schedule.scheduled_delay(attempt), Some(secs(delay)));
        }
        assert_eq!(schedule.scheduled_delay(8), None);
        assert_eq!(schedule.scheduled_delay(0), Some(secs(5)));
    }

    #[test]
    fn exhausted_schedules_give_no_delay() {
        let schedule = schedule(&[1, 2]);
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(schedule.max_attempts(), 3);
        assert!(schedule.next_delay(1, None, &mut rng).is_some());
        assert!(schedule.next_delay(2, None, &mut rng).is_some());
        assert_eq!(schedule.next_delay(3, None, &mut rng), None);
        assert_eq!(schedule.next_delay(3, Some(secs(1)), &mut rng), None);
        assert_eq!(schedule.next_delay(u32::MAX, None, &mut rng), None);
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_spreads() {
        let schedule = RetrySchedule::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..=7 {
            let scheduled = schedule.scheduled_delay(attempt).unwrap_or_default();
            let (low, high) = (scheduled.mul_f64(0.8), scheduled.mul_f64(1.2));
            let draws: Vec<Duration> = (0..2000)
                .filter_map(|_| schedule.next_delay(attempt, None, &mut rng))
                .collect();
            assert_eq!(draws.len(), 2000);
            assert!(draws.iter().all(|d| *d >= low && *d <= high), "{attempt}");
            let min = draws.iter().min().copied().unwrap_or_default();
            let max = draws.iter().max().copied().unwrap_or_default();
            assert!(min < scheduled.mul_f64(0.82), "{attempt}: {min:?}");
            assert!(max > scheduled.mul_f64(1.18), "{attempt}: {max:?}");
        }
    }

    #[test]
    fn a_retry_never_fires_before_eighty_percent_of_its_delay() {
        let schedule = schedule(&[1, 60, 3600]);
        for seed in 0..200 {
            let mut rng = StdRng::seed_from_u64(seed);
            for attempt in 1..=3 {
                let scheduled = schedule.scheduled_delay(attempt).unwrap_or_default();
                for retry_after in [None, Some(Duration::ZERO), Some(secs(1)), Some(secs(9999))] {
                    let delay = schedule
                        .next_delay(attempt, retry_after, &mut rng)
                        .unwrap_or_default();
                    assert!(delay >= scheduled.mul_f64(0.8), "{seed} {attempt}");
                    if retry_after.is_some() {
                        assert!(delay >= scheduled, "{seed} {attempt}");
                    }
                }
            }
        }
    }

    #[test]
    fn retry_after_is_clamped_to_the_delay_and_twice_it() {
        let schedule = schedule(&[100]);
        let scheduled = secs(100);
        for seed in 0..500 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut next = |r: u64| {
                schedule
                    .next_delay(1, Some(secs(r)), &mut rng)
                    .unwrap_or_default()
            };
            // Shorter than the schedule: not earlier than the scheduled delay.
            let short = next(3);
            assert!(short >= scheduled && short <= secs(120), "{short:?}");
            // Within bounds: honoured, never earlier than asked, never past twice the delay.
            let within = next(150);
            assert!(within >= secs(150) && within <= secs(170), "{within:?}");
            let near_top = next(190);
            assert!(
                near_top >= secs(190) && near_top <= secs(200),
                "{near_top:?}"
            );
            // Longer than twice the schedule: exactly twice the delay.
            assert_eq!(next(100_000), secs(200));
        }
    }

    #[test]
    fn seeded_generators_repeat_exactly() {
        let schedule = RetrySchedule::default();
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (1..=7)
                .filter_map(|a| schedule.next_delay(a, None, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
    }

    #[test]
    fn invalid_schedules_are_refused_with_a_reason() {
        let too_many = vec![secs(1); MAX_RETRIES + 1];
        for (delays, reason) in [
            (vec![], "at least one delay"),
            (vec![secs(1), Duration::ZERO], "delay 2 is zero"),
            (vec![MAX_RETRY_DELAY + secs(1)], "delay 1 is longer than"),
            (too_many, "at most 100"),
        ] {
            let message = RetrySchedule::new(delays)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains(reason), "{message}");
        }
        assert!(RetrySchedule::new(vec![Duration::from_millis(1), MAX_RETRY_DELAY]).is_ok());
    }
}
