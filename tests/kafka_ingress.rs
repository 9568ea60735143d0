//! End-to-end tests of `kolbak ingress`: the real binary, a real Kafka broker
//! (`scripts/kafka.sh up`; `KOLBAK_KAFKA_BROKERS`, default `127.0.0.1:9092`), HTTP over real
//! sockets. Without a reachable broker the tests that need one print a note and pass, except
//! with `CI=true`, where they fail. The tests for an unreachable Kafka point the ingress at a
//! closed port and need no broker.
//!
//! One test stops and restarts the shared broker with `scripts/kafka.sh down`/`up`. It takes
//! [`BROKER`] for writing, every other broker test takes it for reading, so within this binary
//! nothing else touches the broker meanwhile; `cargo test` runs test binaries one at a time.
//! It runs only against the broker that `scripts/kafka.sh` manages.

#[path = "support/cluster.rs"]
mod cluster;
mod harness;

use std::path::Path;
use std::time::{Duration, Instant};

use cluster::{DEFAULT_BROKERS, Process, broker_up, brokers, read_topic_until, run_script};
use harness::{Client, Fallible, TestResult};
use kolbak_core::id::new_id;
use kolbak_core::kafka::QueuedMessage;
use serde_json::{Value, json};
use tokio::sync::RwLock;

/// Readers: tests using the broker; writer: the test that restarts it.
static BROKER: RwLock<()> = RwLock::const_new(());

/// A running `kolbak ingress` on its own topic prefix.
struct Ingress {
    process: Process,
    prefix: String,
}

impl Ingress {
    fn start(data_dir: &Path, brokers: &str, env: &[(&str, &str)]) -> Fallible<Self> {
        let prefix = format!("test.{}.", new_id());
        let mut all = vec![
            ("KOLBAK_KAFKA_BROKERS", brokers),
            ("KOLBAK_KAFKA_TOPIC_PREFIX", prefix.as_str()),
            ("KOLBAK_KAFKA_PARTITIONS", "3"),
        ];
        all.extend_from_slice(env);
        let process = Process::start("ingress", "ingress", data_dir, true, &all)?;
        Ok(Self { process, prefix })
    }
}

impl std::ops::Deref for Ingress {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

/// `POST /v1/events`: (status, `Retry-After`, body).
async fn publish(client: &Client, body: Value) -> Fallible<(u16, Option<String>, Value)> {
    let response = client
        .http
        .post(format!("{}/v1/events", client.base))
        .bearer_auth(&client.token)
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, retry_after, body))
}

/// Keys and records on the events topic under `prefix`, once at least `count` are there.
async fn read_events(
    brokers: &str,
    prefix: &str,
    count: usize,
) -> Fallible<Vec<(String, QueuedMessage)>> {
    read_events_until(brokers, prefix, |found| found.len() >= count).await
}

