//! The `Queue`: where accepted events wait for the dispatcher, and where deliveries wait for
//! their (next) attempt — a Kafka topic with retry tiers in a cluster, the SQLite file
//! standalone.
//!
//! Its life cycle: [`Queue::publish`] stores an event; the dispatcher reads
//! [`Queue::pending_events`], matches subscriptions and calls [`Queue::fan_out`], which records
//! one delivery per subscription and removes the event from the queue in one step; it then
//! takes [`Queue::due_deliveries`] and reports each attempt to the `DeliveryLog`, which moves
//! the delivery to success, a scheduled retry, or failure (the dead letters).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::delivery::Delivery;
use crate::error::Result;
use crate::event::AcceptedEvent;

/// Outcome of [`Queue::publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Stored durably for the first time.
    Accepted,
    /// An event with this id was accepted before; nothing new was queued.
    Duplicate,
}

/// An event waiting for fan-out.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedEvent {
    /// Position in the queue: increases with every accepted event and is never reused.
    pub seq: i64,
    /// The event and its routing metadata, as published.
    pub event: AcceptedEvent,
    /// When the store accepted it.
    pub accepted_at: DateTime<Utc>,
}

/// A delivery the dispatcher decided to make during fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDelivery {
    /// New delivery id (lowercase ULID).
    pub id: String,
    /// Target subscription.
    pub subscription_id: String,
    /// Attempts allowed (1 + retry schedule length).
    pub max_attempts: u32,
    /// The subscription wants strict order: a delivery is due only when every earlier open
    /// delivery of the same subscription has finished.
    pub ordered: bool,
}

/// Sizes of the queue's backlogs, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Events accepted but not yet fanned out.
    pub events: u64,
    /// Deliveries waiting for their first attempt.
    pub pending: u64,
    /// Deliveries waiting for a retry.
    pub retrying: u64,
}

/// The publishing side of the queue: what the REST API needs. Implemented by every [`Queue`]
/// and by producers that only publish (the Kafka producer of `kolbak ingress`).
#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    /// Succeeds when events can be published (used by `/readyz`).
    async fn check_publisher_ready(&self) -> Result<()>;

    /// Stores `event` durably; returns only once it would survive a crash (for Kafka: once
    /// every in-sync replica acknowledged it).
    async fn publish_event(&self, event: &AcceptedEvent) -> Result<Publish>;
}

#[async_trait]
impl<T: Queue> Publisher for T {
    async fn check_publisher_ready(&self) -> Result<()> {
        self.check_ready().await
    }

    async fn publish_event(&self, event: &AcceptedEvent) -> Result<Publish> {
        self.publish(event).await
    }
}

/// Durable event and delivery queue.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Succeeds when the queue can accept events (used by `/readyz`).
    async fn check_ready(&self) -> Result<()>;

    /// Stores `event` durably; returns only once it would survive a crash.
    async fn publish(&self, event: &AcceptedEvent) -> Result<Publish>;

    /// Up to `max` events waiting for fan-out with `seq > after`, oldest first.
    async fn pending_events(&self, after: i64, max: u32) -> Result<Vec<QueuedEvent>>;

    /// Records the planned deliveries of the event at `seq` (skipping subscriptions that
    /// already have a delivery of this event) and removes the event from the queue — both or
    /// neither.
    async fn fan_out(
        &self,
        seq: i64,
        deliveries: Vec<PlannedDelivery>,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Deliveries due at `now` (pending or retrying, `next_attempt_at <= now`, and for ordered
    /// subscriptions only the oldest open one), earliest due first: at most `max` in all and at
    /// most `per_subscription` of any one subscription, so one busy endpoint cannot fill the
    /// batch.
    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        max: u32,
        per_subscription: u32,
    ) -> Result<Vec<Delivery>>;

    /// When the earliest open delivery is due, if any.
    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>>;

    /// An accepted event by id.
    async fn get_event(&self, id: &str) -> Result<Option<AcceptedEvent>>;

    /// Backlog sizes.
    async fn depth(&self) -> Result<QueueDepth>;
}

/// Sends a delivery again on request, for dispatchers that do not poll the delivery log
/// (cluster mode: a record on the manual-retry topic, which every pool's dispatchers read).
#[async_trait]
pub trait RetryPublisher: Send + Sync + 'static {
    /// Queues attempt `delivery.attempt_count + 1` of `delivery` (whose event is `event`),
    /// due now; returns once the queue stored it.
    async fn publish_retry(&self, delivery: &Delivery, event: &AcceptedEvent) -> Result<()>;
}
