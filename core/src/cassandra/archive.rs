//! The Cassandra log as an [`EventArchive`]: the `events` table (schema version 2) holds each
//! fanned-out event as its queue envelope, expiring with the log's retention.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::CassandraLog;
use super::rows::retention_ttl;
use crate::error::Result;
use crate::event::AcceptedEvent;
use crate::event_archive::EventArchive;
use crate::kafka::QueuedMessage;

#[async_trait]
impl EventArchive for CassandraLog {
    async fn archive_event(&self, event: &AcceptedEvent, accepted_at: DateTime<Utc>) -> Result<()> {
        let message = QueuedMessage::new(event, accepted_at).encode()?;
        let ttl = retention_ttl(self.config().log_retention);
        self.write(
            &self.statements().archive_event,
            (&event.event.id, message, accepted_at, ttl),
        )
        .await?;
        Ok(())
    }

    async fn archived_event(&self, id: &str) -> Result<Option<AcceptedEvent>> {
        let row: Option<(Vec<u8>,)> = self
            .read_one(&self.statements().get_archived_event, (id,))
            .await?;
        row.map(|(message,)| QueuedMessage::decode(&message).map(QueuedMessage::into_accepted))
            .transpose()
    }
}
