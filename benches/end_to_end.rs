//! End-to-end benchmark: release `kolbak` processes, a real HTTP receiver on loopback, and a
//! load generator — all on this machine. Measures events accepted per second (202 = stored),
//! end-to-end deliveries per second, publish→receive latency percentiles at a fixed rate, and
//! the processes' peak RSS.
//!
//! Run: `cargo bench --bench end_to_end` (optional env: `BENCH_EVENTS` default 20000,
//! `BENCH_CONCURRENCY` default 64, `BENCH_RATE` default 500/s for `BENCH_SECONDS` default 10).
//!
//! - `BENCH_MODE=standalone` (default): one `kolbak standalone` on SQLite. With
//!   `KOLBAK_DELIVERY_LOG=cassandra` (and `KOLBAK_CASSANDRA_KEYSPACE` of a migrated keyspace:
//!   `kolbak migrate`) it also logs to Cassandra — the environment is passed through.
//! - `BENCH_SERVER_LOG=<dir>` keeps the processes' output (`RUST_LOG` is `warn` unless set).
//! - `BENCH_MODE=cluster`: `kolbak ingress` publishing to Kafka and one `kolbak dispatcher`
//!   logging to Cassandra (`scripts/kafka.sh up`, `scripts/cassandra.sh up`; a fresh keyspace
//!   and topic prefix are created for the run).

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt;
use serde_json::{Value, json};

type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

const ADMIN_SECRET: &str = "benchmark-admin-secret-0123456789";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// When each event was published and when it arrived.
#[derive(Default)]
struct Clock {
    sent: HashMap<String, Instant>,
    received: HashMap<String, Instant>,
}

