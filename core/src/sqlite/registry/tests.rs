//! Tests of the SQLite [`Registry`]: round trips, conflicts, listings and filters, change
//! notifications, persistence across reopening.

use chrono::{DateTime, Utc};
use tokio::sync::broadcast::error::TryRecvError;

use super::*;
use crate::scope::Scope;
use crate::secret::ApiKeySecret;
use crate::subscription::{Deactivation, EventPattern, Ordering, SigningSecrets};

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn at(seconds: i64) -> DateTime<Utc> {
    // Nanoseconds, so the round trips prove full precision is kept.
    DateTime::from_timestamp(1_767_323_045 + seconds, 987_654_321).unwrap_or_default()
}

fn subscription(id: &str, event: &str) -> Subscription {
    Subscription {
        id: id.to_owned(),
        callback_url: format!("https://example.com/hooks/{id}"),
        event: EventPattern::parse(event).unwrap_or_else(|e| panic!("{event}: {e}")),
        description: Some(format!("subscription {id}")),
        is_active: true,
        pool: "default".to_owned(),
        rate_limit_per_second: None,
        max_in_flight: None,
        ordering: Ordering::Unordered,
        secrets: SigningSecrets::new(SigningSecret::generate()),
        deactivation: None,
        created_at: at(0),
        updated_at: at(0),
    }
}

fn api_key(id: &str) -> (ApiKey, ApiKeySecret) {
    let secret = ApiKeySecret::generate();
    let key = ApiKey {
        id: id.to_owned(),
        name: format!("key {id}"),
        description: None,
        scopes: vec![Scope::WriteEvents],
        key_hash: secret.hash(),
        key_prefix: secret.display_prefix(),
        created_at: at(0),
        updated_at: at(0),
        last_accessed_at: None,
    };
    (key, secret)
}

fn open(dir: &tempfile::TempDir) -> Result<SqliteStore> {
    SqliteStore::open(&dir.path().join("kolbak.db"))
}

fn ids<T>(listing: &Listing<T>, id: impl Fn(&T) -> &str) -> Vec<String> {
    listing
        .items
        .iter()
        .map(|item| id(item).to_owned())
        .collect()
}

#[tokio::test]
async fn subscriptions_round_trip_through_every_operation() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let mut original = subscription("01sub", "order.*");
    original.rate_limit_per_second = Some(10);
    original.max_in_flight = Some(3);
    original.ordering = Ordering::Ordered;
    original.pool = "critical".to_owned();

    assert_eq!(store.create_subscription(original.clone()).await?, original);
    assert_eq!(
        store.get_subscription("01sub").await?,
        Some(original.clone())
    );
    assert_eq!(store.get_subscription("absent").await?, None);

    let patch = SubscriptionPatch {
        callback_url: Some("https://example.org/new".to_owned()),
        event: Some(EventPattern::parse("invoice.paid")?),
        description: Some(None),
        is_active: Some(false),
        rate_limit_per_second: Some(None),
        ..SubscriptionPatch::default()
    };
    let mut expected = original.clone();
    patch.clone().apply(&mut expected, at(60));
    let patched = store.patch_subscription("01sub", patch, at(60)).await?;
    assert_eq!(patched.as_ref(), Some(&expected));
    assert_eq!(patched.as_ref().and_then(|s| s.description.clone()), None);
    assert_eq!(
        store.get_subscription("01sub").await?,
        Some(expected.clone())
    );

    let next = SigningSecret::generate();
    let rotated = store
        .rotate_secret("01sub", next.clone(), at(86_400), at(120))
        .await?
        .ok_or("rotated subscription missing")?;
    assert_eq!(rotated.secrets.current, next);
    assert_eq!(
        rotated.secrets.previous,
        Some(original.secrets.current.clone())
    );
    assert_eq!(rotated.secrets.previous_expires_at, Some(at(86_400)));
    assert_eq!(rotated.updated_at, at(120));
    assert_eq!(rotated.created_at, original.created_at);
    assert_eq!(store.get_subscription("01sub").await?, Some(rotated));

    assert!(store.delete_subscription("01sub").await?);
    assert!(!store.delete_subscription("01sub").await?);
    assert_eq!(store.get_subscription("01sub").await?, None);
    Ok(())
}

