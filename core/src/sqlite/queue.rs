//! [`Queue`] for [`SqliteStore`]: accepted events in the `events` table, the ones still to be
//! fanned out in `event_queue`, and the deliveries waiting for an attempt in `deliveries` (whose
//! SQL lives in `deliveries`).
//!
//! Publishing inserts the event and its queue entry in one transaction that commits (and, with
//! `synchronous=FULL`, reaches the disk) before [`Queue::publish`] returns. An id seen before
//! queues nothing: producers may retry a publish safely. Fan-out records an event's deliveries
//! and removes its queue entry in one transaction; the event itself stays in `events`, which
//! its deliveries reference.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::rows::{self, event_columns};
use super::{SqliteStore, deliveries, select_one};
use crate::delivery::Delivery;
use crate::error::{Error, Result};
use crate::event::AcceptedEvent;
use crate::queue::{PlannedDelivery, Publish, Queue, QueueDepth, QueuedEvent};

const INSERT_EVENT: &str = "INSERT INTO events \
     (id, event_type, event_time, source, payload, ordering_key, accepted_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING RETURNING seq";
const ENQUEUE: &str = "INSERT INTO event_queue (seq, enqueued_at) VALUES (?1, ?2)";
const QUEUED_EVENTS: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM event_queue JOIN events USING (seq) WHERE seq > ?1 ORDER BY seq LIMIT ?2"
);
const GET_EVENT: &str = concat!("SELECT ", event_columns!(), " FROM events WHERE id = ?1");

impl SqliteStore {
    /// Up to `limit` events still in the queue whose `seq` is greater than `after_seq`, oldest
    /// first; pass `0` to start at the head. Reads only: nothing is removed or locked. The same
    /// as [`Queue::pending_events`].
    pub async fn queued_events(&self, after_seq: i64, limit: u32) -> Result<Vec<QueuedEvent>> {
        self.read(move |conn| queued_events(conn, after_seq, limit))
            .await
    }
}

