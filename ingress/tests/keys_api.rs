//! `/v1/keys`: CRUD, one-time key disclosure, scope rules, pagination and `last_accessed_at`.

mod harness;

use axum::http::{Method, StatusCode};
use harness::{Api, Auth};
use serde_json::json;

#[tokio::test]
async fn key_is_shown_once_and_stored_hashed() {
    let api = Api::new().await;
    let created = api
        .post(
            "/v1/keys",
            &api.admin(),
            json!({"name": "producer", "description": "billing", "scopes": ["write:events"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.data()["id"].as_str().unwrap_or_default().to_owned();
    let key = created.data()["key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(key.starts_with("kbk_") && key.len() > 40, "{key}");
    let prefix = created.data()["key_prefix"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(key.starts_with(&prefix) && prefix.len() <= 12);
    assert_eq!(created.data()["scopes"], json!(["write:events"]));

    let one = api.get(&format!("/v1/keys/{id}"), &api.admin()).await;
    assert_eq!(one.status, StatusCode::OK);
    assert!(one.data().get("key").is_none());
    assert!(!one.text.contains(&key));
    assert_eq!(one.data()["key_prefix"], prefix.as_str());
    assert_eq!(one.data()["name"], "producer");

    let list = api.get("/v1/keys", &api.admin()).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(!list.text.contains(&key));
    assert_eq!(list.json["pagination"]["total"], 1);

    // Stored as a hash: the database file does not contain the key.
    let db = std::fs::read(api.store.path()).unwrap_or_default();
    let needle = key.as_bytes();
    assert!(
        !db.windows(needle.len()).any(|w| w == needle),
        "plaintext key found in the database"
    );
}

#[tokio::test]
async fn patch_and_delete() {
    let api = Api::new().await;
    let (id, _) = api.key(&["read:webhooks"]).await;
    let path = format!("/v1/keys/{id}");
    let patched = api
        .call(Method::PATCH, &path, &api.admin(), Some(json!({"name": "renamed", "description": "d", "scopes": ["read:keys", "read:keys"]})))
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.data()["name"], "renamed");
    assert_eq!(patched.data()["scopes"], json!(["read:keys"]));
    let cleared = api
        .call(
            Method::PATCH,
            &path,
            &api.admin(),
            Some(json!({"description": null})),
        )
        .await;
    assert_eq!(cleared.data()["description"], serde_json::Value::Null);
    assert_eq!(cleared.data()["name"], "renamed");

    assert_eq!(
        api.call(Method::DELETE, &path, &api.admin(), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    for method in [Method::GET, Method::DELETE] {
        let reply = api.call(method, &path, &api.admin(), None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.code(), "not_found");
    }
    let reply = api
        .call(
            Method::PATCH,
            &path,
            &api.admin(),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_fields_are_422_naming_the_field() {
    let api = Api::new().await;
    for (body, field) in [
        (json!({"name": "x", "scopes": []}), "scopes"),
        (json!({"name": "x", "scopes": ["root"]}), "scopes[0]"),
        (json!({"name": "", "scopes": ["read:keys"]}), "name"),
        (json!({"scopes": ["read:keys"]}), "name"),
        (
            json!({"name": "x", "scopes": ["read:keys"], "extra": 1}),
            "extra",
        ),
        (json!({"name": 5, "scopes": ["read:keys"]}), "name"),
    ] {
        let reply = api.post("/v1/keys", &api.admin(), body.clone()).await;
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
async fn keys_cannot_grant_more_than_they_hold() {
    let api = Api::new().await;
    let (_, key) = api.key(&["write:keys", "read:keys"]).await;
    let auth = Auth::ApiKey(key);
    let escalate = api
        .post(
            "/v1/keys",
            &auth,
            json!({"name": "x", "scopes": ["write:events"]}),
        )
        .await;
    assert_eq!(escalate.status, StatusCode::FORBIDDEN);
    assert_eq!(escalate.code(), "scope_escalation");
    let ok = api
        .post(
            "/v1/keys",
            &auth,
            json!({"name": "x", "scopes": ["read:keys"]}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let id = ok.data()["id"].as_str().unwrap_or_default().to_owned();
    let patch = api
        .call(
            Method::PATCH,
            &format!("/v1/keys/{id}"),
            &auth,
            Some(json!({"scopes": ["write:webhooks"]})),
        )
        .await;
    assert_eq!(patch.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_route_enforces_its_scope() {
    let api = Api::new().await;
    let (_, key) = api.key(&["read:deliveries"]).await;
    let auth = Auth::ApiKey(key);
    let (key_id, _) = api.key(&["read:keys"]).await;
    let hook = api.webhook("*").await;
    let hook_id = hook["id"].as_str().unwrap_or_default();
    let cases = [
        (Method::GET, "/v1/keys".to_owned(), None, "read:keys"),
        (
            Method::POST,
            "/v1/keys".to_owned(),
            Some(json!({"name": "x", "scopes": ["read:keys"]})),
            "write:keys",
        ),
        (Method::GET, format!("/v1/keys/{key_id}"), None, "read:keys"),
        (
            Method::PATCH,
            format!("/v1/keys/{key_id}"),
            Some(json!({"name": "y"})),
            "write:keys",
        ),
        (
            Method::DELETE,
            format!("/v1/keys/{key_id}"),
            None,
            "write:keys",
        ),
        (
            Method::GET,
            "/v1/webhooks".to_owned(),
            None,
            "read:webhooks",
        ),
        (
            Method::POST,
            "/v1/webhooks".to_owned(),
            Some(json!({"callback_url": "https://e.com", "event": "*"})),
            "write:webhooks",
        ),
        (
            Method::GET,
            format!("/v1/webhooks/{hook_id}"),
            None,
            "read:webhooks",
        ),
        (
            Method::PATCH,
            format!("/v1/webhooks/{hook_id}"),
            Some(json!({"is_active": false})),
            "write:webhooks",
        ),
        (
            Method::DELETE,
            format!("/v1/webhooks/{hook_id}"),
            None,
            "write:webhooks",
        ),
        (
            Method::POST,
            format!("/v1/webhooks/{hook_id}/rotate-secret"),
            None,
            "write:webhooks",
        ),
        (
            Method::POST,
            "/v1/events".to_owned(),
            Some(json!({"event": "a", "payload": {}})),
            "write:events",
        ),
    ];
    for (method, path, body, scope) in cases {
        let reply = api.call(method.clone(), &path, &auth, body).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(
            reply.json["error"]["details"]["required_scope"], scope,
            "{method} {path}"
        );
    }
    // Nothing changed.
    assert_eq!(
        api.get(&format!("/v1/keys/{key_id}"), &api.admin())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        api.get(&format!("/v1/webhooks/{hook_id}"), &api.admin())
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn pagination_edges() {
    let api = Api::new().await;
    for _ in 0..5 {
        api.key(&["read:keys"]).await;
    }
    let page = api.get("/v1/keys?limit=2&offset=1", &api.admin()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.data().as_array().map(Vec::len), Some(2));
    assert_eq!(
        page.json["pagination"],
        json!({"limit": 2, "offset": 1, "total": 5})
    );
    let past = api.get("/v1/keys?offset=50", &api.admin()).await;
    assert_eq!(past.data(), &json!([]));
    assert_eq!(past.json["pagination"]["total"], 5);
    let all = api.get("/v1/keys?limit=100", &api.admin()).await;
    assert_eq!(all.data().as_array().map(Vec::len), Some(5));
    for bad in ["limit=0", "limit=101"] {
        let reply = api.get(&format!("/v1/keys?{bad}"), &api.admin()).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(reply.json["error"]["details"]["field"], "limit");
    }
    for bad in ["limit=abc", "offset=-1"] {
        let reply = api.get(&format!("/v1/keys?{bad}"), &api.admin()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.code(), "invalid_request");
    }
}

#[tokio::test]
async fn use_updates_last_accessed_at() {
    let api = Api::new().await;
    let (id, key) = api.key(&["read:webhooks"]).await;
    let before = api.get(&format!("/v1/keys/{id}"), &api.admin()).await;
    assert_eq!(before.data()["last_accessed_at"], serde_json::Value::Null);
    assert_eq!(
        api.get("/v1/webhooks", &Auth::ApiKey(key)).await.status,
        StatusCode::OK
    );
    let after = api.get(&format!("/v1/keys/{id}"), &api.admin()).await;
    assert!(
        after.data()["last_accessed_at"].is_string(),
        "{}",
        after.text
    );
}