#[tokio::test]
async fn changing_a_missing_subscription_finds_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let patch = SubscriptionPatch {
        is_active: Some(false),
        ..SubscriptionPatch::default()
    };
    assert_eq!(store.patch_subscription("nope", patch, at(1)).await?, None);
    let rotated = store
        .rotate_secret("nope", SigningSecret::generate(), at(2), at(1))
        .await?;
    assert_eq!(rotated, None);
    Ok(())
}

#[tokio::test]
async fn duplicate_ids_and_key_hashes_conflict() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let first = subscription("01dup", "*");
    store.create_subscription(first.clone()).await?;
    let result = store
        .create_subscription(subscription("01dup", "a.b"))
        .await;
    assert!(matches!(result, Err(Error::Conflict(_))), "{result:?}");
    assert_eq!(store.get_subscription("01dup").await?, Some(first));

    let (key, _) = api_key("01key");
    store
        .create_api_key(key.clone(), &ApiKeySecret::generate())
        .await?;
    let (mut same_id, _) = api_key("01key");
    same_id.name = "other".to_owned();
    let result = store
        .create_api_key(same_id, &ApiKeySecret::generate())
        .await;
    assert!(matches!(result, Err(Error::Conflict(_))), "{result:?}");

    let mut same_hash = api_key("02key").0;
    same_hash.key_hash = key.key_hash;
    let result = store
        .create_api_key(same_hash, &ApiKeySecret::generate())
        .await;
    assert!(matches!(result, Err(Error::Conflict(_))), "{result:?}");
    assert_eq!(store.get_api_key("02key").await?, None);
    assert_eq!(store.get_api_key("01key").await?, Some(key));
    Ok(())
}

#[tokio::test]
async fn api_keys_round_trip_through_every_operation() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let (mut key, secret) = api_key("01key");
    key.description = Some("producer".to_owned());
    assert_eq!(
        store
            .create_api_key(key.clone(), &ApiKeySecret::generate())
            .await?,
        key
    );
    assert_eq!(store.get_api_key("01key").await?, Some(key.clone()));
    assert_eq!(store.find_api_key(&secret.hash()).await?, Some(key.clone()));
    let stranger = ApiKeySecret::generate();
    assert_eq!(store.find_api_key(&stranger.hash()).await?, None);

    store.touch_api_key("01key", at(30)).await?;
    // Touches never move the access time backwards.
    store.touch_api_key("01key", at(10)).await?;
    store.touch_api_key("absent", at(30)).await?;
    let touched = store.get_api_key("01key").await?.ok_or("key missing")?;
    assert_eq!(touched.last_accessed_at, Some(at(30)));

    let patch = ApiKeyPatch {
        name: Some("renamed".to_owned()),
        description: Some(None),
        scopes: Some(vec![
            Scope::WriteEvents,
            Scope::ReadKeys,
            Scope::WriteEvents,
        ]),
    };
    let patched = store
        .patch_api_key("01key", patch, at(90))
        .await?
        .ok_or("patched key missing")?;
    assert_eq!(patched.name, "renamed");
    assert_eq!(patched.description, None);
    assert_eq!(patched.scopes, vec![Scope::ReadKeys, Scope::WriteEvents]);
    assert_eq!(patched.updated_at, at(90));
    assert_eq!(patched.last_accessed_at, Some(at(30)));
    assert_eq!(store.find_api_key(&secret.hash()).await?, Some(patched));
    let missing = store
        .patch_api_key("absent", ApiKeyPatch::default(), at(90))
        .await?;
    assert_eq!(missing, None);

    assert!(store.delete_api_key("01key").await?);
    assert!(!store.delete_api_key("01key").await?);
    assert_eq!(store.find_api_key(&secret.hash()).await?, None);
    Ok(())
}

