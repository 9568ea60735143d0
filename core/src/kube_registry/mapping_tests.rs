//! Unit tests of the custom resource ↔ core model mapping.

use super::*;
use crate::error::Error;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
use kolbak_crds::{ApiKeyStatus, SecretKeyRef};

fn object(name: &str) -> WebhookSubscription {
    let mut spec = WebhookSubscriptionSpec::new("https://example.com/hooks", "order.*");
    spec.description = Some("orders".into());
    spec.max_in_flight = Some(4);
    spec.ordering = DeliveryOrdering::Ordered;
    let mut object = WebhookSubscription::new(name, spec);
    object.metadata.creation_timestamp = Some(Time(
        "2026-12-01T10:00:00Z"
            .parse()
            .unwrap_or_else(|e| panic!("{e}")),
    ));
    object
}

fn secret_with(data: &[(&str, &str)]) -> Secret {
    Secret {
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), bytes(v)))
                .collect(),
        ),
        ..Secret::default()
    }
}

#[test]
fn a_subscription_round_trips_through_its_custom_resource() -> Result<()> {
    let secret = SigningSecret::generate();
    let object = object("01jzz");
    let core = subscription(&object, SigningSecrets::new(secret.clone()))?;
    assert_eq!(core.id, "01jzz");
    assert_eq!(core.event.as_str(), "order.*");
    assert_eq!(core.ordering, Ordering::Ordered);
    assert_eq!(core.max_in_flight, Some(4));
    assert_eq!(core.secrets.current, secret);
    assert_eq!(core.updated_at, core.created_at);

    let applied = subscription_apply(&core, Some("42"));
    assert_eq!(applied["kind"], "WebhookSubscription");
    assert_eq!(applied["metadata"]["resourceVersion"], "42");
    assert_eq!(applied["spec"]["callbackUrl"], "https://example.com/hooks");
    assert_eq!(applied["spec"]["ordering"], "ordered");
    assert_eq!(applied["spec"]["maxInFlight"], 4);
    // The REST API never takes ownership of a kubectl-managed secretRef.
    assert!(applied["spec"].get("secretRef").is_none());
    assert!(applied["spec"].get("rateLimitPerSecond").is_none());
    Ok(())
}

#[test]
fn deactivation_travels_as_annotations() -> Result<()> {
    let mut core = subscription(&object("a"), SigningSecrets::new(SigningSecret::generate()))?;
    let at: DateTime<Utc> = "2026-12-02T08:30:00.250Z".parse().unwrap_or_default();
    core.is_active = false;
    core.deactivation = Some(Deactivation {
        at,
        reason: "endpoint answered 410 Gone".into(),
    });
    let applied = subscription_apply(&core, None);
    let mut back: WebhookSubscription =
        serde_json::from_value(applied).map_err(|e| Error::invalid("json", e.to_string()))?;
    back.metadata.creation_timestamp = object("a").metadata.creation_timestamp;
    let again = subscription(&back, core.secrets.clone())?;
    assert_eq!(again.deactivation, core.deactivation);
    assert!(!again.is_active);
    Ok(())
}

#[test]
fn the_last_change_is_the_newest_main_resource_write() -> Result<()> {
    let mut object = object("a");
    let entry = |time: &str, subresource: Option<&str>| ManagedFieldsEntry {
        time: Some(Time(time.parse().unwrap_or_else(|e| panic!("{e}")))),
        subresource: subresource.map(str::to_owned),
        ..ManagedFieldsEntry::default()
    };
    object.metadata.managed_fields = Some(vec![
        entry("2026-12-01T10:00:00Z", None),
        entry("2026-12-03T10:00:00Z", None),
        entry("2026-12-04T10:00:00Z", Some("status")),
    ]);
    let core = subscription(&object, SigningSecrets::new(SigningSecret::generate()))?;
    assert_eq!(core.updated_at.to_rfc3339(), "2026-12-03T10:00:00+00:00");
    Ok(())
}

#[test]
fn cleared_optional_fields_become_a_merge_patch() -> Result<()> {
    let object = object("a");
    let mut core = subscription(&object, SigningSecrets::new(SigningSecret::generate()))?;
    assert_eq!(cleared_fields(&core, &object), None);
    core.description = None;
    core.max_in_flight = None;
    let patch = cleared_fields(&core, &object).unwrap_or_default();
    assert_eq!(
        patch,
        json!({ "spec": { "description": null, "maxInFlight": null } })
    );
    Ok(())
}

