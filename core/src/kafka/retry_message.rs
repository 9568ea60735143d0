//! The record on a retry-tier topic ([`RetryMessage`]): one delivery waiting for its next
//! attempt. The due time travels in a header too ([`HEADER_DUE_AT`]), so a tier consumer can
//! decide to pause a partition without decoding the value.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{AcceptedEvent, Event};

/// Header carrying the due time in milliseconds since the Unix epoch (decimal text).
pub const HEADER_DUE_AT: &str = "kolbak-due-at";

/// A delivery handed to a retry tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryMessage {
    /// Schema version of this envelope; [`RetryMessage::VERSION`] when written by this build.
    pub version: u32,
    /// The delivery to attempt.
    pub delivery_id: String,
    /// Its subscription.
    pub subscription_id: String,
    /// The number of the attempt to make (2 for the first retry). A consumer that finds the
    /// delivery already past this attempt in the delivery log drops the record as a repeat.
    pub attempt: u32,
    /// When the attempt is due.
    pub due_at: DateTime<Utc>,
    /// The event, exactly as it will be delivered.
    pub event: Event,
    /// The producer's ordering key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    /// The pool whose dispatcher handed the delivery off. Every pool reads every tier; while
    /// the subscription exists its current pool acts on the record, and once it is deleted
    /// this pool alone dead-letters it. `None` (manual retries, records of older builds): any
    /// pool that does not know the subscription treats the record as its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

impl RetryMessage {
    /// The schema version this build writes and the newest it reads.
    pub const VERSION: u32 = 1;

    /// The record value (JSON).
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::invalid("retry", e.to_string()))
    }

    /// Reads a record value; fails with [`Error::InvalidField`] (field `message`) when it is
    /// not a Kolbak retry record of a known version.
    pub fn decode(value: &[u8]) -> Result<Self> {
        let message: Self = serde_json::from_slice(value)
            .map_err(|e| Error::invalid("message", format!("not a Kolbak retry record: {e}")))?;
        if message.version == 0 || message.version > Self::VERSION {
            return Err(Error::invalid(
                "message",
                format!(
                    "retry record schema version {} is not supported (this build reads 1 to {})",
                    message.version,
                    Self::VERSION
                ),
            ));
        }
        Ok(message)
    }

    /// The due time as the [`HEADER_DUE_AT`] value.
    pub fn due_header(&self) -> String {
        self.due_at.timestamp_millis().to_string()
    }

    /// Reads a [`HEADER_DUE_AT`] value.
    pub fn parse_due_header(value: &[u8]) -> Option<DateTime<Utc>> {
        let millis: i64 = std::str::from_utf8(value).ok()?.parse().ok()?;
        DateTime::from_timestamp_millis(millis)
    }

    /// The event and its routing metadata.
    pub fn accepted_event(&self) -> AcceptedEvent {
        AcceptedEvent {
            event: self.event.clone(),
            ordering_key: self.ordering_key.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_with_a_due_header() -> Result<()> {
        let message = RetryMessage {
            version: RetryMessage::VERSION,
            delivery_id: "d1".into(),
            subscription_id: "s1".into(),
            attempt: 2,
            due_at: DateTime::from_timestamp_millis(1_767_323_045_123).unwrap_or_default(),
            event: Event {
                id: "evt_1".into(),
                event: "order.created".into(),
                event_time: DateTime::<Utc>::UNIX_EPOCH,
                source: None,
                payload: json!({"n": 1}),
            },
            ordering_key: None,
            pool: Some("billing".into()),
        };
        let decoded = RetryMessage::decode(&message.encode()?)?;
        assert_eq!(decoded, message);
        assert_eq!(
            RetryMessage::parse_due_header(message.due_header().as_bytes()),
            Some(message.due_at)
        );
        assert_eq!(RetryMessage::parse_due_header(b"soon"), None);
        let mut future =
            serde_json::to_value(&message).map_err(|e| Error::invalid("j", e.to_string()))?;
        future["version"] = json!(9);
        let bytes = serde_json::to_vec(&future).map_err(|e| Error::invalid("j", e.to_string()))?;
        assert!(RetryMessage::decode(&bytes).is_err());
        assert!(RetryMessage::decode(b"{}").is_err());
        Ok(())
    }

    #[test]
    fn records_without_a_pool_still_decode() -> Result<()> {
        // As written before records named their pool, and by manual retries.
        let value = json!({
            "version": 1, "delivery_id": "d1", "subscription_id": "s1", "attempt": 2,
            "due_at": "2026-01-02T03:04:05Z",
            "event": {"id": "e", "event": "a", "event_time": "2026-01-02T03:04:05Z",
                      "payload": {}},
        });
        let bytes = serde_json::to_vec(&value).map_err(|e| Error::invalid("j", e.to_string()))?;
        assert_eq!(RetryMessage::decode(&bytes)?.pool, None);
        Ok(())
    }
}
