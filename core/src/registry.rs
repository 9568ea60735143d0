//! The `Registry`: where subscriptions and API keys live (Kubernetes objects in a cluster, the
//! SQLite file standalone), with change notifications so caches stay fresh.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::api_key::{ApiKey, ApiKeyPatch};
use crate::delivery::SubscriptionHealth;
use crate::error::Result;
use crate::secret::{ApiKeySecret, KeyHash, SigningSecret};
use crate::subscription::{Subscription, SubscriptionPatch};

/// Largest page a listing returns.
pub const MAX_PAGE_LIMIT: u32 = 100;
/// Page size when the caller names none.
pub const DEFAULT_PAGE_LIMIT: u32 = 20;

/// A window into a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Most items returned (1..=100).
    pub limit: u32,
    /// Items skipped from the start.
    pub offset: u64,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            limit: DEFAULT_PAGE_LIMIT,
            offset: 0,
        }
    }
}

/// One page of a listing and the number of items in the whole listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing<T> {
    /// The page's items, oldest first.
    pub items: Vec<T>,
    /// Items in the whole listing, ignoring the page.
    pub total: u64,
}

/// Which subscriptions a listing returns; empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionFilter {
    /// Only these ids.
    pub ids: Vec<String>,
    /// Only subscriptions that receive at least one of these event types (by pattern match), or
    /// whose pattern is literally one of them (so `order.*` finds the `order.*` subscriptions).
    pub events: Vec<String>,
    /// Only active (`true`) or inactive (`false`) subscriptions.
    pub is_active: Option<bool>,
    /// Only subscriptions of this pool.
    pub pool: Option<String>,
}

impl SubscriptionFilter {
    /// True when `subscription` passes the filter.
    pub fn admits(&self, subscription: &Subscription) -> bool {
        (self.ids.is_empty() || self.ids.contains(&subscription.id))
            && (self.events.is_empty()
                || self
                    .events
                    .iter()
                    .any(|e| subscription.event.as_str() == e || subscription.event.matches(e)))
            && self
                .is_active
                .is_none_or(|active| active == subscription.is_active)
            && self
                .pool
                .as_ref()
                .is_none_or(|pool| *pool == subscription.pool)
    }
}

/// What changed in the registry; watchers re-read the object by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryChange {
    /// A subscription was created or changed.
    SubscriptionUpserted(String),
    /// A subscription was deleted.
    SubscriptionDeleted(String),
    /// An API key was created or changed.
    ApiKeyUpserted(String),
    /// An API key was deleted.
    ApiKeyDeleted(String),
}

/// Subscriptions and API keys, with change notifications.
#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Succeeds when the backend can serve requests (used by `/readyz`).
    async fn check_ready(&self) -> Result<()>;

    /// Stores a new subscription; [`crate::Error::Conflict`] when its id exists.
    async fn create_subscription(&self, subscription: Subscription) -> Result<Subscription>;
    /// One subscription by id.
    async fn get_subscription(&self, id: &str) -> Result<Option<Subscription>>;
    /// A page of the subscriptions that pass `filter`, oldest first.
    async fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
        page: Page,
    ) -> Result<Listing<Subscription>>;
    /// Applies `patch` atomically; `None` when the subscription does not exist.
    async fn patch_subscription(
        &self,
        id: &str,
        patch: SubscriptionPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>>;
    /// Makes `next` the current signing secret; the previous one keeps signing until
    /// `previous_expires_at`. `None` when the subscription does not exist.
    async fn rotate_secret(
        &self,
        id: &str,
        next: SigningSecret,
        previous_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>>;
    /// Deletes a subscription; `false` when it did not exist.
    async fn delete_subscription(&self, id: &str) -> Result<bool>;

    /// Stores a new API key; [`crate::Error::Conflict`] when its id exists. `secret` is the
    /// key itself: registries that keep it for its owner to read again (a Kubernetes Secret)
    /// store it, the others only keep `key.key_hash`.
    async fn create_api_key(&self, key: ApiKey, secret: &ApiKeySecret) -> Result<ApiKey>;
    /// One API key by id.
    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKey>>;
    /// The API key whose hash is `hash`.
    async fn find_api_key(&self, hash: &KeyHash) -> Result<Option<ApiKey>>;
    /// A page of API keys, oldest first.
    async fn list_api_keys(&self, page: Page) -> Result<Listing<ApiKey>>;
    /// Applies `patch` atomically; `None` when the key does not exist.
    async fn patch_api_key(
        &self,
        id: &str,
        patch: ApiKeyPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<ApiKey>>;
    /// Records that the key authenticated a request at `at`.
    async fn touch_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<()>;
    /// Deletes an API key; `false` when it did not exist.
    async fn delete_api_key(&self, id: &str) -> Result<bool>;

    /// Shows `health` on the subscription `id` where its owners look (the Kubernetes registry
    /// writes it to the WebhookSubscription status). Registries whose readers get health from
    /// the delivery log itself (SQLite) have nothing to store. A missing subscription is fine.
    async fn report_health(&self, id: &str, health: &SubscriptionHealth) -> Result<()> {
        let _ = (id, health);
        Ok(())
    }

    /// A stream of changes made after this call. A lagging receiver must re-read everything.
    fn changes(&self) -> broadcast::Receiver<RegistryChange>;
}
