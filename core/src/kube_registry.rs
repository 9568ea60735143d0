//! The `Registry` on the Kubernetes API: subscriptions are `WebhookSubscription` objects, API
//! keys are `ApiKey` objects, and their secrets live in Secrets, all in one namespace.
//!
//! Reads come from reflector stores fed by watches (so matching an event or checking an
//! `x-api-key` costs no API call) and `check_ready` fails until every store has its first full
//! listing. Writes go to the API server: custom resources by server-side apply with the field
//! manager `kolbak-api` (guarded by the `resourceVersion` that was read, retried on conflict),
//! Secrets by create and merge patch. A write returns once the stores show it, so a client
//! that creates a key can use it at once.
//!
//! Objects the REST API creates are named by their lowercase ULID (the REST `id`); objects
//! applied with kubectl keep their names, which are their REST ids. The REST API creates the
//! Secret first (named as the operator would name it, so the operator adopts rather than
//! replaces it), then the custom resource, then makes the resource the Secret's controller
//! owner so Kubernetes garbage-collects the Secret with it (nobody deletes Secrets: the chart's
//! roles grant no `delete` on them, and deleting the resource revokes at once because the
//! stores drop it). A subscription whose signing Secret does not
//! exist yet (a kubectl-applied object the operator has not reconciled) is not listed, and an
//! ApiKey whose status has no key hash yet does not authenticate.

mod api_keys;
mod key_hash_index;
pub mod mapping;
mod stores;
mod subscriptions;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kolbak_crds::{ApiKey as ApiKeyResource, WebhookSubscription};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast;

use crate::api_key::{ApiKey, ApiKeyPatch};
use crate::config::{Settings, duration};
use crate::delivery::SubscriptionHealth;
use crate::error::{Error, Result};
use crate::registry::{Listing, Page, Registry, RegistryChange, SubscriptionFilter};
use crate::secret::{ApiKeySecret, KeyHash, SigningSecret};
use crate::subscription::{Subscription, SubscriptionPatch};

use self::mapping::{FIELD_MANAGER, owner_reference};
use self::stores::Stores;
pub use self::stores::Watched;

/// The field manager of the delivery health dispatchers write into subscription status.
const HEALTH_FIELD_MANAGER: &str = "kolbak-dispatcher";
/// Attempts of a read-modify-write before a conflict is reported to the caller.
const WRITE_ATTEMPTS: usize = 5;
/// How long a write waits for the watch to show it before returning anyway.
const READ_YOUR_WRITES: Duration = Duration::from_secs(5);

/// Settings of the Kubernetes registry. Environment variables are `KOLBAK_` + the field name
/// in upper case.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct KubeRegistryConfig {
    /// Namespace of the subscriptions, API keys and their Secrets (`KOLBAK_KUBE_NAMESPACE`).
    /// Default: the client's namespace (the Pod's own namespace in a cluster, else the
    /// kubeconfig context's, else `default`).
    pub kube_namespace: Option<String>,
    /// How long start-up waits for the first full listing of subscriptions, API keys and
    /// Secrets (`KOLBAK_KUBE_SYNC_TIMEOUT`). Default `60s`; the process keeps serving (not
    /// ready) after it and the stores fill when the API server answers.
    #[serde(with = "duration")]
    pub kube_sync_timeout: Duration,
}

impl Default for KubeRegistryConfig {
    fn default() -> Self {
        Self {
            kube_namespace: None,
            kube_sync_timeout: Duration::from_secs(60),
        }
    }
}

impl Settings for KubeRegistryConfig {
    fn validate(&self) -> Result<()> {
        if let Some(namespace) = &self.kube_namespace
            && !kolbak_crds::validation::is_dns_label(namespace)
        {
            return Err(Error::Configuration(
                "KOLBAK_KUBE_NAMESPACE must be a namespace name (a DNS label)".into(),
            ));
        }
        Ok(())
    }
}

/// Subscriptions and API keys as custom resources in one namespace.
pub struct KubeRegistry {
    client: Client,
    namespace: String,
    stores: Stores,
    changes: broadcast::Sender<RegistryChange>,
}

impl KubeRegistry {
    /// Connects with the ambient configuration (in-cluster service account, else
    /// `KUBECONFIG`/`~/.kube/config`) and starts watching; does not wait for the stores.
    pub async fn connect(config: &KubeRegistryConfig, watched: Watched) -> Result<Self> {
        let client = Client::try_default().await.map_err(Error::storage)?;
        Ok(Self::start(client, config.kube_namespace.clone(), watched))
    }

    /// Starts watching `namespace` (default: the client's) with `client`.
    pub fn start(client: Client, namespace: Option<String>, watched: Watched) -> Self {
        let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
        let (changes, _) = broadcast::channel(1024);
        let stores = Stores::watch(&client, &namespace, watched, &changes);
        Self {
            client,
            namespace,
            stores,
            changes,
        }
    }