#[tokio::test]
async fn listings_page_oldest_first_and_count_everything() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    // Created out of order: listings sort by id (ULIDs sort by creation time).
    for i in [3, 0, 4, 1, 2] {
        store
            .create_subscription(subscription(&format!("01sub{i}"), "*"))
            .await?;
        store
            .create_api_key(api_key(&format!("01key{i}")).0, &ApiKeySecret::generate())
            .await?;
    }
    let page = |limit, offset| Page { limit, offset };
    let all = SubscriptionFilter::default();

    let first = store.list_subscriptions(&all, page(2, 0)).await?;
    assert_eq!(ids(&first, |s| &s.id), ["01sub0", "01sub1"]);
    assert_eq!(first.total, 5);
    let last = store.list_subscriptions(&all, page(2, 4)).await?;
    assert_eq!(ids(&last, |s| &s.id), ["01sub4"]);
    assert_eq!(last.total, 5);
    let beyond = store.list_subscriptions(&all, page(2, 10)).await?;
    assert!(beyond.items.is_empty());
    assert_eq!(beyond.total, 5);

    let keys = store.list_api_keys(page(3, 1)).await?;
    assert_eq!(ids(&keys, |k| &k.id), ["01key1", "01key2", "01key3"]);
    assert_eq!(keys.total, 5);
    let keys = store.list_api_keys(page(3, 20)).await?;
    assert!(keys.items.is_empty());
    assert_eq!(keys.total, 5);
    Ok(())
}

#[tokio::test]
async fn listings_filter_by_ids_activity_and_pool() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    for (id, active, pool) in [
        ("01a", true, "default"),
        ("01b", false, "default"),
        ("01c", true, "critical"),
        ("01d", false, "critical"),
    ] {
        let mut s = subscription(id, "*");
        s.is_active = active;
        s.pool = pool.to_owned();
        store.create_subscription(s).await?;
    }
    let list = |filter: SubscriptionFilter| {
        let store = store.clone();
        async move {
            let listing = store.list_subscriptions(&filter, Page::default()).await?;
            assert_eq!(listing.total, listing.items.len() as u64);
            Ok::<_, Error>(ids(&listing, |s| &s.id))
        }
    };
    let by_ids = SubscriptionFilter {
        ids: vec!["01d".to_owned(), "01a".to_owned(), "zz".to_owned()],
        ..SubscriptionFilter::default()
    };
    assert_eq!(list(by_ids).await?, ["01a", "01d"]);
    let active = SubscriptionFilter {
        is_active: Some(true),
        ..SubscriptionFilter::default()
    };
    assert_eq!(list(active).await?, ["01a", "01c"]);
    let inactive = SubscriptionFilter {
        is_active: Some(false),
        ..SubscriptionFilter::default()
    };
    assert_eq!(list(inactive).await?, ["01b", "01d"]);
    let critical = SubscriptionFilter {
        pool: Some("critical".to_owned()),
        ..SubscriptionFilter::default()
    };
    assert_eq!(list(critical).await?, ["01c", "01d"]);
    let combined = SubscriptionFilter {
        ids: vec!["01a".to_owned(), "01b".to_owned(), "01c".to_owned()],
        is_active: Some(false),
        pool: Some("default".to_owned()),
        events: vec!["anything".to_owned()],
    };
    assert_eq!(list(combined).await?, ["01b"]);
    Ok(())
}