fn queued_events(conn: &Connection, after_seq: i64, limit: u32) -> Result<Vec<QueuedEvent>> {
    conn.prepare_cached(QUEUED_EVENTS)
        .and_then(|mut s| {
            s.query_map(params![after_seq, limit], rows::queued_event)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(Error::storage)
}

#[async_trait]
impl Queue for SqliteStore {
    async fn check_ready(&self) -> Result<()> {
        self.write(|conn| select_one(conn)).await
    }

    async fn publish(&self, accepted: &AcceptedEvent) -> Result<Publish> {
        // Serialize and copy out before taking the connection, keeping the lock short.
        let event = &accepted.event;
        let payload = serde_json::to_string(&event.payload).map_err(Error::storage)?;
        let id = event.id.clone();
        let event_type = event.event.clone();
        let event_time = rows::timestamp(&event.event_time);
        let source = event.source.clone();
        let ordering_key = accepted.ordering_key.clone();
        self.write(move |conn| {
            let now = rows::timestamp(&Utc::now());
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(Error::storage)?;
            let seq: Option<i64> = tx
                .prepare_cached(INSERT_EVENT)
                .and_then(|mut s| {
                    s.query_row(
                        params![
                            id,
                            event_type,
                            event_time,
                            source,
                            payload,
                            ordering_key,
                            now
                        ],
                        |row| row.get(0),
                    )
                    .optional()
                })
                .map_err(Error::storage)?;
            // No row back: the id was taken, nothing was written, and the transaction just
            // rolls back.
            let Some(seq) = seq else {
                return Ok(Publish::Duplicate);
            };
            tx.prepare_cached(ENQUEUE)
                .and_then(|mut s| s.execute(params![seq, now]))
                .map_err(Error::storage)?;
            tx.commit().map_err(Error::storage)?;
            Ok(Publish::Accepted)
        })
        .await
    }

    async fn pending_events(&self, after: i64, max: u32) -> Result<Vec<QueuedEvent>> {
        self.queued_events(after, max).await
    }

    async fn fan_out(
        &self,
        seq: i64,
        deliveries: Vec<PlannedDelivery>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.write(move |conn| deliveries::fan_out(conn, seq, &deliveries, now))
            .await
    }

    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        max: u32,
        per_subscription: u32,
    ) -> Result<Vec<Delivery>> {
        self.read(move |conn| deliveries::due(conn, now, max, per_subscription))
            .await
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>> {
        self.read(|conn| deliveries::next_due_at(conn)).await
    }

    async fn get_event(&self, id: &str) -> Result<Option<AcceptedEvent>> {
        let id = id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(GET_EVENT)
                .and_then(|mut s| s.query_row([id], rows::queued_event).optional())
                .map(|queued| queued.map(|q| q.event))
                .map_err(Error::storage)
        })
        .await
    }

    async fn depth(&self) -> Result<QueueDepth> {
        self.read(|conn| deliveries::depth(conn)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use serde_json::json;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn event(id: &str) -> AcceptedEvent {
        AcceptedEvent {
            event: Event {
                id: id.to_owned(),
                event: "order.created".to_owned(),
                event_time: DateTime::from_timestamp(1_767_323_045, 123_456_789)
                    .unwrap_or_default(),
                source: Some("shop".to_owned()),
                payload: json!({
                    "order": {"id": 7, "lines": [{"sku": "a-1", "qty": 2}], "note": null},
                    "total": 12.5,
                    "unicode": "grüße ✓",
                    "flag": true
                }),
            },
            ordering_key: Some("customer-7".to_owned()),
        }
    }

    async fn queue_rows(store: &SqliteStore) -> Result<i64> {
        store
            .read(|conn| {
                conn.query_row("SELECT COUNT(*) FROM event_queue", [], |row| row.get(0))
                    .map_err(Error::storage)
            })
            .await
    }

    #[tokio::test]
    async fn publish_accepts_once_then_reports_duplicates() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("kolbak.db"))?;
        let first = event("evt-1");
        assert_eq!(store.publish(&first).await?, Publish::Accepted);

        let mut again = event("evt-1");
        again.event.payload = json!({"different": true});
        assert_eq!(store.publish(&again).await?, Publish::Duplicate);
        assert_eq!(store.publish(&first).await?, Publish::Duplicate);

        assert_eq!(queue_rows(&store).await?, 1);
        let queued = store.queued_events(0, 10).await?;
        assert_eq!(queued.len(), 1);
        // The first publication wins; the duplicate changed nothing.
        assert_eq!(queued[0].event, first);
        Ok(())
    }

    #[tokio::test]
    async fn published_events_read_back_exactly_in_order() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("kolbak.db"))?;
        let before = Utc::now();
        let mut bare = event("evt-bare");
        bare.event.source = None;
        bare.ordering_key = None;
        bare.event.payload = json!("just a string");
        let published = [event("evt-b"), bare, event("evt-a")];
        for e in &published {
            assert_eq!(store.publish(e).await?, Publish::Accepted);
        }

        let queued = store.queued_events(0, 10).await?;
        let events: Vec<_> = queued.iter().map(|q| q.event.clone()).collect();
        assert_eq!(events, published);
        assert!(queued.windows(2).all(|pair| pair[0].seq < pair[1].seq));
        assert!(queued.iter().all(|q| q.accepted_at >= before));

        // The payload is stored as serde_json's text of the value.
        let payload: String = store
            .read(|conn| {
                conn.query_row(
                    "SELECT payload FROM events WHERE id = 'evt-bare'",
                    [],
                    |row| row.get(0),
                )
                .map_err(Error::storage)
            })
            .await?;
        assert_eq!(payload, r#""just a string""#);
        Ok(())
    }

    #[tokio::test]
    async fn queued_events_pages_by_seq() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("kolbak.db"))?;
        for i in 0..5 {
            store.publish(&event(&format!("evt-{i}"))).await?;
        }
        let head = store.queued_events(0, 2).await?;
        let ids: Vec<_> = head.iter().map(|q| q.event.event.id.as_str()).collect();
        assert_eq!(ids, ["evt-0", "evt-1"]);
        let rest = store.queued_events(head[1].seq, 10).await?;
        let ids: Vec<_> = rest.iter().map(|q| q.event.event.id.as_str()).collect();
        assert_eq!(ids, ["evt-2", "evt-3", "evt-4"]);
        assert!(store.queued_events(rest[2].seq, 10).await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn published_events_survive_closing_and_reopening() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kolbak.db");
        let store = SqliteStore::open(&path)?;
        let published = event("evt-durable");
        assert_eq!(store.publish(&published).await?, Publish::Accepted);
        drop(store);

        let reopened = SqliteStore::open(&path)?;
        let queued = reopened.queued_events(0, 10).await?;
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].event, published);
        // Still known after the reopen, so still deduplicated.
        assert_eq!(reopened.publish(&published).await?, Publish::Duplicate);
        assert_eq!(queue_rows(&reopened).await?, 1);
        Ok(())
    }

    #[tokio::test]
    async fn concurrent_publishes_of_one_id_queue_it_once() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("kolbak.db"))?;
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.publish(&event("evt-race")).await
            }));
        }
        let mut accepted = 0;
        for task in tasks {
            if task.await?? == Publish::Accepted {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 1);
        assert_eq!(queue_rows(&store).await?, 1);
        Ok(())
    }

    #[tokio::test]
    async fn queued_events_cannot_be_deleted_out_from_under_the_queue() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("kolbak.db"))?;
        store.publish(&event("evt-1")).await?;
        let result = store
            .write(|conn| {
                conn.execute("DELETE FROM events", [])
                    .map_err(Error::storage)
            })
            .await;
        assert!(matches!(result, Err(Error::Storage(_))), "{result:?}");
        Ok(())
    }

    #[tokio::test]
    async fn pending_events_and_get_event_read_what_was_published() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("kolbak.db"))?;
        let (first, second) = (event("evt-1"), event("evt-2"));
        store.publish(&first).await?;
        store.publish(&second).await?;
        let pending = store.pending_events(0, 10).await?;
        assert_eq!(pending, store.queued_events(0, 10).await?);
        assert_eq!(pending.len(), 2);
        let rest = store.pending_events(pending[0].seq, 1).await?;
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].event, second);

        assert_eq!(store.get_event("evt-1").await?, Some(first.clone()));
        assert_eq!(store.get_event("absent").await?, None);
        // Fanned out, the event leaves the queue but stays readable.
        store
            .fan_out(pending[0].seq, Vec::new(), Utc::now())
            .await?;
        assert_eq!(store.pending_events(0, 10).await?, rest);
        assert_eq!(store.get_event("evt-1").await?, Some(first));
        Ok(())
    }

    #[tokio::test]
    async fn ready_when_the_file_answers() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("kolbak.db"))?;
        Queue::check_ready(&store).await?;
        Ok(())
    }
}
