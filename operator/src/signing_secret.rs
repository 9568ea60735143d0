//! The Secret that holds a WebhookSubscription's signing secret, and its rotation.
//!
//! # Format
//! When `spec.secretRef` is absent the operator creates the Secret `<subscription>-signing`,
//! owned by the subscription (controller `ownerReference`, so deleting the subscription deletes
//! it), labelled `app.kubernetes.io/managed-by=kolbak-operator` and
//! `app.kubernetes.io/component=signing-secret`. Its keys:
//!
//! | key | value |
//! |---|---|
//! | `secret` | the signing secret in use, `whsec_…` (Standard Webhooks) |
//! | `previous-secret` | after a rotation: the secret before it, still valid for signing |
//! | `previous-expires-at` | when `previous-secret` stops being used (RFC 3339, UTC) |
//!
//! Dispatchers sign with `secret` and, until `previous-expires-at`, with `previous-secret` too
//! (Standard Webhooks sends both signatures), so receivers can switch over without losing a
//! webhook. An existing Secret is never overwritten: a Secret whose `secret` key is missing or
//! not a `whsec_` value is reported (`SecretReady=False`) until someone fixes or deletes it;
//! a deleted generated Secret is generated again.
//!
//! # Rotation
//! Set the annotation `kolbak.io/rotate-secret` on the WebhookSubscription to any value not used
//! before (a timestamp is convenient):
//!
//! ```sh
//! kubectl annotate wsub orders kolbak.io/rotate-secret="$(date -u +%FT%TZ)" --overwrite
//! ```
//!
//! The operator then generates a new `secret`, moves the old one to `previous-secret` with
//! `previous-expires-at` 24 hours ahead, and records the handled value in the Secret's
//! annotation `kolbak.io/rotated-for` — in the same write, guarded by the Secret's
//! `resourceVersion`, so a request is handled exactly once even if the operator restarts
//! half-way. A `SecretRotated` Event reports it. Once `previous-expires-at` has passed the
//! operator removes both `previous-*` keys. Rotating again within 24 hours replaces the previous
//! secret (only one previous secret is kept). Secrets named in `spec.secretRef` are managed by
//! their owner: the operator does not rotate them.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kolbak_core::secret::SigningSecret;
use kolbak_crds::{WebhookSubscription, secret_layout};
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::error::Result;
use crate::owned::{labels, owner_reference};

/// Key of the signing secret in use.
pub const SECRET_KEY: &str = secret_layout::SIGNING_SECRET_KEY;
/// Key of the secret before the last rotation.
pub const PREVIOUS_SECRET_KEY: &str = secret_layout::PREVIOUS_SIGNING_SECRET_KEY;
/// Key of the time (RFC 3339) after which `previous-secret` is no longer used.
pub const PREVIOUS_EXPIRES_AT_KEY: &str = secret_layout::PREVIOUS_EXPIRES_AT_KEY;
/// Annotation on a WebhookSubscription that requests a rotation when its value changes.
pub const ROTATE_ANNOTATION: &str = "kolbak.io/rotate-secret";
/// Annotation on the Secret recording the last rotation request handled.
pub const ROTATED_FOR_ANNOTATION: &str = "kolbak.io/rotated-for";
/// `app.kubernetes.io/component` of generated signing Secrets.
pub const COMPONENT: &str = secret_layout::SIGNING_SECRET_COMPONENT;

/// How long the previous secret keeps signing after a rotation.
pub fn rotation_overlap() -> TimeDelta {
    TimeDelta::hours(24)
}

/// Name of the Secret generated for the subscription `subscription`.
pub fn generated_name(subscription: &str) -> String {
    secret_layout::signing_secret_name(subscription)
}

/// Why a Secret's value cannot be used as a signing secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// The key is absent (or the Secret has no data).
    KeyMissing,
    /// The value is not a `whsec_` secret of 24 to 64 bytes.
    NotASigningSecret,
}

impl Unusable {
    /// The condition reason: `SecretKeyMissing` or `SecretInvalid`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::KeyMissing => "SecretKeyMissing",
            Self::NotASigningSecret => "SecretInvalid",
        }
    }

    /// A message naming the Secret and key.
    pub fn message(&self, secret: &str, key: &str) -> String {
        match self {
            Self::KeyMissing => format!("Secret {secret} has no key `{key}`"),
            Self::NotASigningSecret => format!(
                "key `{key}` of Secret {secret} is not a Standard Webhooks secret \
                 (`whsec_` followed by base64 of 24 to 64 bytes)"
            ),
        }
    }
}

