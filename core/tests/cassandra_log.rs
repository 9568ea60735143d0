//! The Cassandra delivery log against a real node (`scripts/cassandra.sh up`): migrations,
//! every query shape written and read back, the shared state machine, listings across pages
//! and days, subscription health and TTLs. Each test works in a keyspace of its own.

#[path = "support/cassandra.rs"]
mod support;

use chrono::{DateTime, TimeDelta, Utc};
use kolbak_core::EventArchive;
use kolbak_core::cassandra::{CassandraLog, SCHEMA_VERSION};
use kolbak_core::registry::Page;
use kolbak_core::{
    AttemptOutcome, Delivery, DeliveryLog, DeliveryStatus, Error, RetryRequest, SubscriptionHealth,
};
use support::{TestLog, TestResult, attempt, config, delivery, id_at, now, plus};

fn page(limit: u32, offset: u64) -> Page {
    Page { limit, offset }
}

async fn stored(log: &CassandraLog, id: &str) -> Result<Delivery, Box<dyn std::error::Error>> {
    Ok(log.get_delivery(id).await?.ok_or(format!("{id} missing"))?)
}

#[tokio::test]
async fn migrations_are_idempotent_and_versioned() -> TestResult {
    let Some(t) = TestLog::new().await? else {
        return Ok(());
    };
    CassandraLog::migrate(&t.config).await?;
    CassandraLog::migrate(&t.config).await?;
    let versions = format!("SELECT version FROM {}.schema_migrations", t.keyspace());
    let rows = t
        .session
        .query_unpaged(versions, &[])
        .await?
        .into_rows_result()?;
    let mut versions: Vec<(i32,)> = rows.rows()?.collect::<Result<_, _>>()?;
    versions.sort_unstable();
    let every: Vec<(i32,)> = (1..=SCHEMA_VERSION).map(|v| (v,)).collect();
    assert_eq!(versions, every);
    // Connecting with migration on start is fine too.
    let again = kolbak_core::CassandraConfig {
        cassandra_migrate_on_start: true,
        ..t.config.clone()
    };
    CassandraLog::connect(&again).await?;

    // A keyspace without the schema is refused with advice; a newer schema is refused.
    let bare = config(&format!("{}_bare", t.keyspace()));
    let refused = CassandraLog::connect(&bare).await;
    assert!(
        matches!(&refused, Err(Error::Configuration(m)) if m.contains("kolbak migrate")),
        "{refused:?}"
    );
    let newer = format!(
        "INSERT INTO {}.schema_migrations (version, description) VALUES (99, 'future')",
        t.keyspace()
    );
    t.session.query_unpaged(newer, &[]).await?;
    for result in [
        CassandraLog::connect(&t.config).await.map(drop),
        CassandraLog::migrate(&t.config).await,
    ] {
        assert!(
            matches!(&result, Err(Error::Configuration(m)) if m.contains("version 99")),
            "{result:?}"
        );
    }
    t.drop_keyspace().await
}

#[tokio::test]
async fn deliveries_are_created_once_per_event_and_subscription() -> TestResult {
    let Some(t) = TestLog::new().await? else {
        return Ok(());
    };
    let log = &t.log;
    let t0 = now();
    let first = delivery(&id_at(t0), "evt-1", "s1", t0);
    let second = delivery(&id_at(plus(t0, 1)), "evt-1", "s2", t0);
    log.record_deliveries(&[first.clone(), second.clone()])
        .await?;
    assert_eq!(stored(log, &first.id).await?, first);
    assert_eq!(stored(log, &second.id).await?, second);

    // Fanned out again: new ids for the same pairs create nothing; a repeat changes nothing,
    // not even a delivery that moved on meanwhile.
    let moved = log
        .record_attempt(
            &attempt(&first.id, 1, plus(t0, 2), 200),
            AttemptOutcome::Success,
        )
        .await?
        .ok_or("first missing")?;
    let again = delivery(&id_at(plus(t0, 3)), "evt-1", "s1", plus(t0, 3));
    log.record_deliveries(&[again.clone(), first.clone(), second.clone()])
        .await?;
    assert_eq!(log.get_delivery(&again.id).await?, None);
    assert_eq!(stored(log, &first.id).await?, moved);

    let by_event = log.list_event_deliveries("evt-1", page(10, 0)).await?;
    let ids: Vec<&str> = by_event.items.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, [second.id.as_str(), first.id.as_str()]);
    assert_eq!(by_event.total, 2);
    let tail = log.list_event_deliveries("evt-1", page(1, 1)).await?;
    assert_eq!(tail.items, std::slice::from_ref(&moved));
    assert_eq!(tail.total, 2);
    let none = log.list_event_deliveries("evt-9", page(10, 0)).await?;
    assert_eq!((none.items.len(), none.total), (0, 0));
    let s1 = log
        .list_subscription_deliveries("s1", None, page(10, 0))
        .await?;
    assert_eq!((s1.items, s1.total), (vec![moved], 1));
    let s1_pending = log
        .list_subscription_deliveries("s1", Some(DeliveryStatus::Pending), page(10, 0))
        .await?;
    assert_eq!((s1_pending.items.len(), s1_pending.total), (0, 0));
    t.drop_keyspace().await
}

