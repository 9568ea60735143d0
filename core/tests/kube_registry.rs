//! The Kubernetes registry against a real API server (`scripts/kube.sh up`): REST-shaped
//! writes become custom resources and Secrets a kubectl user sees, objects applied with
//! kubectl become subscriptions, API keys authenticate by the hash in their status, and every
//! change reaches the watch-fed stores. Each test works in a namespace of its own.

#[path = "support/kube_api.rs"]
mod kube_api;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kolbak_core::id::new_id;
use kolbak_core::kube_registry::Watched;
use kolbak_core::registry::Page;
use kolbak_core::{
    ApiKey, ApiKeyPatch, ApiKeySecret, EventPattern, KubeRegistry, Ordering, Registry,
    RegistryChange, Scope, SigningSecret, SigningSecrets, Subscription, SubscriptionFilter,
    SubscriptionPatch,
};
use kolbak_crds::WebhookSubscriptionSpec;
use kolbak_crds::{ApiKey as ApiKeyResource, SecretKeyRef, WebhookSubscription};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};

use kube_api::{TestResult, eventually};

const WAIT: Duration = Duration::from_secs(10);
/// How long garbage collection may take to remove what a deleted object owned.
const GC_WAIT: Duration = Duration::from_secs(60);

async fn registry(
    prefix: &str,
) -> Result<Option<(Client, String, KubeRegistry)>, Box<dyn std::error::Error>> {
    let Some(client) = kube_api::client().await? else {
        return Ok(None);
    };
    let namespace = kube_api::namespace(&client, prefix).await?;
    let registry =
        KubeRegistry::start(client.clone(), Some(namespace.clone()), Watched::Everything);
    assert!(registry.wait_synced(WAIT).await, "stores did not sync");
    registry.check_ready().await?;
    Ok(Some((client, namespace, registry)))
}

fn new_subscription(event: &str) -> Result<Subscription, Box<dyn std::error::Error>> {
    let now = Utc::now();
    Ok(Subscription {
        id: new_id(),
        callback_url: "https://hooks.example.com/orders".into(),
        event: EventPattern::parse(event)?,
        description: Some("order events".into()),
        is_active: true,
        pool: "default".into(),
        rate_limit_per_second: Some(50),
        max_in_flight: None,
        ordering: Ordering::Unordered,
        secrets: SigningSecrets::new(SigningSecret::generate()),
        deactivation: None,
        created_at: now,
        updated_at: now,
    })
}