#[tokio::test]
async fn event_filters_follow_pattern_semantics() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let patterns = [
        ("01all", "*"),
        ("01order", "order.*"),
        ("01created", "order.created"),
        ("01item", "order.item.*"),
        ("01orders", "orders.created"),
        ("01invoice", "invoice.paid"),
    ];
    for (id, pattern) in patterns {
        store.create_subscription(subscription(id, pattern)).await?;
    }
    let list = |events: &[&str]| {
        let store = store.clone();
        let filter = SubscriptionFilter {
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            ..SubscriptionFilter::default()
        };
        async move {
            let listing = store.list_subscriptions(&filter, Page::default()).await?;
            assert_eq!(listing.total, listing.items.len() as u64);
            Ok::<_, Error>(ids(&listing, |s| &s.id))
        }
    };
    // An exact type reaches the wildcard, its prefix pattern and the exact pattern.
    assert_eq!(
        list(&["order.created"]).await?,
        ["01all", "01created", "01order"]
    );
    assert_eq!(
        list(&["order.item.added"]).await?,
        ["01all", "01item", "01order"]
    );
    // `order.*` needs something after the dot; `orders` is not under `order.`.
    assert_eq!(list(&["order"]).await?, ["01all"]);
    assert_eq!(list(&["orders.created"]).await?, ["01all", "01orders"]);
    // A pattern given literally finds the subscriptions using it (and `*`, which matches
    // everything), not the narrower patterns under it.
    assert_eq!(list(&["order.*"]).await?, ["01all", "01order"]);
    assert_eq!(
        list(&["order.item.*"]).await?,
        ["01all", "01item", "01order"]
    );
    assert_eq!(list(&["*"]).await?, ["01all"]);
    // Any of several types.
    assert_eq!(
        list(&["invoice.paid", "orders.created"]).await?,
        ["01all", "01invoice", "01orders"]
    );
    // Case matters.
    assert_eq!(list(&["ORDER.created"]).await?, ["01all"]);
    Ok(())
}

/// The SQL event filter must agree with [`SubscriptionFilter::admits`] everywhere, including
/// inputs the API would refuse (non-ASCII, NUL, empty).
#[tokio::test]
async fn sql_filtering_agrees_with_admits() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let patterns = [
        "*", "a.*", "a.b", "a.b.*", "a.bc", "ab.*", "ab", "b", "a.b.c", "x-y:z.*", "a_b",
    ];
    let mut all = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let mut s = subscription(&format!("01s{i:02}"), pattern);
        s.is_active = i % 2 == 0;
        store.create_subscription(s.clone()).await?;
        all.push(s);
    }
    let queries = [
        "", "*", "a", "a.", "a.*", "a.b", "a.b.", "a.b.*", "a.b.c", "a.bc", "ab", "ab.x", "b",
        "a.b.c.d", "A.B", "a.ä", "ä", "a.\u{0}", "a\u{0}.b", "x-y:z.w", "x-y:z", "a%b", "a_b",
        "a.%", "a._",
    ];
    let mut filters = Vec::new();
    for query in queries {
        filters.push(vec![query.to_owned()]);
    }
    filters.push(vec!["a".to_owned(), "b".to_owned()]);
    filters.push(vec!["ab.x".to_owned(), "a.bc".to_owned(), "zzz".to_owned()]);
    for events in filters {
        for is_active in [None, Some(true), Some(false)] {
            let filter = SubscriptionFilter {
                events: events.clone(),
                is_active,
                ..SubscriptionFilter::default()
            };
            let expected: Vec<String> = all
                .iter()
                .filter(|s| filter.admits(s))
                .map(|s| s.id.clone())
                .collect();
            let page = Page {
                limit: 100,
                offset: 0,
            };
            let listing = store.list_subscriptions(&filter, page).await?;
            assert_eq!(ids(&listing, |s| &s.id), expected, "{filter:?}");
            assert_eq!(listing.total, expected.len() as u64, "{filter:?}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn every_write_announces_its_change() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let mut changes = store.changes();
    let (key, _) = api_key("01key");
    let patch = SubscriptionPatch {
        is_active: Some(false),
        ..SubscriptionPatch::default()
    };

    store
        .create_subscription(subscription("01sub", "*"))
        .await?;
    store
        .patch_subscription("01sub", patch.clone(), at(1))
        .await?;
    store
        .rotate_secret("01sub", SigningSecret::generate(), at(2), at(1))
        .await?;
    store.delete_subscription("01sub").await?;
    store.create_api_key(key, &ApiKeySecret::generate()).await?;
    store
        .patch_api_key("01key", ApiKeyPatch::default(), at(1))
        .await?;
    store.touch_api_key("01key", at(5)).await?;
    store.delete_api_key("01key").await?;

    // Writes that change nothing announce nothing.
    store.patch_subscription("01sub", patch, at(1)).await?;
    store.delete_subscription("01sub").await?;
    store.delete_api_key("01key").await?;
    store.touch_api_key("01key", at(6)).await?;
    let conflict = store.create_subscription(subscription("01sub2", "*")).await;
    assert!(conflict.is_ok());
    let conflict = store.create_subscription(subscription("01sub2", "*")).await;
    assert!(conflict.is_err());

    let sub = |id: &str| RegistryChange::SubscriptionUpserted(id.to_owned());
    let key = |id: &str| RegistryChange::ApiKeyUpserted(id.to_owned());
    let expected = [
        sub("01sub"),
        sub("01sub"),
        sub("01sub"),
        RegistryChange::SubscriptionDeleted("01sub".to_owned()),
        key("01key"),
        key("01key"),
        key("01key"),
        RegistryChange::ApiKeyDeleted("01key".to_owned()),
        sub("01sub2"),
    ];
    for change in expected {
        assert_eq!(changes.try_recv()?, change);
    }
    assert_eq!(changes.try_recv(), Err(TryRecvError::Empty));
    Ok(())
}

#[tokio::test]
async fn writes_without_watchers_succeed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    drop(store.changes());
    store
        .create_subscription(subscription("01sub", "*"))
        .await?;
    assert!(store.delete_subscription("01sub").await?);
    Ok(())
}

#[tokio::test]
async fn the_registry_survives_closing_and_reopening() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut rotated = subscription("01sub", "order.*");
    rotated.secrets.rotate(SigningSecret::generate(), at(3600));
    let (mut key, secret) = api_key("01key");
    key.last_accessed_at = Some(at(7));
    {
        let store = open(&dir)?;
        store.create_subscription(rotated.clone()).await?;
        store
            .create_api_key(key.clone(), &ApiKeySecret::generate())
            .await?;
    }
    let store = open(&dir)?;
    assert_eq!(store.get_subscription("01sub").await?, Some(rotated));
    assert_eq!(store.find_api_key(&secret.hash()).await?, Some(key));
    Registry::check_ready(&store).await?;
    Ok(())
}

