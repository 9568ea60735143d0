//! [`DeliveryLog`] for [`SqliteStore`]: deliveries and their attempts in the `deliveries` and
//! `attempts` tables.
//!
//! Changes to a delivery are read-modify-writes in one `IMMEDIATE` transaction on the writer
//! connection: the rules of how an attempt, an abandonment or a manual retry moves a delivery on
//! are plain functions ([`apply_attempt`], [`apply_retry`]) over the loaded [`Delivery`], and
//! the whole row is written back. Queries run on the reader connection, a listing's total and
//! page in one read transaction so they describe the same snapshot.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::deliveries::open_statuses;
use super::rows::{self, attempt_columns, delivery_columns};
use super::{SqliteStore, count, immediate, limit_offset};
use crate::delivery::{
    Attempt, AttemptOutcome, Delivery, DeliveryLog, DeliveryStatus, MAX_STORED_RESPONSE_BODY,
    RetryRequest,
};
use crate::error::{Error, Result};
use crate::registry::{Listing, Page};

const GET_DELIVERY: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM deliveries WHERE id = ?1"
);
const UPDATE_DELIVERY: &str = "UPDATE deliveries SET status = ?2, attempt_count = ?3, \
     max_attempts = ?4, next_attempt_at = ?5, last_response_code = ?6, last_error = ?7, \
     dead_lettered_at = ?8, updated_at = ?9 WHERE id = ?1";
// A redone attempt (same number, after a crash between sending and recording) replaces the
// first record of it.
const UPSERT_ATTEMPT: &str = concat!(
    "INSERT OR REPLACE INTO attempts (",
    attempt_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
);
const LIST_ATTEMPTS: &str = concat!(
    "SELECT ",
    attempt_columns!(),
    " FROM attempts WHERE delivery_id = ?1 ORDER BY number"
);
const ABANDON: &str = concat!(
    "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, last_error = ?2, \
     dead_lettered_at = ?3, updated_at = ?3 WHERE id = ?1 AND ",
    open_statuses!()
);
const COUNT_SUBSCRIPTION_DELIVERIES: &str = "SELECT COUNT(*) FROM deliveries \
     WHERE subscription_id = ?1 AND (?2 IS NULL OR status = ?2)";
const LIST_SUBSCRIPTION_DELIVERIES: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM deliveries WHERE subscription_id = ?1 AND (?2 IS NULL OR status = ?2) \
      ORDER BY id DESC LIMIT ?3 OFFSET ?4"
);
const COUNT_EVENT_DELIVERIES: &str = "SELECT COUNT(*) FROM deliveries WHERE event_id = ?1";
const LIST_EVENT_DELIVERIES: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM deliveries WHERE event_id = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3"
);

#[async_trait]
impl DeliveryLog for SqliteStore {
    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>> {
        let id = id.to_owned();
        self.read(move |conn| load_delivery(conn, &id)).await
    }

