//! The watches behind the Kubernetes registry: one reflector store each for WebhookSubscriptions,
//! ApiKeys and Secrets in the registry's namespace, kept current by `kube-runtime` watchers
//! (re-listing with backoff after errors), and the change notifications derived from them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kolbak_crds::{ApiKey as ApiKeyResource, WebhookSubscription};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::key_hash_index::KeyHashIndex;
use super::mapping::secret_location;
use crate::registry::RegistryChange;

/// How often a read-your-writes wait looks at the store again.
const STORE_POLL: Duration = Duration::from_millis(10);

/// What a registry watches: a dispatcher needs no API keys (and its role may not read them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// Subscriptions, API keys and Secrets (the ingress).
    Everything,
    /// Subscriptions and Secrets only (dispatchers); the API key store stays empty.
    SubscriptionsOnly,
}

/// The three stores, their readiness, and the tasks that feed them.
pub struct Stores {
    /// WebhookSubscriptions of the namespace.
    pub subscriptions: Store<WebhookSubscription>,
    /// ApiKeys of the namespace.
    pub api_keys: Store<ApiKeyResource>,
    /// The same ApiKeys by the key hash in their status.
    pub api_key_hashes: Arc<KeyHashIndex>,
    /// Secrets of the namespace (signing secrets may be any Secret named by `secretRef`).
    pub secrets: Store<Secret>,
    namespace: String,
    synced: Arc<[AtomicBool; 3]>,
    tasks: Vec<JoinHandle<()>>,
}

impl Stores {
    /// Starts watching `namespace`; changes are announced on `changes`.
    pub fn watch(
        client: &Client,
        namespace: &str,
        watched: Watched,
        changes: &broadcast::Sender<RegistryChange>,
    ) -> Self {
        let synced = Arc::new([
            AtomicBool::new(false),
            AtomicBool::new(watched == Watched::SubscriptionsOnly),
            AtomicBool::new(false),
        ]);
        let (subscriptions, subscriptions_writer) = reflector::store();
        let (api_keys, api_keys_writer) = reflector::store();
        let (secrets, secrets_writer) = reflector::store();

        let subscriptions_task = spawn_watch(
            Api::<WebhookSubscription>::namespaced(client.clone(), namespace),
            subscriptions_writer,
            (synced.clone(), 0),
            announcer(
                changes.clone(),
                RegistryChange::SubscriptionUpserted,
                RegistryChange::SubscriptionDeleted,
            ),
        );
        let api_key_hashes = Arc::new(KeyHashIndex::default());
        let api_keys_task = (watched == Watched::Everything).then(|| {
            let announce = announcer(
                changes.clone(),
                RegistryChange::ApiKeyUpserted,
                RegistryChange::ApiKeyDeleted,
            );
            let index = Arc::clone(&api_key_hashes);
            spawn_watch(
                Api::<ApiKeyResource>::namespaced(client.clone(), namespace),
                api_keys_writer,
                (synced.clone(), 1),
                move |event| {
                    index.apply(event);
                    announce(event);
                },
            )
        });
        let sender = changes.clone();
        let subscriptions_of_secret = subscriptions.clone();
        let secrets_task = spawn_watch(
            Api::<Secret>::namespaced(client.clone(), namespace),
            secrets_writer,
            (synced.clone(), 2),
            move |event| {
                // A Secret change is a change of every subscription that signs with it.
                if let Some((secret, _)) = touched(event) {
                    let name = secret.name_any();
                    for subscription in subscriptions_of_secret.state() {
                        if secret_location(&subscription).name == name {
                            let _ = sender.send(RegistryChange::SubscriptionUpserted(
                                subscription.name_any(),
                            ));
                        }
                    }
                }
            },
        );
        Self {
            subscriptions,
            api_keys,
            api_key_hashes,
            secrets,
            namespace: namespace.to_owned(),
            synced,
            tasks: [Some(subscriptions_task), api_keys_task, Some(secrets_task)]
                .into_iter()
                .flatten()
                .collect(),
        }
    }

    /// True once every store holds a complete first listing.
    pub fn is_synced(&self) -> bool {
        self.synced.iter().all(|flag| flag.load(Ordering::Acquire))
    }

    /// Waits until every store is synced, at most `timeout`; false when it ran out.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_synced() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(STORE_POLL).await;
        }
        true
    }

    /// The key of the object `name` in this namespace.
    pub fn key<K: Resource<DynamicType = ()>>(&self, name: &str) -> ObjectRef<K> {
        ObjectRef::new(name).within(&self.namespace)
    }

    /// Waits (at most `timeout`) until `store` shows the object `name` at `resource_version` or
    /// later (`None`: until it no longer holds it), so a caller reads its own write. Returns
    /// false when the watch did not catch up in time; the write itself has happened.
    pub async fn caught_up<K>(
        &self,
        store: &Store<K>,
        name: &str,
        resource_version: Option<&str>,
        timeout: Duration,
    ) -> bool
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let key = self.key::<K>(name);
        loop {
            let seen = store.get(&key);
            let done = match (resource_version, seen) {
                (None, seen) => seen.is_none(),
                (Some(_), None) => false,
                (Some(wanted), Some(object)) => object
                    .meta()
                    .resource_version
                    .as_deref()
                    .is_some_and(|have| have == wanted || newer_or_equal(have, wanted)),
            };
            if done {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(STORE_POLL).await;
        }
    }
}

impl Drop for Stores {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Resource versions are opaque strings to clients; etcd-backed servers use increasing
/// integers, which is all this comparison relies on (anything else only matches exactly).
fn newer_or_equal(have: &str, wanted: &str) -> bool {
    match (have.parse::<u64>(), wanted.parse::<u64>()) {
        (Ok(have), Ok(wanted)) => have >= wanted,
        _ => false,
    }
}

/// Announces each object an event applied or deleted as `upserted(name)` or `deleted(name)`.
fn announcer<K: Resource>(
    sender: broadcast::Sender<RegistryChange>,
    upserted: fn(String) -> RegistryChange,
    deleted: fn(String) -> RegistryChange,
) -> impl Fn(&watcher::Event<K>) + Send + 'static {
    move |event| {
        if let Some((object, is_deleted)) = touched(event) {
            let name = object.name_any();
            let change = if is_deleted {
                deleted(name)
            } else {
                upserted(name)
            };
            // No receiver is fine: nobody is listening yet.
            let _ = sender.send(change);
        }
    }
}

/// The object an event applied or deleted (`true` when deleted); `None` for list markers.
fn touched<K>(event: &watcher::Event<K>) -> Option<(&K, bool)> {
    match event {
        watcher::Event::Apply(object) | watcher::Event::InitApply(object) => Some((object, false)),
        watcher::Event::Delete(object) => Some((object, true)),
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

/// Feeds `writer` from a watch of `api`, marks `synced[index]` after the first full listing,
/// and hands every event to `on_event` after the store has applied it.
fn spawn_watch<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    (synced, index): (Arc<[AtomicBool; 3]>, usize),
    on_event: impl Fn(&watcher::Event<K>) + Send + 'static,
) -> JoinHandle<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
    K: 'static,
{
    tokio::spawn(async move {
        let kind = K::kind(&()).into_owned();
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer);
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    if matches!(event, watcher::Event::InitDone) {
                        synced[index].store(true, Ordering::Release);
                    }
                    on_event(&event);
                }
                // The watcher re-lists with backoff by itself; the store keeps its last view.
                Err(error) => tracing::warn!(%kind, %error, "Kubernetes watch failed; retrying"),
            }
        }
    })
}
