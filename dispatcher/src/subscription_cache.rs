//! An in-memory copy of every subscription, kept current from the registry's change stream,
//! so matching an event costs no storage round trip.

use std::collections::HashMap;
use std::sync::Arc;

use kolbak_core::registry::MAX_PAGE_LIMIT;
use kolbak_core::{Page, Registry, RegistryChange, Subscription, SubscriptionFilter};
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::error::{Error, Result};

/// Every subscription by id, refreshed by [`SubscriptionCache::sync`].
pub struct SubscriptionCache {
    registry: Arc<dyn Registry>,
    changes: broadcast::Receiver<RegistryChange>,
    subscriptions: HashMap<String, Arc<Subscription>>,
}

impl SubscriptionCache {
    /// Subscribes to changes first, then loads everything, so nothing slips between the two.
    pub async fn load(registry: Arc<dyn Registry>) -> Result<Self> {
        let changes = registry.changes();
        let mut cache = Self {
            registry,
            changes,
            subscriptions: HashMap::new(),
        };
        cache.reload().await?;
        Ok(cache)
    }

    /// Reads every subscription again. For registries whose change stream does not see other
    /// processes' writes (the SQLite registry shared by `kolbak ingress` and
    /// `kolbak dispatcher`), the Kafka dispatcher calls this periodically.
    pub async fn reload(&mut self) -> Result<()> {
        let mut all = HashMap::new();
        let mut offset = 0;
        loop {
            let page = Page {
                limit: MAX_PAGE_LIMIT,
                offset,
            };
            let listing = self
                .registry
                .list_subscriptions(&SubscriptionFilter::default(), page)
                .await
                .map_err(Error::Storage)?;
            let count = listing.items.len() as u64;
            for subscription in listing.items {
                all.insert(subscription.id.clone(), Arc::new(subscription));
            }
            offset += count;
            if count < u64::from(MAX_PAGE_LIMIT) {
                break;
            }
        }
        self.subscriptions = all;
        Ok(())
    }

    /// Applies every change announced so far. Changes are announced after they commit, so a
    /// subscription created before an event was accepted is visible once this returns.
    pub async fn sync(&mut self) -> Result<()> {
        loop {
            match self.changes.try_recv() {
                Ok(RegistryChange::SubscriptionUpserted(id)) => {
                    match self
                        .registry
                        .get_subscription(&id)
                        .await
                        .map_err(Error::Storage)?
                    {
                        Some(subscription) => {
                            self.subscriptions.insert(id, Arc::new(subscription));
                        }
                        None => {
                            self.subscriptions.remove(&id);
                        }
                    }
                }
                Ok(RegistryChange::SubscriptionDeleted(id)) => {
                    self.subscriptions.remove(&id);
                }
                Ok(RegistryChange::ApiKeyUpserted(_) | RegistryChange::ApiKeyDeleted(_)) => {}
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Lagged(_)) => {
                    // Missed changes: start over from a full read.
                    self.changes = self.changes.resubscribe();
                    self.reload().await?;
                }
                Err(TryRecvError::Closed) => return Ok(()),
            }
        }
    }

    /// Active subscriptions that want `event_type`, oldest first.
    pub fn matching(&self, event_type: &str) -> Vec<Arc<Subscription>> {
        let mut found: Vec<Arc<Subscription>> = self
            .subscriptions
            .values()
            .filter(|s| s.is_active && s.event.matches(event_type))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found
    }

    /// The largest per-subscription in-flight limit in use (`default` for subscriptions that
    /// set none).
    pub fn largest_in_flight_limit(&self, default: usize) -> usize {
        self.subscriptions
            .values()
            .filter_map(|s| s.max_in_flight)
            .map(|n| n as usize)
            .fold(default, usize::max)
    }

    /// One subscription by id.
    pub fn get(&self, id: &str) -> Option<Arc<Subscription>> {
        self.subscriptions.get(id).cloned()
    }
}
