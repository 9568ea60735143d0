//! The delivery log routes: listings, one delivery with attempts, manual retries, scopes and
//! error statuses. Deliveries are made through the real store's queue and log interfaces.

mod harness;

use axum::http::{Method, StatusCode};
use chrono::Utc;
use harness::{Api, Auth};
use kolbak_core::{Attempt, AttemptOutcome, DeliveryLog, PlannedDelivery, Queue};
use serde_json::json;

/// Publishes an event for a fresh subscription and fans it out; returns (event, subscription,
/// delivery) ids.
async fn delivery(api: &Api, event: &str) -> (String, String, String) {
    let hook = api.webhook("*").await;
    let subscription = hook["id"].as_str().unwrap_or_default().to_owned();
    let reply = api
        .post(
            "/v1/events",
            &api.admin(),
            json!({"id": event, "event": "a", "payload": {}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let queued = api.store.pending_events(0, 10).await.unwrap_or_default();
    let seq = queued
        .iter()
        .find(|q| q.event.event.id == event)
        .map(|q| q.seq)
        .unwrap_or(0);
    let id = kolbak_core::id::new_id();
    let planned = vec![PlannedDelivery {
        id: id.clone(),
        subscription_id: subscription.clone(),
        max_attempts: 3,
        ordered: false,
    }];
    assert!(api.store.fan_out(seq, planned, Utc::now()).await.is_ok());
    (event.to_owned(), subscription, id)
}

async fn attempt(api: &Api, delivery: &str, number: u32, code: u16, outcome: AttemptOutcome) {
    let attempt = Attempt {
        delivery_id: delivery.to_owned(),
        number,
        attempted_at: Utc::now(),
        duration_ms: 12,
        response_code: Some(code),
        response_body: Some(format!("answer {number}")),
        error: None,
    };
    let recorded = api.store.record_attempt(&attempt, outcome).await;
    assert!(matches!(recorded, Ok(Some(_))), "{recorded:?}");
}

#[tokio::test]
async fn listings_detail_and_filters() {
    let api = Api::new().await;
    let (event, subscription, id) = delivery(&api, "evt-a").await;
    attempt(
        &api,
        &id,
        1,
        503,
        AttemptOutcome::RetryAt(Utc::now() + chrono::Duration::hours(1)),
    )
    .await;

    let by_event = api
        .get(&format!("/v1/events/{event}/deliveries"), &api.admin())
        .await;
    assert_eq!(by_event.status, StatusCode::OK, "{}", by_event.text);
    assert_eq!(by_event.json["pagination"]["total"], 1);
    let item = &by_event.data()[0];
    for field in [
        "id",
        "event_id",
        "subscription_id",
        "status",
        "attempt_count",
        "next_attempt_at",
        "created_at",
        "updated_at",
    ] {
        assert!(item.get(field).is_some(), "missing {field}");
    }
    assert_eq!(item["status"], "retrying");
    assert_eq!(item["attempt_count"], 1);
    assert_eq!(item["last_response_code"], 503);

    let retrying = api
        .get(
            &format!("/v1/webhooks/{subscription}/deliveries?status=retrying"),
            &api.admin(),
        )
        .await;
    assert_eq!(retrying.json["pagination"]["total"], 1);
    let succeeded = api
        .get(
            &format!("/v1/webhooks/{subscription}/deliveries?status=success"),
            &api.admin(),
        )
        .await;
    assert_eq!(succeeded.json["pagination"]["total"], 0);
    let bad = api
        .get(
            &format!("/v1/webhooks/{subscription}/deliveries?status=lost"),
            &api.admin(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.code(), "invalid_request");
    let bad = api
        .get(
            &format!("/v1/events/{event}/deliveries?limit=0"),
            &api.admin(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    let detail = api.get(&format!("/v1/deliveries/{id}"), &api.admin()).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert_eq!(detail.data()["attempts"][0]["number"], 1);
    assert_eq!(detail.data()["attempts"][0]["response_code"], 503);
    assert_eq!(detail.data()["attempts"][0]["response_body"], "answer 1");
    assert_eq!(detail.data()["attempts"][0]["duration_ms"], 12);

    let none = api.get("/v1/events/unknown/deliveries", &api.admin()).await;
    assert_eq!(none.data(), &json!([]));
    let missing = api
        .get("/v1/deliveries/01jzzzzzzzzzzzzzzzzzzzzzzz", &api.admin())
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "not_found");
}

#[tokio::test]
async fn newest_first_with_pages() {
    let api = Api::new().await;
    let mut ids = Vec::new();
    let hook = api.webhook("*").await;
    let subscription = hook["id"].as_str().unwrap_or_default().to_owned();
    for i in 0..5 {
        let event = format!("evt-{i}");
        api.post(
            "/v1/events",
            &api.admin(),
            json!({"id": event, "event": "a", "payload": {}}),
        )
        .await;
        let queued = api.store.pending_events(0, 10).await.unwrap_or_default();
        let id = kolbak_core::id::new_id();
        let planned = vec![PlannedDelivery {
            id: id.clone(),
            subscription_id: subscription.clone(),
            max_attempts: 1,
            ordered: false,
        }];
        assert!(
            api.store
                .fan_out(queued[0].seq, planned, Utc::now())
                .await
                .is_ok()
        );
        ids.push(id);
    }
    let page = api
        .get(
            &format!("/v1/webhooks/{subscription}/deliveries?limit=2&offset=1"),
            &api.admin(),
        )
        .await;
    let got: Vec<&str> = page
        .data()
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(got, vec![ids[3].as_str(), ids[2].as_str()]);
    assert_eq!(
        page.json["pagination"],
        json!({"limit": 2, "offset": 1, "total": 5})
    );
}

#[tokio::test]
async fn manual_retry_rules() {
    let api = Api::new().await;
    let (_, _, failed) = delivery(&api, "evt-failed").await;
    attempt(&api, &failed, 1, 400, AttemptOutcome::Fail).await;
    let reply = api
        .call(
            Method::POST,
            &format!("/v1/deliveries/{failed}/retry"),
            &api.admin(),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    assert_eq!(reply.data()["max_attempts"], 2);
    assert!(reply.data()["next_attempt_at"].is_string());
    assert_ne!(reply.data()["status"], "failed");

    let (_, _, delivered) = delivery(&api, "evt-ok").await;
    attempt(&api, &delivered, 1, 200, AttemptOutcome::Success).await;
    let reply = api
        .call(
            Method::POST,
            &format!("/v1/deliveries/{delivered}/retry"),
            &api.admin(),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.code(), "conflict");

    let reply = api
        .call(
            Method::POST,
            "/v1/deliveries/01jzzzzzzzzzzzzzzzzzzzzzzz/retry",
            &api.admin(),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delivery_routes_enforce_scopes() {
    let api = Api::new().await;
    let (event, subscription, id) = delivery(&api, "evt-scoped").await;
    let (_, reader) = api.key(&["read:deliveries"]).await;
    let (_, writer) = api.key(&["write:webhooks"]).await;
    let reader = Auth::ApiKey(reader);
    let writer = Auth::ApiKey(writer);
    for path in [
        format!("/v1/events/{event}/deliveries"),
        format!("/v1/webhooks/{subscription}/deliveries"),
        format!("/v1/deliveries/{id}"),
    ] {
        assert_eq!(
            api.get(&path, &reader).await.status,
            StatusCode::OK,
            "{path}"
        );
        let denied = api.get(&path, &writer).await;
        assert_eq!(denied.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(
            denied.json["error"]["details"]["required_scope"],
            "read:deliveries"
        );
    }
    // A retry changes delivery: it needs write:webhooks as well as read:deliveries.
    let retry = format!("/v1/deliveries/{id}/retry");
    assert_eq!(
        api.call(Method::POST, &retry, &reader, None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.call(Method::POST, &retry, &writer, None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.call(Method::POST, &retry, &Auth::None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}
