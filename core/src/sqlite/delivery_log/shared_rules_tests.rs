//! Tests that the SQLite delivery log follows the rules every backend shares (the pure
//! functions of [`Delivery`] and [`SubscriptionHealth`]), and of the calls added for the
//! cluster's flow: recording deliveries and reading subscription health.

use super::*;
use crate::queue::Queue;
use crate::sqlite::test_support::{TestResult, at, attempt, deliver, open};

async fn stored(store: &SqliteStore, id: &str) -> Result<Delivery> {
    store
        .get_delivery(id)
        .await?
        .ok_or_else(|| Error::Conflict(format!("delivery {id} missing")))
}

/// One step of a delivery's life, applied both to the store and to the pure model.
#[derive(Clone, Copy)]
enum Step {
    Attempt(u32, i64, u16, AttemptOutcome),
    Abandon(i64),
    Retry(i64),
}

#[tokio::test]
async fn the_store_moves_deliveries_exactly_as_the_shared_rules_do() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let retry = |s| AttemptOutcome::RetryAt(at(s));
    let scripts: Vec<(&str, Vec<Step>)> = vec![
        (
            "happy",
            vec![
                Step::Attempt(1, 1, 500, retry(60)),
                Step::Attempt(2, 60, 200, AttemptOutcome::Success),
                Step::Attempt(3, 61, 500, AttemptOutcome::Fail),
                Step::Retry(70),
                Step::Abandon(80),
            ],
        ),
        (
            "dead",
            vec![
                Step::Attempt(1, 1, 503, retry(5)),
                Step::Attempt(2, 5, 400, AttemptOutcome::Fail),
                Step::Abandon(6),
                Step::Retry(7),
                Step::Retry(3),
                Step::Attempt(3, 8, 503, retry(100)),
                Step::Abandon(9),
                Step::Attempt(1, 2, 503, retry(200)),
            ],
        ),
        (
            "untried",
            vec![
                Step::Retry(1),
                Step::Abandon(2),
                Step::Abandon(3),
                Step::Retry(4),
                Step::Attempt(1, 5, 200, AttemptOutcome::Success),
                Step::Retry(6),
            ],
        ),
    ];
    let plan = [
        ("happy", "s1", false),
        ("dead", "s2", false),
        ("untried", "s3", false),
    ];
    deliver(&store, "evt-1", &plan, at(0)).await?;

    for (id, steps) in scripts {
        let mut model = stored(&store, id).await?;
        for (index, step) in steps.into_iter().enumerate() {
            model = match step {
                Step::Attempt(number, when, code, outcome) => {
                    let made = attempt(id, number, at(when), code);
                    let answer = store.record_attempt(&made, outcome).await?;
                    let next = model.after_attempt(&made, outcome);
                    assert_eq!(answer.as_ref(), Some(&next), "{id} step {index}");
                    next
                }
                Step::Abandon(when) => {
                    store.abandon(id, "subscription deleted", at(when)).await?;
                    model.abandoned("subscription deleted", at(when))
                }
                Step::Retry(when) => {
                    let answer = store.request_retry(id, at(when)).await?;
                    let expected = model.retry_requested(at(when));
                    assert_eq!(answer.as_ref(), Some(&expected), "{id} step {index}");
                    match expected {
                        RetryRequest::Scheduled(next) | RetryRequest::AlreadyDelivered(next) => {
                            next
                        }
                    }
                }
            };
            assert_eq!(stored(&store, id).await?, model, "{id} after step {index}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn recording_deliveries_keeps_the_first_of_each_pair() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    deliver(&store, "evt-1", &[("d1", "s1", false)], at(0)).await?;
    let first = stored(&store, "d1").await?;

    let fresh = |id: &str, subscription: &str| Delivery {
        id: id.to_owned(),
        event_id: "evt-1".to_owned(),
        subscription_id: subscription.to_owned(),
        status: DeliveryStatus::Pending,
        attempt_count: 0,
        max_attempts: 5,
        next_attempt_at: None,
        last_response_code: None,
        last_error: None,
        dead_lettered_at: None,
        created_at: at(10),
        updated_at: at(10),
    };
    let changed = Delivery {
        max_attempts: 99,
        ..first.clone()
    };
    let batch = [changed, fresh("dup", "s1"), fresh("d2", "s2")];
    store.record_deliveries(&batch).await?;
    store.record_deliveries(&batch).await?;
    store.record_deliveries(&[]).await?;

    assert_eq!(stored(&store, "d1").await?, first);
    assert_eq!(store.get_delivery("dup").await?, None);
    let created = stored(&store, "d2").await?;
    // An open delivery without a time is due when it was created.
    let expected = Delivery {
        next_attempt_at: Some(at(10)),
        ..fresh("d2", "s2")
    };
    assert_eq!(created, expected);
    let listed = store
        .list_event_deliveries("evt-1", Page::default())
        .await?;
    assert_eq!(listed.total, 2);
    assert_eq!(store.due_deliveries(at(10), 10, 10).await?.len(), 2);

    let orphan = Delivery {
        event_id: "evt-unknown".to_owned(),
        ..fresh("d3", "s3")
    };
    let refused = store.record_deliveries(&[fresh("d4", "s4"), orphan]).await;
    assert!(
        matches!(&refused, Err(Error::InvalidField { field, .. }) if field == "event_id"),
        "{refused:?}"
    );
    // The batch is one transaction: nothing of it was kept.
    assert_eq!(store.get_delivery("d4").await?, None);
    Ok(())
}

#[tokio::test]
async fn health_is_kept_up_to_date_by_every_attempt() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    deliver(
        &store,
        "evt-1",
        &[("a", "s1", false), ("c", "s2", false)],
        at(0),
    )
    .await?;
    deliver(&store, "evt-2", &[("b", "s1", false)], at(0)).await?;
    assert_eq!(
        store.subscription_health("s1").await?,
        SubscriptionHealth::default()
    );

    let steps = [
        ("a", 1, 1, 500, AttemptOutcome::RetryAt(at(60))),
        ("b", 1, 2, 503, AttemptOutcome::RetryAt(at(60))),
        ("a", 2, 60, 200, AttemptOutcome::Success),
        ("b", 2, 61, 400, AttemptOutcome::Fail),
        ("c", 1, 3, 200, AttemptOutcome::Success),
        // Recorded late, made before the success: neither latest nor consecutive.
        ("b", 1, 30, 503, AttemptOutcome::RetryAt(at(60))),
    ];
    let mut model = SubscriptionHealth::default();
    for (id, number, when, code, outcome) in steps {
        store
            .record_attempt(&attempt(id, number, at(when), code), outcome)
            .await?;
        if id != "c" {
            model = model.after_attempt(at(when), outcome);
        }
        assert_eq!(store.subscription_health("s1").await?, model);
    }
    let expected = SubscriptionHealth {
        last_delivery_at: Some(at(61)),
        last_outcome: Some(DeliveryStatus::Failed),
        consecutive_failures: 1,
        last_success_at: Some(at(60)),
    };
    assert_eq!(model, expected);
    let other = store.subscription_health("s2").await?;
    assert_eq!(other.last_outcome, Some(DeliveryStatus::Success));
    assert_eq!(other.consecutive_failures, 0);

    // Abandoning makes no attempt; an attempt of no delivery changes nothing.
    store.abandon("b", "subscription deleted", at(99)).await?;
    let orphan = attempt("absent", 1, at(100), 500);
    store.record_attempt(&orphan, AttemptOutcome::Fail).await?;
    assert_eq!(store.subscription_health("s1").await?, expected);
    Ok(())
}
