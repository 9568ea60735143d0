//! The ApiKey controller: generates the key once into a Secret and records only its hash.
//!
//! The Secret `<apikey>-key` (owned by the ApiKey, so deleting the ApiKey deletes it and so
//! revokes the key) holds `key` (the `kbk_…` key) and `id` (the ApiKey's name, which is the
//! OAuth2 `client_id`). The status gets `keyHash` (SHA-256, hex), `keyPrefix` (the first 12
//! characters, not secret), `secretName` and the conditions `SecretReady` and `Ready`. An
//! existing Secret is never overwritten: if its `key` is missing the ApiKey is reported
//! `SecretReady=False` (reason `SecretKeyMissing`) until the Secret is fixed or deleted. The key
//! itself never appears in the status, in Events or in logs.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kolbak_core::secret::ApiKeySecret;
use kolbak_crds::condition::{READY, SECRET_READY};
use kolbak_crds::{ApiKey, ApiKeyStatus, secret_layout};
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use crate::conditions::ConditionSet;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::owned::{FIELD_MANAGER, describe, is_being_deleted, labels, namespace, owner_reference};
use crate::status;
use crate::subscription::{RESYNC, SECRET_RECHECK};

/// Key of the API key in the generated Secret.
pub const KEY_KEY: &str = secret_layout::API_KEY_KEY;
/// Key of the ApiKey's name (the OAuth2 `client_id`) in the generated Secret.
pub const ID_KEY: &str = secret_layout::API_KEY_ID_KEY;
/// `app.kubernetes.io/component` of generated API key Secrets.
pub const COMPONENT: &str = secret_layout::API_KEY_COMPONENT;

/// Name of the Secret generated for the ApiKey `api_key`.
pub fn secret_name(api_key: &str) -> String {
    secret_layout::api_key_secret_name(api_key)
}

/// A new Secret for `api_key` holding `key`.
pub fn new_secret(api_key: &ApiKey, key: &ApiKeySecret) -> Result<Secret> {
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&api_key.name_any())),
            namespace: api_key.namespace(),
            labels: Some(labels(COMPONENT)),
            owner_references: Some(vec![owner_reference(api_key)?]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([
            (
                KEY_KEY.to_owned(),
                ByteString(key.expose().as_bytes().to_vec()),
            ),
            (
                ID_KEY.to_owned(),
                ByteString(api_key.name_any().into_bytes()),
            ),
        ])),
        ..Secret::default()
    })
}

/// The API key stored in `secret`, if it has a non-empty `key`.
pub fn read_key(secret: &Secret) -> Option<ApiKeySecret> {
    let bytes = secret.data.as_ref()?.get(KEY_KEY)?;
    let text = std::str::from_utf8(&bytes.0).ok()?.trim();
    (!text.is_empty()).then(|| ApiKeySecret::presented(text))
}

/// Reconciles one ApiKey (the controller's reconcile function).
///
/// # Errors
/// A failed API request; the controller retries with per-object backoff.
pub async fn reconcile(api_key: Arc<ApiKey>, ctx: Arc<Context>) -> Result<Action> {
    ctx.instrument(api_key.as_ref(), reconcile_api_key(&api_key, &ctx))
        .await
}

async fn reconcile_api_key(api_key: &ApiKey, ctx: &Context) -> Result<Action> {
    if is_being_deleted(api_key) {
        return Ok(Action::await_change());
    }
    let ns = namespace(api_key)?;
    let name = secret_name(&api_key.name_any());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = secrets
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get Secret {ns}/{name}")))?;
    let key = match existing {
        Some(secret) => read_key(&secret),
        None => {
            let key = ApiKeySecret::generate();
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            };
            secrets
                .create(&params, &new_secret(api_key, &key)?)
                .await
                .map_err(Error::kube(format!("create Secret {ns}/{name}")))?;
            tracing::info!(api_key = %describe(api_key), secret = %name, "generated API key");
            Some(key)
        }
    };

    let current = api_key.status.clone().unwrap_or_default();
    let generation = api_key.meta().generation;
    let mut conditions = ConditionSet::new(&current.conditions, generation);
    let (key_hash, key_prefix, action) = match &key {
        Some(key) => {
            conditions.set(
                SECRET_READY,
                true,
                "SecretAvailable",
                format!("key in Secret {name}, key {KEY_KEY}"),
            );
            conditions.set(READY, true, "Reconciled", "");
            (
                Some(key.hash().to_hex()),
                Some(key.display_prefix()),
                Action::requeue(RESYNC),
            )
        }
        None => {
            conditions.set(
                SECRET_READY,
                false,
                "SecretKeyMissing",
                format!(
                    "Secret {name} has no key `{KEY_KEY}`; fix or delete it (a deleted one is \
                     generated again, with a new key)"
                ),
            );
            conditions.set(
                READY,
                false,
                "SecretNotReady",
                "the key is not usable; see the SecretReady condition",
            );
            (None, None, Action::requeue(SECRET_RECHECK))
        }
    };
    let status = ApiKeyStatus {
        conditions: conditions.conditions().to_vec(),
        observed_generation: generation,
        key_hash,
        key_prefix,
        secret_name: Some(name),
        ..ApiKeyStatus::default()
    };
    if conditions.changed()
        || current.observed_generation != status.observed_generation
        || current.key_hash != status.key_hash
        || current.key_prefix != status.key_prefix
        || current.secret_name != status.secret_name
    {
        status::apply(ctx, api_key, &status).await?;
    }
    status::publish(ctx, api_key, conditions.events()).await;
    Ok(action)
}

#[cfg(test)]
mod tests;
