//! Translation between the custom resources (`WebhookSubscription`, `ApiKey` and their Secrets)
//! and the core model (`Subscription`, `ApiKey`), in both directions. Pure functions: no I/O.
//!
//! What the REST API owns on a WebhookSubscription is its spec without `secretRef` (so applying
//! a REST change never takes a kubectl-managed `secretRef` away) plus two annotations recording
//! why Kolbak deactivated it. A subscription's last change is the newest `managedFields` time
//! of its main resource (status writes do not count), falling back to its creation time.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kolbak_crds::secret_layout::{
    API_KEY_COMPONENT, API_KEY_ID_KEY, API_KEY_KEY, PREVIOUS_EXPIRES_AT_KEY,
    PREVIOUS_SIGNING_SECRET_KEY, SIGNING_SECRET_COMPONENT, SIGNING_SECRET_KEY, api_key_secret_name,
    signing_secret_name,
};
use kolbak_crds::{
    ApiKey as ApiKeyResource, ApiKeySpec, DeliveryOrdering, DeliveryOutcome, WebhookSubscription,
    WebhookSubscriptionSpec,
};
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::api_key::ApiKey;
use crate::delivery::{DeliveryStatus, SubscriptionHealth};
use crate::error::Result;
use crate::scope::Scope;
use crate::secret::{ApiKeySecret, KeyHash, SigningSecret};
use crate::subscription::{Deactivation, EventPattern, Ordering, SigningSecrets, Subscription};

/// The field manager of every write the REST API makes.
pub const FIELD_MANAGER: &str = "kolbak-api";
/// Annotation: when Kolbak deactivated the subscription (RFC 3339).
pub const DEACTIVATED_AT_ANNOTATION: &str = "kolbak.io/deactivated-at";
/// Annotation: why Kolbak deactivated the subscription.
pub const DEACTIVATION_REASON_ANNOTATION: &str = "kolbak.io/deactivation-reason";

const NAME_LABEL: &str = "app.kubernetes.io/name";
const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Where a subscription's signing secret lives: a Secret and the key within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretLocation {
    /// The Secret's name (same namespace as the subscription).
    pub name: String,
    /// The key holding the `whsec_…` value.
    pub key: String,
    /// True for the Secret Kolbak generates (`<name>-signing`); false for `spec.secretRef`,
    /// which its owner manages and Kolbak never rotates.
    pub generated: bool,
}

/// The Secret that holds `subscription`'s signing secret.
pub fn secret_location(subscription: &WebhookSubscription) -> SecretLocation {
    match &subscription.spec.secret_ref {
        Some(reference) => SecretLocation {
            name: reference.name.clone(),
            key: reference.key.clone(),
            generated: false,
        },
        None => SecretLocation {
            name: signing_secret_name(&subscription.name_any()),
            key: SIGNING_SECRET_KEY.to_owned(),
            generated: true,
        },
    }
}

/// The signing secrets in `secret` under `location.key`; the previous secret and its expiry
/// only count in a generated Secret. `None` when the key is missing or not a `whsec_` value.
pub fn signing_secrets(secret: &Secret, location: &SecretLocation) -> Option<SigningSecrets> {
    let current = SigningSecret::parse(data_text(secret, &location.key)?.trim()).ok()?;
    let mut secrets = SigningSecrets::new(current);
    if location.generated
        && let Some(previous) = data_text(secret, PREVIOUS_SIGNING_SECRET_KEY)
            .and_then(|text| SigningSecret::parse(text.trim()).ok())
    {
        let expires = data_text(secret, PREVIOUS_EXPIRES_AT_KEY)
            .and_then(|text| DateTime::parse_from_rfc3339(text.trim()).ok())
            .map_or(DateTime::UNIX_EPOCH, |time| time.with_timezone(&Utc));
        secrets.previous = Some(previous);
        secrets.previous_expires_at = Some(expires);
    }
    Some(secrets)
}