    async fn list_attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        let delivery_id = delivery_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(LIST_ATTEMPTS)
                .and_then(|mut s| {
                    s.query_map([delivery_id], rows::attempt)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(Error::storage)
        })
        .await
    }

    async fn list_subscription_deliveries(
        &self,
        subscription_id: &str,
        status: Option<DeliveryStatus>,
        page: Page,
    ) -> Result<Listing<Delivery>> {
        let subscription_id = subscription_id.to_owned();
        let status = status.map(DeliveryStatus::as_str);
        let (limit, offset) = limit_offset(page);
        self.read(move |conn| {
            let tx = conn.transaction().map_err(Error::storage)?;
            let total: i64 = tx
                .prepare_cached(COUNT_SUBSCRIPTION_DELIVERIES)
                .and_then(|mut s| s.query_row(params![subscription_id, status], |row| row.get(0)))
                .map_err(Error::storage)?;
            let items = tx
                .prepare_cached(LIST_SUBSCRIPTION_DELIVERIES)
                .and_then(|mut s| {
                    s.query_map(
                        params![subscription_id, status, limit, offset],
                        rows::delivery,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(Error::storage)?;
            Ok(Listing {
                items,
                total: count(total),
            })
        })
        .await
    }

    async fn list_event_deliveries(&self, event_id: &str, page: Page) -> Result<Listing<Delivery>> {
        let event_id = event_id.to_owned();
        let (limit, offset) = limit_offset(page);
        self.read(move |conn| {
            let tx = conn.transaction().map_err(Error::storage)?;
            let total: i64 = tx
                .prepare_cached(COUNT_EVENT_DELIVERIES)
                .and_then(|mut s| s.query_row([&event_id], |row| row.get(0)))
                .map_err(Error::storage)?;
            let items = tx
                .prepare_cached(LIST_EVENT_DELIVERIES)
                .and_then(|mut s| {
                    s.query_map(params![event_id, limit, offset], rows::delivery)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(Error::storage)?;
            Ok(Listing {
                items,
                total: count(total),
            })
        })
        .await
    }

    async fn record_attempt(
        &self,
        attempt: &Attempt,
        outcome: AttemptOutcome,
    ) -> Result<Option<Delivery>> {
        let attempt = attempt.clone();
        self.write(move |conn| {
            let tx = immediate(conn)?;
            let Some(mut delivery) = load_delivery(&tx, &attempt.delivery_id)? else {
                return Ok(None);
            };
            tx.prepare_cached(UPSERT_ATTEMPT)
                .and_then(|mut s| rows::bind_attempt(&mut s, &attempt, MAX_STORED_RESPONSE_BODY))
                .map_err(Error::storage)?;
            apply_attempt(&mut delivery, &attempt, outcome);
            store_delivery(&tx, &delivery)?;
            tx.commit().map_err(Error::storage)?;
            Ok(Some(delivery))
        })
        .await
    }

    async fn abandon(&self, delivery_id: &str, reason: &str, now: DateTime<Utc>) -> Result<()> {
        let delivery_id = delivery_id.to_owned();
        let reason = reason.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(ABANDON)
                .and_then(|mut s| s.execute(params![delivery_id, reason, rows::timestamp(&now)]))
                .map(drop)
                .map_err(Error::storage)
        })
        .await
    }

    async fn request_retry(&self, id: &str, now: DateTime<Utc>) -> Result<Option<RetryRequest>> {
        let id = id.to_owned();
        self.write(move |conn| {
            let tx = immediate(conn)?;
            let Some(mut delivery) = load_delivery(&tx, &id)? else {
                return Ok(None);
            };
            if delivery.status == DeliveryStatus::Success {
                return Ok(Some(RetryRequest::AlreadyDelivered(delivery)));
            }
            apply_retry(&mut delivery, now);
            store_delivery(&tx, &delivery)?;
            tx.commit().map_err(Error::storage)?;
            Ok(Some(RetryRequest::Scheduled(delivery)))
        })
        .await
    }
}

fn load_delivery(conn: &Connection, id: &str) -> Result<Option<Delivery>> {
    conn.prepare_cached(GET_DELIVERY)
        .and_then(|mut s| s.query_row([id], rows::delivery).optional())
        .map_err(Error::storage)
}

fn store_delivery(conn: &Connection, delivery: &Delivery) -> Result<()> {
    conn.prepare_cached(UPDATE_DELIVERY)
        .and_then(|mut s| rows::bind_delivery_update(&mut s, delivery))
        .map(drop)
        .map_err(Error::storage)
}

/// Moves `delivery` on after `attempt`. A success is final: a later report (a duplicate, or an
/// attempt that raced a manual retry) is counted but changes nothing else. Otherwise the
/// attempt's response code and error become the delivery's last ones and `outcome` decides the
/// status. Never moves `attempt_count` or `updated_at` backwards.
fn apply_attempt(delivery: &mut Delivery, attempt: &Attempt, outcome: AttemptOutcome) {
    delivery.attempt_count = delivery.attempt_count.max(attempt.number);
    delivery.updated_at = delivery.updated_at.max(attempt.attempted_at);
    if delivery.status == DeliveryStatus::Success {
        return;
    }
    delivery.last_response_code = attempt.response_code;
    delivery.last_error = attempt.error.clone();
    let (status, next_attempt_at, dead_lettered_at) = match outcome {
        AttemptOutcome::Success => (DeliveryStatus::Success, None, None),
        AttemptOutcome::RetryAt(at) => (DeliveryStatus::Retrying, Some(at), None),
        AttemptOutcome::Fail => (DeliveryStatus::Failed, None, Some(attempt.attempted_at)),
    };
    delivery.status = status;
    delivery.next_attempt_at = next_attempt_at;
    delivery.dead_lettered_at = dead_lettered_at;
}

/// Schedules a new attempt of a delivery that has not succeeded at `now`. A failed delivery
/// reopens with exactly one more attempt allowed (`retrying` when it was attempted before,
/// `pending` when it was abandoned untried); an open one is brought forward to `now` if it was
/// due later.
fn apply_retry(delivery: &mut Delivery, now: DateTime<Utc>) {
    if delivery.status == DeliveryStatus::Failed {
        delivery.status = if delivery.attempt_count > 0 {
            DeliveryStatus::Retrying
        } else {
            DeliveryStatus::Pending
        };
        delivery.max_attempts = delivery.attempt_count.saturating_add(1);
        delivery.next_attempt_at = Some(now);
        delivery.dead_lettered_at = None;
    } else {
        delivery.next_attempt_at = Some(delivery.next_attempt_at.map_or(now, |at| at.min(now)));
    }
    delivery.updated_at = delivery.updated_at.max(now);
}

#[cfg(test)]
mod tests;
