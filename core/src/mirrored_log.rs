//! A delivery log kept in two places: the queue's own store, which schedules deliveries (the
//! SQLite file standalone), and an external log that serves reads and keeps history at scale
//! (Cassandra). Reads come from the mirror.
//!
//! Attempts and abandonments reach the mirror *before* the primary: the primary's write is
//! what makes the scheduler move on, so once it is done the mirror already holds the record. A
//! crash in between only leads to the attempt being made again (at least once), never to a
//! record missing from the mirror.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::delivery::{
    Attempt, AttemptOutcome, Delivery, DeliveryLog, DeliveryStatus, RetryRequest,
    SubscriptionHealth,
};
use crate::error::Result;
use crate::registry::{Listing, Page};

/// Mirrors every write of `primary` into `mirror`; reads from `mirror`. Every write is
/// idempotent on both sides, so a caller that retries a failed write (the dispatcher always
/// does) converges.
pub struct MirroredLog<P, M> {
    primary: P,
    mirror: M,
}

impl<P: DeliveryLog, M: DeliveryLog> MirroredLog<P, M> {
    /// Pairs the scheduling store `primary` with the external log `mirror`.
    pub fn new(primary: P, mirror: M) -> Self {
        Self { primary, mirror }
    }

    /// Makes sure the mirror knows `delivery` (a crash may have come between fan-out and
    /// mirroring), then brings it to the primary's current state.
    async fn sync_delivery(&self, id: &str) -> Result<Option<Delivery>> {
        let Some(current) = self.primary.get_delivery(id).await? else {
            return Ok(None);
        };
        if self.mirror.get_delivery(id).await?.is_none() {
            self.mirror
                .record_deliveries(std::slice::from_ref(&current))
                .await?;
        }
        Ok(Some(current))
    }
}

#[async_trait]
impl<P: DeliveryLog, M: DeliveryLog> DeliveryLog for MirroredLog<P, M> {
    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>> {
        self.mirror.get_delivery(id).await
    }

    async fn list_attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        self.mirror.list_attempts(delivery_id).await
    }

    async fn list_subscription_deliveries(
        &self,
        subscription_id: &str,
        status: Option<DeliveryStatus>,
        page: Page,
    ) -> Result<Listing<Delivery>> {
        self.mirror
            .list_subscription_deliveries(subscription_id, status, page)
            .await
    }

    async fn list_event_deliveries(&self, event_id: &str, page: Page) -> Result<Listing<Delivery>> {
        self.mirror.list_event_deliveries(event_id, page).await
    }

    async fn record_attempt(
        &self,
        attempt: &Attempt,
        outcome: AttemptOutcome,
    ) -> Result<Option<Delivery>> {
        if self.sync_delivery(&attempt.delivery_id).await?.is_none() {
            return Ok(None);
        }
        self.mirror.record_attempt(attempt, outcome).await?;
        self.primary.record_attempt(attempt, outcome).await
    }

    async fn abandon(&self, delivery_id: &str, reason: &str, now: DateTime<Utc>) -> Result<()> {
        if self.sync_delivery(delivery_id).await?.is_some() {
            self.mirror.abandon(delivery_id, reason, now).await?;
        }
        self.primary.abandon(delivery_id, reason, now).await
    }

    async fn request_retry(&self, id: &str, now: DateTime<Utc>) -> Result<Option<RetryRequest>> {
        // The primary decides (it holds the authoritative state); the mirror follows.
        let answer = self.primary.request_retry(id, now).await?;
        if matches!(answer, Some(RetryRequest::Scheduled(_))) {
            self.sync_delivery(id).await?;
            self.mirror.request_retry(id, now).await?;
        }
        Ok(answer)
    }

    async fn record_deliveries(&self, deliveries: &[Delivery]) -> Result<()> {
        self.primary.record_deliveries(deliveries).await?;
        self.mirror.record_deliveries(deliveries).await
    }

    async fn subscription_health(&self, subscription_id: &str) -> Result<SubscriptionHealth> {
        self.mirror.subscription_health(subscription_id).await
    }
}
