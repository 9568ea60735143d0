//! WebhookSubscription reconciles against a scripted API server, and the pure validation.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use http::Method;
use k8s_openapi::ByteString;
use kolbak_crds::condition::Condition;
use kolbak_crds::{SecretKeyRef, WebhookSubscription, WebhookSubscriptionSpec};
use serde_json::{Value, json};

use super::*;
use crate::config::OperatorConfig;
use crate::signing_secret::{PREVIOUS_EXPIRES_AT_KEY, ROTATE_ANNOTATION, ROTATED_FOR_ANNOTATION};
use crate::test_support::{
    ApiServer, assert_no_finalizer, assert_server_side_apply, context, run, secret_text,
    with_status,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SECRET_PATH: &str = "/api/v1/namespaces/shop/secrets/orders-signing";
const SECRETS_PATH: &str = "/api/v1/namespaces/shop/secrets";
const STATUS_PATH: &str =
    "/apis/kolbak.io/v1alpha1/namespaces/shop/webhooksubscriptions/orders/status";

fn subscription(url: &str, event: &str) -> WebhookSubscription {
    let mut sub = WebhookSubscription::new("orders", WebhookSubscriptionSpec::new(url, event));
    sub.metadata.namespace = Some("shop".into());
    sub.metadata.uid = Some("uid-orders".into());
    sub.metadata.generation = Some(1);
    sub
}

fn valid() -> WebhookSubscription {
    subscription("https://orders.example.com/hooks", "order.*")
}

/// The status a reconciled, ready subscription has.
fn ready_status() -> WebhookSubscriptionStatus {
    let condition =
        |type_, reason, message: &str| Condition::new(type_, true, reason, message, Some(1));
    WebhookSubscriptionStatus {
        conditions: vec![
            condition(VALID, "SpecValid", ""),
            condition(
                SECRET_READY,
                "SecretAvailable",
                "signing secret in Secret orders-signing, key secret",
            ),
            condition(READY, "Reconciled", ""),
        ],
        observed_generation: Some(1),
        secret_name: Some("orders-signing".into()),
        ..WebhookSubscriptionStatus::default()
    }
}

fn with_rotation_request(mut sub: WebhookSubscription, value: &str) -> WebhookSubscription {
    sub.metadata.annotations = Some(BTreeMap::from([(ROTATE_ANNOTATION.into(), value.into())]));
    sub
}

fn secret_json(pairs: &[(&str, &str)], annotations: Value) -> Value {
    let data: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| {
            let encoded =
                serde_json::to_value(ByteString(v.as_bytes().to_vec())).unwrap_or_default();
            ((*k).to_owned(), encoded)
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "orders-signing",
            "namespace": "shop",
            "resourceVersion": "7",
            "annotations": annotations,
        },
        "type": "Opaque",
        "data": data,
    })
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["status"]["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// Expects the status patch, checks it is a server-side apply, answers it, returns its body.
async fn expect_status_patch(server: &mut ApiServer, sub: &WebhookSubscription) -> Value {
    let (request, responder) = server.expect(Method::PATCH, STATUS_PATH).await;
    assert_server_side_apply(&request);
    assert_eq!(request.body["apiVersion"], "kolbak.io/v1alpha1");
    assert_eq!(request.body["kind"], "WebhookSubscription");
    responder.json(200, &with_status(sub, &request.body["status"]));
    request.body
}

#[test]
fn validation_requires_https_unless_allowed() {
    let spec = |url: &str, event: &str| WebhookSubscriptionSpec::new(url, event);
    assert_eq!(validate(&spec("https://example.com/h", "*"), false), Ok(()));
    let insecure = validate(&spec("http://example.com/h", "a.b"), false);
    assert_eq!(insecure.map_err(|i| i.reason), Err("InsecureCallbackUrl"));
    assert_eq!(validate(&spec("http://example.com/h", "a.b"), true), Ok(()));
    let pattern = validate(&spec("https://example.com", "invoice.*.paid"), false);
    assert_eq!(pattern.map_err(|i| i.reason), Err("InvalidEventPattern"));
    let syntax = validate(&spec("https://example.com:99999/", "a"), true);
    assert_eq!(syntax.map_err(|i| i.reason), Err("InvalidCallbackUrl"));
    let scheme = validate(&spec("ftp://example.com/", "a"), true);
    assert_eq!(scheme.map_err(|i| i.reason), Err("InvalidCallbackUrl"));
    let pool = validate(
        &WebhookSubscriptionSpec {
            pool: "Bad_Pool".into(),
            ..spec("https://example.com", "a")
        },
        false,
    );
    assert_eq!(pool.map_err(|i| i.reason), Err("InvalidSpec"));
}

#[tokio::test]
async fn new_subscription_gets_a_secret_and_a_ready_status() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig::default());
    let sub = valid();
    let expected = sub.clone();
    let scenario = async move {
        let (_, responder) = server.expect(Method::GET, SECRET_PATH).await;
        responder.not_found();

        let (created, responder) = server.expect(Method::POST, SECRETS_PATH).await;
        let secret = &created.body;
        assert_eq!(secret["metadata"]["name"], "orders-signing");
        let owner = &secret["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "WebhookSubscription");
        assert_eq!(owner["name"], "orders");
        assert_eq!(owner["uid"], "uid-orders");
        assert_eq!(owner["controller"], true);
        assert_eq!(
            secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "kolbak-operator"
        );
        let value = secret_text(secret, "secret").unwrap_or_default();
        assert!(
            kolbak_core::secret::SigningSecret::parse(&value).is_ok(),
            "{value}"
        );
        assert!(created.query.contains("fieldManager=kolbak-operator"));
        responder.json(201, secret);

        let status = expect_status_patch(&mut server, &expected).await;
        for type_ in [VALID, SECRET_READY, READY] {
            assert_eq!(
                condition(&status, type_)["status"],
                "True",
                "{type_}: {status}"
            );
            assert_eq!(condition(&status, type_)["observedGeneration"], 1);
        }
        assert_eq!(status["status"]["observedGeneration"], 1);
        assert_eq!(status["status"]["secretName"], "orders-signing");
        assert!(status["status"].get("lastDeliveryOutcome").is_none());
        assert!(
            !status.to_string().contains(&value),
            "the secret leaked into the status"
        );

        let events = server
            .expect_events("shop", &["SpecValid", "SecretAvailable", "Reconciled"])
            .await;
        assert!(events.iter().all(|e| e["type"] == "Normal"));
        assert_eq!(events[0]["regarding"]["name"], "orders");
        assert_eq!(events[0]["reportingController"], "kolbak-operator");
        assert_eq!(events[0]["note"], "Valid=True");
        assert_no_finalizer(&[&created]);
    };
    let action = run(reconcile(Arc::new(sub), ctx), scenario).await?;
    assert_eq!(action, Action::requeue(RESYNC));
    Ok(())
}

