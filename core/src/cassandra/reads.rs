//! The Cassandra log's queries: a delivery, its attempts, the listings by subscription (walking
//! the live days newest first through Cassandra paging, with totals from the day counters) and
//! by event, and subscription health.

use chrono::{DateTime, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use scylla::value::Counter;

use super::CassandraLog;
use super::rows::{AttemptRow, DeliveryRow, HealthRow, StoredDelivery, live_days};
use crate::delivery::{Attempt, Delivery, DeliveryStatus, SubscriptionHealth};
use crate::error::{Error, Result};
use crate::registry::{Listing, Page};

/// Deliveries of one listing page read concurrently.
const READ_CONCURRENCY: usize = 16;

/// A row of `delivery_counts`.
type Counts = (
    Option<Counter>,
    Option<Counter>,
    Option<Counter>,
    Option<Counter>,
);

impl CassandraLog {
    /// The stored delivery `id`.
    pub(super) async fn load(&self, id: &str) -> Result<Option<StoredDelivery>> {
        self.read_one::<DeliveryRow>(&self.statements().get_delivery, (id,))
            .await?
            .map(StoredDelivery::try_from)
            .transpose()
    }

    /// Every attempt of `delivery_id`, oldest first.
    pub(super) async fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        self.session()
            .execute_iter(self.statements().list_attempts.clone(), (delivery_id,))
            .await
            .map_err(Error::storage)?
            .rows_stream::<AttemptRow>()
            .map_err(Error::storage)?
            .map_err(Error::storage)
            .and_then(|row| async move { Attempt::try_from(row) })
            .try_collect()
            .await
    }

    /// A subscription's deliveries as of `now`, newest first.
    pub(super) async fn subscription_listing(
        &self,
        subscription_id: &str,
        status: Option<DeliveryStatus>,
        page: Page,
        now: DateTime<Utc>,
    ) -> Result<Listing<Delivery>> {
        let days = live_days(now, self.config().log_retention);
        let oldest = days.last().copied().unwrap_or_else(|| now.date_naive());
        let total = self.total(subscription_id, status, oldest).await?;
        let ids = self.page_ids(subscription_id, status, &days, page).await?;
        let items = self
            .deliveries(ids)
            .await?
            .into_iter()
            // The status listing moves after the state: skip one caught in between.
            .filter(|d| status.is_none_or(|wanted| d.status == wanted))
            .collect();
        Ok(Listing { items, total })
    }

    /// Deliveries of the subscription (of `status`, or all) created on `oldest` or later,
    /// from the day counters.
    async fn total(
        &self,
        subscription_id: &str,
        status: Option<DeliveryStatus>,
        oldest: NaiveDate,
    ) -> Result<u64> {
        let rows: Vec<Counts> = self
            .session()
            .execute_iter(
                self.statements().get_counts.clone(),
                (subscription_id, oldest),
            )
            .await
            .map_err(Error::storage)?
            .rows_stream::<Counts>()
            .map_err(Error::storage)?
            .map_err(Error::storage)
            .try_collect()
            .await?;
        let value = |c: Option<Counter>| c.map_or(0, |Counter(n)| n);
        let sum: i64 = rows
            .into_iter()
            .map(|(pending, retrying, success, failed)| match status {
                None => value(pending) + value(retrying) + value(success) + value(failed),
                Some(DeliveryStatus::Pending) => value(pending),
                Some(DeliveryStatus::Retrying) => value(retrying),
                Some(DeliveryStatus::Success) => value(success),
                Some(DeliveryStatus::Failed) => value(failed),
            })
            .sum();
        Ok(u64::try_from(sum).unwrap_or(0))
    }

    /// The ids of one page of the subscription's listing: the days newest first, each read
    /// through Cassandra paging, skipping `page.offset` ids, until `page.limit` are found.
    async fn page_ids(
        &self,
        subscription_id: &str,
        status: Option<DeliveryStatus>,
        days: &[NaiveDate],
        page: Page,
    ) -> Result<Vec<String>> {
        let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
        let mut skip = page.offset;
        let mut ids = Vec::new();
        if limit == 0 {
            return Ok(ids);
        }
        let s = self.statements();
        for day in days {
            let pager = match status {
                None => {
                    self.session()
                        .execute_iter(s.list_by_subscription.clone(), (subscription_id, day))
                        .await
                }
                Some(status) => {
                    self.session()
                        .execute_iter(
                            s.list_by_status.clone(),
                            (subscription_id, status.as_str(), day),
                        )
                        .await
                }
            };
            let mut rows = pager
                .map_err(Error::storage)?
                .rows_stream::<(String,)>()
                .map_err(Error::storage)?;
            while let Some(row) = rows.next().await {
                let (id,) = row.map_err(Error::storage)?;
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                ids.push(id);
                if ids.len() >= limit {
                    return Ok(ids);
                }
            }
        }
        Ok(ids)
    }

    /// An event's deliveries, newest first. An event has one delivery per matching
    /// subscription, so its ids are read whole (through paging) and counted exactly.
    pub(super) async fn event_listing(
        &self,
        event_id: &str,
        page: Page,
    ) -> Result<Listing<Delivery>> {
        let ids: Vec<(String,)> = self
            .session()
            .execute_iter(self.statements().list_by_event.clone(), (event_id,))
            .await
            .map_err(Error::storage)?
            .rows_stream::<(String,)>()
            .map_err(Error::storage)?
            .map_err(Error::storage)
            .try_collect()
            .await?;
        let total = u64::try_from(ids.len()).unwrap_or(u64::MAX);
        let offset = usize::try_from(page.offset).unwrap_or(usize::MAX);
        let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
        let page_ids = ids.into_iter().skip(offset).take(limit).map(|(id,)| id);
        let items = self.deliveries(page_ids.collect()).await?;
        Ok(Listing { items, total })
    }

    /// The deliveries `ids`, in that order, skipping any no longer stored.
    async fn deliveries(&self, ids: Vec<String>) -> Result<Vec<Delivery>> {
        let found: Vec<Option<StoredDelivery>> = stream::iter(ids)
            .map(|id| async move { self.load(&id).await })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().map(|s| s.delivery).collect())
    }

    /// The health of `subscription_id` (the default when none is stored).
    pub(super) async fn health(&self, subscription_id: &str) -> Result<SubscriptionHealth> {
        self.read_one::<HealthRow>(&self.statements().get_health, (subscription_id,))
            .await?
            .map(SubscriptionHealth::try_from)
            .transpose()
            .map(Option::unwrap_or_default)
    }
}