#[tokio::test]
async fn clones_share_the_store_and_its_changes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(&dir)?;
    let clone = store.clone();
    let mut changes = store.changes();
    clone
        .create_subscription(subscription("01sub", "*"))
        .await?;
    assert!(store.get_subscription("01sub").await?.is_some());
    assert_eq!(
        changes.try_recv()?,
        RegistryChange::SubscriptionUpserted("01sub".to_owned())
    );
    Ok(())
}

#[tokio::test]
async fn deactivations_round_trip_and_clear_on_activation() -> TestResult {
    let dir = tempfile::tempdir()?;
    let gone = Deactivation {
        at: at(30),
        reason: "endpoint answered 410 Gone".to_owned(),
    };
    let deactivated = {
        let store = open(&dir)?;
        store
            .create_subscription(subscription("01sub", "*"))
            .await?;
        let patch = SubscriptionPatch {
            deactivate: Some(gone.clone()),
            ..SubscriptionPatch::default()
        };
        let deactivated = store
            .patch_subscription("01sub", patch, at(30))
            .await?
            .ok_or("subscription missing")?;
        assert!(!deactivated.is_active);
        assert_eq!(deactivated.deactivation, Some(gone.clone()));
        deactivated
    };

    let store = open(&dir)?;
    assert_eq!(
        store.get_subscription("01sub").await?,
        Some(deactivated.clone())
    );
    let inactive = SubscriptionFilter {
        is_active: Some(false),
        ..SubscriptionFilter::default()
    };
    let listing = store.list_subscriptions(&inactive, Page::default()).await?;
    assert_eq!(listing.items, [deactivated]);

    let activate = SubscriptionPatch {
        is_active: Some(true),
        ..SubscriptionPatch::default()
    };
    store.patch_subscription("01sub", activate, at(60)).await?;
    let active = store
        .get_subscription("01sub")
        .await?
        .ok_or("subscription missing")?;
    assert!(active.is_active);
    assert_eq!(active.deactivation, None);

    // Created already deactivated (as an import might): stored as given.
    let mut imported = subscription("01imp", "*");
    imported.is_active = false;
    imported.deactivation = Some(gone);
    store.create_subscription(imported.clone()).await?;
    assert_eq!(store.get_subscription("01imp").await?, Some(imported));
    Ok(())
}
