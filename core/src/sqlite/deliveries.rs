//! The delivery queue in SQLite: fan-out of a queued event into `deliveries`, which deliveries
//! are due, and the backlog sizes. [`crate::Queue`]'s consume side calls these; the delivery
//! log (`delivery_log`) moves deliveries on after each attempt.
//!
//! Open deliveries (`pending`, `retrying`) are exactly those with a `next_attempt_at` (a `CHECK`
//! in the schema); the partial indexes `deliveries_due` and `deliveries_open` hold only them, so
//! the queue stays small to scan however long the log grows. SQLite uses a partial index only
//! when the query repeats its `WHERE` term word for word, hence the [`open_statuses`] macro.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{self, delivery_columns};
use super::{count, immediate};
use crate::delivery::Delivery;
use crate::error::{Error, Result};
use crate::queue::{PlannedDelivery, QueueDepth};

/// The condition selecting open deliveries, exactly as the partial indexes state it.
macro_rules! open_statuses {
    () => {
        "status IN ('pending', 'retrying')"
    };
}
pub(super) use open_statuses;

const QUEUED_EVENT_ID: &str =
    "SELECT events.id FROM event_queue JOIN events USING (seq) WHERE seq = ?1";
const INSERT_DELIVERY: &str = "INSERT INTO deliveries \
     (id, event_seq, event_id, subscription_id, status, ordered, attempt_count, max_attempts, \
      next_attempt_at, created_at, updated_at) \
     VALUES (?1, ?2, ?3, ?4, 'pending', ?5, 0, ?6, ?7, ?7, ?7) \
     ON CONFLICT (event_id, subscription_id) DO NOTHING";
const DEQUEUE: &str = "DELETE FROM event_queue WHERE seq = ?1";

/// Due deliveries. Parameters: ?1 now, ?2 most rows, ?3 most rows per subscription. A delivery
/// planned as ordered is due only when no earlier (smaller id) delivery of its subscription is
/// still open; `nth` numbers each subscription's due deliveries, earliest due first. The window
/// runs over narrow rows (id, due time, subscription) and only the deliveries returned are read
/// whole (measured about a third cheaper with 2,000 due deliveries).
///
/// `INDEXED BY`: left to itself the planner may answer "is an earlier one open?" from the
/// covering `deliveries_by_subscription`, walking the subscription's whole history whenever the
/// answer is no; `deliveries_open` holds only open deliveries, so the probe stays short.
const DUE: &str = concat!(
    "WITH due AS (SELECT id, next_attempt_at AS due_at, \
            ROW_NUMBER() OVER (PARTITION BY subscription_id ORDER BY next_attempt_at, id) AS nth \
       FROM deliveries AS d \
      WHERE ",
    open_statuses!(),
    " AND next_attempt_at <= ?1 \
        AND (ordered = 0 OR NOT EXISTS ( \
             SELECT 1 FROM deliveries AS earlier INDEXED BY deliveries_open \
              WHERE earlier.subscription_id = d.subscription_id \
                AND earlier.",
    open_statuses!(),
    " AND earlier.id < d.id))), \
     picked AS (SELECT id, due_at FROM due WHERE nth <= ?3 ORDER BY due_at, id LIMIT ?2) \
     SELECT ",
    delivery_columns!(),
    " FROM picked JOIN deliveries USING (id) ORDER BY due_at, id"
);
const NEXT_DUE_AT: &str = concat!(
    "SELECT next_attempt_at FROM deliveries WHERE ",
    open_statuses!(),
    " ORDER BY next_attempt_at LIMIT 1"
);
/// One statement, so the three counts describe the same snapshot.
const DEPTH: &str = concat!(
    "SELECT (SELECT COUNT(*) FROM event_queue), \
            COALESCE(SUM(status = 'pending'), 0), \
            COALESCE(SUM(status = 'retrying'), 0) \
       FROM deliveries WHERE ",
    open_statuses!()
);

/// Records `planned` for the queued event `seq` (skipping subscriptions that already have a
/// delivery of the event) and removes the event from the queue, in one `IMMEDIATE`
/// transaction. An event no longer queued was fanned out before: nothing happens.
pub(super) fn fan_out(
    conn: &mut Connection,
    seq: i64,
    planned: &[PlannedDelivery],
    now: DateTime<Utc>,
) -> Result<()> {
    let tx = immediate(conn)?;
    let event_id: Option<String> = tx
        .prepare_cached(QUEUED_EVENT_ID)
        .and_then(|mut s| s.query_row([seq], |row| row.get(0)).optional())
        .map_err(Error::storage)?;
    let Some(event_id) = event_id else {
        return Ok(());
    };
    let now = rows::timestamp(&now);
    let mut insert = tx.prepare_cached(INSERT_DELIVERY).map_err(Error::storage)?;
    for delivery in planned {
        insert
            .execute(params![
                delivery.id,
                seq,
                event_id,
                delivery.subscription_id,
                delivery.ordered,
                delivery.max_attempts,
                now,
            ])
            .map_err(Error::storage)?;
    }
    drop(insert);
    tx.prepare_cached(DEQUEUE)
        .and_then(|mut s| s.execute([seq]))
        .map_err(Error::storage)?;
    tx.commit().map_err(Error::storage)
}

/// Deliveries due at `now`, earliest due first: at most `max`, and at most `per_subscription`
/// of any one subscription.
pub(super) fn due(
    conn: &Connection,
    now: DateTime<Utc>,
    max: u32,
    per_subscription: u32,
) -> Result<Vec<Delivery>> {
    conn.prepare_cached(DUE)
        .and_then(|mut s| {
            s.query_map(
                params![rows::timestamp(&now), max, per_subscription],
                rows::delivery,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(Error::storage)
}

/// When the earliest open delivery is due.
pub(super) fn next_due_at(conn: &Connection) -> Result<Option<DateTime<Utc>>> {
    let text: Option<String> = conn
        .prepare_cached(NEXT_DUE_AT)
        .and_then(|mut s| s.query_row([], |row| row.get(0)).optional())
        .map_err(Error::storage)?;
    text.map(|text| text.parse().map_err(Error::storage))
        .transpose()
}

/// Events waiting for fan-out and open deliveries by status.
pub(super) fn depth(conn: &Connection) -> Result<QueueDepth> {
    let (events, pending, retrying) = conn
        .prepare_cached(DEPTH)
        .and_then(|mut s| s.query_row([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))))
        .map_err(Error::storage)?;
    Ok(QueueDepth {
        events: count(events),
        pending: count(pending),
        retrying: count(retrying),
    })
}

#[cfg(test)]
mod tests;
