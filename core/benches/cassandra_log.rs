//! Attempts logged per second by the Cassandra delivery log against a real node
//! (`scripts/cassandra.sh up`), with their latency.
//!
//! ```text
//! cargo bench -p kolbak-core --bench cassandra_log
//! ```
//!
//! Creates `KOLBAK_BENCH_DELIVERIES` deliveries (default 5,000, over 100 subscriptions) in a
//! keyspace of its own, then records 4 attempts of each (3 retries and a success: 20,000 by
//! default) from `KOLBAK_BENCH_CONCURRENCY` concurrent tasks (default 64), each task taking
//! one delivery at a time and recording its attempts in order, as a dispatcher does. Prints
//! throughput and latency percentiles of `record_deliveries` (per delivery) and
//! `record_attempt`, then drops the keyspace. `KOLBAK_CASSANDRA_NODES` picks the node.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{SubsecRound, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use kolbak_core::cassandra::{CassandraConfig, CassandraLog};
use kolbak_core::{Attempt, AttemptOutcome, Delivery, DeliveryLog, DeliveryStatus};
use tokio::sync::Mutex;

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn report(what: &str, count: usize, elapsed: Duration, mut latencies: Vec<Duration>) {
    latencies.sort();
    println!(
        "{what}: {count} in {:.2} s = {:.0}/s; latency ms p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
}

fn delivery(n: usize, subscriptions: usize) -> Delivery {
    let now = Utc::now().trunc_subsecs(3);
    let id = ulid::Ulid::new().to_string().to_lowercase();
    Delivery {
        id,
        event_id: format!("bench-evt-{n}"),
        subscription_id: format!("bench-sub-{}", n % subscriptions),
        status: DeliveryStatus::Pending,
        attempt_count: 0,
        max_attempts: 8,
        next_attempt_at: Some(now),
        last_response_code: None,
        last_error: None,
        dead_lettered_at: None,
        created_at: now,
        updated_at: now,
    }
}

async fn run() -> Result<(), Failure> {
    let deliveries = setting("KOLBAK_BENCH_DELIVERIES", 5_000);
    let concurrency = setting("KOLBAK_BENCH_CONCURRENCY", 64).max(1);
    let subscriptions = 100;
    let nodes = std::env::var("KOLBAK_CASSANDRA_NODES").unwrap_or_else(|_| "127.0.0.1:9042".into());
    let config = CassandraConfig {
        cassandra_nodes: nodes.split(',').map(str::to_owned).collect(),
        cassandra_keyspace: format!("kolbak_bench_{:08x}", rand::random::<u32>()),
        ..CassandraConfig::default()
    };
    println!(
        "Cassandra log benchmark: nodes {nodes}, keyspace {}, {deliveries} deliveries x 4 \
         attempts, concurrency {concurrency}, consistency {}",
        config.cassandra_keyspace, config.cassandra_consistency
    );
    CassandraLog::migrate(&config).await?;
    let log = CassandraLog::connect(&config).await?;
    let all: Vec<Delivery> = (0..deliveries)
        .map(|n| delivery(n, subscriptions))
        .collect();

    // Creation: one delivery per call, `concurrency` calls at once.
    let started = Instant::now();
    let created: Vec<Duration> = stream::iter(all.iter().cloned())
        .map(|d| {
            let log = log.clone();
            async move {
                let t = Instant::now();
                log.record_deliveries(std::slice::from_ref(&d)).await?;
                Ok::<_, Failure>(t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    report(
        "record_deliveries (per delivery)",
        deliveries,
        started.elapsed(),
        created,
    );

    // Attempts: each task records a delivery's 4 attempts in order, then takes the next.
    let queue = Arc::new(Mutex::new(all.clone()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (log, queue) = (log.clone(), Arc::clone(&queue));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let Some(d) = queue.lock().await.pop() else {
                        return Ok::<_, Failure>(latencies);
                    };
                    for number in 1..=4_u32 {
                        let at = d.created_at + TimeDelta::seconds(i64::from(number));
                        let outcome = if number == 4 {
                            AttemptOutcome::Success
                        } else {
                            AttemptOutcome::RetryAt(at + TimeDelta::seconds(5))
                        };
                        let attempt = Attempt {
                            delivery_id: d.id.clone(),
                            number,
                            attempted_at: at,
                            duration_ms: 12,
                            response_code: Some(if number == 4 { 200 } else { 503 }),
                            response_body: Some("{\"ok\":false,\"reason\":\"busy\"}".to_owned()),
                            error: None,
                        };
                        let t = Instant::now();
                        log.record_attempt(&attempt, outcome)
                            .await?
                            .ok_or("delivery missing")?;
                        latencies.push(t.elapsed());
                    }
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    report(
        "record_attempt",
        latencies.len(),
        started.elapsed(),
        latencies,
    );

    let sample = log
        .get_delivery(&all[0].id)
        .await?
        .ok_or("first delivery missing")?;
    assert_eq!(sample.status, DeliveryStatus::Success);
    assert_eq!(sample.attempt_count, 4);

    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&config.cassandra_nodes)
        .build()
        .await?;
    let drop = format!("DROP KEYSPACE IF EXISTS {}", config.cassandra_keyspace);
    session.query_unpaged(drop, &[]).await?;
    Ok(())
}

fn main() -> Result<(), Failure> {
    // `cargo test --all-targets` runs benches as tests (without `--bench`): do nothing then.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!(
            "cassandra_log benchmark: run it with `cargo bench -p kolbak-core --bench cassandra_log`"
        );
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
