//! `POST /v1/auth` and credential checking on every route.

mod harness;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use harness::{ADMIN_ID, ADMIN_SECRET, Api, Auth, TestResult};
use serde_json::json;

#[tokio::test]
async fn admin_gets_a_bearer_token_with_every_scope() {
    let api = Api::new().await;
    let reply = api.token_reply(ADMIN_ID, ADMIN_SECRET, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json["token_type"], "Bearer");
    assert_eq!(reply.json["expires_in"], 3600);
    assert_eq!(reply.headers["cache-control"], "no-store");
    let scope = reply.json["scope"].as_str().unwrap_or_default();
    for s in [
        "read:webhooks",
        "write:webhooks",
        "read:keys",
        "write:keys",
        "write:events",
        "read:deliveries",
    ] {
        assert!(scope.contains(s), "{scope}");
    }
    // The token is a JWT whose header names HS256.
    let token = reply.json["access_token"].as_str().unwrap_or_default();
    let header = token.split('.').next().unwrap_or_default();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap_or_default();
    assert!(String::from_utf8_lossy(&header).contains("HS256"));
}

#[tokio::test]
async fn json_bodies_and_basic_auth_work_too() {
    let api = Api::new().await;
    let reply = api
        .post("/v1/auth", &Auth::None, json!({"grant_type": "client_credentials", "client_id": ADMIN_ID, "client_secret": ADMIN_SECRET}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN_ID}:{ADMIN_SECRET}"));
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/auth")
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("grant_type=client_credentials"));
    let Ok(request) = request else {
        panic!("request")
    };
    let reply = api.send(request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test]
async fn token_errors_use_oauth2_codes() {
    let api = Api::new().await;
    let wrong = api.token_reply(ADMIN_ID, "wrong-secret", None).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json["error"], "invalid_client");
    assert!(!wrong.text.contains(ADMIN_SECRET));

    let unknown = api.token_reply("nobody", "whatever", None).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.json["error"], "invalid_client");

    let scope = api
        .token_reply(ADMIN_ID, ADMIN_SECRET, Some("write:everything"))
        .await;
    assert_eq!(scope.status, StatusCode::BAD_REQUEST);
    assert_eq!(scope.json["error"], "invalid_scope");

    let grant = api
        .post(
            "/v1/auth",
            &Auth::None,
            json!({"grant_type": "password", "client_id": ADMIN_ID, "client_secret": ADMIN_SECRET}),
        )
        .await;
    assert_eq!(grant.status, StatusCode::BAD_REQUEST);
    assert_eq!(grant.json["error"], "unsupported_grant_type");

    let missing = api
        .post("/v1/auth", &Auth::None, json!({"client_id": ADMIN_ID}))
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.json["error"], "invalid_request");

    let malformed = api
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/v1/auth")
                .header("content-type", "application/json")
                .body(Body::from("{not json"))
                .unwrap_or_default(),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.json["error"], "invalid_request");
}

#[tokio::test]
async fn narrowed_tokens_carry_only_the_requested_scopes() {
    let api = Api::new().await;
    let token = api
        .token(ADMIN_ID, ADMIN_SECRET, Some("read:webhooks"))
        .await;
    let auth = Auth::Bearer(token);
    assert_eq!(api.get("/v1/webhooks", &auth).await.status, StatusCode::OK);
    let denied = api.get("/v1/keys", &auth).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.code(), "insufficient_scope");
    assert_eq!(
        denied.json["error"]["details"]["required_scope"],
        "read:keys"
    );
}

#[tokio::test]
async fn api_keys_are_clients_and_header_credentials() -> TestResult {
    let api = Api::new().await;
    let (id, key) = api.key(&["write:events", "read:webhooks"]).await;

    let reply = api.token_reply(&id, &key, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json["scope"], "read:webhooks write:events");
    let bearer = Auth::Bearer(
        reply.json["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    );
    assert_eq!(
        api.get("/v1/webhooks", &bearer).await.status,
        StatusCode::OK
    );
    assert_eq!(
        api.get("/v1/keys", &bearer).await.status,
        StatusCode::FORBIDDEN
    );

    let header = Auth::ApiKey(key.clone());
    assert_eq!(
        api.get("/v1/webhooks", &header).await.status,
        StatusCode::OK
    );
    assert_eq!(
        api.get("/v1/keys", &header).await.status,
        StatusCode::FORBIDDEN
    );

    // A key is not interchangeable with another key's id.
    let (other_id, _) = api.key(&["read:webhooks"]).await;
    assert_eq!(
        api.token_reply(&other_id, &key, None).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Deleting the key revokes both its header use and its tokens at once.
    let deleted = api
        .call(
            Method::DELETE,
            &format!("/v1/keys/{id}"),
            &api.admin(),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get("/v1/webhooks", &header).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.get("/v1/webhooks", &bearer).await.status,
        StatusCode::UNAUTHORIZED
    );
    Ok(())
}

#[tokio::test]
async fn narrowing_a_key_narrows_its_existing_tokens() {
    let api = Api::new().await;
    let (id, key) = api.key(&["write:events", "read:webhooks"]).await;
    let bearer = Auth::Bearer(api.token(&id, &key, None).await);
    assert_eq!(
        api.get("/v1/webhooks", &bearer).await.status,
        StatusCode::OK
    );
    let patched = api
        .call(
            Method::PATCH,
            &format!("/v1/keys/{id}"),
            &api.admin(),
            Some(json!({"scopes": ["write:events"]})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(
        api.get("/v1/webhooks", &bearer).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn bad_credentials_are_401_with_a_stable_code() {
    let api = Api::new().await;
    for auth in [
        Auth::None,
        Auth::Bearer("not-a-jwt".into()),
        Auth::Bearer(format!("{}x", api.admin)),
        Auth::ApiKey("kbk_wrong".into()),
    ] {
        for path in ["/v1/webhooks", "/v1/keys"] {
            let reply = api.get(path, &auth).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{auth:?} {path}");
            assert_eq!(reply.code(), "unauthenticated");
            assert!(reply.headers.contains_key("www-authenticate"));
            assert_eq!(reply.json["data"], serde_json::Value::Null);
        }
        let reply = api
            .post("/v1/events", &auth, json!({"event": "a", "payload": {}}))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // A token signed with another key is refused.
    let other =
        kolbak_ingress::auth::TokenKeys::new(&[9u8; 32], std::time::Duration::from_secs(60));
    let Ok(forged) = other.issue(
        ADMIN_ID,
        kolbak_ingress::auth::ClientKind::Admin,
        &kolbak_core::Scope::ALL,
    ) else {
        panic!("issue")
    };
    assert_eq!(
        api.get("/v1/keys", &Auth::Bearer(forged)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Basic auth is for the token endpoint only.
    let request = Request::builder()
        .uri("/v1/webhooks")
        .header("authorization", "Basic YWRtaW46eA==")
        .body(Body::empty())
        .unwrap_or_default();
    assert_eq!(api.send(request).await.status, StatusCode::UNAUTHORIZED);
}
