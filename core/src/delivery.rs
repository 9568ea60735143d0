//! Deliveries and their attempts: one delivery per (event, subscription), each with the log of
//! every HTTP attempt made for it, and the `DeliveryLog` interface that records and queries
//! them (Cassandra in a cluster, the SQLite file standalone).
//!
//! How a delivery moves on is decided here, once, by pure functions every backend calls:
//! [`Delivery::after_attempt`], [`Delivery::abandoned`] and [`Delivery::retry_requested`]; and
//! how an attempt changes its subscription's health by [`SubscriptionHealth::after_attempt`].
//! A backend loads the current state, applies the rule and stores the result.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::registry::{Listing, Page};

/// Longest response body kept per attempt (bytes).
pub const MAX_STORED_RESPONSE_BODY: usize = 16 * 1024;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Created, first attempt not made yet.
    Pending,
    /// An attempt failed; another is scheduled at `next_attempt_at`.
    Retrying,
    /// The endpoint answered 2xx.
    Success,
    /// Permanently failed or out of attempts; dead-lettered.
    Failed,
}

impl DeliveryStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Success => "success",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Retrying, Self::Success, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == s)
    }

    /// True for `success` and `failed`.
    pub fn is_final(self) -> bool {
        matches!(self, DeliveryStatus::Success | DeliveryStatus::Failed)
    }
}

/// One event on its way to one subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Lowercase ULID.
    pub id: String,
    /// The event's id.
    pub event_id: String,
    /// The subscription's id.
    pub subscription_id: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempt_count: u32,
    /// Attempts allowed before it fails (1 + the retry schedule's length; a manual retry of a
    /// failed delivery grants one more).
    pub max_attempts: u32,
    /// When the next attempt is due (`pending` and `retrying` only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Status code of the last attempt, if it got a response.
    pub last_response_code: Option<u16>,
    /// Error of the last attempt, if it failed.
    pub last_error: Option<String>,
    /// When it was dead-lettered (status `failed`).
    pub dead_lettered_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The delivery.
    pub delivery_id: String,
    /// 1 for the first attempt.
    pub number: u32,
    /// When the request started.
    pub attempted_at: DateTime<Utc>,
    /// How long the exchange took (milliseconds).
    pub duration_ms: u64,
    /// Response status, when a response arrived.
    pub response_code: Option<u16>,
    /// The first 16 KiB of the response body (lossy UTF-8).
    pub response_body: Option<String>,
    /// What went wrong, when something did (connection refused, timeout, forbidden target…).
    pub error: Option<String>,
}

/// What an attempt leads to, as decided by the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Delivered.
    Success,
    /// Try again at the given time.
    RetryAt(DateTime<Utc>),
    /// Give up: the delivery fails and is dead-lettered.
    Fail,
}

/// Result of a manual retry request.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryRequest {
    /// The delivery will be attempted now.
    Scheduled(Delivery),
    /// It already succeeded; it is not sent again.
    AlreadyDelivered(Delivery),
}

