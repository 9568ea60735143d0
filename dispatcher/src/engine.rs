//! The dispatcher's control loop: fans accepted events out into deliveries, starts due
//! deliveries within the global, per-subscription, ordering and rate limits, and waits for
//! new work (a wake-up, a finished attempt, or the next due time). Storage errors slow it down;
//! they never stop it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kolbak_core::id::new_id;
use kolbak_core::telemetry::MetricsRegistry;
use kolbak_core::{
    Delivery, DeliveryLog, Ordering, PlannedDelivery, Queue, Registry, Subscription,
};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use crate::attempt_runner::AttemptRunner;
use crate::config::DispatcherConfig;
use crate::error::{Error, Result};
use crate::metrics::DispatcherMetrics;
use crate::sender::WebhookSender;
use crate::subscription_cache::SubscriptionCache;

/// Events read per fan-out batch.
const FAN_OUT_BATCH: u32 = 256;
/// Longest sleep between looks at the queue, whatever else happens.
const MAX_IDLE: Duration = Duration::from_millis(500);
/// Pause after a storage error before the loop tries again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// How often the backlog gauges are refreshed.
const DEPTH_INTERVAL: Duration = Duration::from_secs(1);

/// The storage and signals a dispatcher works with.
pub struct DispatcherParts {
    /// Subscriptions.
    pub registry: Arc<dyn Registry>,
    /// Events and deliveries waiting.
    pub queue: Arc<dyn Queue>,
    /// Where attempts are recorded.
    pub log: Arc<dyn DeliveryLog>,
    /// Notified when new work arrives (accepted events, manual retries).
    pub wakeup: Arc<Notify>,
    /// Where the dispatcher's metrics are registered.
    pub metrics: MetricsRegistry,
}

/// The delivery engine.
pub struct Dispatcher {
    config: DispatcherConfig,
    registry: Arc<dyn Registry>,
    queue: Arc<dyn Queue>,
    wakeup: Arc<Notify>,
    runner: Arc<AttemptRunner>,
    metrics: DispatcherMetrics,
}

/// A finished attempt task, so its slots free up.
struct Finished {
    delivery_id: String,
    subscription_id: String,
}

/// What is in flight right now.
#[derive(Default)]
struct InFlight {
    deliveries: HashSet<String>,
    per_subscription: HashMap<String, usize>,
}

impl InFlight {
    fn start(&mut self, delivery_id: &str, subscription_id: &str) {
        self.deliveries.insert(delivery_id.to_owned());
        *self
            .per_subscription
            .entry(subscription_id.to_owned())
            .or_default() += 1;
    }

    fn finish(&mut self, finished: &Finished) {
        self.deliveries.remove(&finished.delivery_id);
        if let Some(n) = self.per_subscription.get_mut(&finished.subscription_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_subscription.remove(&finished.subscription_id);
            }
        }
    }

    fn of(&self, subscription_id: &str) -> usize {
        self.per_subscription
            .get(subscription_id)
            .copied()
            .unwrap_or(0)
    }
}

impl Dispatcher {
    /// Builds the engine; fails when the configuration cannot make an HTTP client or schedule.
    pub fn new(config: DispatcherConfig, parts: DispatcherParts) -> Result<Self> {
        let metrics = DispatcherMetrics::register(&parts.metrics);
        let runner = AttemptRunner {
            registry: parts.registry.clone(),
            log: parts.log,
            sender: WebhookSender::new(&config)?,
            schedule: config.schedule()?,
            metrics: metrics.clone(),
            health: None,
        };
        Ok(Self {
            config,
            registry: parts.registry,
            queue: parts.queue,
            wakeup: parts.wakeup,
            runner: Arc::new(runner),
            metrics,
        })
    }

