//! The `EventArchive`: accepted events kept for as long as their deliveries are logged, so a
//! delivery can be sent again on request after its event left the queue (in cluster mode, a
//! Kafka record is read once and its offset committed). The Cassandra delivery log implements
//! it; the embedded store keeps every event in its queue table and needs none.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::event::AcceptedEvent;

/// Accepted events by id.
#[async_trait]
pub trait EventArchive: Send + Sync + 'static {
    /// Keeps `event` (accepted at `accepted_at`); storing it again is harmless.
    async fn archive_event(&self, event: &AcceptedEvent, accepted_at: DateTime<Utc>) -> Result<()>;
    /// The event `id`, if it is still kept.
    async fn archived_event(&self, id: &str) -> Result<Option<AcceptedEvent>>;
}
