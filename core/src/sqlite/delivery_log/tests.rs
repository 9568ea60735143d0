//! Tests of the SQLite delivery log: how attempts, abandonments and manual retries move a
//! delivery on, the attempt records, and the listings.

use super::*;
use crate::queue::Queue;
use crate::sqlite::test_support::{TestResult, at, attempt, deliver, ids, open, query_plan};

fn page(limit: u32, offset: u64) -> Page {
    Page { limit, offset }
}

async fn delivery(store: &SqliteStore, id: &str) -> Result<Delivery> {
    store
        .get_delivery(id)
        .await?
        .ok_or_else(|| Error::Conflict(format!("delivery {id} missing")))
}

#[tokio::test]
async fn each_outcome_moves_the_delivery_on() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let plan = [
        ("ok", "s1", false),
        ("retry", "s2", false),
        ("fail", "s3", false),
    ];
    deliver(&store, "evt-1", &plan, at(0)).await?;

    let success = store
        .record_attempt(&attempt("ok", 1, at(1), 204), AttemptOutcome::Success)
        .await?
        .ok_or("ok missing")?;
    assert_eq!(success.status, DeliveryStatus::Success);
    assert_eq!(success.attempt_count, 1);
    assert_eq!(success.next_attempt_at, None);
    assert_eq!(success.last_response_code, Some(204));
    assert_eq!(success.last_error, None);
    assert_eq!(success.dead_lettered_at, None);
    assert_eq!(success.updated_at, at(1));
    assert_eq!(success.created_at, at(0));
    assert_eq!(delivery(&store, "ok").await?, success);

    let mut timeout = attempt("retry", 1, at(2), 0);
    timeout.response_code = None;
    timeout.response_body = None;
    timeout.error = Some("timed out after 15s".to_owned());
    let retrying = store
        .record_attempt(&timeout, AttemptOutcome::RetryAt(at(300)))
        .await?
        .ok_or("retry missing")?;
    assert_eq!(retrying.status, DeliveryStatus::Retrying);
    assert_eq!(retrying.attempt_count, 1);
    assert_eq!(retrying.next_attempt_at, Some(at(300)));
    assert_eq!(retrying.last_response_code, None);
    assert_eq!(retrying.last_error.as_deref(), Some("timed out after 15s"));
    assert_eq!(delivery(&store, "retry").await?, retrying);

    let failed = store
        .record_attempt(&attempt("fail", 1, at(3), 400), AttemptOutcome::Fail)
        .await?
        .ok_or("fail missing")?;
    assert_eq!(failed.status, DeliveryStatus::Failed);
    assert_eq!(failed.next_attempt_at, None);
    assert_eq!(failed.dead_lettered_at, Some(at(3)));
    assert_eq!(failed.last_response_code, Some(400));
    assert_eq!(delivery(&store, "fail").await?, failed);

    // A retry that fails again moves the time on; the last attempt of a retrying one fails it.
    let again = AttemptOutcome::RetryAt(at(900));
    let retrying = store
        .record_attempt(&attempt("retry", 2, at(300), 503), again)
        .await?
        .ok_or("retry missing")?;
    assert_eq!(retrying.next_attempt_at, Some(at(900)));
    assert_eq!(retrying.last_error, None);
    let failed = store
        .record_attempt(&attempt("retry", 3, at(900), 503), AttemptOutcome::Fail)
        .await?
        .ok_or("retry missing")?;
    assert_eq!(failed.status, DeliveryStatus::Failed);
    assert_eq!(failed.attempt_count, 3);
    assert_eq!(failed.dead_lettered_at, Some(at(900)));

    // No delivery, no record.
    let orphan = attempt("absent", 1, at(4), 200);
    assert_eq!(
        store
            .record_attempt(&orphan, AttemptOutcome::Success)
            .await?,
        None
    );
    assert!(store.list_attempts("absent").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_success_is_final() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    deliver(&store, "evt-1", &[("d1", "s1", false)], at(0)).await?;
    let success = store
        .record_attempt(&attempt("d1", 1, at(1), 200), AttemptOutcome::Success)
        .await?
        .ok_or("d1 missing")?;

    // A late report of another attempt is kept, but the delivery stays delivered.
    let late = store
        .record_attempt(
            &attempt("d1", 2, at(5), 500),
            AttemptOutcome::RetryAt(at(60)),
        )
        .await?
        .ok_or("d1 missing")?;
    let expected = Delivery {
        attempt_count: 2,
        updated_at: at(5),
        ..success.clone()
    };
    assert_eq!(late, expected);
    let later = store
        .record_attempt(&attempt("d1", 3, at(6), 400), AttemptOutcome::Fail)
        .await?
        .ok_or("d1 missing")?;
    assert_eq!(later.status, DeliveryStatus::Success);
    assert_eq!(later.dead_lettered_at, None);
    assert_eq!(later.last_response_code, Some(200));
    assert_eq!(store.list_attempts("d1").await?.len(), 3);
    assert!(store.due_deliveries(at(1000), 10, 10).await?.is_empty());

    // An abandoned delivery whose in-flight attempt then succeeds was delivered after all.
    deliver(&store, "evt-2", &[("d2", "s1", false)], at(0)).await?;
    store.abandon("d2", "subscription deleted", at(1)).await?;
    let delivered = store
        .record_attempt(&attempt("d2", 1, at(0), 200), AttemptOutcome::Success)
        .await?
        .ok_or("d2 missing")?;
    assert_eq!(delivered.status, DeliveryStatus::Success);
    assert_eq!(delivered.dead_lettered_at, None);
    Ok(())
}

