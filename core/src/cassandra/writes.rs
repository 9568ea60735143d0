//! How the Cassandra log changes: creating deliveries (claiming each (event, subscription)
//! pair first), applying the shared rules of [`Delivery`] to the stored state, moving a
//! delivery's status-listing row and counts after its state, recording attempts and keeping
//! subscription health.
//!
//! Each change is ordered so that running it again after a failure part-way finishes it: the
//! state, the status listing and counts (driven by `indexed_status`, updated after the row
//! move and the counter update) and the health are written concurrently, and the attempt row
//! only once they all landed. Independent writes go out together, so recording an attempt
//! takes about four round trips.

use chrono::{DateTime, SubsecRound, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use scylla::value::{Counter, CqlValue, Row};

use super::CassandraLog;
use super::rows::{self, StoredDelivery, attempt_values, day, delivery_ttl, state_values};
use crate::delivery::{Attempt, AttemptOutcome, Delivery, DeliveryStatus, SubscriptionHealth};
use crate::error::{Error, Result};

/// Deliveries of one `record_deliveries` call created concurrently.
const CREATE_CONCURRENCY: usize = 16;

/// Who holds an (event, subscription) pair.
enum Claim {
    /// This call claimed it.
    Ours,
    /// The same delivery claimed it before (a repeated call).
    Repeat,
    /// Another delivery holds it.
    Taken,
}

impl CassandraLog {
    /// Creates every delivery whose (event, subscription) pair is still free.
    pub(super) async fn create_all(&self, deliveries: &[Delivery]) -> Result<()> {
        stream::iter(deliveries.iter().cloned())
            .map(|delivery| async move { self.create(&delivery).await })
            .buffer_unordered(CREATE_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn create(&self, delivery: &Delivery) -> Result<()> {
        let d = stored_precision(delivery);
        let ttl = self.ttl(&d);
        let claim = self.claim(&d, ttl).await?;
        if let Claim::Taken = claim {
            return Ok(());
        }
        let _guard = self.lock_delivery(&d.id).await;
        let stored = match claim {
            Claim::Repeat => self.load(&d.id).await?,
            Claim::Ours | Claim::Taken => None,
        };
        let stored = match stored {
            // Created before; its state may have moved on since: keep it.
            Some(stored) => stored,
            None => {
                self.write(&self.statements().set_state, state_values(&d, ttl)?)
                    .await?;
                StoredDelivery {
                    delivery: d,
                    indexed: None,
                }
            }
        };
        // The state is written first: `indexed_status` must never land on a missing row.
        let d = &stored.delivery;
        let s = self.statements();
        let by_subscription = self.write(
            &s.insert_by_subscription,
            (
                &d.subscription_id,
                day(d.created_at),
                &d.id,
                d.created_at,
                ttl,
            ),
        );
        let by_event = self.write(
            &s.insert_by_event,
            (&d.event_id, &d.id, &d.subscription_id, ttl),
        );
        futures::try_join!(by_subscription, by_event, self.sync_index(&stored)).map(drop)
    }

    /// Claims `d`'s (event, subscription) pair for it with a conditional insert.
    async fn claim(&self, d: &Delivery, ttl: i32) -> Result<Claim> {
        let result = self
            .write(
                &self.statements().claim_key,
                (&d.event_id, &d.subscription_id, &d.id, ttl),
            )
            .await?
            .into_rows_result()
            .map_err(Error::storage)?;
        let holder = result
            .column_specs()
            .get_by_name("delivery_id")
            .map(|(index, _)| index);
        let row: Option<Row> = result.maybe_first_row().map_err(Error::storage)?;
        let columns = row.map(|row| row.columns).unwrap_or_default();
        if let Some(Some(CqlValue::Boolean(true))) = columns.first() {
            return Ok(Claim::Ours);
        }
        let existing = holder.and_then(|index| columns.get(index).cloned().flatten());
        match existing {
            Some(CqlValue::Text(id)) if id == d.id => Ok(Claim::Repeat),
            Some(CqlValue::Text(_)) => Ok(Claim::Taken),
            other => Err(Error::storage(std::io::Error::other(format!(
                "unexpected answer to claiming a delivery key: {other:?}"
            )))),
        }
    }

    /// Applies `rule` to the stored delivery `id` and stores the result; `rule` answering
    /// `None` changes nothing. Returns the delivery before and after, `None` when it does not
    /// exist.
    pub(super) async fn change(
        &self,
        id: &str,
        rule: impl FnOnce(&Delivery) -> Option<Delivery>,
    ) -> Result<Option<(Delivery, Delivery)>> {
        let _guard = self.lock_delivery(id).await;
        let Some(stored) = self.load(id).await? else {
            return Ok(None);
        };
        let before = stored.delivery.clone();
        let Some(after) = rule(&before).map(|d| stored_precision(&d)) else {
            return Ok(Some((before.clone(), before)));
        };
        self.store(&after, &stored).await?;
        Ok(Some((before, after)))
    }

    /// Records `attempt` and moves its delivery on by `outcome`.
    pub(super) async fn attempt_made(
        &self,
        attempt: &Attempt,
        outcome: AttemptOutcome,
    ) -> Result<Option<Delivery>> {
        let mut attempt = attempt.stored();
        attempt.attempted_at = attempt.attempted_at.trunc_subsecs(3);
        let id = attempt.delivery_id.clone();
        let _guard = self.lock_delivery(&id).await;
        let number =
            i32::try_from(attempt.number).map_err(|_| Error::invalid("number", "too large"))?;
        let recorded_at =
            self.read_one::<(DateTime<Utc>,)>(&self.statements().get_attempt_time, (&id, number));
        let (stored, recorded_at) = futures::try_join!(self.load(&id), recorded_at)?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        if recorded_at.is_some_and(|(at,)| at == attempt.attempted_at) {
            // This very attempt was recorded whole before (its row is written last).
            return Ok(Some(stored.delivery));
        }
        let next = stored_precision(&stored.delivery.after_attempt(&attempt, outcome));
        futures::try_join!(
            self.store(&next, &stored),
            self.record_health(&next.subscription_id, attempt.attempted_at, outcome)
        )?;
        let ttl = self.ttl(&next);
        self.write(
            &self.statements().insert_attempt,
            attempt_values(&attempt, ttl)?,
        )
        .await?;
        Ok(Some(next))
    }

    /// Writes `next` over `stored` (when it differs) and brings its listing and counts along.
    /// Both go out at once: if only the listing landed, the repeated call finds the state
    /// behind but `indexed_status` current, and writes the state alone.
    async fn store(&self, next: &Delivery, stored: &StoredDelivery) -> Result<()> {
        let state = async {
            if *next == stored.delivery {
                return Ok(());
            }
            let values = state_values(next, self.ttl(next))?;
            self.write(&self.statements().set_state, values)
                .await
                .map(drop)
        };
        let moved = StoredDelivery {
            delivery: next.clone(),
            indexed: stored.indexed,
        };
        let index = self.sync_index(&moved);
        futures::try_join!(state, index).map(drop)
    }

    /// Moves the delivery's row in the status listing and its count from the indexed status
    /// to its status, then records that it did. Repeating it after a failure is harmless,
    /// except that a counter update Cassandra applied but reported failed counts twice.
    async fn sync_index(&self, stored: &StoredDelivery) -> Result<()> {
        let d = &stored.delivery;
        if stored.indexed == Some(d.status) {
            return Ok(());
        }
        let s = self.statements();
        let (ttl, bucket) = (self.ttl(d), day(d.created_at));
        let remove = async {
            match stored.indexed {
                Some(old) => self
                    .write(
                        &s.delete_by_status,
                        (&d.subscription_id, old.as_str(), bucket, &d.id),
                    )
                    .await
                    .map(drop),
                None => Ok(()),
            }
        };
        let insert = self.write(
            &s.insert_by_status,
            (
                &d.subscription_id,
                d.status.as_str(),
                bucket,
                &d.id,
                d.created_at,
                ttl,
            ),
        );
        let mut deltas = [0_i64; 4];
        deltas[slot(d.status)] += 1;
        if let Some(old) = stored.indexed {
            deltas[slot(old)] -= 1;
        }
        let [pending, retrying, success, failed] = deltas.map(Counter);
        let count = self.write(
            &s.add_counts,
            (
                pending,
                retrying,
                success,
                failed,
                &d.subscription_id,
                bucket,
            ),
        );
        futures::try_join!(remove, insert, count)?;
        self.write(&s.set_indexed_status, (ttl, d.status.as_str(), &d.id))
            .await
            .map(drop)
    }

    /// Applies an attempt to its subscription's health.
    async fn record_health(
        &self,
        subscription_id: &str,
        attempted_at: DateTime<Utc>,
        outcome: AttemptOutcome,
    ) -> Result<()> {
        let _guard = self.lock_health(subscription_id).await;
        let current = self.health(subscription_id).await?;
        let next = current.after_attempt(attempted_at, outcome);
        if next == current {
            return Ok(());
        }
        let SubscriptionHealth {
            last_delivery_at,
            last_outcome,
            consecutive_failures,
            last_success_at,
        } = next;
        let ttl = rows::retention_ttl(self.config().log_retention);
        let failures = i32::try_from(consecutive_failures).unwrap_or(i32::MAX);
        self.write(
            &self.statements().set_health,
            (
                ttl,
                last_delivery_at,
                last_outcome.map(DeliveryStatus::as_str),
                failures,
                last_success_at,
                subscription_id,
            ),
        )
        .await
        .map(drop)
    }

    /// The TTL of a write of `d`'s rows now.
    fn ttl(&self, d: &Delivery) -> i32 {
        delivery_ttl(d.created_at, Utc::now(), self.config().log_retention)
    }
}

/// The column of `delivery_counts` counting `status`, in `add_counts` order.
fn slot(status: DeliveryStatus) -> usize {
    match status {
        DeliveryStatus::Pending => 0,
        DeliveryStatus::Retrying => 1,
        DeliveryStatus::Success => 2,
        DeliveryStatus::Failed => 3,
    }
}

/// `d` as it reads back: times cut to milliseconds.
fn stored_precision(d: &Delivery) -> Delivery {
    Delivery {
        next_attempt_at: d.next_attempt_at.map(|at| at.trunc_subsecs(3)),
        dead_lettered_at: d.dead_lettered_at.map(|at| at.trunc_subsecs(3)),
        created_at: d.created_at.trunc_subsecs(3),
        updated_at: d.updated_at.trunc_subsecs(3),
        ..d.clone()
    }
}