    /// Runs until `shutdown` resolves, then waits (up to the delivery timeout) for attempts in
    /// flight. An attempt cut off by shutdown stays due and is made again after restart.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let mut cache = loop {
            match SubscriptionCache::load(self.registry.clone()).await {
                Ok(cache) => break cache,
                Err(error) => {
                    tracing::warn!(%error, "cannot load subscriptions; retrying");
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        };
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
        let mut tasks = JoinSet::new();
        let mut in_flight = InFlight::default();
        let mut limiters: HashMap<String, (u32, DefaultDirectRateLimiter)> = HashMap::new();
        let mut last_depth = tokio::time::Instant::now() - DEPTH_INTERVAL;
        tokio::pin!(shutdown);
        tracing::info!(
            max_in_flight = self.config.max_in_flight,
            "dispatcher running"
        );

        loop {
            let mut pause = MAX_IDLE;
            match self
                .step(
                    &mut cache,
                    &mut in_flight,
                    &mut limiters,
                    &mut tasks,
                    &done_tx,
                )
                .await
            {
                Ok(next) => pause = pause.min(next),
                Err(error) => {
                    tracing::warn!(%error, "dispatcher step failed; retrying");
                    pause = ERROR_PAUSE;
                }
            }
            self.metrics.set_in_flight(in_flight.deliveries.len());
            if last_depth.elapsed() >= DEPTH_INTERVAL {
                if let Ok(depth) = self.queue.depth().await {
                    self.metrics.set_backlog(depth);
                }
                last_depth = tokio::time::Instant::now();
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wakeup.notified() => {}
                Some(finished) = done_rx.recv() => in_flight.finish(&finished),
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = tokio::time::sleep(pause) => {}
            }
            while let Ok(finished) = done_rx.try_recv() {
                in_flight.finish(&finished);
            }
        }

        tracing::info!(
            in_flight = tasks.len(),
            "dispatcher stopping; waiting for attempts in flight"
        );
        let grace = self.config.delivery_timeout + Duration::from_secs(5);
        if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!("attempts still running at shutdown were cut off; they stay due");
            tasks.abort_all();
        }
        Ok(())
    }

    /// One pass: fan out waiting events, then start due deliveries. Returns how long the loop
    /// may sleep before something becomes due.
    async fn step(
        &self,
        cache: &mut SubscriptionCache,
        in_flight: &mut InFlight,
        limiters: &mut HashMap<String, (u32, DefaultDirectRateLimiter)>,
        tasks: &mut JoinSet<()>,
        done: &mpsc::UnboundedSender<Finished>,
    ) -> Result<Duration> {
        self.fan_out(cache).await?;
        cache.sync().await?;

        let free = self
            .config
            .max_in_flight
            .saturating_sub(in_flight.deliveries.len());
        if free == 0 {
            return Ok(MAX_IDLE);
        }
        let now = Utc::now();
        let want = u32::try_from(in_flight.deliveries.len() + 2 * free).unwrap_or(u32::MAX);
        let per_subscription = u32::try_from(
            cache.largest_in_flight_limit(self.config.max_in_flight_per_subscription),
        )
        .unwrap_or(u32::MAX);
        let due = self
            .queue
            .due_deliveries(now, want, per_subscription)
            .await
            .map_err(Error::Storage)?;
        let mut started = 0;
        let mut wait = MAX_IDLE;
        for delivery in due {
            if started >= free {
                break;
            }
            if in_flight.deliveries.contains(&delivery.id) {
                continue;
            }
            let Some(subscription) = cache.get(&delivery.subscription_id) else {
                self.runner
                    .abandon(&delivery, "the subscription was deleted")
                    .await;
                continue;
            };
            if !subscription.is_active {
                self.runner
                    .abandon(&delivery, "the subscription is inactive")
                    .await;
                continue;
            }
            if in_flight.of(&subscription.id) >= self.limit_of(&subscription) {
                continue;
            }
            if let Some(retry_in) = admit_rate(
                limiters,
                &subscription,
                self.config.rate_limit_per_subscription,
            ) {
                wait = wait.min(retry_in);
                continue;
            }
            in_flight.start(&delivery.id, &subscription.id);
            started += 1;
            let runner = self.runner.clone();
            let queue = self.queue.clone();
            let done = done.clone();
            tasks.spawn(async move {
                let finished = Finished {
                    delivery_id: delivery.id.clone(),
                    subscription_id: subscription.id.clone(),
                };
                runner.run(queue.as_ref(), delivery, subscription).await;
                let _ = done.send(finished);
            });
        }
        if let Some(next) = self.queue.next_due_at().await.map_err(Error::Storage)? {
            let until = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            wait = wait.min(until.max(Duration::from_millis(5)));
        }
        Ok(wait)
    }

    /// Turns waiting events into deliveries, one event at a time in acceptance order.
    async fn fan_out(&self, cache: &mut SubscriptionCache) -> Result<()> {
        let max_attempts = self.runner.schedule.max_attempts();
        loop {
            let events = self
                .queue
                .pending_events(0, FAN_OUT_BATCH)
                .await
                .map_err(Error::Storage)?;
            // After reading the batch: a subscription whose creation was answered before one
            // of these events was published is in the cache now. (A long backlog takes many
            // batches; syncing only before the loop missed subscriptions created meanwhile.)
            cache.sync().await?;
            let count = events.len();
            for queued in events {
                let planned: Vec<PlannedDelivery> = cache
                    .matching(&queued.event.event.event)
                    .into_iter()
                    .map(|s| PlannedDelivery {
                        id: new_id(),
                        subscription_id: s.id.clone(),
                        max_attempts,
                        ordered: s.ordering == Ordering::Ordered,
                    })
                    .collect();
                let now = Utc::now();
                let created: Vec<Delivery> = planned
                    .iter()
                    .map(|p| Delivery::planned(p, &queued.event.event.id, now))
                    .collect();
                self.queue
                    .fan_out(queued.seq, planned, now)
                    .await
                    .map_err(Error::Storage)?;
                // The log learns of the deliveries too (a no-op when the queue's store is the
                // log); if that fails, a mirrored log catches up on each delivery's first write.
                if !created.is_empty()
                    && let Err(error) = self.runner.log.record_deliveries(&created).await
                {
                    tracing::warn!(%error, "delivery log missed new deliveries; it catches up on their first attempt");
                }
            }
            if count < FAN_OUT_BATCH as usize {
                return Ok(());
            }
        }
    }

    fn limit_of(&self, subscription: &Subscription) -> usize {
        if subscription.ordering == Ordering::Ordered {
            return 1;
        }
        subscription
            .max_in_flight
            .map(|n| n as usize)
            .unwrap_or(self.config.max_in_flight_per_subscription)
    }
}

