//! End-to-end delivery: `kolbak standalone` as a real process delivering to a real HTTP
//! receiver — signatures, retries on a durable schedule, dead letters, manual retries, 410
//! deactivation, SSRF refusal, no head-of-line blocking, strict order, and restarts that lose
//! nothing.

mod harness;

use std::time::{Duration, Instant};

use harness::{Answer, Client, Receiver, Server, TestResult, answer, free_port};
use kolbak_core::SigningSecret;
use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(20);

fn statuses(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|d| d["status"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn all_final(items: &[Value], n: usize) -> bool {
    items.len() == n
        && items
            .iter()
            .all(|d| matches!(d["status"].as_str(), Some("success" | "failed")))
}

#[tokio::test]
async fn events_arrive_signed_and_logged() -> TestResult {
    let receiver = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    let server = Server::start_with(dir.path(), free_port()?, &[])?;
    let api = Client::admin(&server.base).await?;
    let (sub, secret) = api
        .subscribe(json!({"callback_url": receiver.url("orders"), "event": "order.*"}))
        .await?;
    let (_other, _) = api
        .subscribe(json!({"callback_url": receiver.url("users"), "event": "user.created"}))
        .await?;

    let id = api
        .publish(
            json!({"id": "evt-signed", "event": "order.created", "source": "shop",
                        "event_time": "2026-03-04T05:06:07Z", "payload": {"total": 42}}),
        )
        .await?;
    let got = receiver.wait_for("orders", 1, SETTLE).await?;
    let request = &got[0];
    assert_eq!(
        request.json(),
        json!({"id": "evt-signed", "event": "order.created",
        "event_time": "2026-03-04T05:06:07Z", "source": "shop", "payload": {"total": 42}})
    );
    assert_eq!(request.header("content-type"), "application/json");
    assert!(request.header("user-agent").starts_with("Kolbak/"));
    assert_eq!(request.header("webhook-id"), "evt-signed");
    let timestamp: i64 = request.header("webhook-timestamp").parse()?;
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    let secret = SigningSecret::parse(&secret)?;
    let expected = kolbak_dispatcher::sign("evt-signed", timestamp, &request.body, &[&secret]);
    assert_eq!(request.header("webhook-signature"), expected);

    let deliveries = api
        .wait_for_deliveries(&id, SETTLE, |d| all_final(d, 1))
        .await?;
    assert_eq!(statuses(&deliveries), vec!["success"]);
    assert_eq!(deliveries[0]["subscription_id"], sub.as_str());
    let detail = api
        .get(&format!(
            "/v1/deliveries/{}",
            deliveries[0]["id"].as_str().unwrap_or("")
        ))
        .await?;
    assert_eq!(detail["data"]["attempt_count"], 1);
    assert_eq!(detail["data"]["attempts"][0]["response_code"], 200);
    assert!(
        detail["data"]["attempts"][0]["response_body"]
            .as_str()
            .unwrap_or("")
            .contains("received")
    );
    let by_sub = api
        .get(&format!("/v1/webhooks/{sub}/deliveries?status=success"))
        .await?;
    assert_eq!(by_sub["pagination"]["total"], 1);
    assert!(
        receiver.received("users").is_empty(),
        "non-matching subscriptions get nothing"
    );

    // The same id again is accepted but not delivered again.
    api.publish(json!({"id": "evt-signed", "event": "order.created", "payload": {"total": 42}}))
        .await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.received("orders").len(), 1);

    let metrics = api
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains(r#"kolbak_delivery_attempts_total{outcome="success"} 1"#),
        "{metrics}"
    );
    server.terminate()?;
    Ok(())
}

#[tokio::test]
async fn retryable_failures_follow_the_schedule_then_succeed() -> TestResult {
    let receiver = Receiver::start().await?;
    receiver.script("flaky", &[answer(503), answer(429)]);
    let dir = tempfile::tempdir()?;
    let server = Server::start_with(
        dir.path(),
        free_port()?,
        &[("KOLBAK_RETRY_SCHEDULE", "1s,1s,1s")],
    )?;
    let api = Client::admin(&server.base).await?;
    api.subscribe(json!({"callback_url": receiver.url("flaky"), "event": "*"}))
        .await?;
    let id = api.publish(json!({"event": "a.b", "payload": {}})).await?;
    let got = receiver.wait_for("flaky", 3, SETTLE).await?;
    for pair in got.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(750),
            "retry fired early: {gap:?}"
        );
    }
    assert!(
        got.iter().all(|r| r.header("webhook-id") == id),
        "webhook-id is stable across retries"
    );
    let deliveries = api
        .wait_for_deliveries(&id, SETTLE, |d| all_final(d, 1))
        .await?;
    assert_eq!(statuses(&deliveries), vec!["success"]);
    let detail = api
        .get(&format!(
            "/v1/deliveries/{}",
            deliveries[0]["id"].as_str().unwrap_or("")
        ))
        .await?;
    let codes: Vec<Value> = detail["data"]["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["response_code"].clone())
        .collect();
    assert_eq!(codes, vec![json!(503), json!(429), json!(200)]);
    server.terminate()?;
    Ok(())
}

