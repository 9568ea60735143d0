//! [`DeliveryLog`] for [`SqliteStore`]: deliveries and their attempts in the `deliveries` and
//! `attempts` tables.
//!
//! Changes to a delivery are read-modify-writes in one `IMMEDIATE` transaction on the writer
//! connection: the rules of how an attempt or a manual retry moves a delivery on are the shared
//! ones of [`Delivery`] ([`Delivery::after_attempt`], [`Delivery::retry_requested`]), applied
//! to the loaded row, and the whole row is written back together with the attempt and the
//! subscription's health. Abandoning is one `UPDATE` that states [`Delivery::abandoned`] in
//! SQL (a test checks that both agree). Queries run on the reader connection, a listing's total
//! and page in one read transaction so they describe the same snapshot.
//!
//! [`DeliveryLog::record_deliveries`] inserts with `ON CONFLICT DO NOTHING`: the embedded
//! queue's fan-out already creates its deliveries (with their ordering), so for it the call
//! changes nothing; a delivery recorded this way is unordered and needs its event stored.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::deliveries::open_statuses;
use super::rows::{self, attempt_columns, delivery_columns};
use super::{SqliteStore, count, health, immediate, limit_offset};
use crate::delivery::{
    Attempt, AttemptOutcome, Delivery, DeliveryLog, DeliveryStatus, MAX_STORED_RESPONSE_BODY,
    RetryRequest, SubscriptionHealth,
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
/// Creates a delivery as given unless its id or its (event, subscription) pair exists; the
/// event's queue position comes from `events`, so an unknown event inserts nothing.
const INSERT_DELIVERY: &str = "INSERT INTO deliveries \
     (id, event_seq, event_id, subscription_id, status, ordered, attempt_count, max_attempts, \
      next_attempt_at, last_response_code, last_error, dead_lettered_at, created_at, updated_at) \
     SELECT ?1, seq, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12 FROM events WHERE id = ?2 \
     ON CONFLICT DO NOTHING";
const DELIVERY_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM deliveries \
     WHERE id = ?1 OR (event_id = ?2 AND subscription_id = ?3))";
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
            delivery = delivery.after_attempt(&attempt, outcome);
            store_delivery(&tx, &delivery)?;
            health::record(
                &tx,
                &delivery.subscription_id,
                attempt.attempted_at,
                outcome,
            )?;
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
            let Some(delivery) = load_delivery(&tx, &id)? else {
                return Ok(None);
            };
            let answer = delivery.retry_requested(now);
            if let RetryRequest::Scheduled(scheduled) = &answer {
                store_delivery(&tx, scheduled)?;
                tx.commit().map_err(Error::storage)?;
            }
            Ok(Some(answer))
        })
        .await
    }

    async fn record_deliveries(&self, deliveries: &[Delivery]) -> Result<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let deliveries = deliveries.to_vec();
        self.write(move |conn| {
            let tx = immediate(conn)?;
            for delivery in &deliveries {
                insert_delivery(&tx, delivery)?;
            }
            tx.commit().map_err(Error::storage)
        })
        .await
    }

    async fn subscription_health(&self, subscription_id: &str) -> Result<SubscriptionHealth> {
        let subscription_id = subscription_id.to_owned();
        self.read(move |conn| health::load(conn, &subscription_id))
            .await
    }
}

/// Inserts `delivery` unless it exists; fails when its event is not stored. The schema wants
/// exactly the open deliveries scheduled: an open one without a time is due at its creation.
fn insert_delivery(conn: &Connection, d: &Delivery) -> Result<()> {
    let next_attempt_at = if d.is_open() {
        Some(d.next_attempt_at.unwrap_or(d.created_at))
    } else {
        None
    };
    let inserted = conn
        .prepare_cached(INSERT_DELIVERY)
        .and_then(|mut s| {
            s.execute(params![
                d.id,
                d.event_id,
                d.subscription_id,
                d.status.as_str(),
                d.attempt_count,
                d.max_attempts,
                next_attempt_at.as_ref().map(rows::timestamp),
                d.last_response_code,
                d.last_error,
                d.dead_lettered_at.as_ref().map(rows::timestamp),
                rows::timestamp(&d.created_at),
                rows::timestamp(&d.updated_at),
            ])
        })
        .map_err(Error::storage)?;
    if inserted > 0 {
        return Ok(());
    }
    let exists: bool = conn
        .prepare_cached(DELIVERY_EXISTS)
        .and_then(|mut s| {
            s.query_row(params![d.id, d.event_id, d.subscription_id], |row| {
                row.get(0)
            })
        })
        .map_err(Error::storage)?;
    if exists {
        Ok(())
    } else {
        Err(Error::invalid(
            "event_id",
            format!("event `{}` is not stored", d.event_id),
        ))
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

#[cfg(test)]
mod shared_rules_tests;
#[cfg(test)]
mod tests;
