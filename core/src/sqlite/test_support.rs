//! Fixtures shared by the SQLite store's delivery tests: a store in a temporary directory,
//! events, planned deliveries and attempts at fixed times.

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use serde_json::json;

use super::SqliteStore;
use crate::delivery::Attempt;
use crate::error::{Error, Result};
use crate::event::{AcceptedEvent, Event};
use crate::queue::{PlannedDelivery, Publish, Queue};

/// Result of a test.
pub(super) type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// A fixed instant plus `seconds`, with nanoseconds so round trips prove full precision.
pub(super) fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_323_045 + seconds, 123_456_789).unwrap_or_default()
}

/// A store in `dir`.
pub(super) fn open(dir: &tempfile::TempDir) -> Result<SqliteStore> {
    SqliteStore::open(&dir.path().join("kolbak.db"))
}

/// An event with id `id`.
pub(super) fn event(id: &str) -> AcceptedEvent {
    AcceptedEvent {
        event: Event {
            id: id.to_owned(),
            event: "order.created".to_owned(),
            event_time: at(-60),
            source: Some("shop".to_owned()),
            payload: json!({"order": id}),
        },
        ordering_key: None,
    }
}

/// A planned delivery `id` to `subscription_id` allowing 3 attempts.
pub(super) fn planned(id: &str, subscription_id: &str, ordered: bool) -> PlannedDelivery {
    PlannedDelivery {
        id: id.to_owned(),
        subscription_id: subscription_id.to_owned(),
        max_attempts: 3,
        ordered,
    }
}

/// Publishes the event `event_id` and returns its queue position.
pub(super) async fn publish(store: &SqliteStore, event_id: &str) -> Result<i64> {
    if store.publish(&event(event_id)).await? != Publish::Accepted {
        return Err(Error::Conflict(format!("{event_id} was published before")));
    }
    store
        .pending_events(0, u32::MAX)
        .await?
        .into_iter()
        .find(|queued| queued.event.event.id == event_id)
        .map(|queued| queued.seq)
        .ok_or_else(|| Error::Conflict(format!("{event_id} is not queued")))
}

/// Publishes `event_id` and fans it out at `now` into deliveries given as (delivery id,
/// subscription id, ordered).
pub(super) async fn deliver(
    store: &SqliteStore,
    event_id: &str,
    deliveries: &[(&str, &str, bool)],
    now: DateTime<Utc>,
) -> Result<i64> {
    let seq = publish(store, event_id).await?;
    let planned = deliveries
        .iter()
        .map(|(id, subscription, ordered)| planned(id, subscription, *ordered))
        .collect();
    store.fan_out(seq, planned, now).await?;
    Ok(seq)
}

/// Attempt `number` of `delivery_id` at `when`, answered with `code`.
pub(super) fn attempt(delivery_id: &str, number: u32, when: DateTime<Utc>, code: u16) -> Attempt {
    Attempt {
        delivery_id: delivery_id.to_owned(),
        number,
        attempted_at: when,
        duration_ms: 42,
        response_code: Some(code),
        response_body: Some(format!("answer {code}")),
        error: None,
    }
}

/// The ids of `items`.
pub(super) fn ids<T>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|item| id(item).to_owned()).collect()
}

/// Runs `sql`, a query of one integer, on the store's writer connection.
pub(super) async fn scalar(store: &SqliteStore, sql: &'static str) -> Result<i64> {
    store
        .write(move |conn| {
            conn.query_row(sql, [], |row| row.get(0))
                .map_err(Error::storage)
        })
        .await
}

/// SQLite's plan for `sql`, one line per step (`EXPLAIN QUERY PLAN`'s detail column).
pub(super) fn query_plan(conn: &Connection, sql: &str) -> Result<String> {
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .map_err(Error::storage)?;
    // Unbound parameters are fine for planning; raw_query does not insist on them.
    let mut rows = stmt.raw_query();
    let mut details = Vec::new();
    while let Some(row) = rows.next().map_err(Error::storage)? {
        details.push(row.get::<_, String>(3).map_err(Error::storage)?);
    }
    Ok(details.join("\n"))
}
