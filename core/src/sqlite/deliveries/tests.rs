//! Tests of the SQLite delivery queue: fan-out, due deliveries (timing, caps, ordering), backlog
//! sizes, durability and the query plans the partial indexes are there for.

use super::*;
use crate::delivery::{AttemptOutcome, DeliveryLog, DeliveryStatus};
use crate::queue::Queue;
use crate::sqlite::SqliteStore;
use crate::sqlite::test_support::{
    TestResult, at, attempt, deliver, ids, open, planned, publish, query_plan, scalar,
};

/// The ids of the deliveries due at `now`.
async fn due_ids(
    store: &SqliteStore,
    now: DateTime<Utc>,
    max: u32,
    per: u32,
) -> Result<Vec<String>> {
    let due = store.due_deliveries(now, max, per).await?;
    Ok(ids(&due, |d| &d.id))
}

#[tokio::test]
async fn fan_out_records_deliveries_and_dequeues_the_event() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let seq = publish(&store, "evt-1").await?;
    publish(&store, "evt-2").await?;
    let plan = vec![planned("d1", "sub-a", false), planned("d2", "sub-b", true)];
    store.fan_out(seq, plan, at(0)).await?;

    let queued = store.pending_events(0, 10).await?;
    assert_eq!(ids(&queued, |q| &q.event.event.id), ["evt-2"]);
    let d1 = store.get_delivery("d1").await?.ok_or("d1 missing")?;
    let expected = Delivery {
        id: "d1".to_owned(),
        event_id: "evt-1".to_owned(),
        subscription_id: "sub-a".to_owned(),
        status: DeliveryStatus::Pending,
        attempt_count: 0,
        max_attempts: 3,
        next_attempt_at: Some(at(0)),
        last_response_code: None,
        last_error: None,
        dead_lettered_at: None,
        created_at: at(0),
        updated_at: at(0),
    };
    assert_eq!(d1, expected);
    let d2 = store.get_delivery("d2").await?.ok_or("d2 missing")?;
    assert_eq!(d2.subscription_id, "sub-b");
    assert_eq!(d2.status, DeliveryStatus::Pending);
    // The event stays readable: its deliveries need it.
    assert!(store.get_event("evt-1").await?.is_some());
    let ordered = scalar(&store, "SELECT ordered FROM deliveries WHERE id = 'd2'").await?;
    assert_eq!(ordered, 1);
    Ok(())
}