#[tokio::test]
async fn http_callback_is_invalid_and_gets_no_secret() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig::default());
    let sub = subscription("http://orders.example.com/hooks", "order.*");
    let expected = sub.clone();
    let scenario = async move {
        // The first request is the status patch: no Secret is read or created.
        let status = expect_status_patch(&mut server, &expected).await;
        assert_eq!(condition(&status, VALID)["status"], "False");
        assert_eq!(condition(&status, VALID)["reason"], "InsecureCallbackUrl");
        assert_eq!(condition(&status, READY)["status"], "False");
        assert_eq!(condition(&status, SECRET_READY), &Value::Null);
        assert!(status["status"].get("secretName").is_none());
        let events = server
            .expect_events("shop", &["InsecureCallbackUrl", "NotValid"])
            .await;
        assert!(events.iter().all(|e| e["type"] == "Warning"));
        let note = events[0]["note"].as_str().unwrap_or_default();
        assert!(
            note.starts_with("Valid=False: spec.callbackUrl must use https://"),
            "{note}"
        );
    };
    let action = run(reconcile(Arc::new(sub), ctx), scenario).await?;
    assert_eq!(action, Action::await_change());
    Ok(())
}

#[tokio::test]
async fn http_callback_is_valid_when_allowed() -> TestResult {
    let config = OperatorConfig {
        allow_http_callbacks: true,
        ..OperatorConfig::default()
    };
    let (ctx, mut server) = context(config);
    let sub = subscription("http://receiver.test/hooks", "*");
    let existing = secret_json(&[("secret", SigningSecret::generate().expose())], json!({}));
    let expected = sub.clone();
    let scenario = async move {
        let (_, responder) = server.expect(Method::GET, SECRET_PATH).await;
        responder.json(200, &existing);
        let status = expect_status_patch(&mut server, &expected).await;
        assert_eq!(condition(&status, READY)["status"], "True");
        server
            .expect_events("shop", &["SpecValid", "SecretAvailable", "Reconciled"])
            .await;
    };
    run(reconcile(Arc::new(sub), ctx), scenario).await?;
    Ok(())
}

