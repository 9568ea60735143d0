//! ApiKey reconciles against a scripted API server.

use http::Method;
use k8s_openapi::ByteString;
use kolbak_core::secret::KeyHash;
use kolbak_crds::{ApiKeySpec, Scope};
use serde_json::{Value, json};

use super::*;
use crate::config::OperatorConfig;
use crate::test_support::{
    assert_no_finalizer, assert_server_side_apply, context, run, secret_text, with_status,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SECRET_PATH: &str = "/api/v1/namespaces/shop/secrets/billing-key";
const STATUS_PATH: &str = "/apis/kolbak.io/v1alpha1/namespaces/shop/apikeys/billing/status";

fn api_key() -> ApiKey {
    let mut key = ApiKey::new(
        "billing",
        ApiKeySpec {
            name: "billing-service".into(),
            description: None,
            scopes: vec![Scope::WriteEvents],
        },
    );
    key.metadata.namespace = Some("shop".into());
    key.metadata.uid = Some("uid-billing".into());
    key.metadata.generation = Some(1);
    key
}

fn status_condition<'a>(body: &'a Value, type_: &str) -> &'a Value {
    body["status"]["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn new_api_key_gets_a_secret_and_only_its_hash_in_status() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig::default());
    let key = api_key();
    let expected = key.clone();
    let scenario = async move {
        let (_, responder) = server.expect(Method::GET, SECRET_PATH).await;
        responder.not_found();

        let (created, responder) = server
            .expect(Method::POST, "/api/v1/namespaces/shop/secrets")
            .await;
        let secret = &created.body;
        assert_eq!(secret["metadata"]["name"], "billing-key");
        let owner = &secret["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["controller"].as_bool()),
            (Some("ApiKey"), Some(true))
        );
        assert_eq!(
            secret["metadata"]["labels"]["app.kubernetes.io/component"],
            "api-key"
        );
        let plaintext = secret_text(secret, "key").unwrap_or_default();
        assert!(plaintext.starts_with("kbk_"), "generated key {plaintext:?}");
        assert_eq!(secret_text(secret, "id").as_deref(), Some("billing"));
        responder.json(201, secret);

        let (patch, responder) = server.expect(Method::PATCH, STATUS_PATH).await;
        assert_server_side_apply(&patch);
        let status = &patch.body["status"];
        let hash = status["keyHash"].as_str().unwrap_or_default();
        assert_eq!(
            hash,
            KeyHash::of(&plaintext).to_hex(),
            "hash of the Secret's key"
        );
        assert_eq!(hash.len(), 64);
        assert_eq!(
            status["keyPrefix"],
            plaintext.chars().take(12).collect::<String>()
        );
        assert_eq!(status["secretName"], "billing-key");
        assert_eq!(status["observedGeneration"], 1);
        assert!(
            status.get("lastAccessedAt").is_none(),
            "owned by the ingress"
        );
        assert!(
            !patch.body.to_string().contains(&plaintext),
            "the key leaked into the status"
        );
        assert_eq!(status_condition(&patch.body, READY)["status"], "True");
        assert_eq!(
            status_condition(&patch.body, SECRET_READY)["status"],
            "True"
        );
        responder.json(200, &with_status(&expected, status));

        let events = server
            .expect_events("shop", &["SecretAvailable", "Reconciled"])
            .await;
        assert!(events.iter().all(|e| !e.to_string().contains(&plaintext)));
        assert_no_finalizer(&[&created, &patch]);
    };
    let action = run(reconcile(Arc::new(key), ctx), scenario).await?;
    assert_eq!(action, Action::requeue(RESYNC));
    Ok(())
}

#[tokio::test]
async fn existing_secret_is_kept_and_its_hash_reported() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig::default());
    let key = api_key();
    let expected = key.clone();
    let plaintext = ApiKeySecret::generate().expose().to_owned();
    let existing = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "billing-key", "namespace": "shop"},
        "data": {"key": serde_json::to_value(ByteString(plaintext.clone().into_bytes()))?},
    });
    let scenario = async move {
        let (_, responder) = server.expect(Method::GET, SECRET_PATH).await;
        responder.json(200, &existing);
        // No create: straight to the status.
        let (patch, responder) = server.expect(Method::PATCH, STATUS_PATH).await;
        assert_eq!(
            patch.body["status"]["keyHash"],
            KeyHash::of(&plaintext).to_hex()
        );
        responder.json(200, &with_status(&expected, &patch.body["status"]));
        server
            .expect_events("shop", &["SecretAvailable", "Reconciled"])
            .await;
    };
    run(reconcile(Arc::new(key), ctx), scenario).await?;
    Ok(())
}

#[tokio::test]
async fn secret_without_key_is_reported_and_not_replaced() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig::default());
    let key = api_key();
    let expected = key.clone();
    let existing = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "billing-key", "namespace": "shop"},
        "data": {},
    });
    let scenario = async move {
        let (_, responder) = server.expect(Method::GET, SECRET_PATH).await;
        responder.json(200, &existing);
        let (patch, responder) = server.expect(Method::PATCH, STATUS_PATH).await;
        assert_eq!(
            status_condition(&patch.body, SECRET_READY)["reason"],
            "SecretKeyMissing"
        );
        assert_eq!(status_condition(&patch.body, READY)["status"], "False");
        assert!(patch.body["status"].get("keyHash").is_none());
        responder.json(200, &with_status(&expected, &patch.body["status"]));
        let events = server
            .expect_events("shop", &["SecretKeyMissing", "SecretNotReady"])
            .await;
        assert!(events.iter().all(|e| e["type"] == "Warning"));
    };
    let action = run(reconcile(Arc::new(key), ctx), scenario).await?;
    assert_eq!(action, Action::requeue(SECRET_RECHECK));
    Ok(())
}

#[tokio::test]
async fn api_key_being_deleted_is_left_alone() -> TestResult {
    let (ctx, _server) = context(OperatorConfig::default());
    let mut key = api_key();
    key.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let action = run(reconcile(Arc::new(key), ctx), async {}).await?;
    assert_eq!(action, Action::await_change());
    Ok(())
}

#[test]
fn secret_round_trips_the_key() -> TestResult {
    let key = ApiKeySecret::generate();
    let secret = new_secret(&api_key(), &key)?;
    assert_eq!(read_key(&secret).map(|k| k.hash()), Some(key.hash()));
    assert_eq!(secret.metadata.name.as_deref(), Some("billing-key"));
    Ok(())
}