#[tokio::test]
async fn exhausted_and_permanent_failures_are_dead_lettered_and_can_be_retried() -> TestResult {
    let receiver = Receiver::start().await?;
    receiver.default_for("down", answer(500));
    receiver.default_for("bad", answer(400));
    let dir = tempfile::tempdir()?;
    let server = Server::start_with(
        dir.path(),
        free_port()?,
        &[("KOLBAK_RETRY_SCHEDULE", "200ms,200ms")],
    )?;
    let api = Client::admin(&server.base).await?;
    let (down, _) = api
        .subscribe(json!({"callback_url": receiver.url("down"), "event": "x.down"}))
        .await?;
    api.subscribe(json!({"callback_url": receiver.url("bad"), "event": "x.bad"}))
        .await?;

    let down_event = api
        .publish(json!({"event": "x.down", "payload": 1}))
        .await?;
    let bad_event = api.publish(json!({"event": "x.bad", "payload": 2})).await?;
    let failed = api
        .wait_for_deliveries(&down_event, SETTLE, |d| all_final(d, 1))
        .await?;
    assert_eq!(statuses(&failed), vec!["failed"]);
    assert_eq!(failed[0]["attempt_count"], 3, "1 + two retries");
    assert!(failed[0]["dead_lettered_at"].is_string());
    let permanent = api
        .wait_for_deliveries(&bad_event, SETTLE, |d| all_final(d, 1))
        .await?;
    assert_eq!(statuses(&permanent), vec!["failed"]);
    assert_eq!(permanent[0]["attempt_count"], 1, "a 400 is not retried");
    assert_eq!(receiver.received("bad").len(), 1);

    let dead = api
        .get(&format!("/v1/webhooks/{down}/deliveries?status=failed"))
        .await?;
    assert_eq!(dead["pagination"]["total"], 1);

    // The endpoint recovers; a manual retry delivers the dead letter.
    receiver.default_for("down", answer(200));
    let delivery_id = failed[0]["id"].as_str().unwrap_or_default().to_owned();
    let (status, _) = api
        .post(&format!("/v1/deliveries/{delivery_id}/retry"), json!({}))
        .await?;
    assert_eq!(status, 202);
    let done = api
        .wait_for_deliveries(&down_event, SETTLE, |d| statuses(d) == ["success"])
        .await?;
    assert_eq!(done[0]["attempt_count"], 4);
    let (status, body) = api
        .post(&format!("/v1/deliveries/{delivery_id}/retry"), json!({}))
        .await?;
    assert_eq!(status, 409, "{body}");
    let (status, _) = api
        .post("/v1/deliveries/01jzzzzzzzzzzzzzzzzzzzzzzz/retry", json!({}))
        .await?;
    assert_eq!(status, 404);
    server.terminate()?;
    Ok(())
}

