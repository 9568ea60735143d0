//! Property test: arbitrary JSON values and arbitrary bytes thrown at every write endpoint
//! never produce a 5xx (or a panic, which the router would turn into a 500).

mod harness;

use axum::body::Body;
use axum::http::{Method, Request};
use harness::Api;
use proptest::prelude::*;
use serde_json::Value;

const WRITE_ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/auth"),
    ("POST", "/v1/keys"),
    ("PATCH", "/v1/keys/{key}"),
    ("POST", "/v1/webhooks"),
    ("PATCH", "/v1/webhooks/{hook}"),
    ("POST", "/v1/webhooks/{hook}/rotate-secret"),
    ("POST", "/v1/events"),
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("order.created"),
            Just("*"),
            Just("a.*"),
            Just("https://example.com/x"),
            Just("write:events"),
            Just("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Just("ordered"),
            Just("2026-01-01T00:00:00Z"),
            Just("client_credentials"),
            Just("")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let keys = prop_oneof![
            Just("id"),
            Just("event"),
            Just("payload"),
            Just("event_time"),
            Just("source"),
            Just("ordering_key"),
            Just("callback_url"),
            Just("description"),
            Just("is_active"),
            Just("secret"),
            Just("pool"),
            Just("rate_limit_per_second"),
            Just("max_in_flight"),
            Just("ordering"),
            Just("name"),
            Just("scopes"),
            Just("grant_type"),
            Just("client_id"),
            Just("client_secret"),
            Just("scope"),
            Just("x")
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.prop_map(str::to_owned), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

struct Fixture {
    api: Api,
    key: String,
    hook: String,
}

async fn fixture() -> Fixture {
    let api = Api::new().await;
    let (key, _) = api.key(&["read:keys"]).await;
    let hook = api.webhook("*").await["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Fixture { api, key, hook }
}

async fn send(fx: &Fixture, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> u16 {
    let path = path.replace("{key}", &fx.key).replace("{hook}", &fx.hook);
    let request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap_or(Method::POST))
        .uri(path)
        .header("authorization", format!("Bearer {}", fx.api.admin))
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap_or_default();
    fx.api.send(request).await.status.as_u16()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_yields_5xx(value in arb_json(), route in 0..WRITE_ROUTES.len()) {
        let rt = runtime();
        rt.block_on(async {
            let fx = fixture().await;
            let (method, path) = WRITE_ROUTES[route];
            let status = send(&fx, method, path, "application/json", value.to_string().into_bytes()).await;
            prop_assert!(status < 500, "{method} {path} {value} -> {status}");
            Ok(())
        })?;
    }

    #[test]
    fn arbitrary_bytes_never_yield_5xx(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        route in 0..WRITE_ROUTES.len(),
        form in any::<bool>(),
    ) {
        let rt = runtime();
        rt.block_on(async {
            let fx = fixture().await;
            let (method, path) = WRITE_ROUTES[route];
            let content_type = if form { "application/x-www-form-urlencoded" } else { "application/json" };
            let status = send(&fx, method, path, content_type, bytes.clone()).await;
            prop_assert!(status < 500, "{method} {path} {bytes:?} -> {status}");
            Ok(())
        })?;
    }
}
