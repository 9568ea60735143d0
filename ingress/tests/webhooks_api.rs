//! `/v1/webhooks`: CRUD, filters, pagination, secret disclosure and rotation.

mod harness;

use axum::http::{Method, StatusCode};
use harness::Api;
use serde_json::{Value, json};

fn ids(reply: &harness::Reply) -> Vec<String> {
    reply
        .data()
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn create_returns_the_secret_once() {
    let api = Api::new().await;
    let created = api
        .post(
            "/v1/webhooks",
            &api.admin(),
            json!({"callback_url": "https://example.com/hook", "event": "order.*", "description": "orders",
                   "ordering": "ordered", "max_in_flight": 4, "rate_limit_per_second": 10}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let data = created.data();
    let id = data["id"].as_str().unwrap_or_default();
    assert_eq!(id.len(), 26);
    assert_eq!(id, id.to_lowercase());
    let secret = data["secret"].as_str().unwrap_or_default().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(data["is_active"], true);
    assert_eq!(data["pool"], "default");
    assert_eq!(data["ordering"], "ordered");
    assert_eq!(data["max_in_flight"], 4);

    let one = api.get(&format!("/v1/webhooks/{id}"), &api.admin()).await;
    assert_eq!(one.status, StatusCode::OK);
    assert!(one.data().get("secret").is_none());
    assert!(!one.text.contains(&secret));
    let list = api.get("/v1/webhooks", &api.admin()).await;
    assert!(!list.text.contains(&secret));
    let patched = api
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            &api.admin(),
            Some(json!({"description": "x"})),
        )
        .await;
    assert!(!patched.text.contains(&secret));
}

#[tokio::test]
async fn own_secrets_are_accepted_when_valid() {
    let api = Api::new().await;
    let mine = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let created = api
        .post(
            "/v1/webhooks",
            &api.admin(),
            json!({"callback_url": "https://e.com/h", "event": "*", "secret": mine}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.data()["secret"], mine);
    let bad = api
        .post(
            "/v1/webhooks",
            &api.admin(),
            json!({"callback_url": "https://e.com/h", "event": "*", "secret": "short"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json["error"]["details"]["field"], "secret");
}

#[tokio::test]
async fn rotation_returns_a_new_secret_and_keeps_the_old_one_signing() {
    let api = Api::new().await;
    let hook = api.webhook("*").await;
    let id = hook["id"].as_str().unwrap_or_default();
    let rotated = api
        .call(
            Method::POST,
            &format!("/v1/webhooks/{id}/rotate-secret"),
            &api.admin(),
            None,
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    let next = rotated.data()["secret"].as_str().unwrap_or_default();
    assert!(next.starts_with("whsec_"));
    assert_ne!(next, hook["secret"].as_str().unwrap_or_default());
    assert!(rotated.data()["previous_secret_expires_at"].is_string());
    let stored = kolbak_core::Registry::get_subscription(api.store.as_ref(), id).await;
    let Ok(Some(stored)) = stored else {
        panic!("{stored:?}")
    };
    let now = chrono::Utc::now();
    let valid: Vec<&str> = stored
        .secrets
        .valid_at(now)
        .into_iter()
        .map(|s| s.expose())
        .collect();
    assert_eq!(
        valid,
        vec![next, hook["secret"].as_str().unwrap_or_default()]
    );
    let gone = api
        .call(
            Method::POST,
            "/v1/webhooks/01jzzzzzzzzzzzzzzzzzzzzzzz/rotate-secret",
            &api.admin(),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn patch_changes_and_clears_fields() {
    let api = Api::new().await;
    let hook = api.webhook("a.b").await;
    let path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap_or_default());
    let patched = api
        .call(Method::PATCH, &path, &api.admin(),
            Some(json!({"callback_url": "https://other.example/x", "event": "c.*", "is_active": false,
                        "description": "d", "max_in_flight": 3, "pool": "critical"})))
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.data()["callback_url"], "https://other.example/x");
    assert_eq!(patched.data()["event"], "c.*");
    assert_eq!(patched.data()["is_active"], false);
    assert_eq!(patched.data()["pool"], "critical");
    let cleared = api
        .call(
            Method::PATCH,
            &path,
            &api.admin(),
            Some(json!({"description": null, "max_in_flight": null})),
        )
        .await;
    assert_eq!(cleared.data()["description"], Value::Null);
    assert_eq!(cleared.data()["max_in_flight"], Value::Null);
    assert_eq!(cleared.data()["event"], "c.*");
    for (body, field) in [
        (json!({"callback_url": "ftp://x"}), "callback_url"),
        (json!({"event": "bad pattern"}), "event"),
        (json!({"max_in_flight": 0}), "max_in_flight"),
        (json!({"pool": "Not A Label"}), "pool"),
        (json!({"ordering": "sideways"}), "ordering"),
        (json!({"is_active": "yes"}), "is_active"),
    ] {
        let reply = api
            .call(Method::PATCH, &path, &api.admin(), Some(body.clone()))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.json["error"]["details"]["field"], field, "{body}");
    }
}

#[tokio::test]
async fn create_validates_every_field() {
    let api = Api::new().await;
    for (body, field) in [
        (json!({"event": "*"}), "callback_url"),
        (json!({"callback_url": "https://e.com"}), "event"),
        (
            json!({"callback_url": "not a url", "event": "*"}),
            "callback_url",
        ),
        (
            json!({"callback_url": "https://u:p@e.com", "event": "*"}),
            "callback_url",
        ),
        (
            json!({"callback_url": "https://e.com", "event": "*.x"}),
            "event",
        ),
        (
            json!({"callback_url": "https://e.com", "event": "*", "description": "d".repeat(1025)}),
            "description",
        ),
        (
            json!({"callback_url": "https://e.com", "event": "*", "rate_limit_per_second": 0}),
            "rate_limit_per_second",
        ),
        (
            json!({"callback_url": "https://e.com", "event": "*", "unknown": true}),
            "unknown",
        ),
    ] {
        let reply = api.post("/v1/webhooks", &api.admin(), body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "invalid_field");
        assert_eq!(reply.json["error"]["details"]["field"], field, "{body}");
    }
}

#[tokio::test]
async fn list_filters_and_pages() {
    let api = Api::new().await;
    let all = api.webhook("*").await;
    let orders = api.webhook("order.*").await;
    let created = api.webhook("order.created").await;
    let users = api.webhook("user.deleted").await;
    let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_owned();
    let off = api
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{}", id(&users)),
            &api.admin(),
            Some(json!({"is_active": false})),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK);

    let reply = api.get("/v1/webhooks", &api.admin()).await;
    assert_eq!(
        ids(&reply),
        vec![id(&all), id(&orders), id(&created), id(&users)]
    );
    assert_eq!(
        reply.json["pagination"],
        json!({"limit": 20, "offset": 0, "total": 4})
    );

    let reply = api
        .get("/v1/webhooks?events=order.created", &api.admin())
        .await;
    assert_eq!(ids(&reply), vec![id(&all), id(&orders), id(&created)]);
    let reply = api.get("/v1/webhooks?events=order.*", &api.admin()).await;
    assert_eq!(ids(&reply), vec![id(&all), id(&orders)]);
    let reply = api
        .get(
            "/v1/webhooks?events=user.deleted,order.shipped",
            &api.admin(),
        )
        .await;
    assert_eq!(ids(&reply), vec![id(&all), id(&orders), id(&users)]);
    let reply = api
        .get(
            "/v1/webhooks?events=user.deleted&events=order.shipped",
            &api.admin(),
        )
        .await;
    assert_eq!(ids(&reply), vec![id(&all), id(&orders), id(&users)]);

    let reply = api.get("/v1/webhooks?is_active=false", &api.admin()).await;
    assert_eq!(ids(&reply), vec![id(&users)]);
    let reply = api
        .get(
            &format!("/v1/webhooks?ids={},{}", id(&created), id(&all)),
            &api.admin(),
        )
        .await;
    assert_eq!(ids(&reply), vec![id(&all), id(&created)]);
    let reply = api
        .get(
            &format!("/v1/webhooks?ids={}&is_active=true", id(&users)),
            &api.admin(),
        )
        .await;
    assert_eq!(ids(&reply), Vec::<String>::new());
    assert_eq!(reply.json["pagination"]["total"], 0);

    let reply = api
        .get("/v1/webhooks?limit=1&offset=1&is_active=true", &api.admin())
        .await;
    assert_eq!(ids(&reply), vec![id(&orders)]);
    assert_eq!(
        reply.json["pagination"],
        json!({"limit": 1, "offset": 1, "total": 3})
    );

    for bad in ["limit=0", "limit=101"] {
        let reply = api.get(&format!("/v1/webhooks?{bad}"), &api.admin()).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let reply = api.get("/v1/webhooks?is_active=maybe", &api.admin()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn delete_then_404() {
    let api = Api::new().await;
    let hook = api.webhook("*").await;
    let path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap_or_default());
    let deleted = api.call(Method::DELETE, &path, &api.admin(), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.text.is_empty());
    for method in [Method::GET, Method::DELETE] {
        let reply = api.call(method, &path, &api.admin(), None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.code(), "not_found");
    }
}