/// Keys and records on the events topic under `prefix`, read from the beginning until `done`
/// holds for what was read (within 30 s).
async fn read_events_until(
    brokers: &str,
    prefix: &str,
    done: impl Fn(&[(String, QueuedMessage)]) -> bool,
) -> Fallible<Vec<(String, QueuedMessage)>> {
    let decode = |records: &[(String, Vec<u8>)]| -> Vec<(String, QueuedMessage)> {
        records
            .iter()
            .filter_map(|(k, v)| QueuedMessage::decode(v).ok().map(|m| (k.clone(), m)))
            .collect()
    };
    let records =
        read_topic_until(brokers, &format!("{prefix}events"), |r| done(&decode(r))).await?;
    Ok(decode(&records))
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_events_are_in_the_topic_and_shutdown_is_clean() -> TestResult {
    let _shared = BROKER.read().await;
    let brokers = brokers();
    if !broker_up(&brokers) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let ingress = Ingress::start(dir.path(), &brokers, &[])?;
    ingress.wait_ready().await?;
    let client = Client::admin(&ingress.base).await?;
    let (status, _, body) = publish(
        &client,
        json!({"id": "evt-1", "event": "order.created", "ordering_key": "customer-1",
               "payload": {"total": 12}}),
    )
    .await?;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["id"], "evt-1");
    let (status, _, body) = publish(&client, json!({"event": "order.paid", "payload": {}})).await?;
    assert_eq!(status, 202, "{body}");
    let generated = body["data"]["id"].as_str().ok_or("no id")?.to_owned();

    let mut records = read_events(&brokers, &ingress.prefix, 2).await?;
    records.sort_by_key(|r| r.1.accepted_at);
    assert_eq!(records[0].0, "customer-1");
    assert_eq!(records[0].1.event.id, "evt-1");
    assert_eq!(records[0].1.event.payload, json!({"total": 12}));
    assert_eq!(records[1].0, generated);
    assert_eq!(records[1].1.event.event, "order.paid");

    // The SQLite registry serves the rest of the API in this mode.
    let (status, body) = client
        .post(
            "/v1/webhooks",
            json!({"callback_url": "https://example.com/hook", "event": "order.*"}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    // With the SQLite delivery log (which no dispatcher writes in this mode) a manual retry
    // has no event to send: a clear 501, not a delivery marked retrying that nobody attempts.
    let (status, body) = client
        .post("/v1/deliveries/01m0000000000000000000000/retry", json!({}))
        .await?;
    assert_eq!(status, 501, "{body}");
    assert_eq!(body["error"]["code"], "not_implemented", "{body}");
    let status = ingress.process.terminate()?;
    assert!(status.success(), "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn without_kafka_events_get_503_with_retry_after_never_202() -> TestResult {
    // Port 1 on loopback refuses connections: Kafka is down from the ingress's point of view,
    // while the shared broker keeps serving the other tests.
    let dir = tempfile::tempdir()?;
    let ingress = Ingress::start(
        dir.path(),
        "127.0.0.1:1",
        &[("KOLBAK_KAFKA_REQUEST_TIMEOUT", "1s")],
    )?;
    assert_eq!(ingress.ready_status().await?, 503);
    let client = Client::admin(&ingress.base).await?;
    for n in 0..3 {
        let started = Instant::now();
        let (status, retry_after, body) = publish(
            &client,
            json!({"id": format!("evt-down-{n}"), "event": "order.created", "payload": {}}),
        )
        .await?;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        assert!(
            retry_after.as_deref().and_then(|v| v.parse::<u64>().ok()) >= Some(1),
            "{retry_after:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
    }
    let status = ingress.process.terminate()?;
    assert!(status.success(), "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_mode_requires_configured_credentials() -> TestResult {
    let dir = tempfile::tempdir()?;
    let started = Ingress::start(
        dir.path(),
        "127.0.0.1:1",
        &[
            ("KOLBAK_JWT_SECRET", ""),
            ("KOLBAK_ADMIN_CLIENT_ID", ""),
            ("KOLBAK_ADMIN_CLIENT_SECRET", ""),
        ],
    );
    let error = started.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("exited early"), "{error}");
    assert!(error.contains("KOLBAK_JWT_SECRET"), "{error}");
    assert!(!dir.path().join("credentials.json").exists());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_gets_503_meanwhile_and_loses_no_accepted_event() -> TestResult {
    let _exclusive = BROKER.write().await;
    let brokers = brokers();
    if !broker_up(&brokers) {
        return Ok(());
    }
    if brokers != DEFAULT_BROKERS {
        // Only the broker that scripts/kafka.sh manages may be stopped by a test; CI runs that
        // broker, so there this test must run.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run the broker restart test against scripts/kafka.sh's broker ({DEFAULT_BROKERS}), not {brokers}"
        );
        eprintln!(
            "note: KOLBAK_KAFKA_BROKERS={brokers} is not scripts/kafka.sh's broker; skipping"
        );
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let ingress = Ingress::start(
        dir.path(),
        &brokers,
        &[("KOLBAK_KAFKA_REQUEST_TIMEOUT", "2s")],
    )?;
    ingress.wait_ready().await?;
    let client = Client::admin(&ingress.base).await?;
    let mut accepted = Vec::new();
    let (status, _, body) = publish(
        &client,
        json!({"id": "evt-before", "event": "order.created", "payload": {}}),
    )
    .await?;
    assert_eq!(status, 202, "{body}");
    accepted.push("evt-before".to_owned());

    run_script("kafka.sh", "down")?;
    let result = async {
        let mut refused = 0;
        for n in 0..3 {
            let id = format!("evt-down-{n}");
            let (status, retry_after, body) = publish(
                &client,
                json!({"id": id, "event": "order.created", "payload": {}}),
            )
            .await?;
            match status {
                503 => {
                    assert_eq!(body["error"]["code"], "unavailable", "{body}");
                    assert!(retry_after.is_some(), "503 without Retry-After");
                    refused += 1;
                }
                other => panic!("while Kafka is down: {other} {body}"),
            }
        }
        assert_eq!(refused, 3);
        assert_eq!(ingress.ready_status().await?, 503);
        TestResult::Ok(())
    }
    .await;
    // Restart the broker whatever happened, so later tests find it serving.
    run_script("kafka.sh", "up")?;
    result?;

    // The producer reconnects by itself: publishing succeeds again within a minute.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    loop {
        let id = format!("evt-after-{n}");
        let (status, _, body) = publish(
            &client,
            json!({"id": id, "event": "order.created", "payload": {}}),
        )
        .await?;
        match status {
            202 => {
                accepted.push(id);
                break;
            }
            503 => {}
            other => panic!("after the restart: {other} {body}"),
        }
        assert!(
            Instant::now() < deadline,
            "no 202 within a minute of the broker's restart:\n{}",
            ingress.output()
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ingress.wait_ready().await?;

    // Every 202 is on the topic (a 503'd event may be there too: its acknowledgement was lost).
    let records = read_events_until(&brokers, &ingress.prefix, |found| {
        accepted
            .iter()
            .all(|id| found.iter().any(|(_, m)| &m.event.id == id))
    })
    .await?;
    assert!(records.len() <= accepted.len() + 3, "{records:?}");
    let status = ingress.process.terminate()?;
    assert!(status.success(), "{status}");
    Ok(())
}
