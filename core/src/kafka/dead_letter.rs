//! The record on the dead-letter topic ([`DeadLetter`]): why something could not be
//! delivered, and what it was. Two kinds land there: records no consumer can read (poison
//! messages, kept byte for byte), and deliveries that failed for good (exhausted retries, a
//! permanent refusal, a deleted subscription).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::Event;

/// Header carrying the dead letter's reason kind ([`DeadLetterKind`] as text).
pub const HEADER_DEAD_LETTER_KIND: &str = "kolbak-dead-letter";

/// Why a record was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterKind {
    /// The record could not be decoded; `original` holds its bytes.
    Undecodable,
    /// A delivery failed for good; `delivery_id`, `subscription_id` and `event` say which.
    DeliveryFailed,
}

impl DeadLetterKind {
    /// The kind as written in [`HEADER_DEAD_LETTER_KIND`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Undecodable => "undecodable",
            Self::DeliveryFailed => "delivery_failed",
        }
    }
}

/// Where a dead-lettered record was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// A record of the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Schema version; 1.
    pub version: u32,
    /// What went wrong, broadly.
    pub kind: DeadLetterKind,
    /// What went wrong, for people.
    pub reason: String,
    /// When it was dead-lettered.
    pub at: DateTime<Utc>,
    /// The record this came from, when one record is to blame (always for
    /// [`DeadLetterKind::Undecodable`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRecord>,
    /// The failed delivery, for [`DeadLetterKind::DeliveryFailed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// Its subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// Its event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
    /// The undecodable record's value as text (invalid UTF-8 replaced), for
    /// [`DeadLetterKind::Undecodable`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
}

impl DeadLetter {
    /// The schema version this build writes.
    pub const VERSION: u32 = 1;

    /// The record value (JSON).
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::invalid("dead_letter", e.to_string()))
    }

    /// Reads a record value.
    pub fn decode(value: &[u8]) -> Result<Self> {
        serde_json::from_slice(value)
            .map_err(|e| Error::invalid("message", format!("not a Kolbak dead letter: {e}")))
    }
}