/// One step of a delivery's life, applied both to the log and to the pure model.
#[derive(Clone, Copy)]
enum Step {
    Attempt(u32, i64, u16, AttemptOutcome),
    Abandon(i64),
    Retry(i64),
}

#[tokio::test]
async fn deliveries_move_exactly_as_the_shared_rules_say() -> TestResult {
    let Some(t) = TestLog::new().await? else {
        return Ok(());
    };
    let log = &t.log;
    let t0 = now();
    let at = |s| plus(t0, s);
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
    for (index, (name, steps)) in scripts.into_iter().enumerate() {
        let id = format!("{}-{name}", id_at(t0));
        let mut model = delivery(&id, "evt-1", &format!("s{index}"), t0);
        log.record_deliveries(std::slice::from_ref(&model)).await?;
        for (n, step) in steps.into_iter().enumerate() {
            model = match step {
                Step::Attempt(number, when, code, outcome) => {
                    let made = attempt(&id, number, at(when), code);
                    let next = model.after_attempt(&made, outcome);
                    assert_eq!(
                        log.record_attempt(&made, outcome).await?,
                        Some(next.clone())
                    );
                    next
                }
                Step::Abandon(when) => {
                    log.abandon(&id, "subscription deleted", at(when)).await?;
                    model.abandoned("subscription deleted", at(when))
                }
                Step::Retry(when) => {
                    let expected = model.retry_requested(at(when));
                    let answer = log.request_retry(&id, at(when)).await?;
                    assert_eq!(answer.as_ref(), Some(&expected), "{name} step {n}");
                    match expected {
                        RetryRequest::Scheduled(next) | RetryRequest::AlreadyDelivered(next) => {
                            next
                        }
                    }
                }
            };
            assert_eq!(stored(log, &id).await?, model, "{name} after step {n}");
        }
        // The listing rows and the counts followed every move.
        let sub = format!("s{index}");
        let listed = log
            .list_subscription_deliveries(&sub, Some(model.status), page(10, 0))
            .await?;
        assert_eq!(
            (listed.items, listed.total),
            (vec![model.clone()], 1),
            "{name}"
        );
        for other in [
            DeliveryStatus::Pending,
            DeliveryStatus::Retrying,
            DeliveryStatus::Success,
            DeliveryStatus::Failed,
        ] {
            if other != model.status {
                let empty = log
                    .list_subscription_deliveries(&sub, Some(other), page(10, 0))
                    .await?;
                assert_eq!((empty.items.len(), empty.total), (0, 0), "{name} {other:?}");
            }
        }
    }
    assert_eq!(log.request_retry("absent", at(1)).await?, None);
    log.abandon("absent", "gone", at(1)).await?;
    assert_eq!(log.get_delivery("absent").await?, None);
    let orphan = attempt("absent", 1, at(1), 200);
    assert_eq!(
        log.record_attempt(&orphan, AttemptOutcome::Success).await?,
        None
    );
    assert!(log.list_attempts("absent").await?.is_empty());
    t.drop_keyspace().await
}

#[tokio::test]
async fn attempts_read_back_whole_oldest_first() -> TestResult {
    let Some(t) = TestLog::new().await? else {
        return Ok(());
    };
    let log = &t.log;
    let t0 = now();
    let id = id_at(t0);
    log.record_deliveries(&[delivery(&id, "evt-1", "s1", t0)])
        .await?;
    let mut refused = attempt(&id, 1, plus(t0, 1), 0);
    (refused.response_code, refused.response_body) = (None, None);
    refused.error = Some("connection refused".to_owned());
    let mut big = attempt(&id, 2, plus(t0, 5), 502);
    big.response_body = Some("ü".repeat(kolbak_core::delivery::MAX_STORED_RESPONSE_BODY));
    let last = attempt(&id, 3, plus(t0, 65), 200);
    let retry = AttemptOutcome::RetryAt(plus(t0, 100));
    // Recorded out of order; listed by number. A repeated call changes nothing.
    log.record_attempt(&big, retry).await?;
    log.record_attempt(&refused, retry).await?;
    log.record_attempt(&last, AttemptOutcome::Success).await?;
    log.record_attempt(&last, AttemptOutcome::Success).await?;
    assert_eq!(
        log.list_attempts(&id).await?,
        [refused.clone(), big.stored(), last.clone()]
    );

    // A redone attempt (same number, later) replaces the first record of it.
    let redo = attempt(&id, 3, plus(t0, 70), 204);
    log.record_attempt(&redo, AttemptOutcome::Success).await?;
    assert_eq!(log.list_attempts(&id).await?, [refused, big.stored(), redo]);
    let health = log.subscription_health("s1").await?;
    let expected = SubscriptionHealth {
        last_delivery_at: Some(plus(t0, 70)),
        last_outcome: Some(DeliveryStatus::Success),
        consecutive_failures: 0,
        last_success_at: Some(plus(t0, 70)),
    };
    assert_eq!(health, expected);
    t.drop_keyspace().await
}