#[tokio::test]
async fn bad_event_pattern_is_invalid() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig::default());
    let mut sub = subscription("https://orders.example.com/hooks", "order.*.paid");
    sub.status = Some(ready_status());
    sub.metadata.generation = Some(2);
    let expected = sub.clone();
    let scenario = async move {
        let status = expect_status_patch(&mut server, &expected).await;
        let valid = condition(&status, VALID);
        assert_eq!(valid["reason"], "InvalidEventPattern");
        assert_eq!(valid["observedGeneration"], 2);
        assert!(
            valid["message"]
                .as_str()
                .unwrap_or_default()
                .contains("spec.event")
        );
        // The Secret generated while the spec was valid stays named.
        assert_eq!(status["status"]["secretName"], "orders-signing");
        // SecretReady is left as it was: no transition, no Event for it.
        assert_eq!(condition(&status, SECRET_READY)["status"], "True");
        server
            .expect_events("shop", &["InvalidEventPattern", "NotValid"])
            .await;
    };
    run(reconcile(Arc::new(sub), ctx), scenario).await?;
    Ok(())
}

#[tokio::test]
async fn reconciled_subscription_needs_no_writes() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig::default());
    let mut sub = valid();
    sub.status = Some(ready_status());
    let existing = secret_json(&[("secret", SigningSecret::generate().expose())], json!({}));
    let scenario = async move {
        let (_, responder) = server.expect(Method::GET, SECRET_PATH).await;
        responder.json(200, &existing);
    };
    let action = run(reconcile(Arc::new(sub), ctx), scenario).await?;
    assert_eq!(action, Action::requeue(RESYNC));
    Ok(())
}

#[tokio::test]
async fn unusable_generated_secret_is_reported_not_overwritten() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig::default());
    let mut sub = valid();
    sub.status = Some(ready_status());
    let existing = secret_json(&[("secret", "not-a-signing-secret")], json!({}));
    let expected = sub.clone();
    let scenario = async move {
        let (_, responder) = server.expect(Method::GET, SECRET_PATH).await;
        responder.json(200, &existing);
        // No POST or PATCH of the Secret: straight to the status.
        let status = expect_status_patch(&mut server, &expected).await;
        assert_eq!(condition(&status, SECRET_READY)["reason"], "SecretInvalid");
        assert_eq!(condition(&status, READY)["status"], "False");
        server
            .expect_events("shop", &["SecretInvalid", "SecretNotReady"])
            .await;
    };
    let action = run(reconcile(Arc::new(sub), ctx), scenario).await?;
    assert_eq!(action, Action::requeue(SECRET_RECHECK));
    Ok(())
}