#[test]
fn signing_secrets_come_from_the_generated_or_referenced_secret() {
    let current = SigningSecret::generate();
    let previous = SigningSecret::generate();
    let mut generated = object("orders");
    let location = secret_location(&generated);
    assert_eq!(location.name, "orders-signing");
    assert!(location.generated);
    let secret = secret_with(&[
        ("secret", current.expose()),
        ("previous-secret", previous.expose()),
        ("previous-expires-at", "2026-12-05T00:00:00Z"),
    ]);
    let secrets = signing_secrets(&secret, &location).unwrap_or_else(|| panic!("no secrets"));
    assert_eq!(secrets.current, current);
    assert_eq!(secrets.previous, Some(previous));
    assert_eq!(
        secrets.previous_expires_at.map(|t| t.to_rfc3339()),
        Some("2026-12-05T00:00:00+00:00".into())
    );

    // A Secret named by secretRef is its owner's: only the named key counts.
    generated.spec.secret_ref = Some(SecretKeyRef {
        name: "team-hooks".into(),
        key: "orders".into(),
    });
    let location = secret_location(&generated);
    assert!(!location.generated);
    let referenced = secret_with(&[("orders", current.expose()), ("secret", "whsec_bad")]);
    let secrets = signing_secrets(&referenced, &location).unwrap_or_else(|| panic!("none"));
    assert_eq!(secrets.previous, None);
    assert!(signing_secrets(&secret_with(&[("orders", "nope")]), &location).is_none());
    assert!(signing_secrets(&secret_with(&[]), &location).is_none());
}

#[test]
fn a_rotation_writes_the_operators_layout() {
    let first = SigningSecret::generate();
    let second = SigningSecret::generate();
    let mut secrets = SigningSecrets::new(first.clone());
    let expires: DateTime<Utc> = "2026-12-05T12:00:00Z".parse().unwrap_or_default();
    secrets.rotate(second.clone(), expires);
    let secret = signing_secret("01abc", &secrets);
    assert_eq!(secret.metadata.name.as_deref(), Some("01abc-signing"));
    let location = SecretLocation {
        name: "01abc-signing".into(),
        key: "secret".into(),
        generated: true,
    };
    assert_eq!(signing_secrets(&secret, &location), Some(secrets.clone()));
    let patch = rotation_patch(&secrets, Some("7"));
    assert_eq!(patch["metadata"]["resourceVersion"], "7");
    assert!(patch["data"]["previous-secret"].is_string());
}

#[test]
fn an_api_key_needs_its_hash_in_status() {
    let key = ApiKeySecret::generate();
    let mut object = ApiKeyResource::new(
        "01key",
        ApiKeySpec {
            name: "producer".into(),
            description: None,
            scopes: vec![Scope::WriteEvents, Scope::ReadKeys],
        },
    );
    assert_eq!(api_key(&object), None);
    object.status = Some(ApiKeyStatus {
        key_hash: Some(key.hash().to_hex()),
        key_prefix: Some(key.display_prefix()),
        ..ApiKeyStatus::default()
    });
    let core = api_key(&object).unwrap_or_else(|| panic!("no key"));
    assert_eq!(core.key_hash, key.hash());
    assert_eq!(core.scopes, vec![Scope::ReadKeys, Scope::WriteEvents]);
    assert_eq!(api_key_spec(&core).scopes, core.scopes);
    let status = api_key_status_apply(&core);
    assert_eq!(status["status"]["keyHash"], key.hash().to_hex());
    assert_eq!(status["status"]["secretName"], "01key-key");

    let secret = api_key_secret("01key", &key);
    assert_eq!(api_key_in(&secret), Some(key));
}

#[test]
fn health_becomes_the_status_fields_kubectl_shows() {
    let at: DateTime<Utc> = "2026-12-04T10:00:00Z".parse().unwrap_or_default();
    let health = SubscriptionHealth {
        last_delivery_at: Some(at),
        last_outcome: Some(DeliveryStatus::Retrying),
        consecutive_failures: 3,
        last_success_at: None,
    };
    assert_eq!(
        health_status(&health),
        json!({
            "lastDeliveryAt": "2026-12-04T10:00:00Z",
            "lastDeliveryOutcome": "retrying",
            "consecutiveFailures": 3,
        })
    );
    let none = health_status(&SubscriptionHealth::default());
    assert_eq!(none["lastDeliveryOutcome"], Value::Null);
}