    /// The namespace this registry reads and writes.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Waits until every store has its first full listing, at most `timeout`; false when it
    /// ran out.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        self.stores.wait_synced(timeout).await
    }

    fn subscriptions_api(&self) -> Api<WebhookSubscription> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn api_keys_api(&self) -> Api<ApiKeyResource> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn secrets_api(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates `secret` (refusing to replace one of the same name) and waits for the store.
    async fn create_secret(&self, secret: &Secret) -> Result<()> {
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let created = self
            .secrets_api()
            .create(&params, secret)
            .await
            .map_err(api_error)?;
        self.await_secret(&created).await;
        Ok(())
    }

    /// Makes `owner` the controller owner of the Secret `name`, so deleting the owner deletes
    /// it. A failure is logged: the key or secret still works, only its clean-up is lost.
    async fn adopt_secret<K>(&self, name: &str, owner: &K)
    where
        K: kube::Resource<DynamicType = ()>,
    {
        let Some(reference) = owner_reference(owner) else {
            return;
        };
        let patch = json!({ "metadata": { "ownerReferences": [reference] } });
        let result = self
            .secrets_api()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
        match result {
            Ok(secret) => self.await_secret(&secret).await,
            Err(error) => {
                tracing::warn!(secret = %name, %error, "could not set the owner of a Secret")
            }
        }
    }

    async fn await_secret(&self, secret: &Secret) {
        self.await_object(&self.stores.secrets, secret).await;
    }

    /// Waits (bounded) until `store` shows `object` at its resource version or later.
    async fn await_object<K>(&self, store: &Store<K>, object: &K)
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        let name = object.meta().name.as_deref().unwrap_or_default();
        let version = object.meta().resource_version.as_deref();
        self.stores
            .caught_up(store, name, version, READ_YOUR_WRITES)
            .await;
    }

    /// Deletes the object `id` through `api`; `false` when it did not exist. Returns once
    /// `store` no longer shows it; what it owns is garbage-collected through owner references.
    async fn delete_object<K>(&self, api: Api<K>, store: &Store<K>, id: &str) -> Result<bool>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
        K: 'static,
    {
        match api.delete(id, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(false),
            Err(error) => return Err(api_error(error)),
        }
        self.stores
            .caught_up(store, id, None, READ_YOUR_WRITES)
            .await;
        Ok(true)
    }
}

/// Maps API errors onto the registry's: conflicts and duplicates are `Conflict`, objects the
/// server's schema refuses are `InvalidField`, the rest are storage failures.
fn api_error(error: kube::Error) -> Error {
    match &error {
        kube::Error::Api(status) if status.is_conflict() || status.is_already_exists() => {
            Error::Conflict(status.message.clone())
        }
        kube::Error::Api(status) if status.is_invalid() => {
            Error::invalid("spec", status.message.clone())
        }
        _ => Error::storage(error),
    }
}

/// True for a `409 Conflict` caused by a stale `resourceVersion` (worth reading again).
fn is_stale(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_conflict())
}

fn not_ready() -> Error {
    Error::storage(std::io::Error::other(
        "the Kubernetes watches have not listed every object yet",
    ))
}

#[async_trait]
impl Registry for KubeRegistry {
    async fn check_ready(&self) -> Result<()> {
        if self.stores.is_synced() {
            Ok(())
        } else {
            Err(not_ready())
        }
    }

    async fn create_subscription(&self, subscription: Subscription) -> Result<Subscription> {
        self.create_subscription_objects(subscription).await
    }

    async fn get_subscription(&self, id: &str) -> Result<Option<Subscription>> {
        Ok(self.stored_subscription(id))
    }

    async fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
        page: Page,
    ) -> Result<Listing<Subscription>> {
        Ok(self.stored_subscriptions(filter, page))
    }

    async fn patch_subscription(
        &self,
        id: &str,
        patch: SubscriptionPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>> {
        self.apply_subscription_patch(id, patch, now).await
    }

    async fn rotate_secret(
        &self,
        id: &str,
        next: SigningSecret,
        previous_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>> {
        self.rotate_signing_secret(id, next, previous_expires_at, now)
            .await
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool> {
        self.delete_subscription_objects(id).await
    }

    async fn create_api_key(&self, key: ApiKey, secret: &ApiKeySecret) -> Result<ApiKey> {
        self.create_api_key_objects(key, secret).await
    }

    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKey>> {
        Ok(self.stored_api_key(id))
    }

    async fn find_api_key(&self, hash: &KeyHash) -> Result<Option<ApiKey>> {
        Ok(self.stored_api_key_by_hash(hash))
    }

    async fn list_api_keys(&self, page: Page) -> Result<Listing<ApiKey>> {
        Ok(self.stored_api_keys(page))
    }

    async fn patch_api_key(
        &self,
        id: &str,
        patch: ApiKeyPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<ApiKey>> {
        self.apply_api_key_patch(id, patch, now).await
    }

    async fn touch_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        self.record_api_key_use(id, at).await
    }

    async fn delete_api_key(&self, id: &str) -> Result<bool> {
        self.delete_api_key_objects(id).await
    }

    async fn report_health(&self, id: &str, health: &SubscriptionHealth) -> Result<()> {
        let patch = json!({ "status": mapping::health_status(health) });
        let params = PatchParams {
            field_manager: Some(HEALTH_FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        match self
            .subscriptions_api()
            .patch_status(id, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
            Err(error) => Err(api_error(error)),
        }
    }

    fn changes(&self) -> broadcast::Receiver<RegistryChange> {
        self.changes.subscribe()
    }
}

/// Items `page` selects from `items` (already in listing order), with the total.
fn paginate<T>(items: Vec<T>, page: Page) -> Listing<T> {
    let total = items.len() as u64;
    let skip = usize::try_from(page.offset).unwrap_or(usize::MAX);
    let items = items
        .into_iter()
        .skip(skip)
        .take(page.limit as usize)
        .collect();
    Listing { items, total }
}