#[tokio::test]
async fn missing_referenced_secret_is_reported_and_rechecked() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig::default());
    let mut sub = with_rotation_request(valid(), "ignored");
    sub.spec.secret_ref = Some(SecretKeyRef {
        name: "orders-own".into(),
        key: "hmac".into(),
    });
    let expected = sub.clone();
    let scenario = async move {
        let (_, responder) = server
            .expect(Method::GET, "/api/v1/namespaces/shop/secrets/orders-own")
            .await;
        responder.not_found();
        let status = expect_status_patch(&mut server, &expected).await;
        assert_eq!(condition(&status, VALID)["status"], "True");
        assert_eq!(condition(&status, SECRET_READY)["reason"], "SecretNotFound");
        assert_eq!(status["status"]["secretName"], "orders-own");
        server
            .expect_events("shop", &["SpecValid", "SecretNotFound", "SecretNotReady"])
            .await;
    };
    let action = run(reconcile(Arc::new(sub), ctx), scenario).await?;
    assert_eq!(action, Action::requeue(SECRET_RECHECK));
    Ok(())
}

#[tokio::test]
async fn referenced_secret_is_used_and_never_rotated() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig::default());
    let mut sub = with_rotation_request(valid(), "r1");
    sub.spec.secret_ref = Some(SecretKeyRef {
        name: "orders-own".into(),
        key: "hmac".into(),
    });
    let value = SigningSecret::generate();
    let mut existing = secret_json(&[("hmac", value.expose())], json!({}));
    existing["metadata"]["name"] = json!("orders-own");
    let expected = sub.clone();
    let scenario = async move {
        let (_, responder) = server
            .expect(Method::GET, "/api/v1/namespaces/shop/secrets/orders-own")
            .await;
        responder.json(200, &existing);
        let status = expect_status_patch(&mut server, &expected).await;
        let secret_ready = condition(&status, SECRET_READY);
        assert_eq!(secret_ready["status"], "True");
        let message = secret_ready["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("kolbak.io/rotate-secret is ignored"),
            "{message}"
        );
        server
            .expect_events("shop", &["SpecValid", "SecretAvailable", "Reconciled"])
            .await;
    };
    run(reconcile(Arc::new(sub), ctx), scenario).await?;
    Ok(())
}

#[tokio::test]
async fn rotation_annotation_rotates_once() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig::default());
    let mut sub = with_rotation_request(valid(), "2025-01-31T12:00:00Z");
    sub.status = Some(ready_status());
    let old = SigningSecret::generate();
    let existing = secret_json(&[("secret", old.expose())], json!({}));
    let old_value = old.expose().to_owned();
    let scenario = async move {
        let (_, responder) = server.expect(Method::GET, SECRET_PATH).await;
        responder.json(200, &existing);

        let (patch, responder) = server.expect(Method::PATCH, SECRET_PATH).await;
        assert_eq!(patch.content_type, "application/merge-patch+json");
        let body = &patch.body;
        assert_eq!(
            body["metadata"]["resourceVersion"], "7",
            "guarded by resourceVersion"
        );
        assert_eq!(
            body["metadata"]["annotations"][ROTATED_FOR_ANNOTATION],
            "2025-01-31T12:00:00Z"
        );
        let new = secret_text(body, "secret").unwrap_or_default();
        assert!(SigningSecret::parse(&new).is_ok() && new != old_value);
        assert_eq!(secret_text(body, "previous-secret"), Some(old_value));
        let expires = secret_text(body, PREVIOUS_EXPIRES_AT_KEY).unwrap_or_default();
        let expires: DateTime<Utc> = expires.parse().unwrap_or_default();
        let ahead = expires - Utc::now();
        assert!(ahead > chrono::TimeDelta::hours(23) && ahead <= chrono::TimeDelta::hours(24));
        responder.json(200, body);

        // The conditions did not change: no status patch, only the rotation Event.
        let event = server.expect_event("shop").await;
        assert_eq!(event["reason"], "SecretRotated");
        assert_eq!(event["type"], "Normal");
        assert_eq!(event["related"]["name"], "orders-signing");
        assert!(
            !event.to_string().contains(&new),
            "the secret leaked into the Event"
        );
    };
    let action = run(reconcile(Arc::new(sub), ctx), scenario).await?;
    // Looked at again when the previous secret expires (capped at the resync period).
    assert_eq!(action, Action::requeue(RESYNC));
    Ok(())
}