/// The core subscription for a custom resource and its signing secrets. Fails when the object
/// holds what the API server's schema lets through but Kolbak cannot use (an event pattern
/// the schema's regex is looser about).
pub fn subscription(object: &WebhookSubscription, secrets: SigningSecrets) -> Result<Subscription> {
    let spec = &object.spec;
    let annotations = object.annotations();
    let deactivation = match (
        spec.is_active,
        annotations.get(DEACTIVATED_AT_ANNOTATION),
        annotations.get(DEACTIVATION_REASON_ANNOTATION),
    ) {
        (false, Some(at), Some(reason)) => {
            DateTime::parse_from_rfc3339(at)
                .ok()
                .map(|at| Deactivation {
                    at: at.with_timezone(&Utc),
                    reason: reason.clone(),
                })
        }
        _ => None,
    };
    let created_at = created_at(&object.metadata);
    Ok(Subscription {
        id: object.name_any(),
        callback_url: spec.callback_url.clone(),
        event: EventPattern::parse(&spec.event)?,
        description: spec.description.clone(),
        is_active: spec.is_active,
        pool: spec.pool.clone(),
        rate_limit_per_second: spec.rate_limit_per_second,
        max_in_flight: spec.max_in_flight,
        ordering: match spec.ordering {
            DeliveryOrdering::Unordered => Ordering::Unordered,
            DeliveryOrdering::Ordered => Ordering::Ordered,
        },
        secrets,
        deactivation,
        created_at,
        updated_at: updated_at(&object.metadata).unwrap_or(created_at),
    })
}

/// The server-side-apply body for `subscription`: the spec fields the REST API owns and the
/// deactivation annotations. With `resource_version` the API server refuses the write when
/// the object changed since it was read.
pub fn subscription_apply(subscription: &Subscription, resource_version: Option<&str>) -> Value {
    let spec = WebhookSubscriptionSpec {
        callback_url: subscription.callback_url.clone(),
        event: subscription.event.as_str().to_owned(),
        description: subscription.description.clone(),
        is_active: subscription.is_active,
        secret_ref: None,
        pool: subscription.pool.clone(),
        rate_limit_per_second: subscription.rate_limit_per_second,
        max_in_flight: subscription.max_in_flight,
        ordering: match subscription.ordering {
            Ordering::Unordered => DeliveryOrdering::Unordered,
            Ordering::Ordered => DeliveryOrdering::Ordered,
        },
    };
    let mut metadata = json!({ "name": subscription.id });
    if let Some(deactivation) = &subscription.deactivation {
        metadata["annotations"] = json!({
            DEACTIVATED_AT_ANNOTATION: deactivation.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            DEACTIVATION_REASON_ANNOTATION: deactivation.reason,
        });
    }
    if let Some(version) = resource_version {
        metadata["resourceVersion"] = json!(version);
    }
    json!({
        "apiVersion": format!("{}/{}", kolbak_crds::GROUP, kolbak_crds::VERSION),
        "kind": "WebhookSubscription",
        "metadata": metadata,
        "spec": spec,
    })
}

/// The JSON merge patch that removes optional spec fields `subscription` leaves empty but
/// `object` still has (set by another field manager, so the apply did not remove them).
pub fn cleared_fields(subscription: &Subscription, object: &WebhookSubscription) -> Option<Value> {
    let mut spec = serde_json::Map::new();
    if subscription.description.is_none() && object.spec.description.is_some() {
        spec.insert("description".into(), Value::Null);
    }
    if subscription.rate_limit_per_second.is_none() && object.spec.rate_limit_per_second.is_some() {
        spec.insert("rateLimitPerSecond".into(), Value::Null);
    }
    if subscription.max_in_flight.is_none() && object.spec.max_in_flight.is_some() {
        spec.insert("maxInFlight".into(), Value::Null);
    }
    (!spec.is_empty()).then(|| json!({ "spec": spec }))
}

/// The status fields that show `health` on a WebhookSubscription (`lastDeliveryAt`,
/// `lastDeliveryOutcome`, `consecutiveFailures`).
pub fn health_status(health: &SubscriptionHealth) -> Value {
    let outcome = health.last_outcome.and_then(|status| match status {
        DeliveryStatus::Success => Some(DeliveryOutcome::Success),
        DeliveryStatus::Retrying => Some(DeliveryOutcome::Retrying),
        DeliveryStatus::Failed => Some(DeliveryOutcome::Failed),
        DeliveryStatus::Pending => None,
    });
    json!({
        "lastDeliveryAt": health.last_delivery_at,
        "lastDeliveryOutcome": outcome,
        "consecutiveFailures": health.consecutive_failures,
    })
}

/// The generated signing Secret for the subscription `id` holding `secrets`.
pub fn signing_secret(id: &str, secrets: &SigningSecrets) -> Secret {
    let mut data = BTreeMap::from([(
        SIGNING_SECRET_KEY.to_owned(),
        bytes(secrets.current.expose()),
    )]);
    if let (Some(previous), Some(expires)) = (&secrets.previous, secrets.previous_expires_at) {
        data.insert(
            PREVIOUS_SIGNING_SECRET_KEY.to_owned(),
            bytes(previous.expose()),
        );
        data.insert(
            PREVIOUS_EXPIRES_AT_KEY.to_owned(),
            bytes(&expires.to_rfc3339_opts(SecondsFormat::Secs, true)),
        );
    }
    owned_secret(signing_secret_name(id), SIGNING_SECRET_COMPONENT, data)
}