#[tokio::test]
async fn a_redone_attempt_replaces_its_first_record() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    deliver(&store, "evt-1", &[("d1", "s1", false)], at(0)).await?;
    store
        .record_attempt(
            &attempt("d1", 1, at(1), 500),
            AttemptOutcome::RetryAt(at(10)),
        )
        .await?;
    let redo = attempt("d1", 1, at(2), 503);
    let redone = store
        .record_attempt(&redo, AttemptOutcome::RetryAt(at(20)))
        .await?
        .ok_or("d1 missing")?;
    assert_eq!(redone.attempt_count, 1);
    assert_eq!(redone.next_attempt_at, Some(at(20)));
    assert_eq!(redone.last_response_code, Some(503));
    assert_eq!(store.list_attempts("d1").await?, [redo]);
    Ok(())
}

#[tokio::test]
async fn attempts_read_back_whole_oldest_first() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    deliver(&store, "evt-1", &[("d1", "s1", false)], at(0)).await?;
    let mut refused = attempt("d1", 1, at(0), 0);
    refused.response_code = None;
    refused.response_body = None;
    refused.error = Some("connection refused".to_owned());
    refused.duration_ms = 3;
    let mut big = attempt("d1", 2, at(5), 502);
    // Longer than the cap, with multi-byte characters straddling it.
    big.response_body = Some("ü".repeat(MAX_STORED_RESPONSE_BODY));
    big.duration_ms = 15_000;
    let mut last = attempt("d1", 3, at(65), 200);
    last.response_body = Some(String::new());
    // Recorded out of order; listed by number.
    let retry = AttemptOutcome::RetryAt(at(100));
    store.record_attempt(&big, retry).await?;
    store.record_attempt(&refused, retry).await?;
    store.record_attempt(&last, AttemptOutcome::Success).await?;

    let attempts = store.list_attempts("d1").await?;
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[0], refused);
    assert_eq!(attempts[2], last);
    let stored = attempts[1].response_body.clone().unwrap_or_default();
    assert_eq!(stored.len(), MAX_STORED_RESPONSE_BODY);
    assert_eq!(stored, "ü".repeat(MAX_STORED_RESPONSE_BODY / 2));
    let truncated = Attempt {
        response_body: Some(stored),
        ..big
    };
    assert_eq!(attempts[1], truncated);
    assert_eq!(delivery(&store, "d1").await?.attempt_count, 3);
    Ok(())
}