impl Delivery {
    /// The record of a delivery just planned at fan-out: pending, due `now`.
    pub fn planned(
        plan: &crate::queue::PlannedDelivery,
        event_id: &str,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: plan.id.clone(),
            event_id: event_id.to_owned(),
            subscription_id: plan.subscription_id.clone(),
            status: DeliveryStatus::Pending,
            attempt_count: 0,
            max_attempts: plan.max_attempts,
            next_attempt_at: Some(now),
            last_response_code: None,
            last_error: None,
            dead_lettered_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// True while another attempt is planned (`pending` or `retrying`).
    pub fn is_open(&self) -> bool {
        !self.status.is_final()
    }

    /// The delivery after `attempt` was made and the dispatcher decided `outcome`.
    ///
    /// A success is final: a later report (a duplicate, or an attempt that raced a manual
    /// retry) is counted but changes nothing else. Otherwise the attempt's response code and
    /// error become the delivery's last ones and `outcome` decides the status: `RetryAt`
    /// schedules the next attempt, `Fail` dead-letters at the attempt's time, and both
    /// `Success` and `RetryAt` clear an earlier dead-lettering. Never moves `attempt_count` or
    /// `updated_at` backwards. Applying the same attempt twice gives the same delivery.
    pub fn after_attempt(&self, attempt: &Attempt, outcome: AttemptOutcome) -> Delivery {
        let mut next = self.clone();
        next.attempt_count = self.attempt_count.max(attempt.number);
        next.updated_at = self.updated_at.max(attempt.attempted_at);
        if self.status == DeliveryStatus::Success {
            return next;
        }
        next.last_response_code = attempt.response_code;
        next.last_error = attempt.error.clone();
        next.status = outcome.status();
        (next.next_attempt_at, next.dead_lettered_at) = match outcome {
            AttemptOutcome::Success => (None, None),
            AttemptOutcome::RetryAt(at) => (Some(at), None),
            AttemptOutcome::Fail => (None, Some(attempt.attempted_at)),
        };
        next
    }

    /// The delivery failed without an attempt at `now` (its subscription is gone or inactive,
    /// its event cannot be sent). Only an open delivery changes: it becomes `failed`,
    /// dead-lettered at `now` with `reason` as its last error. A delivered or already failed
    /// one is returned unchanged (abandoning twice keeps the first time and reason).
    pub fn abandoned(&self, reason: &str, now: DateTime<Utc>) -> Delivery {
        let mut next = self.clone();
        if self.is_open() {
            next.status = DeliveryStatus::Failed;
            next.next_attempt_at = None;
            next.last_error = Some(reason.to_owned());
            next.dead_lettered_at = Some(now);
            next.updated_at = now;
        }
        next
    }

    /// The answer to a manual retry requested at `now`.
    ///
    /// A delivered one is not sent again. A failed one reopens with exactly one more attempt
    /// allowed (`retrying` when it was attempted before, `pending` when it was abandoned
    /// untried), due `now`. An open one is brought forward to `now` if it was due later.
    pub fn retry_requested(&self, now: DateTime<Utc>) -> RetryRequest {
        if self.status == DeliveryStatus::Success {
            return RetryRequest::AlreadyDelivered(self.clone());
        }
        let mut next = self.clone();
        if self.status == DeliveryStatus::Failed {
            next.status = if self.attempt_count > 0 {
                DeliveryStatus::Retrying
            } else {
                DeliveryStatus::Pending
            };
            next.max_attempts = self.attempt_count.saturating_add(1);
            next.next_attempt_at = Some(now);
            next.dead_lettered_at = None;
        } else {
            next.next_attempt_at = Some(self.next_attempt_at.map_or(now, |at| at.min(now)));
        }
        next.updated_at = self.updated_at.max(now);
        RetryRequest::Scheduled(next)
    }
}

impl Attempt {
    /// The attempt as stored: its response body cut to [`MAX_STORED_RESPONSE_BODY`] bytes,
    /// on a character boundary.
    pub fn stored(&self) -> Attempt {
        let mut stored = self.clone();
        if let Some(body) = &mut stored.response_body
            && body.len() > MAX_STORED_RESPONSE_BODY
        {
            let mut end = MAX_STORED_RESPONSE_BODY;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body.truncate(end);
        }
        stored
    }
}

impl AttemptOutcome {
    /// The status a not yet delivered delivery takes after an attempt with this outcome.
    pub fn status(self) -> DeliveryStatus {
        match self {
            AttemptOutcome::Success => DeliveryStatus::Success,
            AttemptOutcome::RetryAt(_) => DeliveryStatus::Retrying,
            AttemptOutcome::Fail => DeliveryStatus::Failed,
        }
    }
}

/// How a subscription's endpoint has been answering lately, kept up to date on every recorded
/// attempt so reading it costs one lookup (it feeds `kubectl get` health).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubscriptionHealth {
    /// When the latest attempt (by its start time) was made; `None` before the first.
    pub last_delivery_at: Option<DateTime<Utc>>,
    /// What that attempt led to: `success`, `retrying` or `failed`.
    pub last_outcome: Option<DeliveryStatus>,
    /// Attempts that did not succeed since the latest successful one (all of them when none
    /// succeeded yet).
    pub consecutive_failures: u32,
    /// When the latest successful attempt was made.
    pub last_success_at: Option<DateTime<Utc>>,
}