async fn receive(State(clock): State<Arc<Mutex<Clock>>>, headers: HeaderMap) -> StatusCode {
    let now = Instant::now();
    if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok())
        && let Ok(mut clock) = clock.lock()
    {
        clock.received.entry(id.to_owned()).or_insert(now);
    }
    StatusCode::NO_CONTENT
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "  {name}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        samples.len()
    );
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() -> Fallible<()> {
    // `cargo test --all-targets` runs this binary without `--bench`: a small smoke run then,
    // so the benchmark keeps working without costing CI minutes.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let events = env_or("BENCH_EVENTS", if smoke { 200 } else { 20_000 });
    let concurrency = env_or("BENCH_CONCURRENCY", 64) as usize;
    let rate = env_or("BENCH_RATE", if smoke { 50 } else { 500 });
    let seconds = env_or("BENCH_SECONDS", if smoke { 2 } else { 10 });

    let clock = Arc::new(Mutex::new(Clock::default()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(clock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let dir = tempfile::tempdir()?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let cluster = std::env::var("BENCH_MODE").as_deref() == Ok("cluster");
    let spawn = |subcommand: &str, extra: &[(&str, String)]| -> std::io::Result<Child> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kolbak"));
        command
            .arg(subcommand)
            .env("KOLBAK_LISTEN", format!("127.0.0.1:{port}"))
            .env("KOLBAK_DATA_DIR", dir.path())
            .env("KOLBAK_ADMIN_CLIENT_ID", "admin")
            .env("KOLBAK_ADMIN_CLIENT_SECRET", ADMIN_SECRET)
            .env("KOLBAK_JWT_SECRET", "benchmark-jwt-secret-0123456789abcdef")
            .env("KOLBAK_ALLOW_PRIVATE_TARGETS", "true")
            .env("KOLBAK_RATE_LIMIT_PER_SECOND", "0")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            );
        // BENCH_SERVER_LOG=<dir>: keep each process's output in <dir>/<subcommand>.log.
        match std::env::var("BENCH_SERVER_LOG") {
            Ok(dir) => {
                let log = std::fs::File::create(format!("{dir}/{subcommand}.log"))?;
                command.stdout(log.try_clone()?).stderr(log);
            }
            Err(_) => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        for (name, value) in extra {
            command.env(name, value);
        }
        command.spawn()
    };
    let mut servers = Vec::new();
    if cluster {
        let keyspace = format!("kolbak_bench_{}", std::process::id());
        let migrated = Command::new(env!("CARGO_BIN_EXE_kolbak"))
            .args(["migrate", "--cassandra-keyspace", &keyspace])
            .env("RUST_LOG", "warn")
            .status()?;
        if !migrated.success() {
            return Err("kolbak migrate failed (is Cassandra up? scripts/cassandra.sh up)".into());
        }
        let shared = [
            ("KOLBAK_REGISTRY", "sqlite".to_owned()),
            ("KOLBAK_DELIVERY_LOG", "cassandra".to_owned()),
            ("KOLBAK_CASSANDRA_KEYSPACE", keyspace),
            (
                "KOLBAK_KAFKA_TOPIC_PREFIX",
                format!("bench.{}.", std::process::id()),
            ),
            ("KOLBAK_SUBSCRIPTION_REFRESH", "200ms".to_owned()),
        ];
        servers.push(("ingress", Server(spawn("ingress", &shared)?)));
        // The dispatcher's probe port: any free one (the ingress has `port`).
        let mut dispatcher_env = shared.to_vec();
        dispatcher_env.push(("KOLBAK_LISTEN", "127.0.0.1:0".to_owned()));
        servers.push(("dispatcher", Server(spawn("dispatcher", &dispatcher_env)?)));
    } else {
        servers.push(("standalone", Server(spawn("standalone", &[])?)));
    }
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = reqwest::get(format!("{base}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        if Instant::now() > deadline {
            return Err("server did not become ready".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let token: Value = http
        .post(format!("{base}/v1/auth"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "admin"),
            ("client_secret", ADMIN_SECRET),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"].as_str().ok_or("no token")?.to_owned();
    let key: Value = http
        .post(format!("{base}/v1/keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "bench", "scopes": ["write:events"]}))
        .send()
        .await?
        .json()
        .await?;
    let key = key["data"]["key"].as_str().ok_or("no key")?.to_owned();

    println!(
        "kolbak {} benchmark ({} cores)",
        if cluster {
            "cluster (Kafka + Cassandra)"
        } else {
            "standalone"
        },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // 1. Accept throughput with no subscriptions: every 202 is an fsync'd SQLite commit, or a
    // record every in-sync Kafka replica acknowledged.
    let publish = |id: String, event: &'static str| {
        let http = http.clone();
        let url = format!("{base}/v1/events");
        let key = key.clone();
        async move {
            let started = Instant::now();
            let status = http
                .post(url)
                .header("x-api-key", key)
                .json(&json!({"id": id, "event": event, "payload": {"order": 42, "items": [1, 2, 3]}}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            (id, status, started, started.elapsed())
        }
    };
    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(
        (0..events).map(|i| publish(format!("accept-{i}"), "bench.unrouted")),
    )
    .buffer_unordered(concurrency)
    .collect()
    .await;
    let elapsed = started.elapsed();
    let accepted = results.iter().filter(|r| r.1 == 202).count();
    println!(
        "accept: {accepted}/{events} accepted in {:.2} s = {:.0} events/s (concurrency {concurrency})",
        elapsed.as_secs_f64(),
        accepted as f64 / elapsed.as_secs_f64()
    );
    report(
        "POST /v1/events latency",
        results.iter().map(|r| r.3).collect(),
    );

    // 2. End to end at full speed: one subscription, every event delivered.
    http.post(format!("{base}/v1/webhooks"))
        .bearer_auth(&token)
        .json(&json!({"callback_url": hook_url, "event": "bench.routed", "max_in_flight": 64}))
        .send()
        .await?
        .error_for_status()?;
    if cluster {
        // The dispatcher re-reads the shared registry every 200 ms.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let started = Instant::now();
    let results: Vec<_> =
        futures::stream::iter((0..events).map(|i| publish(format!("e2e-{i}"), "bench.routed")))
            .buffer_unordered(concurrency)
            .collect()
            .await;
    if let Ok(mut clock) = clock.lock() {
        for (id, _, sent, _) in &results {
            clock.sent.insert(id.clone(), *sent);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = clock.lock().map(|c| c.received.len()).unwrap_or(0);
        if done as u64 >= events || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let (delivered, latencies) = {
        let clock = clock.lock().map_err(|_| "poisoned")?;
        let latencies: Vec<Duration> = clock
            .received
            .iter()
            .filter_map(|(id, at)| {
                clock
                    .sent
                    .get(id)
                    .map(|sent| at.saturating_duration_since(*sent))
            })
            .collect();
        (clock.received.len(), latencies)
    };
    println!(
        "end to end (burst): {delivered}/{events} delivered in {:.2} s = {:.0} deliveries/s",
        elapsed.as_secs_f64(),
        delivered as f64 / elapsed.as_secs_f64()
    );
    report("publish→receive latency under burst", latencies);
    if (delivered as u64) < events {
        return Err(format!("only {delivered} of {events} events were delivered").into());
    }

    // 3. Latency at a fixed rate.
    if let Ok(mut clock) = clock.lock() {
        *clock = Clock::default();
    }
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut ticker = tokio::time::interval(interval);
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..total {
        ticker.tick().await;
        let id = format!("rate-{i}");
        if let Ok(mut clock) = clock.lock() {
            clock.sent.insert(id.clone(), Instant::now());
        }
        pending.push(publish(id, "bench.routed"));
        while let Some(Some(_)) = futures::FutureExt::now_or_never(pending.next()) {}
    }
    while pending.next().await.is_some() {}
    let deadline = Instant::now() + Duration::from_secs(60);
    while clock.lock().map(|c| c.received.len() as u64).unwrap_or(0) < total
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let latencies: Vec<Duration> = {
        let clock = clock.lock().map_err(|_| "poisoned")?;
        clock
            .received
            .iter()
            .filter_map(|(id, at)| {
                clock
                    .sent
                    .get(id)
                    .map(|sent| at.saturating_duration_since(*sent))
            })
            .collect()
    };
    println!(
        "fixed rate: {rate} events/s for {seconds} s, {} of {total} delivered",
        latencies.len()
    );
    report("publish→receive latency at fixed rate", latencies);
    for (name, server) in &servers {
        println!(
            "kolbak {name} peak RSS: {:.1} MiB",
            peak_rss_mib(server.0.id())
        );
    }
    Ok(())
}
