//! `POST /v1/events`: validation, durable persistence before the 202, duplicates, size limits.

mod harness;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use harness::{Api, Auth};
use kolbak_ingress::ApiConfig;
use serde_json::json;

#[tokio::test]
async fn accepted_events_are_queued_before_the_202() {
    let api = Api::new().await;
    let (_, key) = api.key(&["write:events"]).await;
    let reply = api
        .post(
            "/v1/events",
            &Auth::ApiKey(key),
            json!({"event": "order.created", "source": "shop", "payload": {"total": 42}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    let id = reply.data()["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(id.len(), 26, "a ULID is generated");
    assert_eq!(reply.data()["duplicate"], false);
    let queued = api.store.queued_events(0, 10).await.unwrap_or_default();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].event.event.id, id);
    assert_eq!(queued[0].event.event.payload, json!({"total": 42}));
    assert_eq!(queued[0].event.event.source.as_deref(), Some("shop"));
}

#[tokio::test]
async fn a_repeated_id_is_accepted_but_queued_once() {
    let api = Api::new().await;
    let body = json!({"id": "evt-1", "event": "a.b", "event_time": "2026-01-01T00:00:00Z", "payload": [1]});
    let first = api.post("/v1/events", &api.admin(), body.clone()).await;
    let second = api.post("/v1/events", &api.admin(), body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(first.data()["id"], "evt-1");
    assert_eq!(second.data()["id"], "evt-1");
    assert_eq!(second.data()["duplicate"], true);
    let queued = api.store.queued_events(0, 10).await.unwrap_or_default();
    assert_eq!(queued.len(), 1);
}

#[tokio::test]
async fn invalid_events_name_the_field() {
    let api = Api::new().await;
    for (body, field) in [
        (json!({"payload": {}}), "event"),
        (json!({"event": "a"}), "payload"),
        (json!({"event": "", "payload": {}}), "event"),
        (json!({"event": "has space", "payload": {}}), "event"),
        (json!({"id": "", "event": "a", "payload": {}}), "id"),
        (
            json!({"id": "x".repeat(256), "event": "a", "payload": {}}),
            "id",
        ),
        (
            json!({"event": "a", "event_time": "yesterday", "payload": {}}),
            "event_time",
        ),
        (json!({"event": "a", "source": 7, "payload": {}}), "source"),
        (json!({"event": "a", "payload": {}, "data": {}}), "data"),
    ] {
        let reply = api.post("/v1/events", &api.admin(), body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "invalid_field");
        assert_eq!(reply.json["error"]["details"]["field"], field, "{body}");
    }
    assert!(
        api.store
            .queued_events(0, 10)
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn malformed_and_non_json_bodies_are_rejected() {
    let api = Api::new().await;
    let send = |content_type: &'static str, body: &'static str| {
        Request::builder()
            .method(Method::POST)
            .uri("/v1/events")
            .header("authorization", format!("Bearer {}", api.admin))
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap_or_default()
    };
    let reply = api.send(send("application/json", "{\"event\": ")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), "malformed_json");
    assert!(
        reply.json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("EOF"),
        "{}",
        reply.text
    );
    let reply = api.send(send("text/plain", "{}")).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(reply.code(), "unsupported_media_type");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let api = Api::with_config(ApiConfig {
        max_payload_bytes: 2048,
        rate_limit_per_second: 0,
        ..ApiConfig::default()
    })
    .await;
    let big = json!({"event": "a", "payload": "x".repeat(4096)});
    let reply = api.post("/v1/events", &api.admin(), big).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text
    );
    assert_eq!(reply.code(), "payload_too_large");
    let small = json!({"event": "a", "payload": "x".repeat(1000)});
    assert_eq!(
        api.post("/v1/events", &api.admin(), small).await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn the_default_limit_is_one_mebibyte() {
    let api = Api::new().await;
    let body = json!({"event": "a", "payload": "x".repeat(1024 * 1024)});
    let reply = api.post("/v1/events", &api.admin(), body).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let body = json!({"event": "a", "payload": "x".repeat(1000 * 1000)});
    assert_eq!(
        api.post("/v1/events", &api.admin(), body).await.status,
        StatusCode::ACCEPTED
    );
}