#[tokio::test]
async fn gone_deactivates_the_subscription() -> TestResult {
    let receiver = Receiver::start().await?;
    receiver.default_for("gone", answer(410));
    let dir = tempfile::tempdir()?;
    let server = Server::start_with(dir.path(), free_port()?, &[])?;
    let api = Client::admin(&server.base).await?;
    let (sub, _) = api
        .subscribe(json!({"callback_url": receiver.url("gone"), "event": "*"}))
        .await?;
    let id = api.publish(json!({"event": "a", "payload": {}})).await?;
    let deliveries = api
        .wait_for_deliveries(&id, SETTLE, |d| all_final(d, 1))
        .await?;
    assert_eq!(statuses(&deliveries), vec!["failed"]);
    let deadline = Instant::now() + SETTLE;
    loop {
        let hook = api.get(&format!("/v1/webhooks/{sub}")).await?;
        if hook["data"]["is_active"] == false {
            assert!(
                hook["data"]["deactivated_reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("410")
            );
            assert!(hook["data"]["deactivated_at"].is_string());
            break;
        }
        assert!(Instant::now() < deadline, "never deactivated: {hook}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Inactive: later events are not delivered.
    api.publish(json!({"event": "a", "payload": {}})).await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.received("gone").len(), 1);
    server.terminate()?;
    Ok(())
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() -> TestResult {
    let receiver = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    let server = Server::start_with(
        dir.path(),
        free_port()?,
        &[("KOLBAK_ALLOW_PRIVATE_TARGETS", "false")],
    )?;
    let api = Client::admin(&server.base).await?;
    api.subscribe(json!({"callback_url": receiver.url("ssrf"), "event": "*"}))
        .await?;
    let localhost = receiver.url("ssrf").replace("127.0.0.1", "localhost");
    api.subscribe(json!({"callback_url": localhost, "event": "*"}))
        .await?;
    let id = api.publish(json!({"event": "a", "payload": {}})).await?;
    let deliveries = api
        .wait_for_deliveries(&id, SETTLE, |d| all_final(d, 2))
        .await?;
    assert_eq!(statuses(&deliveries), vec!["failed", "failed"]);
    for d in &deliveries {
        assert!(
            d["last_error"]
                .as_str()
                .unwrap_or("")
                .contains("forbidden target"),
            "{d}"
        );
    }
    assert!(receiver.received("ssrf").is_empty());
    server.terminate()?;
    Ok(())
}

#[tokio::test]
async fn a_slow_endpoint_does_not_delay_the_others() -> TestResult {
    let receiver = Receiver::start().await?;
    receiver.default_for(
        "slow",
        Answer {
            status: 200,
            delay: Duration::from_secs(4),
        },
    );
    let dir = tempfile::tempdir()?;
    let server = Server::start_with(
        dir.path(),
        free_port()?,
        &[("KOLBAK_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "2")],
    )?;
    let api = Client::admin(&server.base).await?;
    api.subscribe(json!({"callback_url": receiver.url("slow"), "event": "*"}))
        .await?;
    api.subscribe(json!({"callback_url": receiver.url("fast"), "event": "*"}))
        .await?;
    let started = Instant::now();
    for i in 0..20 {
        api.publish(json!({"event": "load", "payload": {"i": i}}))
            .await?;
    }
    receiver
        .wait_for("fast", 20, Duration::from_secs(10))
        .await?;
    let fast_done = started.elapsed();
    assert!(
        fast_done < Duration::from_secs(3),
        "fast endpoint waited behind the slow one: {fast_done:?}"
    );
    assert!(
        receiver.received("slow").len() <= 2,
        "per-subscription in-flight limit"
    );
    server.kill()?;
    Ok(())
}

#[tokio::test]
async fn ordered_subscriptions_receive_in_acceptance_order() -> TestResult {
    let receiver = Receiver::start().await?;
    // The third delivery fails once; nothing after it may overtake it.
    receiver.script("ordered", &[answer(200), answer(200), answer(500)]);
    let dir = tempfile::tempdir()?;
    let server = Server::start_with(
        dir.path(),
        free_port()?,
        &[("KOLBAK_RETRY_SCHEDULE", "500ms")],
    )?;
    let api = Client::admin(&server.base).await?;
    api.subscribe(
        json!({"callback_url": receiver.url("ordered"), "event": "*", "ordering": "ordered"}),
    )
    .await?;
    for i in 0..8 {
        api.publish(json!({"id": format!("o-{i}"), "event": "seq", "payload": {"i": i}}))
            .await?;
    }
    let got = receiver.wait_for("ordered", 9, SETTLE).await?;
    let order: Vec<String> = got
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    let expected: Vec<String> = [
        "o-0", "o-1", "o-2", "o-2", "o-3", "o-4", "o-5", "o-6", "o-7",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(order, expected);
    server.terminate()?;
    Ok(())
}

#[tokio::test]
async fn sigkill_loses_nothing_and_fires_no_retry_early() -> TestResult {
    let receiver = Receiver::start().await?;
    receiver.script("durable", &[answer(503)]);
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let env = [("KOLBAK_RETRY_SCHEDULE", "4s")];
    let server = Server::start_with(dir.path(), port, &env)?;
    let api = Client::admin(&server.base).await?;
    api.subscribe(json!({"callback_url": receiver.url("durable"), "event": "*"}))
        .await?;
    let retried = api
        .publish(json!({"id": "k-retry", "event": "a", "payload": 1}))
        .await?;
    let first = receiver.wait_for("durable", 1, SETTLE).await?[0].at;
    api.wait_for_deliveries(&retried, SETTLE, |d| statuses(d) == ["retrying"])
        .await?;

    // More events, then SIGKILL while the retry waits and before these are all delivered.
    receiver.default_for(
        "durable",
        Answer {
            status: 200,
            delay: Duration::from_millis(300),
        },
    );
    let mut accepted = vec![retried.clone()];
    for i in 0..30 {
        accepted.push(
            api.publish(json!({"id": format!("k-{i}"), "event": "a", "payload": i}))
                .await?,
        );
    }
    server.kill()?;
    let killed_at = Instant::now();

    let server = Server::start_with(dir.path(), port, &env)?;
    let api = Client::admin(&server.base).await?;
    for id in &accepted {
        let deliveries = api
            .wait_for_deliveries(id, SETTLE, |d| all_final(d, 1))
            .await?;
        assert_eq!(statuses(&deliveries), vec!["success"], "{id}");
    }
    let got = receiver.received("durable");
    let retry = got
        .iter()
        .filter(|r| r.header("webhook-id") == "k-retry")
        .nth(1)
        .ok_or("the scheduled retry never happened")?;
    assert!(
        retry.at - first >= Duration::from_millis(3200),
        "retry fired early: {:?}",
        retry.at - first
    );
    let ids: std::collections::BTreeSet<&str> =
        got.iter().map(|r| r.header("webhook-id")).collect();
    for id in &accepted {
        assert!(ids.contains(id.as_str()), "{id} was never delivered");
    }
    let duplicates = got.len() - 1 - accepted.len();
    eprintln!(
        "delivered {} events after SIGKILL; {duplicates} duplicate(s) (at-least-once); restart took {:?}",
        accepted.len(),
        killed_at.elapsed()
    );
    server.terminate()?;
    Ok(())
}
