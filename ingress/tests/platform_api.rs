//! Probes, metrics, the OpenAPI document, fallbacks and rate limiting.

mod harness;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use harness::{Api, Auth};
use kolbak_ingress::ApiConfig;
use serde_json::json;

/// Every route DESIGN's REST API section lists (that this issue delivers).
const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/auth"),
    ("get", "/v1/keys"),
    ("post", "/v1/keys"),
    ("get", "/v1/keys/{id}"),
    ("patch", "/v1/keys/{id}"),
    ("delete", "/v1/keys/{id}"),
    ("get", "/v1/webhooks"),
    ("post", "/v1/webhooks"),
    ("get", "/v1/webhooks/{id}"),
    ("patch", "/v1/webhooks/{id}"),
    ("delete", "/v1/webhooks/{id}"),
    ("post", "/v1/webhooks/{id}/rotate-secret"),
    ("post", "/v1/events"),
    ("get", "/v1/webhooks/{id}/deliveries"),
    ("get", "/v1/events/{id}/deliveries"),
    ("get", "/v1/deliveries/{id}"),
    ("post", "/v1/deliveries/{id}/retry"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/v1/openapi.json"),
];

#[tokio::test]
async fn openapi_documents_exactly_the_served_routes() {
    let api = Api::new().await;
    let reply = api.get("/v1/openapi.json", &Auth::None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.json["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.")
    );
    let mut documented = BTreeSet::new();
    for (path, item) in reply.json["paths"].as_object().into_iter().flatten() {
        for method in item
            .as_object()
            .into_iter()
            .flatten()
            .map(|(m, _)| m.clone())
        {
            documented.insert((method, path.clone()));
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, expected);

    // Every documented route is served (not the 404/405 fallbacks).
    for (method, path) in &documented {
        let concrete = path.replace("{id}", "01jzzzzzzzzzzzzzzzzzzzzzzz");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap_or(Method::GET);
        let reply = api
            .call(method.clone(), &concrete, &api.admin(), None)
            .await;
        assert_ne!(reply.code(), "route_not_found", "{method} {path}");
        assert_ne!(reply.code(), "method_not_allowed", "{method} {path}");
    }
    assert!(reply.json["components"]["securitySchemes"]["bearer"].is_object());
    assert!(reply.json["components"]["securitySchemes"]["api_key"].is_object());
}

#[tokio::test]
async fn probes_answer() {
    let api = Api::new().await;
    let healthz = api.get("/healthz", &Auth::None).await;
    assert_eq!(healthz.status, StatusCode::OK);
    assert_eq!(
        healthz.json,
        json!({"data": {"status": "ok"}, "error": null, "pagination": null})
    );
    assert_eq!(api.get("/readyz", &Auth::None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_count_requests_and_events() {
    let api = Api::new().await;
    api.post(
        "/v1/events",
        &api.admin(),
        json!({"id": "m1", "event": "a", "payload": {}}),
    )
    .await;
    api.post(
        "/v1/events",
        &api.admin(),
        json!({"id": "m1", "event": "a", "payload": {}}),
    )
    .await;
    let reply = api.get("/metrics", &Auth::None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("application/openmetrics-text")
    );
    let text = &reply.text;
    assert!(
        text.contains(r#"kolbak_events_total{outcome="accepted"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"kolbak_events_total{outcome="duplicate"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"kolbak_http_requests_total{method="POST",route="/v1/events",status="202"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains("kolbak_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(!text.contains("admin-secret"), "no secrets in metrics");
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_envelope() {
    let api = Api::new().await;
    let reply = api.get("/v1/nothing", &api.admin()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.code(), "route_not_found");
    let reply = api
        .call(Method::PUT, "/v1/webhooks", &api.admin(), None)
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.code(), "method_not_allowed");
}

#[tokio::test]
async fn each_credential_is_rate_limited_with_retry_after() {
    let api = Api::with_config(ApiConfig {
        rate_limit_per_second: 1,
        rate_limit_burst: 3,
        ..ApiConfig::default()
    })
    .await;
    let (_, key) = api.key(&["read:webhooks"]).await;
    let key = Auth::ApiKey(key);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(api.get("/v1/webhooks", &key).await);
    }
    let limited = statuses
        .iter()
        .find(|r| r.status == StatusCode::TOO_MANY_REQUESTS);
    let Some(limited) = limited else {
        panic!("never limited")
    };
    assert_eq!(limited.code(), "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    assert!(retry_after >= 1);
    assert_eq!(
        statuses
            .iter()
            .filter(|r| r.status == StatusCode::OK)
            .count(),
        3
    );
    // The admin has its own budget (the harness's key creation used one of its three).
    assert_eq!(
        api.get("/v1/webhooks", &api.admin()).await.status,
        StatusCode::OK
    );
}