/// The signing secret stored under `key` in `secret`.
pub fn read_key(secret: &Secret, key: &str) -> Result<SigningSecret, Unusable> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .ok_or(Unusable::KeyMissing)?;
    let text = std::str::from_utf8(&bytes.0).map_err(|_| Unusable::NotASigningSecret)?;
    SigningSecret::parse(text.trim()).map_err(|_| Unusable::NotASigningSecret)
}

/// When the previous secret in `secret` expires: `None` when there is none; the Unix epoch
/// (already expired) when its expiry is missing or unreadable.
pub fn previous_expires_at(secret: &Secret) -> Option<DateTime<Utc>> {
    let data = secret.data.as_ref()?;
    data.get(PREVIOUS_SECRET_KEY)?;
    let expires = data
        .get(PREVIOUS_EXPIRES_AT_KEY)
        .and_then(|bytes| std::str::from_utf8(&bytes.0).ok())
        .and_then(|text| DateTime::parse_from_rfc3339(text.trim()).ok())
        .map(|time| time.with_timezone(&Utc));
    Some(expires.unwrap_or(DateTime::UNIX_EPOCH))
}

/// The rotation request on `subscription` (its `kolbak.io/rotate-secret` value), if any.
pub fn rotation_request(subscription: &WebhookSubscription) -> Option<&str> {
    subscription
        .annotations()
        .get(ROTATE_ANNOTATION)
        .map(|value| value.trim())
        .filter(|value| !value.is_empty())
}

/// Whether `secret` has already handled the rotation request `request`.
pub fn has_handled(secret: &Secret, request: &str) -> bool {
    secret
        .annotations()
        .get(ROTATED_FOR_ANNOTATION)
        .is_some_and(|handled| handled == request)
}

/// A new generated Secret for `subscription` holding `value`. A rotation request already on
/// the subscription is recorded as handled: a fresh secret needs no rotation.
pub fn new_secret(subscription: &WebhookSubscription, value: &SigningSecret) -> Result<Secret> {
    let annotations = rotation_request(subscription)
        .map(|request| BTreeMap::from([(ROTATED_FOR_ANNOTATION.to_owned(), request.to_owned())]));
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(generated_name(&subscription.name_any())),
            namespace: subscription.namespace(),
            labels: Some(labels(COMPONENT)),
            annotations,
            owner_references: Some(vec![owner_reference(subscription)?]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            SECRET_KEY.to_owned(),
            ByteString(value.expose().as_bytes().to_vec()),
        )])),
        ..Secret::default()
    })
}

/// JSON merge patch that rotates `secret` to `new` for `request` at `now`: the current value
/// becomes the previous one, valid for [`rotation_overlap`]. It carries the Secret's
/// `resourceVersion`, so it fails with 409 Conflict if the Secret changed since it was read.
pub fn rotation_patch(
    secret: &Secret,
    current: &SigningSecret,
    new: &SigningSecret,
    request: &str,
    now: DateTime<Utc>,
) -> Value {
    let expires = (now + rotation_overlap()).to_rfc3339_opts(SecondsFormat::Secs, true);
    json!({
        "metadata": {
            "resourceVersion": secret.resource_version(),
            "annotations": { ROTATED_FOR_ANNOTATION: request },
        },
        "data": {
            SECRET_KEY: base64_of(new.expose()),
            PREVIOUS_SECRET_KEY: base64_of(current.expose()),
            PREVIOUS_EXPIRES_AT_KEY: base64_of(&expires),
        },
    })
}

/// JSON merge patch that removes the expired previous secret from `secret`, guarded by its
/// `resourceVersion`.
pub fn drop_previous_patch(secret: &Secret) -> Value {
    json!({
        "metadata": { "resourceVersion": secret.resource_version() },
        "data": { PREVIOUS_SECRET_KEY: null, PREVIOUS_EXPIRES_AT_KEY: null },
    })
}