impl SubscriptionHealth {
    /// The health after an attempt made at `attempted_at` with `outcome` was recorded.
    ///
    /// Attempts may be recorded out of order (they run concurrently), so "latest" goes by
    /// `attempted_at`: an older attempt recorded late does not replace the last outcome, and a
    /// failure made before the latest success does not count as consecutive.
    pub fn after_attempt(
        &self,
        attempted_at: DateTime<Utc>,
        outcome: AttemptOutcome,
    ) -> SubscriptionHealth {
        let mut next = self.clone();
        if self
            .last_delivery_at
            .is_none_or(|last| attempted_at >= last)
        {
            next.last_delivery_at = Some(attempted_at);
            next.last_outcome = Some(outcome.status());
        }
        if outcome == AttemptOutcome::Success {
            if self.last_success_at.is_none_or(|last| attempted_at >= last) {
                next.last_success_at = Some(attempted_at);
                next.consecutive_failures = 0;
            }
        } else if self.last_success_at.is_none_or(|last| attempted_at > last) {
            next.consecutive_failures = self.consecutive_failures.saturating_add(1);
        }
        next
    }
}

/// Records attempts and answers the delivery log's queries.
#[async_trait]
pub trait DeliveryLog: Send + Sync + 'static {
    /// One delivery by id.
    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>>;
    /// Every attempt of a delivery, oldest first.
    async fn list_attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>>;
    /// A subscription's deliveries, newest first, optionally of one status.
    async fn list_subscription_deliveries(
        &self,
        subscription_id: &str,
        status: Option<DeliveryStatus>,
        page: Page,
    ) -> Result<Listing<Delivery>>;
    /// An event's deliveries, newest first.
    async fn list_event_deliveries(&self, event_id: &str, page: Page) -> Result<Listing<Delivery>>;
    /// Records `attempt`, moves its delivery on according to `outcome`
    /// ([`Delivery::after_attempt`]) and updates its subscription's health. Returns the
    /// updated delivery (`None` when it does not exist, and then nothing is recorded).
    /// Repeating a call that failed is safe: a backend without transactions finishes what the
    /// failed call left undone.
    async fn record_attempt(
        &self,
        attempt: &Attempt,
        outcome: AttemptOutcome,
    ) -> Result<Option<Delivery>>;
    /// Fails a delivery without an attempt (its subscription is gone or inactive).
    async fn abandon(&self, delivery_id: &str, reason: &str, now: DateTime<Utc>) -> Result<()>;
    /// Asks for a new attempt now. A failed delivery gets one more attempt; a retrying one is
    /// brought forward. `None` when the delivery does not exist.
    async fn request_retry(&self, id: &str, now: DateTime<Utc>) -> Result<Option<RetryRequest>>;
    /// Creates delivery records as given. Idempotent per (event id, subscription id): when the
    /// pair already has a delivery (under any id), that one is left as it is and the new one is
    /// not created, so an event fanned out twice is delivered at most once per subscription.
    async fn record_deliveries(&self, deliveries: &[Delivery]) -> Result<()>;
    /// The subscription's current [`SubscriptionHealth`] (the default, all empty, when no
    /// attempt of it was recorded). One lookup, however long the subscription's history.
    async fn subscription_health(&self, subscription_id: &str) -> Result<SubscriptionHealth>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_323_045 + seconds, 0).unwrap_or_default()
    }

    fn pending() -> Delivery {
        Delivery {
            id: "d1".to_owned(),
            event_id: "evt-1".to_owned(),
            subscription_id: "s1".to_owned(),
            status: DeliveryStatus::Pending,
            attempt_count: 0,
            max_attempts: 3,
            next_attempt_at: Some(at(0)),
            last_response_code: None,
            last_error: None,
            dead_lettered_at: None,
            created_at: at(0),
            updated_at: at(0),
        }
    }

    fn attempt(number: u32, when: i64, code: Option<u16>, error: Option<&str>) -> Attempt {
        Attempt {
            delivery_id: "d1".to_owned(),
            number,
            attempted_at: at(when),
            duration_ms: 7,
            response_code: code,
            response_body: None,
            error: error.map(str::to_owned),
        }
    }

    fn scheduled(answer: RetryRequest) -> Delivery {
        match answer {
            RetryRequest::Scheduled(delivery) => delivery,
            RetryRequest::AlreadyDelivered(d) => panic!("{} should be scheduled", d.id),
        }
    }

    #[test]
    fn each_outcome_sets_status_schedule_and_dead_letter() {
        let d = pending();
        let ok = d.after_attempt(&attempt(1, 5, Some(204), None), AttemptOutcome::Success);
        assert_eq!(ok.status, DeliveryStatus::Success);
        assert_eq!((ok.attempt_count, ok.updated_at), (1, at(5)));
        assert_eq!((ok.next_attempt_at, ok.dead_lettered_at), (None, None));
        assert_eq!(ok.last_response_code, Some(204));

        let timeout = attempt(1, 5, None, Some("timed out"));
        let retry = d.after_attempt(&timeout, AttemptOutcome::RetryAt(at(60)));
        assert_eq!(retry.status, DeliveryStatus::Retrying);
        assert_eq!(retry.next_attempt_at, Some(at(60)));
        assert_eq!(retry.last_error.as_deref(), Some("timed out"));
        assert_eq!(retry.last_response_code, None);

        let failed = retry.after_attempt(&attempt(2, 60, Some(400), None), AttemptOutcome::Fail);
        assert_eq!(failed.status, DeliveryStatus::Failed);
        assert_eq!(failed.next_attempt_at, None);
        assert_eq!(failed.dead_lettered_at, Some(at(60)));
        assert_eq!(failed.last_error, None);
        assert_eq!(failed.attempt_count, 2);
        assert_eq!(failed.created_at, at(0));
    }

    #[test]
    fn a_success_is_final_but_later_attempts_are_counted() {
        let ok = pending().after_attempt(&attempt(1, 5, Some(200), None), AttemptOutcome::Success);
        let late = ok.after_attempt(
            &attempt(2, 9, Some(500), None),
            AttemptOutcome::RetryAt(at(99)),
        );
        let expected = Delivery {
            attempt_count: 2,
            updated_at: at(9),
            ..ok.clone()
        };
        assert_eq!(late, expected);
        assert_eq!(
            late.after_attempt(&attempt(3, 10, Some(400), None), AttemptOutcome::Fail)
                .status,
            DeliveryStatus::Success
        );
    }

    #[test]
    fn counts_and_times_never_move_backwards_and_repeats_change_nothing() {
        let third = attempt(3, 50, Some(503), None);
        let d = pending().after_attempt(&third, AttemptOutcome::RetryAt(at(90)));
        let early = d.after_attempt(
            &attempt(1, 10, Some(503), None),
            AttemptOutcome::RetryAt(at(95)),
        );
        assert_eq!((early.attempt_count, early.updated_at), (3, at(50)));
        assert_eq!(early.next_attempt_at, Some(at(95)));
        for outcome in [
            AttemptOutcome::Success,
            AttemptOutcome::RetryAt(at(90)),
            AttemptOutcome::Fail,
        ] {
            let once = pending().after_attempt(&third, outcome);
            assert_eq!(once.after_attempt(&third, outcome), once, "{outcome:?}");
        }
    }

    #[test]
    fn retrying_or_succeeding_clears_a_dead_letter() {
        let dead = pending().abandoned("subscription deleted", at(1));
        assert_eq!(dead.dead_lettered_at, Some(at(1)));
        // The attempt that was in flight when it was abandoned reports back.
        let ok = dead.after_attempt(&attempt(1, 0, Some(200), None), AttemptOutcome::Success);
        assert_eq!(
            (ok.status, ok.dead_lettered_at),
            (DeliveryStatus::Success, None)
        );
        assert_eq!(ok.updated_at, at(1));
        let retry = dead.after_attempt(
            &attempt(1, 0, Some(500), None),
            AttemptOutcome::RetryAt(at(9)),
        );
        assert_eq!(retry.status, DeliveryStatus::Retrying);
        assert_eq!(retry.dead_lettered_at, None);
    }

    #[test]
    fn abandoning_changes_open_deliveries_only() {
        let gone = pending().abandoned("subscription deleted", at(5));
        assert_eq!(gone.status, DeliveryStatus::Failed);
        assert_eq!(gone.last_error.as_deref(), Some("subscription deleted"));
        assert_eq!(
            (gone.dead_lettered_at, gone.updated_at),
            (Some(at(5)), at(5))
        );
        assert_eq!((gone.next_attempt_at, gone.attempt_count), (None, 0));
        assert_eq!(gone.abandoned("again", at(9)), gone);
        let ok = pending().after_attempt(&attempt(1, 1, Some(200), None), AttemptOutcome::Success);
        assert_eq!(ok.abandoned("subscription deleted", at(5)), ok);
        let retrying = pending().after_attempt(
            &attempt(1, 1, Some(500), None),
            AttemptOutcome::RetryAt(at(60)),
        );
        let gone = retrying.abandoned("subscription inactive", at(7));
        assert_eq!(
            (gone.status, gone.attempt_count),
            (DeliveryStatus::Failed, 1)
        );
        assert_eq!(gone.last_response_code, Some(500));
    }

    #[test]
    fn manual_retries_depend_on_the_status() {
        let ok = pending().after_attempt(&attempt(1, 1, Some(200), None), AttemptOutcome::Success);
        assert_eq!(
            ok.retry_requested(at(10)),
            RetryRequest::AlreadyDelivered(ok.clone())
        );

        let dead = pending()
            .after_attempt(
                &attempt(1, 1, Some(500), None),
                AttemptOutcome::RetryAt(at(2)),
            )
            .after_attempt(&attempt(2, 2, Some(500), None), AttemptOutcome::Fail);
        let reopened = scheduled(dead.retry_requested(at(10)));
        assert_eq!(reopened.status, DeliveryStatus::Retrying);
        assert_eq!((reopened.attempt_count, reopened.max_attempts), (2, 3));
        assert_eq!(reopened.next_attempt_at, Some(at(10)));
        assert_eq!(
            (reopened.dead_lettered_at, reopened.updated_at),
            (None, at(10))
        );

        let untried = scheduled(pending().abandoned("gone", at(2)).retry_requested(at(10)));
        assert_eq!(untried.status, DeliveryStatus::Pending);
        assert_eq!(
            (untried.max_attempts, untried.next_attempt_at),
            (1, Some(at(10)))
        );

        let waiting = pending().after_attempt(
            &attempt(1, 1, Some(503), None),
            AttemptOutcome::RetryAt(at(3600)),
        );
        let forward = scheduled(waiting.retry_requested(at(10)));
        assert_eq!(forward.status, DeliveryStatus::Retrying);
        assert_eq!(
            (forward.next_attempt_at, forward.max_attempts),
            (Some(at(10)), 3)
        );
        // Due earlier already: "forward" to now would delay it. Time never goes back.
        let new = scheduled(pending().retry_requested(at(10)));
        assert_eq!((new.next_attempt_at, new.updated_at), (Some(at(0)), at(10)));
        let stale = scheduled(forward.retry_requested(at(5)));
        assert_eq!(
            (stale.next_attempt_at, stale.updated_at),
            (Some(at(5)), at(10))
        );
    }

    #[test]
    fn stored_attempts_keep_whole_characters_within_the_cap() {
        let mut big = attempt(1, 0, Some(200), None);
        big.response_body = Some("ü".repeat(MAX_STORED_RESPONSE_BODY));
        let stored = big.stored().response_body.unwrap_or_default();
        assert_eq!(stored, "ü".repeat(MAX_STORED_RESPONSE_BODY / 2));
        big.response_body = Some("x✓".repeat(MAX_STORED_RESPONSE_BODY / 4));
        let stored = big.stored().response_body.unwrap_or_default();
        assert!(
            stored.len() <= MAX_STORED_RESPONSE_BODY && stored.len() + 3 > MAX_STORED_RESPONSE_BODY
        );
        let small = attempt(2, 0, Some(200), None);
        assert_eq!(small.stored(), small);
    }

    #[test]
    fn health_follows_the_latest_attempt_and_counts_failures_since_a_success() {
        let retry = AttemptOutcome::RetryAt(at(99));
        let h = SubscriptionHealth::default();
        let h = h
            .after_attempt(at(1), retry)
            .after_attempt(at(2), AttemptOutcome::Fail);
        assert_eq!(h.consecutive_failures, 2);
        assert_eq!(h.last_outcome, Some(DeliveryStatus::Failed));
        assert_eq!((h.last_delivery_at, h.last_success_at), (Some(at(2)), None));

        let ok = h.after_attempt(at(3), AttemptOutcome::Success);
        assert_eq!(ok.consecutive_failures, 0);
        assert_eq!(ok.last_outcome, Some(DeliveryStatus::Success));
        assert_eq!(ok.last_success_at, Some(at(3)));

        // Recorded late: a failure made before the success neither counts nor becomes "last".
        let late = ok.after_attempt(at(2), AttemptOutcome::Fail);
        assert_eq!(late, ok);
        let failing = ok.after_attempt(at(5), retry).after_attempt(at(4), retry);
        assert_eq!(failing.consecutive_failures, 2);
        assert_eq!(failing.last_delivery_at, Some(at(5)));
        assert_eq!(failing.last_outcome, Some(DeliveryStatus::Retrying));
        // An older success recorded late does not reset the count.
        let old_success = failing.after_attempt(at(1), AttemptOutcome::Success);
        assert_eq!(old_success, failing);
    }
}