/// Takes one token from the subscription's rate limiter (its own rate, else `default_rate`;
/// 0 is none); `Some(wait)` when none is left.
fn admit_rate(
    limiters: &mut HashMap<String, (u32, DefaultDirectRateLimiter)>,
    subscription: &Subscription,
    default_rate: u32,
) -> Option<Duration> {
    let rate = subscription.rate_limit_per_second.unwrap_or(default_rate);
    let Some(rate) = NonZeroU32::new(rate) else {
        limiters.remove(&subscription.id);
        return None;
    };
    let entry = limiters
        .entry(subscription.id.clone())
        .or_insert_with(|| (rate.get(), RateLimiter::direct(Quota::per_second(rate))));
    if entry.0 != rate.get() {
        *entry = (rate.get(), RateLimiter::direct(Quota::per_second(rate)));
    }
    entry.1.check().err().map(|not_until| {
        use governor::clock::{Clock, DefaultClock};
        not_until.wait_time_from(DefaultClock::default().now())
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use kolbak_core::event::AcceptedEvent;
    use kolbak_core::subscription::{EventPattern, SigningSecrets};
    use kolbak_core::{Event, SigningSecret, SqliteStore};
    use serde_json::json;

    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn event(id: &str, kind: &str) -> AcceptedEvent {
        AcceptedEvent {
            event: Event {
                id: id.to_owned(),
                event: kind.to_owned(),
                event_time: Utc
                    .timestamp_opt(1_767_323_045, 0)
                    .single()
                    .unwrap_or_default(),
                source: None,
                payload: json!({}),
            },
            ordering_key: None,
        }
    }

    #[tokio::test]
    async fn a_subscription_created_during_a_long_fan_out_gets_the_later_events() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(SqliteStore::open(&dir.path().join("kolbak.db"))?);
        let dispatcher = Dispatcher::new(
            DispatcherConfig::default(),
            DispatcherParts {
                registry: store.clone(),
                queue: store.clone(),
                log: store.clone(),
                wakeup: Arc::new(Notify::new()),
                metrics: MetricsRegistry::default(),
            },
        )?;
        let mut cache = SubscriptionCache::load(store.clone()).await?;
        // More than one fan-out batch of events nobody wants, then a subscription, then an
        // event it wants: all waiting when the fan-out starts.
        for n in 0..(FAN_OUT_BATCH + 10) {
            store
                .publish(&event(&format!("noise-{n}"), "noise"))
                .await?;
        }
        let now = Utc::now();
        let subscription = Subscription {
            id: new_id(),
            callback_url: "https://example.com/hook".to_owned(),
            event: EventPattern::parse("wanted")?,
            description: None,
            is_active: true,
            pool: "default".to_owned(),
            rate_limit_per_second: None,
            max_in_flight: None,
            ordering: Ordering::Unordered,
            secrets: SigningSecrets::new(SigningSecret::generate()),
            deactivation: None,
            created_at: now,
            updated_at: now,
        };
        store.create_subscription(subscription.clone()).await?;
        store.publish(&event("wanted-1", "wanted")).await?;

        dispatcher.fan_out(&mut cache).await?;
        let page = kolbak_core::Page {
            limit: 10,
            offset: 0,
        };
        let deliveries = store.list_event_deliveries("wanted-1", page).await?;
        assert_eq!(deliveries.items.len(), 1);
        assert_eq!(deliveries.items[0].subscription_id, subscription.id);
        Ok(())
    }
}
