//! The Cassandra delivery log while its node restarts (`scripts/cassandra.sh down`, then
//! `up`) under a steady flow of writes that, like the dispatcher, retry every write failing
//! with `Error::Storage`: afterwards every record is there, exactly as written. A test binary
//! of its own, so no other test shares the node while it is down.

#[path = "support/cassandra.rs"]
mod support;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kolbak_core::registry::Page;
use kolbak_core::{AttemptOutcome, Delivery, DeliveryLog, DeliveryStatus, Error};
use support::{TestLog, TestResult, attempt, delivery, id_at, now, plus};

/// Writers running at once.
const WRITERS: usize = 8;
/// Deliveries each writer adds once the node is back.
const AFTER_RESTART: usize = 10;
/// Longest a write may keep failing before the test gives up.
const OUTAGE_LIMIT: Duration = Duration::from_secs(300);

/// Runs `op` until it succeeds, pausing between storage failures, as the dispatcher does.
async fn retry<T, F, Fut>(failures: &AtomicUsize, mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let deadline = Instant::now() + OUTAGE_LIMIT;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(Error::Storage(_)) if Instant::now() < deadline => {
                failures.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Runs `scripts/cassandra.sh <command>`; true when it exits 0.
async fn script(command: &'static str) -> Result<bool, Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg(root.join("scripts/cassandra.sh"))
            .arg(command)
            .status()
    })
    .await??;
    Ok(status.success())
}

/// One writer: deliveries of its own subscription, each attempted twice (a retry, then a
/// success or a final failure), until `restarted` is set and `AFTER_RESTART` more are done.
/// Returns the deliveries as the shared rules say they must be stored.
async fn writer(
    log: kolbak_core::CassandraLog,
    number: usize,
    restarted: Arc<AtomicBool>,
    failures: Arc<AtomicUsize>,
) -> Result<Vec<Delivery>, Error> {
    let subscription = format!("s{number}");
    let mut written = Vec::new();
    let mut after = 0;
    while after < AFTER_RESTART {
        if restarted.load(Ordering::Relaxed) {
            after += 1;
        }
        let t0 = now();
        let id = format!("{}-{number}", id_at(t0));
        let event = format!("evt-{number}-{}", written.len());
        let model = delivery(&id, &event, &subscription, t0);
        let batch = [model.clone()];
        retry(&failures, || log.record_deliveries(&batch)).await?;
        let first = attempt(&id, 1, plus(t0, 1), 503);
        let outcome = AttemptOutcome::RetryAt(plus(t0, 5));
        let model = model.after_attempt(&first, outcome);
        retry(&failures, || log.record_attempt(&first, outcome)).await?;
        let (second, outcome) = if written.len() % 4 == 3 {
            (attempt(&id, 2, plus(t0, 5), 400), AttemptOutcome::Fail)
        } else {
            (attempt(&id, 2, plus(t0, 5), 200), AttemptOutcome::Success)
        };
        let model = model.after_attempt(&second, outcome);
        retry(&failures, || log.record_attempt(&second, outcome)).await?;
        written.push(model);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(written)
}

#[tokio::test]
async fn no_record_is_lost_while_the_node_restarts() -> TestResult {
    let Some(t) = TestLog::new().await? else {
        return Ok(());
    };
    if !script("status").await? {
        eprintln!("note: the node is not run by scripts/cassandra.sh; not restarting it");
        return t.drop_keyspace().await;
    }
    let restarted = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|n| {
            tokio::spawn(writer(
                t.log.clone(),
                n,
                Arc::clone(&restarted),
                Arc::clone(&failures),
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(script("down").await?, "scripts/cassandra.sh down failed");
    assert!(
        !support::node_reachable(),
        "the node still answers after down"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(script("up").await?, "scripts/cassandra.sh up failed");
    restarted.store(true, Ordering::Relaxed);

    let read_failures = AtomicUsize::new(0);
    let mut all = Vec::new();
    for (n, handle) in writers.into_iter().enumerate() {
        let written = handle.await??;
        let log = &t.log;
        let subscription = format!("s{n}");
        for expected in &written {
            // Reads retry too: right after the restart the driver may still be rebuilding
            // some pooled connections (a storage error, as a client of the API would see 503).
            assert_eq!(
                retry(&read_failures, || log.get_delivery(&expected.id))
                    .await?
                    .as_ref(),
                Some(expected)
            );
            assert_eq!(
                retry(&read_failures, || log.list_attempts(&expected.id))
                    .await?
                    .len(),
                2,
                "{}",
                expected.id
            );
        }
        let mut newest_first = written.clone();
        newest_first.reverse();
        let listed = log
            .list_subscription_deliveries(
                &subscription,
                None,
                Page {
                    limit: 100,
                    offset: 0,
                },
            )
            .await?;
        let mut items = listed.items;
        let mut offset = 100;
        while items.len() < newest_first.len() && offset < 10_000 {
            let page = Page { limit: 100, offset };
            let more = log
                .list_subscription_deliveries(&subscription, None, page)
                .await?;
            if more.items.is_empty() {
                break;
            }
            items.extend(more.items);
            offset += 100;
        }
        assert_eq!(items, newest_first, "{subscription}");
        // Counts may only be over (a counter update Cassandra applied but reported failed).
        assert!(
            listed.total >= written.len() as u64,
            "{subscription}: {}",
            listed.total
        );
        let failed = written
            .iter()
            .filter(|d| d.status == DeliveryStatus::Failed)
            .count();
        let health = log.subscription_health(&subscription).await?;
        assert!(health.last_delivery_at.is_some(), "{subscription}");
        assert!(
            failed > 0 || health.consecutive_failures == 0,
            "{subscription}"
        );
        all.extend(written);
    }
    eprintln!(
        "{} deliveries ({} attempts) written across the restart; {} writes retried",
        all.len(),
        all.len() * 2,
        failures.load(Ordering::Relaxed)
    );
    assert!(
        failures.load(Ordering::Relaxed) > 0,
        "the restart went unnoticed"
    );
    t.drop_keyspace().await
}