#[tokio::test]
async fn fanning_out_again_creates_nothing_twice() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let seq = publish(&store, "evt-1").await?;
    // The same subscription twice in one plan: the first wins.
    let plan = vec![
        planned("d1", "sub-a", false),
        planned("d1b", "sub-a", false),
        // A repeated plan, same id and all.
        planned("d1", "sub-a", false),
    ];
    store.fan_out(seq, plan, at(0)).await?;
    // Already fanned out: a no-op, even with new subscriptions.
    let again = vec![planned("d2", "sub-a", false), planned("d3", "sub-b", false)];
    store.fan_out(seq, again, at(5)).await?;
    assert_eq!(scalar(&store, "SELECT COUNT(*) FROM deliveries").await?, 1);
    assert!(store.get_delivery("d1b").await?.is_none());

    // A crash-and-redo finds the event still queued next to its deliveries: the known pair is
    // skipped, a new one is added.
    store
        .write(move |conn| {
            conn.execute(
                "INSERT INTO event_queue (seq, enqueued_at) VALUES (?1, 'x')",
                [seq],
            )
            .map_err(Error::storage)
        })
        .await?;
    let redo = vec![planned("d4", "sub-a", false), planned("d5", "sub-b", false)];
    store.fan_out(seq, redo, at(9)).await?;
    let all = store.due_deliveries(at(100), 10, 10).await?;
    assert_eq!(ids(&all, |d| &d.id), ["d1", "d5"]);
    assert_eq!(all[0].created_at, at(0));
    assert!(store.pending_events(0, 10).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn fan_out_of_nothing_dequeues_and_unknown_seqs_are_no_ops() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let seq = publish(&store, "evt-1").await?;
    store.fan_out(seq, Vec::new(), at(0)).await?;
    assert!(store.pending_events(0, 10).await?.is_empty());
    store
        .fan_out(seq + 100, vec![planned("d1", "sub-a", false)], at(0))
        .await?;
    assert_eq!(scalar(&store, "SELECT COUNT(*) FROM deliveries").await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_failed_fan_out_changes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    deliver(&store, "evt-1", &[("d1", "sub-a", false)], at(0)).await?;
    let seq = publish(&store, "evt-2").await?;
    // A delivery id already taken (by another event's delivery) fails the whole fan-out.
    let plan = vec![planned("d2", "sub-a", false), planned("d1", "sub-b", false)];
    let result = store.fan_out(seq, plan, at(1)).await;
    assert!(matches!(result, Err(Error::Storage(_))), "{result:?}");
    assert!(store.get_delivery("d2").await?.is_none());
    let queued = store.pending_events(0, 10).await?;
    assert_eq!(ids(&queued, |q| &q.event.event.id), ["evt-2"]);
    Ok(())
}

#[tokio::test]
async fn nothing_is_due_before_its_time() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    deliver(&store, "evt-1", &[("d1", "sub-a", false)], at(0)).await?;
    assert!(due_ids(&store, at(-1), 10, 10).await?.is_empty());
    assert_eq!(due_ids(&store, at(0), 10, 10).await?, ["d1"]);

    let retry = AttemptOutcome::RetryAt(at(300));
    store
        .record_attempt(&attempt("d1", 1, at(0), 503), retry)
        .await?;
    assert!(due_ids(&store, at(299), 10, 10).await?.is_empty());
    let just_before = at(300) - chrono::Duration::nanoseconds(1);
    assert!(due_ids(&store, just_before, 10, 10).await?.is_empty());
    assert_eq!(due_ids(&store, at(300), 10, 10).await?, ["d1"]);

    let done = AttemptOutcome::Success;
    store
        .record_attempt(&attempt("d1", 2, at(300), 200), done)
        .await?;
    assert!(due_ids(&store, at(10_000), 10, 10).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn due_deliveries_are_capped_per_subscription_and_in_all() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    for i in 0..5 {
        let (a, b) = (format!("a{i}"), format!("b{i}"));
        let plan = [(a.as_str(), "sub-a", false), (b.as_str(), "sub-b", false)];
        deliver(&store, &format!("evt-{i}"), &plan, at(i)).await?;
    }
    deliver(&store, "evt-c", &[("c0", "sub-c", false)], at(10)).await?;

    // Earliest due first, ties by id; at most two of each subscription.
    assert_eq!(
        due_ids(&store, at(100), 100, 2).await?,
        ["a0", "b0", "a1", "b1", "c0"]
    );
    assert_eq!(due_ids(&store, at(100), 3, 2).await?, ["a0", "b0", "a1"]);
    assert_eq!(due_ids(&store, at(100), 100, 1).await?, ["a0", "b0", "c0"]);
    assert_eq!(due_ids(&store, at(100), 100, 10).await?.len(), 11);
    assert!(due_ids(&store, at(100), 0, 10).await?.is_empty());
    assert!(due_ids(&store, at(100), 10, 0).await?.is_empty());
    // Only what is due counts against the caps.
    assert_eq!(
        due_ids(&store, at(1), 100, 5).await?,
        ["a0", "b0", "a1", "b1"]
    );
    Ok(())
}

#[tokio::test]
async fn ordered_subscriptions_get_one_delivery_at_a_time_in_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    for i in 1..=3 {
        let (o, u) = (format!("o{i}"), format!("u{i}"));
        let plan = [(o.as_str(), "sub-o", true), (u.as_str(), "sub-u", false)];
        deliver(&store, &format!("evt-{i}"), &plan, at(i)).await?;
    }
    let due = |now| due_ids(&store, now, 100, 10);
    assert_eq!(due(at(10)).await?, ["o1", "u1", "u2", "u3"]);

    // While o1 waits for its retry, o2 is not due even though its time has come.
    let retry = AttemptOutcome::RetryAt(at(60));
    store
        .record_attempt(&attempt("o1", 1, at(10), 500), retry)
        .await?;
    assert_eq!(due(at(10)).await?, ["u1", "u2", "u3"]);
    assert_eq!(due(at(60)).await?, ["u1", "u2", "u3", "o1"]);

    store
        .record_attempt(&attempt("o1", 2, at(60), 200), AttemptOutcome::Success)
        .await?;
    // Due in their own time order again: o2 was due from at(2).
    assert_eq!(due(at(60)).await?, ["u1", "o2", "u2", "u3"]);
    store
        .record_attempt(&attempt("o2", 1, at(61), 400), AttemptOutcome::Fail)
        .await?;
    assert_eq!(due(at(61)).await?, ["u1", "u2", "o3", "u3"]);
    store.abandon("o3", "subscription deleted", at(62)).await?;
    assert_eq!(due(at(62)).await?, ["u1", "u2", "u3"]);
    Ok(())
}

