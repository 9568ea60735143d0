//! Delivery health on the subscription objects: which subscriptions had attempts lately, and
//! a loop that copies their health from the delivery log into the registry (the
//! WebhookSubscription status that `kubectl get wsub` shows) at most once per interval each,
//! so a busy endpoint costs one status write per interval, not one per attempt.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kolbak_core::{DeliveryLog, Registry};

/// The subscriptions with attempts since the last report.
#[derive(Debug, Default)]
pub struct HealthReporter {
    touched: Mutex<HashSet<String>>,
}

impl HealthReporter {
    /// Notes that `subscription_id` had an attempt recorded.
    pub fn touched(&self, subscription_id: &str) {
        let mut touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
        if !touched.contains(subscription_id) {
            touched.insert(subscription_id.to_owned());
        }
    }

    fn take(&self) -> HashSet<String> {
        std::mem::take(&mut *self.touched.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reports the health of every subscription touched since the last report. A failed
    /// report is tried again next time.
    pub async fn report(&self, registry: &dyn Registry, log: &dyn DeliveryLog) {
        for id in self.take() {
            let result = match log.subscription_health(&id).await {
                Ok(health) => registry.report_health(&id, &health).await,
                Err(error) => Err(error),
            };
            if let Err(error) = result {
                tracing::warn!(subscription_id = %id, %error, "delivery health not reported; retrying");
                self.touched(&id);
            }
        }
    }

    /// Reports every `interval` until dropped (abort the task), from the first tick on.
    pub async fn run(
        self: Arc<Self>,
        registry: Arc<dyn Registry>,
        log: Arc<dyn DeliveryLog>,
        interval: Duration,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.report(registry.as_ref(), log.as_ref()).await;
        }
    }
}