/// Deliveries of `subscription` created `days_ago` days back, `per_day` of them a second
/// apart, newest first.
fn spread(subscription: &str, t0: DateTime<Utc>, days_ago: &[i64], per_day: i64) -> Vec<Delivery> {
    let mut all = Vec::new();
    for days in days_ago {
        for n in 0..per_day {
            let created = t0 - TimeDelta::days(*days) + TimeDelta::seconds(n);
            let event = format!("evt-{subscription}-{days}-{n}");
            all.push(delivery(&id_at(created), &event, subscription, created));
        }
    }
    all.sort_by(|a, b| b.id.cmp(&a.id));
    all
}

#[tokio::test]
async fn subscription_listings_page_across_days_newest_first() -> TestResult {
    let Some(t) = TestLog::new().await? else {
        return Ok(());
    };
    let log = &t.log;
    let t0 = now() - TimeDelta::hours(1);
    let all = spread("s1", t0, &[0, 1, 2, 6, 29], 3);
    log.record_deliveries(&all).await?;
    log.record_deliveries(&spread("s2", t0, &[0, 3], 2)).await?;
    // Every third delivery succeeds, every fifth fails for good.
    let mut expected = Vec::new();
    for (n, d) in all.iter().enumerate() {
        let outcome = match n {
            n if n % 3 == 0 => AttemptOutcome::Success,
            n if n % 5 == 0 => AttemptOutcome::Fail,
            _ => AttemptOutcome::RetryAt(plus(t0, 600)),
        };
        let made = attempt(&d.id, 1, plus(d.created_at, 1), 500);
        expected.push(log.record_attempt(&made, outcome).await?.ok_or("missing")?);
    }

    let mut walked = Vec::new();
    for offset in (0..20).step_by(4) {
        let listing = log
            .list_subscription_deliveries("s1", None, page(4, offset))
            .await?;
        assert_eq!(listing.total, 15);
        walked.extend(listing.items);
    }
    assert_eq!(walked, expected);
    for status in [
        DeliveryStatus::Success,
        DeliveryStatus::Failed,
        DeliveryStatus::Retrying,
    ] {
        let wanted: Vec<Delivery> = expected
            .iter()
            .filter(|d| d.status == status)
            .cloned()
            .collect();
        let mut walked = Vec::new();
        for offset in (0..wanted.len() as u64 + 2).step_by(2) {
            let listing = log
                .list_subscription_deliveries("s1", Some(status), page(2, offset))
                .await?;
            assert_eq!(listing.total, wanted.len() as u64, "{status:?}");
            walked.extend(listing.items);
        }
        assert_eq!(walked, wanted, "{status:?}");
    }
    let pending = log
        .list_subscription_deliveries("s1", Some(DeliveryStatus::Pending), page(10, 0))
        .await?;
    assert_eq!((pending.items.len(), pending.total), (0, 0));
    let other = log
        .list_subscription_deliveries("s2", None, page(100, 0))
        .await?;
    assert_eq!((other.items.len(), other.total), (4, 4));
    let beyond = log
        .list_subscription_deliveries("s1", None, page(10, 100))
        .await?;
    assert_eq!((beyond.items.len(), beyond.total), (0, 15));
    let nobody = log
        .list_subscription_deliveries("s9", None, page(10, 0))
        .await?;
    assert_eq!((nobody.items.len(), nobody.total), (0, 0));
    t.drop_keyspace().await
}