/// Whether the garbage collector removes the Secret `name` within [`GC_WAIT`].
async fn collected(secrets: &Api<Secret>, name: &str) -> bool {
    eventually(GC_WAIT, || async {
        secrets.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await
    .is_some()
}

fn data(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

#[tokio::test]
async fn rest_subscriptions_are_custom_resources_with_owned_secrets() -> TestResult {
    let Some((client, ns, registry)) = registry("kolbak-wsub").await? else {
        return Ok(());
    };
    let mut changes = registry.changes();
    let wanted = new_subscription("order.*")?;
    let created = registry.create_subscription(wanted.clone()).await?;
    assert_eq!(created.id, wanted.id);
    assert_eq!(created.secrets.current, wanted.secrets.current);
    // Read-your-writes: the stores show it as soon as the call returns.
    assert_eq!(
        registry
            .get_subscription(&wanted.id)
            .await?
            .map(|s| s.callback_url),
        Some(wanted.callback_url.clone())
    );

    // What kubectl sees: the object named by the id, applied by kolbak-api, and its Secret
    // owned by it.
    let wsubs: Api<WebhookSubscription> = Api::namespaced(client.clone(), &ns);
    let object = wsubs.get(&wanted.id).await?;
    assert_eq!(object.spec.event, "order.*");
    assert_eq!(object.spec.rate_limit_per_second, Some(50));
    assert!(object.spec.secret_ref.is_none());
    let managers: Vec<(String, String)> = object
        .managed_fields()
        .iter()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("kolbak-api".into(), "Apply".into())),
        "{managers:?}"
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = secrets.get(&format!("{}-signing", wanted.id)).await?;
    assert_eq!(
        data(&secret, "secret").as_deref(),
        Some(wanted.secrets.current.expose())
    );
    let owner = secret.owner_references().first().cloned();
    assert_eq!(
        owner.map(|o| (o.uid, o.controller)),
        Some((object.uid().unwrap_or_default(), Some(true)))
    );

    // Listing and filters.
    let other = registry
        .create_subscription(new_subscription("invoice.paid")?)
        .await?;
    let all = registry
        .list_subscriptions(&SubscriptionFilter::default(), Page::default())
        .await?;
    assert_eq!(all.total, 2);
    assert_eq!(
        all.items.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        vec![wanted.id.clone(), other.id.clone()]
    );
    let orders = SubscriptionFilter {
        events: vec!["order.created".into()],
        ..SubscriptionFilter::default()
    };
    let found = registry
        .list_subscriptions(&orders, Page::default())
        .await?;
    assert_eq!(
        found.items.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        vec![wanted.id.clone()]
    );

    // A patch: clear an optional field, change another, deactivate.
    let patch = SubscriptionPatch {
        description: Some(None),
        rate_limit_per_second: Some(None),
        max_in_flight: Some(Some(3)),
        is_active: Some(false),
        ..SubscriptionPatch::default()
    };
    let patched = registry
        .patch_subscription(&wanted.id, patch, Utc::now())
        .await?
        .ok_or("patched subscription vanished")?;
    assert_eq!(
        (
            patched.description.clone(),
            patched.rate_limit_per_second,
            patched.max_in_flight,
            patched.is_active
        ),
        (None, None, Some(3), false)
    );
    let object = wsubs.get(&wanted.id).await?;
    assert_eq!(
        (
            object.spec.description.clone(),
            object.spec.max_in_flight,
            object.spec.is_active
        ),
        (None, Some(3), false)
    );
    assert_eq!(
        registry.get_subscription(&wanted.id).await?,
        Some(patched.clone())
    );
    assert!(
        registry
            .patch_subscription(
                "01nosuchsubscription",
                SubscriptionPatch::default(),
                Utc::now()
            )
            .await?
            .is_none()
    );

    // Rotation keeps the old secret signing for the overlap, in the Secret's layout.
    let next = SigningSecret::generate();
    let expires = Utc::now() + TimeDelta::hours(24);
    let rotated = registry
        .rotate_secret(&wanted.id, next.clone(), expires, Utc::now())
        .await?
        .ok_or("rotated subscription vanished")?;
    assert_eq!(rotated.secrets.current, next);
    assert_eq!(
        rotated.secrets.previous.as_ref(),
        Some(&wanted.secrets.current)
    );
    let secret = secrets.get(&format!("{}-signing", wanted.id)).await?;
    assert_eq!(data(&secret, "secret").as_deref(), Some(next.expose()));
    assert_eq!(
        data(&secret, "previous-secret").as_deref(),
        Some(wanted.secrets.current.expose())
    );
    let stored = registry.get_subscription(&wanted.id).await?.ok_or("gone")?;
    assert_eq!(stored.secrets.valid_at(Utc::now()).len(), 2);

    // Deleting removes the object; its Secret follows by garbage collection.
    assert!(registry.delete_subscription(&wanted.id).await?);
    assert!(!registry.delete_subscription(&wanted.id).await?);
    assert_eq!(registry.get_subscription(&wanted.id).await?, None);
    assert!(wsubs.get_opt(&wanted.id).await?.is_none());
    // The Secret goes with its owner: garbage collection through its owner reference.
    let signing = format!("{}-signing", wanted.id);
    assert!(
        collected(&secrets, &signing).await,
        "{signing} outlived its subscription"
    );

    // Every change was announced.
    let mut seen = Vec::new();
    while let Ok(change) = changes.try_recv() {
        seen.push(change);
    }
    assert!(
        seen.contains(&RegistryChange::SubscriptionUpserted(wanted.id.clone())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&RegistryChange::SubscriptionDeleted(wanted.id.clone())),
        "{seen:?}"
    );
    Ok(())
}

#[tokio::test]
async fn kubectl_applied_subscriptions_appear_once_their_secret_exists() -> TestResult {
    let Some((client, ns, registry)) = registry("kolbak-kubectl").await? else {
        return Ok(());
    };
    let wsubs: Api<WebhookSubscription> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let create = PostParams::default();

    // Applied with kubectl, no secretRef: invisible until its signing Secret is generated.
    let mut spec = WebhookSubscriptionSpec::new("https://hooks.example.com/a", "user.*");
    spec.max_in_flight = Some(2);
    wsubs
        .create(&create, &WebhookSubscription::new("orders", spec))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(registry.get_subscription("orders").await?, None);
    let generated = SigningSecret::generate();
    let secret = |name: &str, key: &str, value: &str| -> Secret {
        let mut secret = Secret::default();
        secret.metadata.name = Some(name.into());
        secret.data = Some([(key.to_owned(), ByteString(value.as_bytes().to_vec()))].into());
        secret
    };
    secrets
        .create(
            &create,
            &secret("orders-signing", "secret", generated.expose()),
        )
        .await?;
    let seen = eventually(WAIT, || async {
        registry.get_subscription("orders").await.ok().flatten()
    })
    .await
    .ok_or("kubectl subscription never appeared")?;
    assert_eq!((seen.id.as_str(), seen.max_in_flight), ("orders", Some(2)));
    assert_eq!(seen.secrets.current, generated);

    // secretRef names the owner's Secret and key; a REST change keeps the reference.
    let owned = SigningSecret::generate();
    secrets
        .create(&create, &secret("team-hooks", "billing", owned.expose()))
        .await?;
    let mut spec = WebhookSubscriptionSpec::new("https://hooks.example.com/b", "invoice.paid");
    spec.secret_ref = Some(SecretKeyRef {
        name: "team-hooks".into(),
        key: "billing".into(),
    });
    wsubs
        .create(&create, &WebhookSubscription::new("billing", spec))
        .await?;
    let seen = eventually(WAIT, || async {
        registry.get_subscription("billing").await.ok().flatten()
    })
    .await
    .ok_or("secretRef subscription never appeared")?;
    assert_eq!(seen.secrets.current, owned);
    let patch = SubscriptionPatch {
        callback_url: Some("https://hooks.example.com/c".into()),
        ..SubscriptionPatch::default()
    };
    registry
        .patch_subscription("billing", patch, Utc::now())
        .await?
        .ok_or("gone")?;
    let object = wsubs.get("billing").await?;
    assert_eq!(object.spec.callback_url, "https://hooks.example.com/c");
    assert_eq!(
        object.spec.secret_ref.map(|r| r.name),
        Some("team-hooks".into())
    );
    // Its owner rotates it, not Kolbak.
    let refused = registry
        .rotate_secret("billing", SigningSecret::generate(), Utc::now(), Utc::now())
        .await;
    assert!(
        matches!(refused, Err(kolbak_core::Error::Conflict(_))),
        "{refused:?}"
    );

    // A change of the Secret reaches the subscription.
    let mut changes = registry.changes();
    let replaced = SigningSecret::generate();
    secrets
        .replace("team-hooks", &PostParams::default(), &{
            let mut s = secrets.get("team-hooks").await?;
            s.data = Some(
                [(
                    "billing".to_owned(),
                    ByteString(replaced.expose().as_bytes().to_vec()),
                )]
                .into(),
            );
            s
        })
        .await?;
    let updated = eventually(WAIT, || async {
        registry
            .get_subscription("billing")
            .await
            .ok()
            .flatten()
            .filter(|s| s.secrets.current == replaced)
    })
    .await;
    assert!(
        updated.is_some(),
        "the new Secret value never reached the store"
    );
    // The store already showed the new value, so its announcement has been sent.
    let mut announced = None;
    while let Ok(change) = changes.try_recv() {
        if change == RegistryChange::SubscriptionUpserted("billing".into()) {
            announced = Some(());
        }
    }
    assert!(
        announced.is_some(),
        "no change announced for the Secret update"
    );
    Ok(())
}

#[tokio::test]
async fn api_keys_authenticate_by_the_hash_in_their_status() -> TestResult {
    let Some((client, ns, registry)) = registry("kolbak-akey").await? else {
        return Ok(());
    };
    let secret = ApiKeySecret::generate();
    let now = Utc::now();
    let key = ApiKey {
        id: new_id(),
        name: "producer".into(),
        description: Some("checkout service".into()),
        scopes: vec![Scope::WriteEvents],
        key_hash: secret.hash(),
        key_prefix: secret.display_prefix(),
        created_at: now,
        updated_at: now,
        last_accessed_at: None,
    };
    let created = registry.create_api_key(key.clone(), &secret).await?;
    assert_eq!(
        (created.id.as_str(), created.scopes.clone()),
        (key.id.as_str(), vec![Scope::WriteEvents])
    );
    // Usable at once.
    let found = registry
        .find_api_key(&secret.hash())
        .await?
        .ok_or("key not found by hash")?;
    assert_eq!(found.id, key.id);
    assert_eq!(
        registry
            .find_api_key(&ApiKeySecret::generate().hash())
            .await?,
        None
    );

    // The key itself is only in its Secret, never in the ApiKey object.
    let akeys: Api<ApiKeyResource> = Api::namespaced(client.clone(), &ns);
    let object = akeys.get(&key.id).await?;
    let text = serde_json::to_string(&object)?;
    assert!(!text.contains(secret.expose()));
    assert_eq!(
        object.status.and_then(|s| s.key_hash),
        Some(secret.hash().to_hex())
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let stored = secrets.get(&format!("{}-key", key.id)).await?;
    assert_eq!(data(&stored, "key").as_deref(), Some(secret.expose()));
    assert_eq!(data(&stored, "id").as_deref(), Some(key.id.as_str()));

    // Use is recorded in status; a patch changes the spec.
    let used = Utc::now();
    registry.touch_api_key(&key.id, used).await?;
    let touched = eventually(WAIT, || async {
        registry
            .get_api_key(&key.id)
            .await
            .ok()
            .flatten()
            .and_then(|k| k.last_accessed_at)
    })
    .await;
    assert_eq!(touched.map(|t| t.timestamp()), Some(used.timestamp()));
    let patch = ApiKeyPatch {
        name: Some("checkout".into()),
        description: Some(None),
        ..ApiKeyPatch::default()
    };
    let patched = registry
        .patch_api_key(&key.id, patch, Utc::now())
        .await?
        .ok_or("gone")?;
    assert_eq!(
        (patched.name.as_str(), patched.description.clone()),
        ("checkout", None)
    );
    assert_eq!(registry.list_api_keys(Page::default()).await?.total, 1);

    // Deleting revokes at once.
    assert!(registry.delete_api_key(&key.id).await?);
    assert_eq!(registry.find_api_key(&secret.hash()).await?, None);
    let key_secret = format!("{}-key", key.id);
    assert!(
        collected(&secrets, &key_secret).await,
        "{key_secret} outlived its ApiKey"
    );
    assert!(!registry.delete_api_key(&key.id).await?);
    Ok(())
}