#[tokio::test]
async fn handled_rotation_request_is_not_repeated() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig::default());
    let mut sub = with_rotation_request(valid(), "r1");
    sub.status = Some(ready_status());
    let expires = (Utc::now() + chrono::TimeDelta::minutes(10)).to_rfc3339();
    let existing = secret_json(
        &[
            ("secret", SigningSecret::generate().expose()),
            ("previous-secret", SigningSecret::generate().expose()),
            ("previous-expires-at", &expires),
        ],
        json!({ ROTATED_FOR_ANNOTATION: "r1" }),
    );
    let scenario = async move {
        let (_, responder) = server.expect(Method::GET, SECRET_PATH).await;
        responder.json(200, &existing);
    };
    let action = run(reconcile(Arc::new(sub), ctx), scenario).await?;
    // Looked at again when the previous secret expires, in about ten minutes.
    assert_ne!(action, Action::requeue(RESYNC));
    assert_ne!(action, Action::await_change());
    Ok(())
}

#[test]
fn recheck_lands_just_after_a_future_time() -> TestResult {
    let now: DateTime<Utc> = "2025-01-31T12:00:00Z".parse()?;
    let later: DateTime<Utc> = "2025-01-31T12:10:00Z".parse()?;
    assert_eq!(until(later, now), Some(Duration::from_secs(601)));
    assert_eq!(until(now, later), None);
    Ok(())
}

#[tokio::test]
async fn expired_previous_secret_is_removed() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig::default());
    let mut sub = valid();
    sub.status = Some(ready_status());
    let existing = secret_json(
        &[
            ("secret", SigningSecret::generate().expose()),
            ("previous-secret", SigningSecret::generate().expose()),
            ("previous-expires-at", "2020-01-01T00:00:00Z"),
        ],
        json!({}),
    );
    let scenario = async move {
        let (_, responder) = server.expect(Method::GET, SECRET_PATH).await;
        responder.json(200, &existing);
        let (patch, responder) = server.expect(Method::PATCH, SECRET_PATH).await;
        assert_eq!(patch.body["data"]["previous-secret"], Value::Null);
        assert_eq!(patch.body["data"]["previous-expires-at"], Value::Null);
        assert_eq!(patch.body["metadata"]["resourceVersion"], "7");
        assert!(patch.body["data"].get("secret").is_none());
        responder.json(200, &existing);
    };
    run(reconcile(Arc::new(sub), ctx), scenario).await?;
    Ok(())
}

#[tokio::test]
async fn lost_rotation_race_is_an_error_retried_with_backoff() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig::default());
    let mut sub = with_rotation_request(valid(), "r2");
    sub.status = Some(ready_status());
    let existing = secret_json(&[("secret", SigningSecret::generate().expose())], json!({}));
    let scenario = async move {
        let (_, responder) = server.expect(Method::GET, SECRET_PATH).await;
        responder.json(200, &existing);
        let (_, responder) = server.expect(Method::PATCH, SECRET_PATH).await;
        responder.conflict();
    };
    let sub = Arc::new(sub);
    let result = run(reconcile(sub.clone(), ctx.clone()), scenario).await;
    let Err(error) = result else {
        panic!("a lost race must fail the reconcile");
    };
    assert!(error.is_conflict(), "{error}");
    let first = crate::context::error_policy(sub.clone(), &error, ctx.clone());
    let second = crate::context::error_policy(sub, &error, ctx);
    assert_eq!(first, Action::requeue(Duration::from_secs(5)));
    assert_eq!(second, Action::requeue(Duration::from_secs(10)));
    Ok(())
}

#[tokio::test]
async fn object_being_deleted_is_left_alone() -> TestResult {
    let (ctx, _server) = context(OperatorConfig::default());
    let mut sub = valid();
    sub.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    // No request at all: owned Secrets go with the subscription (ownerReferences), so there is
    // no finalizer to remove and nothing to clean up.
    let action = run(reconcile(Arc::new(sub), ctx), async {}).await?;
    assert_eq!(action, Action::await_change());
    Ok(())
}
