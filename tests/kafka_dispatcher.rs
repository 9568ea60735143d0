//! End-to-end tests of cluster mode: `kolbak ingress` and `kolbak dispatcher` processes, a real
//! Kafka broker (`scripts/kafka.sh up`), a real Cassandra node (`scripts/cassandra.sh up`) and a
//! real HTTP receiver. Each test has its own topic prefix, Cassandra keyspace and SQLite
//! registry. Without the services the tests print a note and pass, except with `CI=true`,
//! where they fail.
//!
//! The tests run one at a time ([`SERIAL`]): each starts several processes, and on a small
//! machine running them together would turn timing assertions into load tests.

#[path = "support/cluster.rs"]
mod cluster;
mod harness;
#[path = "support/pool_cluster.rs"]
mod pool_cluster;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use cluster::{DEFAULT_BROKERS, brokers, run_script};
use harness::{Answer, Receiver, TestResult, answer};
use kolbak_core::kafka::rdkafka::ClientConfig;
use kolbak_core::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use kolbak_core::kafka::{DeadLetterKind, KafkaConfig};
use pool_cluster::{Cluster, event_ids, metric};
use serde_json::{Value, json};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_retry_through_the_tiers_and_exhausted_ones_are_dead_lettered() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(3, "1s,2s").await? else {
        return Ok(());
    };
    let receiver = Receiver::start().await?;
    receiver.script("flaky", &[answer(500), answer(503)]);
    receiver.default_for("down", answer(500));
    let api = &cluster.api;
    let (ok, _) = api
        .subscribe(json!({"callback_url": receiver.url("ok"), "event": "order.*"}))
        .await?;
    let (flaky, _) = api
        .subscribe(json!({"callback_url": receiver.url("flaky"), "event": "order.created"}))
        .await?;
    let (down, _) = api
        .subscribe(json!({"callback_url": receiver.url("down"), "event": "order.created"}))
        .await?;
    let dispatcher = cluster.dispatcher("dispatcher", &[])?;
    let event = api
        .publish(json!({"id": "evt-tiers", "event": "order.created", "payload": {"n": 1}}))
        .await?;

    let timeout = Duration::from_secs(60);
    let got = receiver.wait_for("ok", 1, timeout).await?;
    assert_eq!(got[0].json()["payload"], json!({"n": 1}));
    let flaky_calls = receiver.wait_for("flaky", 3, timeout).await?;
    let down_calls = receiver.wait_for("down", 3, timeout).await?;
    // The schedule is 1s then 2s, with ±20 % jitter; a tier adds at most its poll latency.
    for calls in [&flaky_calls, &down_calls] {
        let first = calls[1].at - calls[0].at;
        let second = calls[2].at - calls[1].at;
        assert!(
            first >= Duration::from_millis(750) && first < Duration::from_secs(6),
            "{first:?}"
        );
        assert!(
            second >= Duration::from_millis(1550) && second < Duration::from_secs(8),
            "{second:?}"
        );
    }

    let deliveries = api
        .wait_for_deliveries(&event, timeout, |items| {
            items.len() == 3
                && items
                    .iter()
                    .all(|d| d["status"] == "success" || d["status"] == "failed")
        })
        .await?;
    let by_subscription: HashMap<&str, &Value> = deliveries
        .iter()
        .map(|d| (d["subscription_id"].as_str().unwrap_or_default(), d))
        .collect();
    assert_eq!(by_subscription[ok.as_str()]["status"], "success");
    assert_eq!(by_subscription[flaky.as_str()]["status"], "success");
    assert_eq!(by_subscription[flaky.as_str()]["attempt_count"], 3);
    assert_eq!(by_subscription[down.as_str()]["status"], "failed");
    assert_eq!(by_subscription[down.as_str()]["attempt_count"], 3);
    let down_id = by_subscription[down.as_str()]["id"]
        .as_str()
        .ok_or("no id")?
        .to_owned();
    // Every attempt is in the log (fails with the delivery shown if not).
    api.wait_for_attempts(&down_id, timeout, |attempts| attempts.len() == 3)
        .await?;

    let letters = cluster
        .dead_letters(|letters| {
            letters
                .iter()
                .any(|l| l.delivery_id.as_deref() == Some(&down_id))
        })
        .await?;
    let letter = letters
        .iter()
        .find(|l| l.delivery_id.as_deref() == Some(&down_id))
        .ok_or("no dead letter")?;
    assert_eq!(letter.kind, DeadLetterKind::DeliveryFailed);
    assert_eq!(letter.subscription_id.as_deref(), Some(down.as_str()));
    assert_eq!(
        letter.event.as_ref().map(|e| e.id.as_str()),
        Some("evt-tiers")
    );
    assert_eq!(
        letters.len(),
        1,
        "only the exhausted delivery is dead-lettered: {letters:?}"
    );

    // Nothing more arrives: the exhausted delivery is not attempted again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.received("down").len(), 3);
    assert_eq!(receiver.received("flaky").len(), 3);
    assert_eq!(receiver.received("ok").len(), 1);
    let status = dispatcher.terminate()?;
    assert!(status.success(), "{status}");
    drop(cluster.ingress);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_record_is_dead_lettered_and_the_rest_still_delivered() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(1, "1s").await? else {
        return Ok(());
    };
    let receiver = Receiver::start().await?;
    cluster
        .api
        .subscribe(json!({"callback_url": receiver.url("hook"), "event": "*"}))
        .await?;
    let kafka = KafkaConfig {
        kafka_brokers: brokers(),
        ..KafkaConfig::default()
    };
    let mut config: ClientConfig = kafka.producer_config();
    config.set("client.id", "poison-test");
    let producer: FutureProducer = config.create()?;
    let events = cluster.topic("events");
    producer
        .send(
            FutureRecord::to(&events)
                .key("poison")
                .payload("this is not an event"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    cluster
        .api
        .publish(json!({"id": "after-poison", "event": "a", "payload": {}}))
        .await?;
    let dispatcher = cluster.dispatcher("dispatcher", &[])?;

    let got = receiver
        .wait_for("hook", 1, Duration::from_secs(60))
        .await?;
    assert_eq!(event_ids(&got), ["after-poison"]);
    let letters = cluster
        .dead_letters(|letters| {
            letters
                .iter()
                .any(|l| l.kind == DeadLetterKind::Undecodable)
        })
        .await?;
    let letter = letters
        .iter()
        .find(|l| l.kind == DeadLetterKind::Undecodable)
        .ok_or("no dead letter")?;
    assert_eq!(letter.original.as_deref(), Some("this is not an event"));
    assert!(
        letter.reason.contains("not a Kolbak event record"),
        "{}",
        letter.reason
    );
    assert_eq!(
        letter.source.as_ref().map(|s| s.topic.as_str()),
        Some(events.as_str())
    );
    let status = dispatcher.terminate()?;
    assert!(status.success(), "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_dispatcher_is_replaced_and_every_event_is_delivered() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(3, "1s,1s,1s").await? else {
        return Ok(());
    };
    let receiver = Receiver::start().await?;
    receiver.default_for(
        "slow",
        Answer {
            status: 200,
            delay: Duration::from_millis(100),
        },
    );
    cluster
        .api
        .subscribe(json!({"callback_url": receiver.url("slow"), "event": "*"}))
        .await?;
    let total = 60;
    let published = cluster.publish_numbered("k", total).await?;
    let first = cluster.dispatcher(
        "first",
        &[
            ("KOLBAK_MAX_IN_FLIGHT", "4"),
            ("KOLBAK_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "4"),
        ],
    )?;
    receiver
        .wait_for("slow", 10, Duration::from_secs(60))
        .await?;
    drop(first); // SIGKILL mid-stream: no commit, no goodbye to the group.
    let second = cluster.dispatcher(
        "second",
        &[
            ("KOLBAK_MAX_IN_FLIGHT", "4"),
            ("KOLBAK_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "4"),
        ],
    )?;

    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let seen: BTreeSet<String> = event_ids(&receiver.received("slow")).into_iter().collect();
        if seen == published {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {total} events delivered:\n{}",
            seen.len(),
            second.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let received = receiver.received("slow").len();
    eprintln!(
        "{total} events, {received} requests: {} repeated after the kill",
        received - total
    );
    for id in &published {
        let deliveries = cluster
            .api
            .wait_for_deliveries(id, Duration::from_secs(30), |items| {
                items.len() == 1 && items[0]["status"] == "success"
            })
            .await?;
        assert_eq!(
            deliveries.len(),
            1,
            "one delivery per event and subscription"
        );
    }
    let status = second.terminate()?;
    assert!(status.success(), "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_dispatchers_in_one_pool_share_the_partitions() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(4, "1s").await? else {
        return Ok(());
    };
    let receiver = Receiver::start().await?;
    cluster
        .api
        .subscribe(json!({"callback_url": receiver.url("hook"), "event": "*"}))
        .await?;
    let one = cluster.dispatcher("one", &[])?;
    let two = cluster.dispatcher("two", &[])?;
    for process in [&one, &two] {
        process
            .wait_for_output("partitions assigned", Duration::from_secs(60))
            .await?;
    }
    let total = 40;
    let published = cluster.publish_numbered("s", total).await?;
    let got = receiver
        .wait_for("hook", total, Duration::from_secs(60))
        .await?;
    let seen: BTreeSet<String> = event_ids(&got).into_iter().collect();
    assert_eq!(seen, published);
    // Each member ended up with some of the four partitions.
    for process in [&one, &two] {
        let owned = assigned_partitions(&process.output());
        assert!(
            owned > 0,
            "a member owns no partition:\n{}",
            process.output()
        );
    }
    for process in [one, two] {
        let status = process.terminate()?;
        assert!(status.success(), "{status}");
    }
    Ok(())
}

/// Partitions assigned minus partitions revoked, from a dispatcher's JSON log.
fn assigned_partitions(output: &str) -> i64 {
    output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|line| {
            let n = line["partitions"].as_i64().unwrap_or(0);
            match line["message"].as_str() {
                Some("partitions assigned") => n,
                Some("partitions revoked") => -n,
                _ => 0,
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn ordered_subscriptions_get_a_key_in_order_and_limits_hold() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(3, "1s,1s,1s").await? else {
        return Ok(());
    };
    let receiver = Receiver::start().await?;
    // The first delivery to the ordered endpoint fails twice: later events must wait for it.
    receiver.script("ordered", &[answer(500), answer(503)]);
    let slow = Answer {
        status: 200,
        delay: Duration::from_millis(150),
    };
    receiver.default_for("one-at-a-time", slow);
    let api = &cluster.api;
    api.subscribe(
        json!({"callback_url": receiver.url("ordered"), "event": "a",
        "ordering": "ordered"}),
    )
    .await?;
    api.subscribe(
        json!({"callback_url": receiver.url("one-at-a-time"), "event": "a",
        "max_in_flight": 1}),
    )
    .await?;
    let _dispatcher = cluster.dispatcher("dispatcher", &[])?;
    let total = 12;
    for n in 0..total {
        // Two ordering keys, interleaved: each key's events share a partition.
        let key = if n % 2 == 0 { "even" } else { "odd" };
        api.publish(
            json!({"id": format!("ord-{n}"), "event": "a", "ordering_key": key,
            "payload": n}),
        )
        .await?;
    }
    let timeout = Duration::from_secs(90);
    let ordered = receiver.wait_for("ordered", total + 2, timeout).await?;
    // Per key, successful deliveries (and every attempt) come in publish order.
    for key in ["even", "odd"] {
        let wanted: Vec<String> = (0..total)
            .filter(|n| (n % 2 == 0) == (key == "even"))
            .map(|n| format!("ord-{n}"))
            .collect();
        let mut seen: Vec<String> = event_ids(&ordered)
            .into_iter()
            .filter(|id| wanted.contains(id))
            .collect();
        seen.dedup();
        assert_eq!(seen, wanted, "{key}: out of order");
    }
    // The failed first event was retried in place before ord-2 (same key) was sent.
    let ids = event_ids(&ordered);
    let last_retry = ids.iter().rposition(|id| id == "ord-0").ok_or("no ord-0")?;
    let first_next = ids.iter().position(|id| id == "ord-2").ok_or("no ord-2")?;
    assert!(last_retry < first_next, "{ids:?}");

    // max_in_flight 1: each request starts after the previous one was answered.
    let one = receiver.wait_for("one-at-a-time", total, timeout).await?;
    for pair in one.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(140),
            "overlapping requests: {gap:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_delivery_is_sent_again_on_request_through_kafka() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(2, "1s").await? else {
        return Ok(());
    };
    let receiver = Receiver::start().await?;
    receiver.default_for("later", answer(500));
    let api = &cluster.api;
    api.subscribe(json!({"callback_url": receiver.url("later"), "event": "a"}))
        .await?;
    let _dispatcher = cluster.dispatcher("dispatcher", &[])?;
    let event = api
        .publish(json!({"id": "evt-manual", "event": "a", "payload": {"n": 1}}))
        .await?;
    let timeout = Duration::from_secs(60);
    let failed = api
        .wait_for_deliveries(&event, timeout, |d| {
            d.len() == 1 && d[0]["status"] == "failed"
        })
        .await?;
    let id = failed[0]["id"].as_str().ok_or("no delivery id")?.to_owned();
    assert_eq!(receiver.received("later").len(), 2);

    // The endpoint is back: ask for the delivery again.
    receiver.default_for("later", answer(200));
    let (status, body) = api
        .post(&format!("/v1/deliveries/{id}/retry"), json!({}))
        .await?;
    assert_eq!(status, 202, "{body}");
    let got = receiver.wait_for("later", 3, timeout).await?;
    assert_eq!(got[2].json()["payload"], json!({"n": 1}));
    assert_eq!(got[2].header("webhook-id"), "evt-manual");
    let done = api
        .wait_for_deliveries(&event, timeout, |d| {
            d.len() == 1 && d[0]["status"] == "success"
        })
        .await?;
    assert_eq!(done[0]["attempt_count"], 3);
    // A delivered one is not sent again; an unknown one is not found.
    let (status, _) = api
        .post(&format!("/v1/deliveries/{id}/retry"), json!({}))
        .await?;
    assert_eq!(status, 409);
    let (status, _) = api
        .post("/v1/deliveries/01nosuchdelivery0000000000/retry", json!({}))
        .await?;
    assert_eq!(status, 404);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.received("later").len(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_consumer_lag_gauge_follows_the_backlog() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(1, "1s").await? else {
        return Ok(());
    };
    let receiver = Receiver::start().await?;
    let slow = Answer {
        status: 200,
        delay: Duration::from_millis(2000),
    };
    receiver.default_for("slow", slow);
    let api = &cluster.api;
    api.subscribe(json!({"callback_url": receiver.url("slow"), "event": "a", "max_in_flight": 1}))
        .await?;
    let total = 8;
    cluster.publish_numbered("lag", total).await?;
    // Every slot taken pauses the partition, and the stall watch checks every second with the
    // shortest timeout it takes (twice the 6 s session timeout), which the 16 s backlog
    // outlasts: neither a held-back backlog nor the pauses may look like a stall.
    let dispatcher = cluster.dispatcher(
        "dispatcher",
        &[
            ("KOLBAK_CONSUMER_LAG_INTERVAL", "1s"),
            ("KOLBAK_CONSUMER_STALL_TIMEOUT", "12s"),
            ("KOLBAK_MAX_IN_FLIGHT", "2"),
            ("KOLBAK_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "1"),
        ],
    )?;
    let series = format!(
        "kolbak_kafka_consumer_lag{{topic=\"{}\"}}",
        cluster.topic("events")
    );
    let lag = || metric(&dispatcher, &series);
    // One delivery at a time, each answered after 2 s: the events wait, and the gauge says so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut highest = 0;
    while highest == 0 && tokio::time::Instant::now() < deadline {
        highest = highest.max(lag().await?.unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(highest > 0, "the gauge never showed the waiting events");
    assert!(highest <= i64::try_from(total)?, "{highest}");
    receiver
        .wait_for("slow", total, Duration::from_secs(60))
        .await?;
    // Once everything is delivered and committed, nothing is behind.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while lag().await? != Some(0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lag stayed at {:?}",
            lag().await?
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let restarts = metric(&dispatcher, "kolbak_kafka_consumer_restarts_total").await?;
    assert_eq!(
        restarts,
        Some(0),
        "a consumer that was reading was restarted"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_whose_subscription_was_deleted_is_dead_lettered_once() -> TestResult {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start(2, "3s").await? else {
        return Ok(());
    };
    let receiver = Receiver::start().await?;
    receiver.default_for("gone", answer(500));
    let api = &cluster.api;
    let (gone, _) = api
        .subscribe(json!({"callback_url": receiver.url("gone"), "event": "a", "pool": "billing"}))
        .await?;
    // Both pools read every retry tier; only billing delivers to this subscription.
    let billing = cluster.dispatcher("billing", &[("KOLBAK_POOL", "billing")])?;
    let other = cluster.dispatcher("other", &[("KOLBAK_POOL", "other")])?;
    api.publish(json!({"id": "evt-gone", "event": "a", "payload": {}}))
        .await?;
    receiver
        .wait_for("gone", 1, Duration::from_secs(60))
        .await?;
    // The retry waits 3 s in its tier; the subscription is deleted meanwhile.
    let (status, body) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/webhooks/{gone}"),
            None,
        )
        .await?;
    assert_eq!(status, 204, "{body}");
    let letters = cluster
        .dead_letters(|letters| {
            letters
                .iter()
                .any(|l| l.subscription_id.as_deref() == Some(gone.as_str()))
        })
        .await?;
    let letter = letters.first().ok_or("no dead letter")?;
    assert_eq!(letter.reason, "the subscription was deleted", "{letter:?}");
    // Long enough for the other pool to have read the record too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let series = "kolbak_dead_letters_total{kind=\"delivery_failed\"}";
    assert_eq!(metric(&billing, series).await?, Some(1));
    assert_eq!(metric(&other, series).await?, None, "dead-lettered twice");
    assert_eq!(receiver.received("gone").len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_mid_stream_loses_no_delivery() -> TestResult {
    let _serial = SERIAL.lock().await;
    if brokers() != DEFAULT_BROKERS {
        // Only the broker scripts/kafka.sh manages may be stopped; CI runs that one.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run the broker restart test against scripts/kafka.sh's broker"
        );
        eprintln!("note: KOLBAK_KAFKA_BROKERS is not scripts/kafka.sh's broker; skipping");
        return Ok(());
    }
    let Some(cluster) = Cluster::start(3, "1s,2s,4s").await? else {
        return Ok(());
    };
    let receiver = Receiver::start().await?;
    receiver.default_for(
        "steady",
        Answer {
            status: 200,
            delay: Duration::from_millis(100),
        },
    );
    let api = &cluster.api;
    api.subscribe(json!({"callback_url": receiver.url("steady"), "event": "a",
        "max_in_flight": 2}))
        .await?;
    // A consumer that stops reading after the restart starts over within seconds.
    let dispatcher = cluster.dispatcher(
        "dispatcher",
        &[
            ("KOLBAK_CONSUMER_LAG_INTERVAL", "1s"),
            ("KOLBAK_CONSUMER_STALL_TIMEOUT", "15s"),
        ],
    )?;
    let mut published = cluster.publish_numbered("before", 30).await?;
    // Deliveries are in flight (two at a time, 100 ms each) when the broker goes away.
    receiver
        .wait_for("steady", 3, Duration::from_secs(60))
        .await?;
    run_script("kafka.sh", "down")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    run_script("kafka.sh", "up")?;

    // Publishing works again once the producer reconnected.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while n < 10 {
        let body = json!({"id": format!("after-{n}"), "event": "a", "payload": n});
        match api.post("/v1/events", body).await? {
            (202, reply) => {
                published.insert(reply["data"]["id"].as_str().ok_or("no id")?.to_owned());
                n += 1;
            }
            (503, _) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            (status, reply) => return Err(format!("after the restart: {status} {reply}").into()),
        }
    }
    // Every accepted event arrives (at least once), and the log has one success for each.
    let timeout = Duration::from_secs(120);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let seen: BTreeSet<String> = event_ids(&receiver.received("steady"))
            .into_iter()
            .collect();
        if published.is_subset(&seen) {
            break;
        }
        if std::time::Instant::now() > deadline {
            let missing: Vec<_> = published.difference(&seen).collect();
            let log = dispatcher.output();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "never delivered: {missing:?}\ndispatcher log (last lines):\n{}",
                tail.join("\n")
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in &published {
        let deliveries = api
            .wait_for_deliveries(id, timeout, |d| d.len() == 1 && d[0]["status"] == "success")
            .await?;
        assert_eq!(deliveries.len(), 1, "{id}");
    }
    let restarts = metric(&dispatcher, "kolbak_kafka_consumer_restarts_total").await?;
    eprintln!("consumer restarts after the broker restart: {restarts:?}");
    Ok(())
}
