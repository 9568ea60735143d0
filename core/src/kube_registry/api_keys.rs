//! API key reads and writes of the Kubernetes registry: `ApiKey` objects, whose status holds
//! the key's hash, and the Secrets holding the keys.

use chrono::{DateTime, Utc};
use kolbak_crds::ApiKey as ApiKeyResource;
use kolbak_crds::secret_layout::api_key_secret_name;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::mapping::{FIELD_MANAGER, api_key, api_key_secret, api_key_spec, api_key_status_apply};
use super::{KubeRegistry, WRITE_ATTEMPTS, api_error, paginate};
use crate::api_key::{ApiKey, ApiKeyPatch};
use crate::error::{Error, Result};
use crate::registry::{Listing, Page};
use crate::secret::{ApiKeySecret, KeyHash};

impl KubeRegistry {
    pub(super) fn stored_api_key(&self, id: &str) -> Option<ApiKey> {
        let object = self.stores.api_keys.get(&self.stores.key(id))?;
        api_key(&object)
    }

    pub(super) fn stored_api_key_by_hash(&self, hash: &KeyHash) -> Option<ApiKey> {
        let hex = hash.to_hex();
        let name = self.stores.api_key_hashes.name_of(&hex)?;
        let object = self.stores.api_keys.get(&self.stores.key(&name))?;
        // The index may trail the store by an event: the object itself must still hold the hash.
        let stored = object.status.as_ref()?.key_hash.as_deref()?;
        crate::secret::secrets_equal(stored, &hex).then(|| api_key(&object))?
    }

    pub(super) fn stored_api_keys(&self, page: Page) -> Listing<ApiKey> {
        let mut all: Vec<ApiKey> = self
            .stores
            .api_keys
            .state()
            .iter()
            .filter_map(|object| api_key(object))
            .collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        paginate(all, page)
    }

    pub(super) async fn create_api_key_objects(
        &self,
        key: ApiKey,
        secret: &ApiKeySecret,
    ) -> Result<ApiKey> {
        // The Secret first: the operator then finds the key and does not generate another.
        self.create_secret(&api_key_secret(&key.id, secret)).await?;
        let secret_name = api_key_secret_name(&key.id);
        let created = self.apply_api_key(&key, None).await.inspect_err(|error| {
            tracing::warn!(
                key_id = %key.id,
                %error,
                "API key not created; its Secret is left without an owner"
            );
        })?;
        self.adopt_secret(&secret_name, &created).await;
        let with_status = self
            .api_keys_api()
            .patch_status(
                &key.id,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&api_key_status_apply(&key)),
            )
            .await
            .map_err(api_error)?;
        self.await_api_key(&with_status).await;
        api_key(&with_status).ok_or_else(|| {
            Error::Conflict(format!(
                "API key {} lost its status while being created",
                key.id
            ))
        })
    }

    pub(super) async fn apply_api_key_patch(
        &self,
        id: &str,
        patch: ApiKeyPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<ApiKey>> {
        for _ in 0..WRITE_ATTEMPTS {
            let Some(object) = self.api_keys_api().get_opt(id).await.map_err(api_error)? else {
                return Ok(None);
            };
            let Some(mut current) = api_key(&object) else {
                return Err(Error::Conflict(format!(
                    "API key {id} has no key yet; try again once it is Ready"
                )));
            };
            patch.clone().apply(&mut current, now);
            let version = object.metadata.resource_version.as_deref();
            let mut applied = match self.apply_api_key(&current, version).await {
                Err(Error::Conflict(_)) => continue,
                other => other?,
            };
            if current.description.is_none() && applied.spec.description.is_some() {
                // Set by another field manager, so the apply did not remove it.
                let clear = json!({ "spec": { "description": null } });
                applied = self
                    .api_keys_api()
                    .patch(id, &PatchParams::default(), &Patch::Merge(&clear))
                    .await
                    .map_err(api_error)?;
            }
            self.await_api_key(&applied).await;
            return Ok(api_key(&applied));
        }
        Err(Error::Conflict(format!(
            "API key {id} keeps changing; try again"
        )))
    }

    pub(super) async fn record_api_key_use(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        let patch = json!({ "status": { "lastAccessedAt": at } });
        match self
            .api_keys_api()
            .patch_status(id, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
            Err(error) => Err(api_error(error)),
        }
    }

    pub(super) async fn delete_api_key_objects(&self, id: &str) -> Result<bool> {
        // Revoked once the stores drop the object.
        self.delete_object(self.api_keys_api(), &self.stores.api_keys, id)
            .await
    }

    async fn apply_api_key(
        &self,
        key: &ApiKey,
        resource_version: Option<&str>,
    ) -> Result<ApiKeyResource> {
        let mut metadata = json!({ "name": key.id });
        if let Some(version) = resource_version {
            metadata["resourceVersion"] = json!(version);
        }
        let body = json!({
            "apiVersion": format!("{}/{}", kolbak_crds::GROUP, kolbak_crds::VERSION),
            "kind": "ApiKey",
            "metadata": metadata,
            "spec": api_key_spec(key),
        });
        self.api_keys_api()
            .patch(
                &key.id,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(api_error)
    }

    async fn await_api_key(&self, object: &ApiKeyResource) {
        self.await_object(&self.stores.api_keys, object).await;
    }
}