/// `text` as it appears in a Secret's `data`: base64.
fn base64_of(text: &str) -> Value {
    serde_json::to_value(ByteString(text.as_bytes().to_vec())).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kolbak_crds::WebhookSubscriptionSpec;

    fn subscription(annotation: Option<&str>) -> WebhookSubscription {
        let mut sub = WebhookSubscription::new(
            "orders",
            WebhookSubscriptionSpec::new("https://example.com/hooks", "order.*"),
        );
        sub.metadata.namespace = Some("shop".into());
        sub.metadata.uid = Some("uid-1".into());
        if let Some(value) = annotation {
            sub.metadata.annotations =
                Some(BTreeMap::from([(ROTATE_ANNOTATION.into(), value.into())]));
        }
        sub
    }

    fn secret_with(data: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn new_secret_is_owned_labelled_and_valid() -> Result<(), Box<dyn std::error::Error>> {
        let value = SigningSecret::generate();
        let secret = new_secret(&subscription(None), &value)?;
        assert_eq!(secret.metadata.name.as_deref(), Some("orders-signing"));
        assert_eq!(secret.metadata.namespace.as_deref(), Some("shop"));
        let owner = secret
            .metadata
            .owner_references
            .as_ref()
            .and_then(|refs| refs.first())
            .ok_or("no owner")?;
        assert_eq!(owner.kind, "WebhookSubscription");
        assert_eq!(owner.uid, "uid-1");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(read_key(&secret, SECRET_KEY), Ok(value));
        assert!(secret.metadata.annotations.is_none());
        assert_eq!(previous_expires_at(&secret), None);
        Ok(())
    }

    #[test]
    fn new_secret_records_a_pending_rotation_request_as_handled()
    -> Result<(), Box<dyn std::error::Error>> {
        let secret = new_secret(
            &subscription(Some(" 2025-01-01 ")),
            &SigningSecret::generate(),
        )?;
        assert!(has_handled(&secret, "2025-01-01"));
        assert!(!has_handled(&secret, "2025-01-02"));
        Ok(())
    }

    #[test]
    fn unusable_values_are_told_apart() {
        assert_eq!(
            read_key(&secret_with(&[]), SECRET_KEY),
            Err(Unusable::KeyMissing)
        );
        assert_eq!(
            read_key(&secret_with(&[("secret", "hunter2")]), SECRET_KEY),
            Err(Unusable::NotASigningSecret)
        );
        assert_eq!(Unusable::KeyMissing.reason(), "SecretKeyMissing");
        assert!(
            Unusable::NotASigningSecret
                .message("s", "k")
                .contains("whsec_")
        );
    }

    #[test]
    fn rotation_patch_moves_current_to_previous() -> Result<(), Box<dyn std::error::Error>> {
        let current = SigningSecret::generate();
        let new = SigningSecret::generate();
        let mut secret = secret_with(&[("secret", current.expose())]);
        secret.metadata.resource_version = Some("42".into());
        let now = DateTime::parse_from_rfc3339("2025-01-31T12:00:00Z")?.with_timezone(&Utc);
        let patch = rotation_patch(&secret, &current, &new, "r1", now);
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        assert_eq!(
            patch["metadata"]["annotations"][ROTATED_FOR_ANNOTATION],
            "r1"
        );
        let patched: Secret = serde_json::from_value(json!({"data": patch["data"]}))?;
        assert_eq!(read_key(&patched, SECRET_KEY), Ok(new));
        assert_eq!(read_key(&patched, PREVIOUS_SECRET_KEY), Ok(current));
        let expires = previous_expires_at(&patched).ok_or("no expiry")?;
        assert_eq!(expires.to_rfc3339(), "2025-02-01T12:00:00+00:00");
        Ok(())
    }

    #[test]
    fn previous_without_readable_expiry_counts_as_expired() {
        let secret = secret_with(&[("previous-secret", "x"), ("previous-expires-at", "soon")]);
        assert_eq!(previous_expires_at(&secret), Some(DateTime::UNIX_EPOCH));
        let patch = drop_previous_patch(&secret);
        assert_eq!(patch["data"][PREVIOUS_SECRET_KEY], Value::Null);
        assert!(patch["data"].as_object().is_some_and(|d| d.len() == 2));
    }

    #[test]
    fn blank_rotation_annotation_is_no_request() {
        assert_eq!(rotation_request(&subscription(Some("  "))), None);
        assert_eq!(rotation_request(&subscription(None)), None);
        assert_eq!(rotation_request(&subscription(Some("x"))), Some("x"));
    }
}
