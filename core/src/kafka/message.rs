//! The record Kolbak writes to the events topic: its key, headers and JSON value
//! ([`QueuedMessage`]), shared by the producer (`kolbak ingress`) and the consumers
//! (`kolbak dispatcher`).
//!
//! - **Key**: the event's `ordering_key`, else its id ([`record_key`]). Kafka's default
//!   partitioner hashes it, so events sharing an ordering key land on one partition in the
//!   order they were acknowledged.
//! - **Headers**: [`HEADER_EVENT_ID`] and [`HEADER_EVENT_TYPE`], so tools can route or inspect
//!   records without decoding the value.
//! - **Value**: [`QueuedMessage`] as JSON, with a schema version so consumers reject records
//!   written by a newer Kolbak instead of misreading them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{AcceptedEvent, Event};
use crate::queue::QueuedEvent;

/// Header carrying the event id.
pub const HEADER_EVENT_ID: &str = "kolbak-event-id";
/// Header carrying the event type.
pub const HEADER_EVENT_TYPE: &str = "kolbak-event-type";

/// The record key of `event`: its ordering key, else its id.
pub fn record_key(event: &AcceptedEvent) -> &str {
    event.ordering_key.as_deref().unwrap_or(&event.event.id)
}

/// The value of a record on the events topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedMessage {
    /// Schema version of this envelope; [`QueuedMessage::VERSION`] when written by this build.
    pub version: u32,
    /// The event, exactly as it will be delivered.
    pub event: Event,
    /// The producer's ordering key, if any (the record key carries it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    /// When the ingress accepted the event (just before producing it).
    pub accepted_at: DateTime<Utc>,
}

impl QueuedMessage {
    /// The schema version this build writes and the newest it reads.
    pub const VERSION: u32 = 1;

    /// The envelope of `event`, accepted at `accepted_at`.
    pub fn new(event: &AcceptedEvent, accepted_at: DateTime<Utc>) -> Self {
        Self {
            version: Self::VERSION,
            event: event.event.clone(),
            ordering_key: event.ordering_key.clone(),
            accepted_at,
        }
    }

    /// The record value (JSON).
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::invalid("event", e.to_string()))
    }

    /// Reads a record value. Fails with [`Error::InvalidField`] (field `message`) when it is
    /// not a Kolbak envelope or was written by a newer schema version: the consumer sends such
    /// records to the dead-letter topic with this reason.
    pub fn decode(value: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let version: Version = serde_json::from_slice(value)
            .map_err(|e| Error::invalid("message", format!("not a Kolbak event record: {e}")))?;
        if version.version == 0 || version.version > Self::VERSION {
            return Err(Error::invalid(
                "message",
                format!(
                    "schema version {} is not supported (this build reads 1 to {})",
                    version.version,
                    Self::VERSION
                ),
            ));
        }
        serde_json::from_slice(value)
            .map_err(|e| Error::invalid("message", format!("not a Kolbak event record: {e}")))
    }

    /// The event and its routing metadata.
    pub fn into_accepted(self) -> AcceptedEvent {
        AcceptedEvent {
            event: self.event,
            ordering_key: self.ordering_key,
        }
    }

    /// As a [`QueuedEvent`] at position `seq` (for Kafka: the record's offset).
    pub fn into_queued(self, seq: i64) -> QueuedEvent {
        let accepted_at = self.accepted_at;
        QueuedEvent {
            seq,
            event: self.into_accepted(),
            accepted_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn accepted(ordering_key: Option<&str>) -> AcceptedEvent {
        AcceptedEvent {
            event: Event {
                id: "evt_1".into(),
                event: "order.created".into(),
                event_time: DateTime::<Utc>::UNIX_EPOCH,
                source: None,
                payload: json!({"n": 1}),
            },
            ordering_key: ordering_key.map(str::to_owned),
        }
    }

    #[test]
    fn round_trips_and_keys() -> Result<()> {
        let event = accepted(Some("customer-7"));
        assert_eq!(record_key(&event), "customer-7");
        assert_eq!(record_key(&accepted(None)), "evt_1");
        let message = QueuedMessage::new(&event, Utc::now());
        let bytes = message.encode()?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::invalid("json", e.to_string()))?;
        assert_eq!(value["version"], 1);
        assert_eq!(value["event"]["id"], "evt_1");
        let decoded = QueuedMessage::decode(&bytes)?;
        assert_eq!(decoded, message);
        let queued = decoded.into_queued(42);
        assert_eq!(queued.seq, 42);
        assert_eq!(queued.event, event);
        Ok(())
    }

    #[test]
    fn rejects_foreign_and_future_records() {
        for value in [
            &b"not json"[..],
            br#"{"event": {}}"#,
            br#"{"version": 2, "event": {}}"#,
            br#"{"version": 1, "event": {"id": "x"}}"#,
        ] {
            let error = QueuedMessage::decode(value).err().map(|e| e.to_string());
            assert!(
                error.as_deref().is_some_and(|e| e.contains("message")),
                "{error:?}"
            );
        }
    }
}
