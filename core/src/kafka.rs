//! Kafka, the event queue of cluster deployments (DESIGN "Kafka topology"): settings
//! ([`KafkaConfig`], `KOLBAK_KAFKA_*`), topic names and creation ([`KafkaTopics`]), the record
//! formats shared by producers and consumers ([`QueuedMessage`] on the events topic,
//! [`RetryMessage`] on the retry tiers, [`DeadLetter`] on the dead-letter topic), and the
//! producer of `kolbak ingress` ([`KafkaPublisher`]).
//!
//! Kafka failures surface as [`crate::Error::Storage`], which the REST API answers with 503
//! and `Retry-After`. The `rdkafka` crate is re-exported so every Kolbak crate and test uses the
//! same build of it (librdkafka is compiled from source once).

pub mod config;
pub mod dead_letter;
pub mod message;
pub mod publisher;
pub mod retry_message;
pub mod topics;

pub use config::{Compression, KafkaConfig, SaslMechanism, SecurityProtocol};
pub use dead_letter::{DeadLetter, DeadLetterKind, HEADER_DEAD_LETTER_KIND, SourceRecord};
pub use message::{HEADER_EVENT_ID, HEADER_EVENT_TYPE, QueuedMessage, record_key};
pub use publisher::{KafkaPublisher, KolbakClientContext};
pub use rdkafka;
pub use retry_message::{HEADER_DUE_AT, RetryMessage};
pub use topics::{DEFAULT_RETRY_TIERS, KafkaTopics, tier_suffix};

/// Kafka is unreachable or did not answer in time (wrapped in [`crate::Error::Storage`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);