#[tokio::test]
async fn subscription_listings_are_newest_first_filtered_and_counted() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    for i in 0..5 {
        let (mine, other) = (format!("d{i}"), format!("x{i}"));
        let plan = [(mine.as_str(), "s1", false), (other.as_str(), "s2", false)];
        deliver(&store, &format!("evt-{i}"), &plan, at(i)).await?;
    }
    store
        .record_attempt(&attempt("d1", 1, at(9), 200), AttemptOutcome::Success)
        .await?;
    store
        .record_attempt(&attempt("d3", 1, at(9), 200), AttemptOutcome::Success)
        .await?;
    store
        .record_attempt(
            &attempt("d4", 1, at(9), 500),
            AttemptOutcome::RetryAt(at(99)),
        )
        .await?;

    let all = store
        .list_subscription_deliveries("s1", None, page(100, 0))
        .await?;
    assert_eq!(ids(&all.items, |d| &d.id), ["d4", "d3", "d2", "d1", "d0"]);
    assert_eq!(all.total, 5);
    let second = store
        .list_subscription_deliveries("s1", None, page(2, 2))
        .await?;
    assert_eq!(ids(&second.items, |d| &d.id), ["d2", "d1"]);
    assert_eq!(second.total, 5);
    let beyond = store
        .list_subscription_deliveries("s1", None, page(2, 10))
        .await?;
    assert!(beyond.items.is_empty());
    assert_eq!(beyond.total, 5);

    let filtered = |status| store.list_subscription_deliveries("s1", Some(status), page(1, 0));
    let success = filtered(DeliveryStatus::Success).await?;
    assert_eq!(ids(&success.items, |d| &d.id), ["d3"]);
    assert_eq!(success.total, 2);
    let pending = filtered(DeliveryStatus::Pending).await?;
    assert_eq!(ids(&pending.items, |d| &d.id), ["d2"]);
    assert_eq!(pending.total, 2);
    let retrying = filtered(DeliveryStatus::Retrying).await?;
    assert_eq!(ids(&retrying.items, |d| &d.id), ["d4"]);
    assert_eq!(retrying.total, 1);
    let failed = filtered(DeliveryStatus::Failed).await?;
    assert!(failed.items.is_empty());
    assert_eq!(failed.total, 0);

    let other = store
        .list_subscription_deliveries("s2", None, page(100, 0))
        .await?;
    assert_eq!(ids(&other.items, |d| &d.id), ["x4", "x3", "x2", "x1", "x0"]);
    let none = store
        .list_subscription_deliveries("s9", None, page(100, 0))
        .await?;
    assert!(none.items.is_empty());
    assert_eq!(none.total, 0);
    Ok(())
}

#[tokio::test]
async fn event_listings_are_newest_first_and_counted() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let plan = [("d1", "s3", false), ("d2", "s1", false), ("d3", "s2", true)];
    deliver(&store, "evt-1", &plan, at(0)).await?;
    deliver(&store, "evt-2", &[("d4", "s1", false)], at(1)).await?;

    let all = store.list_event_deliveries("evt-1", page(100, 0)).await?;
    assert_eq!(ids(&all.items, |d| &d.id), ["d3", "d2", "d1"]);
    assert_eq!(all.total, 3);
    assert!(all.items.iter().all(|d| d.event_id == "evt-1"));
    let last = store.list_event_deliveries("evt-1", page(2, 2)).await?;
    assert_eq!(ids(&last.items, |d| &d.id), ["d1"]);
    assert_eq!(last.total, 3);
    let none = store.list_event_deliveries("evt-9", page(10, 0)).await?;
    assert!(none.items.is_empty());
    assert_eq!(none.total, 0);
    Ok(())
}

