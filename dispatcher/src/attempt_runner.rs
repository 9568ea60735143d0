//! One delivery attempt from start to durable record: load the event, sign and send it,
//! classify the answer, decide success / retry time / failure, deactivate the subscription on
//! `410 Gone`, and write the attempt to the delivery log — retrying that write until it
//! succeeds, because a lost log record would mean a lost or repeated delivery.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use kolbak_core::event::AcceptedEvent;
use kolbak_core::subscription::Deactivation;
use kolbak_core::{
    Attempt, AttemptOutcome, Delivery, DeliveryLog, Queue, Registry, Subscription,
    SubscriptionPatch,
};

use crate::classify::Outcome;
use crate::health_reporter::HealthReporter;
use crate::metrics::DispatcherMetrics;
use crate::retry_schedule::RetrySchedule;
use crate::sender::{WebhookSender, encode_body};

/// First pause before retrying a failed storage write; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between storage write retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What every attempt needs; shared by all attempt tasks.
pub struct AttemptRunner {
    /// Subscriptions (for 410 deactivation).
    pub registry: Arc<dyn Registry>,
    /// Where attempts are recorded.
    pub log: Arc<dyn DeliveryLog>,
    /// The HTTP client.
    pub sender: WebhookSender,
    /// Retry delays.
    pub schedule: RetrySchedule,
    /// Metrics.
    pub metrics: DispatcherMetrics,
    /// Notes which subscriptions to report delivery health for; `None` when the registry
    /// keeps no health of its own (standalone).
    pub health: Option<Arc<HealthReporter>>,
}

impl AttemptRunner {
    /// Loads the event of `delivery` from `queue`, then makes and records the attempt (see
    /// [`AttemptRunner::attempt`]).
    pub async fn run(
        &self,
        queue: &dyn Queue,
        delivery: Delivery,
        subscription: Arc<Subscription>,
    ) {
        let event = match retry_storage("read event", || queue.get_event(&delivery.event_id)).await
        {
            Some(event) => event,
            None => {
                self.abandon(&delivery, "the event is no longer stored")
                    .await;
                return;
            }
        };
        self.attempt(&delivery, &subscription, &event).await;
    }

    /// Makes attempt `delivery.attempt_count + 1` of `delivery` (whose event is `event`) to
    /// `subscription` and records it. Returns the recorded decision once it is durable.
    pub async fn attempt(
        &self,
        delivery: &Delivery,
        subscription: &Subscription,
        event: &AcceptedEvent,
    ) -> AttemptOutcome {
        let body = match encode_body(&event.event) {
            Ok(body) => body,
            Err(error) => {
                self.abandon(delivery, &format!("the event cannot be encoded: {error}"))
                    .await;
                return AttemptOutcome::Fail;
            }
        };
        let number = delivery.attempt_count + 1;
        let now = Utc::now();
        let secrets = subscription.secrets.valid_at(now);
        let result = self
            .sender
            .send(
                &subscription.callback_url,
                &event.event,
                body,
                &secrets,
                now,
            )
            .await;
        let outcome = result.outcome();
        let decision = self.decide(delivery, number, outcome, result.retry_after);
        let attempt = Attempt {
            delivery_id: delivery.id.clone(),
            number,
            attempted_at: result.started_at,
            duration_ms: u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX),
            response_code: result.status,
            response_body: result.response_body.clone(),
            error: result.error_text().map(str::to_owned),
        };
        retry_storage("record attempt", || {
            self.log.record_attempt(&attempt, decision)
        })
        .await;
        if let Some(health) = &self.health {
            health.touched(&subscription.id);
        }
        let label = match decision {
            AttemptOutcome::Success => "success",
            AttemptOutcome::RetryAt(_) => "retry",
            AttemptOutcome::Fail => "failed",
        };
        self.metrics
            .attempt(label, Some(result.duration.as_secs_f64()));
        tracing::debug!(
            delivery_id = %delivery.id,
            subscription_id = %subscription.id,
            attempt = number,
            status = ?result.status,
            outcome = label,
            "delivery attempt"
        );
        if outcome.deactivates_subscription() {
            self.deactivate(subscription).await;
        }
        decision
    }

    fn decide(
        &self,
        delivery: &Delivery,
        number: u32,
        outcome: Outcome,
        retry_after: Option<Duration>,
    ) -> AttemptOutcome {
        match outcome {
            Outcome::Success => AttemptOutcome::Success,
            Outcome::Retryable if number < delivery.max_attempts => {
                let delay = {
                    let mut rng = rand::rng();
                    self.schedule.next_delay(number, retry_after, &mut rng)
                };
                match delay.and_then(|d| TimeDelta::from_std(d).ok()) {
                    Some(delay) => AttemptOutcome::RetryAt(Utc::now() + delay),
                    None => AttemptOutcome::Fail,
                }
            }
            Outcome::Retryable | Outcome::Permanent { .. } => AttemptOutcome::Fail,
        }
    }

    /// Fails a delivery that cannot be attempted (no event, subscription gone or inactive).
    pub async fn abandon(&self, delivery: &Delivery, reason: &str) {
        retry_storage("abandon delivery", || {
            self.log.abandon(&delivery.id, reason, Utc::now())
        })
        .await;
        self.metrics.attempt("abandoned", None);
        tracing::info!(delivery_id = %delivery.id, reason, "delivery abandoned");
    }

    async fn deactivate(&self, subscription: &Subscription) {
        let patch = SubscriptionPatch {
            deactivate: Some(Deactivation {
                at: Utc::now(),
                reason: "the endpoint answered 410 Gone".into(),
            }),
            ..SubscriptionPatch::default()
        };
        let id = subscription.id.clone();
        retry_storage("deactivate subscription", || {
            self.registry
                .patch_subscription(&id, patch.clone(), Utc::now())
        })
        .await;
        tracing::warn!(subscription_id = %id, "subscription deactivated: endpoint answered 410 Gone");
    }
}

/// Runs `operation` until it succeeds, backing off between failures: storage outages slow
/// delivery down, they never drop a record.
pub(crate) async fn retry_storage<T, F, Fut>(what: &str, mut operation: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = kolbak_core::Result<T>>,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        match operation().await {
            Ok(value) => return value,
            Err(error) => {
                tracing::warn!(%error, operation = what, retry_in_ms = backoff.as_millis() as u64, "storage unavailable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
