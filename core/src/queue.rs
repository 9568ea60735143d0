//! The `Queue`: where accepted events wait for the dispatcher (a Kafka topic in a cluster, the
//! SQLite file standalone). This issue needs publishing; consuming arrives with the delivery
//! engine.

use async_trait::async_trait;

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

/// Durable event queue.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Succeeds when the queue can accept events (used by `/readyz`).
    async fn check_ready(&self) -> Result<()>;

    /// Stores `event` durably; returns only once it would survive a crash.
    async fn publish(&self, event: &AcceptedEvent) -> Result<Publish>;
}