/// The merge patch that rotates a generated signing Secret to `secrets` (current and
/// previous), guarded by the Secret's `resource_version`.
pub fn rotation_patch(secrets: &SigningSecrets, resource_version: Option<&str>) -> Value {
    let Secret { data, .. } = signing_secret("", secrets);
    json!({
        "metadata": { "resourceVersion": resource_version },
        "data": data,
    })
}

/// The Secret holding the key of the API key `id`.
pub fn api_key_secret(id: &str, key: &ApiKeySecret) -> Secret {
    let data = BTreeMap::from([
        (API_KEY_KEY.to_owned(), bytes(key.expose())),
        (API_KEY_ID_KEY.to_owned(), bytes(id)),
    ]);
    owned_secret(api_key_secret_name(id), API_KEY_COMPONENT, data)
}

/// The API key in `secret`, if it holds one.
pub fn api_key_in(secret: &Secret) -> Option<ApiKeySecret> {
    let text = data_text(secret, API_KEY_KEY)?;
    let text = text.trim();
    (!text.is_empty()).then(|| ApiKeySecret::presented(text))
}

/// The core API key for a custom resource; `None` until its status records the key's hash
/// (the operator or the REST API writes it once the key exists).
pub fn api_key(object: &ApiKeyResource) -> Option<ApiKey> {
    let status = object.status.as_ref()?;
    let key_hash = KeyHash::from_hex(status.key_hash.as_deref()?).ok()?;
    let created_at = created_at(&object.metadata);
    let mut scopes: Vec<Scope> = object.spec.scopes.clone();
    scopes.sort();
    scopes.dedup();
    Some(ApiKey {
        id: object.name_any(),
        name: object.spec.name.clone(),
        description: object.spec.description.clone(),
        scopes,
        key_hash,
        key_prefix: status.key_prefix.clone().unwrap_or_default(),
        created_at,
        updated_at: updated_at(&object.metadata).unwrap_or(created_at),
        last_accessed_at: status.last_accessed_at,
    })
}

/// The spec of the ApiKey custom resource for `key`.
pub fn api_key_spec(key: &ApiKey) -> ApiKeySpec {
    ApiKeySpec {
        name: key.name.clone(),
        description: key.description.clone(),
        scopes: key.scopes.clone(),
    }
}

/// The server-side-apply body for an ApiKey's status as the REST API knows it on creation.
pub fn api_key_status_apply(key: &ApiKey) -> Value {
    json!({
        "apiVersion": format!("{}/{}", kolbak_crds::GROUP, kolbak_crds::VERSION),
        "kind": "ApiKey",
        "status": {
            "keyHash": key.key_hash.to_hex(),
            "keyPrefix": key.key_prefix,
            "secretName": api_key_secret_name(&key.id),
        },
    })
}

/// A controller owner reference to `owner`, so deleting it garbage-collects the Secret.
pub fn owner_reference<K: kube::Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    owner.controller_owner_ref(&())
}

fn owned_secret(name: String, component: &str, data: BTreeMap<String, ByteString>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(BTreeMap::from([
                (NAME_LABEL.to_owned(), "kolbak".to_owned()),
                (COMPONENT_LABEL.to_owned(), component.to_owned()),
                (MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

fn bytes(text: &str) -> ByteString {
    ByteString(text.as_bytes().to_vec())
}

fn data_text<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    let bytes = secret.data.as_ref()?.get(key)?;
    std::str::from_utf8(&bytes.0).ok()
}

fn created_at(metadata: &ObjectMeta) -> DateTime<Utc> {
    metadata
        .creation_timestamp
        .as_ref()
        .map_or(DateTime::UNIX_EPOCH, |time| chrono_time(&time.0))
}

fn updated_at(metadata: &ObjectMeta) -> Option<DateTime<Utc>> {
    metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| entry.subresource.as_deref().is_none_or(str::is_empty))
        .filter_map(|entry| entry.time.as_ref().map(|time| chrono_time(&time.0)))
        .max()
}

fn chrono_time(time: &k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    let nanos = u32::try_from(time.subsec_nanosecond()).unwrap_or(0);
    DateTime::from_timestamp(time.as_second(), nanos).unwrap_or(DateTime::UNIX_EPOCH)
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