#[tokio::test]
async fn manual_retries_depend_on_the_status() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let plan = [
        ("done", "s1", false),
        ("dead", "s2", false),
        ("untried", "s3", false),
        ("waiting", "s4", false),
        ("new", "s5", false),
    ];
    deliver(&store, "evt-1", &plan, at(0)).await?;
    assert_eq!(store.request_retry("absent", at(10)).await?, None);

    let done = store
        .record_attempt(&attempt("done", 1, at(1), 200), AttemptOutcome::Success)
        .await?
        .ok_or("done missing")?;
    let answer = store.request_retry("done", at(10)).await?;
    assert_eq!(answer, Some(RetryRequest::AlreadyDelivered(done.clone())));
    assert_eq!(delivery(&store, "done").await?, done);

    for number in 1..=3 {
        let outcome = if number == 3 {
            AttemptOutcome::Fail
        } else {
            AttemptOutcome::RetryAt(at(number.into()))
        };
        let when = at(i64::from(number) - 1);
        store
            .record_attempt(&attempt("dead", number, when, 500), outcome)
            .await?;
    }
    let Some(RetryRequest::Scheduled(dead)) = store.request_retry("dead", at(10)).await? else {
        panic!("the failed delivery should be scheduled");
    };
    assert_eq!(dead.status, DeliveryStatus::Retrying);
    assert_eq!(dead.attempt_count, 3);
    assert_eq!(dead.max_attempts, 4);
    assert_eq!(dead.next_attempt_at, Some(at(10)));
    assert_eq!(dead.dead_lettered_at, None);
    assert_eq!(dead.updated_at, at(10));
    assert_eq!(delivery(&store, "dead").await?, dead);

    store
        .abandon("untried", "subscription inactive", at(2))
        .await?;
    let Some(RetryRequest::Scheduled(untried)) = store.request_retry("untried", at(10)).await?
    else {
        panic!("the abandoned delivery should be scheduled");
    };
    assert_eq!(untried.status, DeliveryStatus::Pending);
    assert_eq!(untried.max_attempts, 1);
    assert_eq!(untried.next_attempt_at, Some(at(10)));

    let later = AttemptOutcome::RetryAt(at(3600));
    store
        .record_attempt(&attempt("waiting", 1, at(1), 503), later)
        .await?;
    let Some(RetryRequest::Scheduled(waiting)) = store.request_retry("waiting", at(10)).await?
    else {
        panic!("the retrying delivery should be scheduled");
    };
    assert_eq!(waiting.status, DeliveryStatus::Retrying);
    assert_eq!(waiting.next_attempt_at, Some(at(10)));
    assert_eq!(waiting.max_attempts, 3);

    // Already due earlier: bringing it "forward" to now would delay it.
    let Some(RetryRequest::Scheduled(new)) = store.request_retry("new", at(10)).await? else {
        panic!("the pending delivery should be scheduled");
    };
    assert_eq!(new.status, DeliveryStatus::Pending);
    assert_eq!(new.next_attempt_at, Some(at(0)));

    let due = store.due_deliveries(at(10), 10, 10).await?;
    assert_eq!(ids(&due, |d| &d.id), ["new", "dead", "untried", "waiting"]);
    Ok(())
}

#[tokio::test]
async fn abandoning_fails_open_deliveries_only() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let plan = [("open", "s1", false), ("done", "s2", false)];
    deliver(&store, "evt-1", &plan, at(0)).await?;
    let done = store
        .record_attempt(&attempt("done", 1, at(1), 200), AttemptOutcome::Success)
        .await?
        .ok_or("done missing")?;

    store.abandon("open", "subscription deleted", at(5)).await?;
    store.abandon("done", "subscription deleted", at(5)).await?;
    store
        .abandon("absent", "subscription deleted", at(5))
        .await?;
    let abandoned = delivery(&store, "open").await?;
    assert_eq!(abandoned.status, DeliveryStatus::Failed);
    assert_eq!(
        abandoned.last_error.as_deref(),
        Some("subscription deleted")
    );
    assert_eq!(abandoned.dead_lettered_at, Some(at(5)));
    assert_eq!(abandoned.updated_at, at(5));
    assert_eq!(abandoned.next_attempt_at, None);
    assert_eq!(abandoned.attempt_count, 0);
    assert_eq!(delivery(&store, "done").await?, done);

    // Abandoning twice keeps the first time and reason.
    store.abandon("open", "again", at(9)).await?;
    assert_eq!(delivery(&store, "open").await?, abandoned);
    assert_eq!(store.depth().await?.pending, 0);
    Ok(())
}

#[tokio::test]
async fn listings_walk_their_indexes_in_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let (by_subscription, by_event) = store
        .read(|conn| {
            let plan = |sql| query_plan(conn, sql);
            Ok((
                plan(LIST_SUBSCRIPTION_DELIVERIES)?,
                plan(LIST_EVENT_DELIVERIES)?,
            ))
        })
        .await?;
    assert!(
        by_subscription.contains("deliveries_by_subscription"),
        "{by_subscription}"
    );
    assert!(
        !by_subscription.contains("TEMP B-TREE"),
        "{by_subscription}"
    );
    assert!(by_event.contains("deliveries_by_event"), "{by_event}");
    assert!(!by_event.contains("TEMP B-TREE"), "{by_event}");
    Ok(())
}