#[tokio::test]
async fn depth_and_next_due_at_follow_the_backlog() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    assert_eq!(store.depth().await?, QueueDepth::default());
    assert_eq!(store.next_due_at().await?, None);

    publish(&store, "evt-waiting").await?;
    let plan = [("d1", "sub-a", false), ("d2", "sub-b", false)];
    deliver(&store, "evt-1", &plan, at(5)).await?;
    let depth = QueueDepth {
        events: 1,
        pending: 2,
        retrying: 0,
    };
    assert_eq!(store.depth().await?, depth);
    assert_eq!(store.next_due_at().await?, Some(at(5)));

    let retry = AttemptOutcome::RetryAt(at(600));
    store
        .record_attempt(&attempt("d1", 1, at(5), 502), retry)
        .await?;
    let depth = QueueDepth {
        events: 1,
        pending: 1,
        retrying: 1,
    };
    assert_eq!(store.depth().await?, depth);
    assert_eq!(store.next_due_at().await?, Some(at(5)));

    store
        .record_attempt(&attempt("d2", 1, at(6), 200), AttemptOutcome::Success)
        .await?;
    let depth = QueueDepth {
        events: 1,
        pending: 0,
        retrying: 1,
    };
    assert_eq!(store.depth().await?, depth);
    assert_eq!(store.next_due_at().await?, Some(at(600)));

    store
        .record_attempt(&attempt("d1", 2, at(600), 410), AttemptOutcome::Fail)
        .await?;
    assert_eq!(store.next_due_at().await?, None);
    assert_eq!(store.depth().await?.retrying, 0);
    Ok(())
}

#[tokio::test]
async fn deliveries_and_scheduled_retries_survive_closing_and_reopening() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (retrying, pending, attempts) = {
        let store = open(&dir)?;
        let plan = [("d1", "sub-a", false), ("d2", "sub-b", true)];
        deliver(&store, "evt-1", &plan, at(0)).await?;
        publish(&store, "evt-2").await?;
        let retry = AttemptOutcome::RetryAt(at(3600));
        let retrying = store
            .record_attempt(&attempt("d1", 1, at(1), 503), retry)
            .await?
            .ok_or("d1 missing")?;
        let pending = store.get_delivery("d2").await?.ok_or("d2 missing")?;
        (retrying, pending, store.list_attempts("d1").await?)
    };
    let store = open(&dir)?;
    assert_eq!(store.get_delivery("d1").await?, Some(retrying.clone()));
    assert_eq!(retrying.next_attempt_at, Some(at(3600)));
    assert_eq!(store.get_delivery("d2").await?, Some(pending));
    assert_eq!(store.list_attempts("d1").await?, attempts);
    assert_eq!(store.next_due_at().await?, Some(at(0)));
    assert_eq!(due_ids(&store, at(3599), 10, 10).await?, ["d2"]);
    assert_eq!(due_ids(&store, at(3600), 10, 10).await?, ["d2", "d1"]);
    let queued = store.pending_events(0, 10).await?;
    assert_eq!(ids(&queued, |q| &q.event.event.id), ["evt-2"]);
    Ok(())
}

/// The queue's queries must use the partial indexes (which needs their `WHERE` term repeated
/// exactly); otherwise they scan the whole, ever-growing delivery log.
#[tokio::test]
async fn queue_queries_use_the_partial_indexes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let (due, next, depth) = store
        .read(|conn| {
            let plan = |sql| query_plan(conn, sql);
            Ok((plan(DUE)?, plan(NEXT_DUE_AT)?, plan(DEPTH)?))
        })
        .await?;
    assert!(
        due.contains("SEARCH d USING COVERING INDEX deliveries_due"),
        "{due}"
    );
    assert!(
        due.contains("SEARCH earlier USING INDEX deliveries_open"),
        "{due}"
    );
    assert!(!due.contains("deliveries_by_subscription"), "{due}");
    assert!(next.contains("COVERING INDEX deliveries_due"), "{next}");
    assert!(depth.contains("COVERING INDEX deliveries_due"), "{depth}");
    Ok(())
}