#[tokio::test]
async fn health_is_kept_by_every_attempt() -> TestResult {
    let Some(t) = TestLog::new().await? else {
        return Ok(());
    };
    let log = &t.log;
    let t0 = now();
    let at = |s| plus(t0, s);
    let (a, b, c) = (id_at(t0), id_at(at(1)), id_at(at(2)));
    log.record_deliveries(&[
        delivery(&a, "evt-1", "s1", t0),
        delivery(&b, "evt-2", "s1", t0),
        delivery(&c, "evt-1", "s2", t0),
    ])
    .await?;
    assert_eq!(
        log.subscription_health("s1").await?,
        SubscriptionHealth::default()
    );
    let steps = [
        (&a, 1, 1, 500, AttemptOutcome::RetryAt(at(60))),
        (&b, 1, 2, 503, AttemptOutcome::RetryAt(at(60))),
        (&a, 2, 60, 200, AttemptOutcome::Success),
        (&b, 2, 61, 400, AttemptOutcome::Fail),
        (&c, 1, 3, 200, AttemptOutcome::Success),
        (&b, 1, 30, 503, AttemptOutcome::RetryAt(at(60))),
    ];
    let mut model = SubscriptionHealth::default();
    for (id, number, when, code, outcome) in steps {
        log.record_attempt(&attempt(id, number, at(when), code), outcome)
            .await?;
        if *id != c {
            model = model.after_attempt(at(when), outcome);
        }
        assert_eq!(log.subscription_health("s1").await?, model);
    }
    assert_eq!(model.consecutive_failures, 1);
    assert_eq!(model.last_outcome, Some(DeliveryStatus::Failed));
    let s2 = log.subscription_health("s2").await?;
    assert_eq!(
        (s2.last_outcome, s2.consecutive_failures),
        (Some(DeliveryStatus::Success), 0)
    );
    t.drop_keyspace().await
}

/// `SELECT TTL(column)` of the row `key` of `table`.
async fn ttl(
    t: &TestLog,
    table: &str,
    column: &str,
    key: &str,
) -> Result<i32, Box<dyn std::error::Error>> {
    let query = format!(
        "SELECT TTL({column}) FROM {}.{table} WHERE {key}",
        t.keyspace()
    );
    let rows = t
        .session
        .query_unpaged(query, &[])
        .await?
        .into_rows_result()?;
    let (ttl,): (Option<i32>,) = rows.first_row()?;
    Ok(ttl.ok_or(format!("no TTL on {table}.{column}"))?)
}

#[tokio::test]
async fn every_log_row_expires() -> TestResult {
    let Some(t) = TestLog::new().await? else {
        return Ok(());
    };
    let log = &t.log;
    let t0 = now();
    let id = id_at(t0);
    let d = delivery(&id, "evt-1", "s1", t0);
    log.record_deliveries(std::slice::from_ref(&d)).await?;
    log.record_attempt(&attempt(&id, 1, t0, 200), AttemptOutcome::Success)
        .await?;

    let retention = i32::try_from(t.config.log_retention.as_secs())?;
    let day = 86_400;
    let date = t0.date_naive();
    let rows = [
        ("deliveries", "status", format!("id = '{id}'")),
        ("deliveries", "indexed_status", format!("id = '{id}'")),
        (
            "delivery_keys",
            "delivery_id",
            "event_id = 'evt-1' AND subscription_id = 's1'".to_owned(),
        ),
        (
            "deliveries_by_subscription",
            "created_at",
            format!("subscription_id = 's1' AND day = '{date}'"),
        ),
        (
            "deliveries_by_subscription_status",
            "created_at",
            format!("subscription_id = 's1' AND status = 'success' AND day = '{date}'"),
        ),
        (
            "deliveries_by_event",
            "subscription_id",
            "event_id = 'evt-1'".to_owned(),
        ),
        (
            "attempts",
            "attempted_at",
            format!("delivery_id = '{id}' AND number = 1"),
        ),
    ];
    // A delivery's rows expire together, the retention after the end of its creation day.
    let until_midnight = {
        let midnight = date
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .ok_or("date")?;
        i32::try_from((midnight.and_utc() - Utc::now()).num_seconds())?
    };
    for (table, column, key) in rows {
        let left = ttl(&t, table, column, &key).await?;
        assert!(left > 0 && left <= retention + day, "{table}: {left}");
        assert!(
            (left - (retention + until_midnight)).abs() <= 60,
            "{table}: {left}"
        );
    }
    let health = ttl(
        &t,
        "subscription_health",
        "last_outcome",
        "subscription_id = 's1'",
    )
    .await?;
    assert!(health > retention - 60 && health <= retention, "{health}");
    t.drop_keyspace().await
}

#[tokio::test]
async fn events_are_archived_for_manual_retries() -> TestResult {
    let Some(t) = TestLog::new().await? else {
        return Ok(());
    };
    let accepted = kolbak_core::NewEvent {
        id: Some("evt-archived".into()),
        event: "order.created".into(),
        event_time: None,
        source: Some("shop".into()),
        payload: serde_json::json!({"total": 42}),
        ordering_key: Some("customer-7".into()),
    }
    .accept(Utc::now())?;
    assert_eq!(t.log.archived_event("evt-archived").await?, None);
    t.log.archive_event(&accepted, Utc::now()).await?;
    // Storing it again (a repeated fan-out) is harmless.
    t.log.archive_event(&accepted, Utc::now()).await?;
    assert_eq!(t.log.archived_event("evt-archived").await?, Some(accepted));
    Ok(())
}
