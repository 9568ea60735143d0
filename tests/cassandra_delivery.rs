//! Standalone with the Cassandra delivery log, against a real Cassandra node: deliveries are
//! logged there and read back through the API, and restarting Cassandra while deliveries flow
//! loses no record — the statuses match what the receiver saw.
//!
//! Its own test binary: it stops and starts the shared node, so nothing else may use it then
//! (cargo runs test binaries one after another).

mod harness;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::{Client, Receiver, Server, TestResult, free_port};
use serde_json::{Value, json};

fn nodes() -> String {
    std::env::var("KOLBAK_CASSANDRA_NODES").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

/// True when a node answers; in CI a missing node is a failure, elsewhere a skip with a note.
fn cassandra_available() -> bool {
    let reachable = nodes()
        .split(',')
        .filter_map(|n| n.trim().parse::<std::net::SocketAddr>().ok())
        .any(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    if !reachable {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Cassandra is not reachable at {} (start it with scripts/cassandra.sh up)",
            nodes()
        );
        eprintln!("note: Cassandra not reachable at {}; test not run", nodes());
    }
    reachable
}

fn cassandra_script(action: &str) -> TestResult {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cassandra.sh");
    let status = Command::new(script).arg(action).status()?;
    if !status.success() {
        return Err(format!("scripts/cassandra.sh {action} failed: {status}").into());
    }
    Ok(())
}

#[tokio::test]
async fn a_cassandra_restart_while_delivering_loses_no_record() -> TestResult {
    if !cassandra_available() {
        return Ok(());
    }
    let keyspace = format!("kolbak_e2e_{}", kolbak_core::id::new_id());
    let migrated = Command::new(env!("CARGO_BIN_EXE_kolbak"))
        .args(["migrate", "--cassandra-keyspace", &keyspace])
        .env("KOLBAK_CASSANDRA_NODES", nodes())
        .status()?;
    assert!(migrated.success(), "kolbak migrate failed");

    let receiver = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    let env = [
        ("KOLBAK_DELIVERY_LOG", "cassandra"),
        ("KOLBAK_CASSANDRA_KEYSPACE", keyspace.as_str()),
        ("KOLBAK_RETRY_SCHEDULE", "1s,2s,4s,8s,16s,30s"),
    ];
    let nodes = nodes();
    let mut env = env.to_vec();
    env.push(("KOLBAK_CASSANDRA_NODES", nodes.as_str()));
    let server = Server::start_with(dir.path(), free_port()?, &env)?;
    let api = Client::admin(&server.base).await?;
    let (subscription, _) = api
        .subscribe(json!({"callback_url": receiver.url("log"), "event": "*"}))
        .await?;

    let mut published = Vec::new();
    for i in 0..20 {
        published.push(
            api.publish(json!({"id": format!("c-{i}"), "event": "a", "payload": i}))
                .await?,
        );
    }
    receiver
        .wait_for("log", 20, Duration::from_secs(60))
        .await?;

    // Restart Cassandra while more events are published and delivered.
    cassandra_script("down")?;
    for i in 20..40 {
        published.push(
            api.publish(json!({"id": format!("c-{i}"), "event": "a", "payload": i}))
                .await?,
        );
    }
    cassandra_script("up")?;
    for i in 40..50 {
        published.push(
            api.publish(json!({"id": format!("c-{i}"), "event": "a", "payload": i}))
                .await?,
        );
    }

    // Every event ends as a successful delivery in the Cassandra log.
    let deadline = Instant::now() + Duration::from_secs(120);
    let logged = loop {
        let (status, body) = api
            .call(
                reqwest::Method::GET,
                &format!("/v1/webhooks/{subscription}/deliveries?status=success&limit=100"),
                None,
            )
            .await?;
        let items: Vec<Value> = body["data"].as_array().cloned().unwrap_or_default();
        if status == 200 && items.len() == published.len() {
            break items;
        }
        assert!(
            Instant::now() < deadline,
            "log never caught up: {status} {} of {}",
            items.len(),
            published.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let logged_events: BTreeSet<String> = logged
        .iter()
        .filter_map(|d| d["event_id"].as_str().map(str::to_owned))
        .collect();
    let received: BTreeSet<String> = receiver
        .received("log")
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    let expected: BTreeSet<String> = published.iter().cloned().collect();
    assert_eq!(
        logged_events, expected,
        "every event has a successful delivery in the log"
    );
    assert_eq!(
        received, expected,
        "the receiver saw exactly the logged events"
    );
    for delivery in &logged {
        let id = delivery["id"].as_str().unwrap_or_default();
        let detail = api
            .wait_for_attempts(id, Duration::from_secs(10), |attempts| {
                attempts.last().is_some_and(|a| a["response_code"] == 200)
            })
            .await?;
        let attempts = detail["data"]["attempts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!attempts.is_empty(), "{id} has no attempt logged");
        assert_eq!(
            attempts.last().map(|a| a["response_code"].clone()),
            Some(json!(200)),
            "{id}"
        );
    }
    server.terminate()?;
    Ok(())
}
