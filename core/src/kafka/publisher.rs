//! [`KafkaPublisher`]: the [`Publisher`] of `kolbak ingress`, an idempotent rdkafka producer
//! writing accepted events to the events topic.
//!
//! A publish returns only after every in-sync replica acknowledged the record (`acks=all`),
//! so a 202 always means stored. When the brokers are down or slow, the delivery report turns
//! into an error after `KOLBAK_KAFKA_REQUEST_TIMEOUT` and the API answers 503 with
//! `Retry-After`. The reverse can happen: a record whose acknowledgement was lost (timeout,
//! connection drop) may still be stored, and the producer's retry of the same request gets a
//! 503 the first time and a 202 the second. Such repeats are harmless because every event has
//! an id and the dispatcher delivers an id at most once per subscription (the delivery log
//! remembers it): Kafka publishes always answer [`Publish::Accepted`], deduplication happens
//! on the consumer side.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders, ToBytes};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::delivery::Delivery;
use crate::error::{Error, Result};
use crate::event::AcceptedEvent;
use crate::kafka::message::{HEADER_EVENT_ID, HEADER_EVENT_TYPE, QueuedMessage, record_key};
use crate::kafka::retry_message::{HEADER_DUE_AT, RetryMessage};
use crate::kafka::{KafkaConfig, KafkaTopics, Unavailable};
use crate::queue::{Publish, Publisher, RetryPublisher};

/// Longest a readiness check waits for the brokers' metadata.
const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// Extra time granted past the delivery timeout before a publish gives up on its own (the
/// delivery report normally arrives first).
const REPORT_GRACE: Duration = Duration::from_secs(2);

/// Sends librdkafka's log lines and client errors to `tracing`, target `librdkafka`.
/// Connection errors repeat while a broker is down, so they are warnings, not errors.
#[derive(Debug, Clone, Copy, Default)]
pub struct KolbakClientContext;

impl ClientContext for KolbakClientContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}");
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}");
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }
}

/// Publishes accepted events to the events topic. Cheap to clone; clones share one producer.
#[derive(Clone)]
pub struct KafkaPublisher {
    producer: FutureProducer<KolbakClientContext>,
    topic: String,
    manual_retries: String,
    request_timeout: Duration,
}

impl std::fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPublisher")
            .field("topic", &self.topic)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl KafkaPublisher {
    /// A producer for `config`'s events topic (see [`KafkaConfig::producer_pairs`]). Does not
    /// contact the brokers: it connects in the background, and publishes fail (after the
    /// request timeout) while it cannot. Must be called within a Tokio runtime.
    ///
    /// Fails with [`Error::Configuration`] when librdkafka rejects the settings (e.g. a
    /// missing certificate file).
    pub fn new(config: &KafkaConfig) -> Result<Self> {
        let topics = KafkaTopics::names(&config.kafka_topic_prefix, &[])?;
        let producer = config
            .producer_config()
            .create_with_context(KolbakClientContext)
            .map_err(|e| Error::Configuration(format!("cannot create the Kafka producer: {e}")))?;
        Ok(Self {
            producer,
            topic: topics.events,
            manual_retries: topics.manual_retries,
            request_timeout: config.kafka_request_timeout,
        })
    }

    /// The topic events are written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Waits up to `timeout` for every record handed to the producer to be acknowledged (or
    /// to fail); call before exiting.
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(Error::storage)?
            .map_err(Error::storage)
    }

    /// Checks that the events topic exists and has partitions, within `timeout`.
    async fn check_topic(&self, timeout: Duration) -> Result<()> {
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            return Err(unavailable(format!(
                "the Kafka producer failed fatally ({code}: {reason}); restart the process"
            )));
        }
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let metadata = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(Some(&topic), timeout)
        })
        .await
        .map_err(Error::storage)?
        .map_err(Error::storage)?;
        let found = metadata.topics().iter().find(|t| t.name() == self.topic);
        match found {
            Some(topic) if topic.error().is_none() && !topic.partitions().is_empty() => Ok(()),
            Some(topic) => Err(unavailable(format!(
                "Kafka topic {} is not available ({:?})",
                self.topic,
                topic.error()
            ))),
            None => Err(unavailable(format!(
                "Kafka topic {} does not exist",
                self.topic
            ))),
        }
    }
}

fn unavailable(message: String) -> Error {
    Error::storage(Unavailable(message))
}

#[async_trait]
impl Publisher for KafkaPublisher {
    async fn check_publisher_ready(&self) -> Result<()> {
        self.check_topic(READY_TIMEOUT.min(self.request_timeout))
            .await
    }

    async fn publish_event(&self, event: &AcceptedEvent) -> Result<Publish> {
        let value = QueuedMessage::new(event, Utc::now()).encode()?;
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: HEADER_EVENT_ID,
                value: Some(event.event.id.as_str()),
            })
            .insert(Header {
                key: HEADER_EVENT_TYPE,
                value: Some(event.event.event.as_str()),
            });
        let record = FutureRecord::to(&self.topic)
            .key(record_key(event))
            .payload(&value)
            .headers(headers);
        self.send_acknowledged(record, &format!("event {}", event.event.id))
            .await
            .map(|()| Publish::Accepted)
    }
}

#[async_trait]
impl RetryPublisher for KafkaPublisher {
    async fn publish_retry(&self, delivery: &Delivery, event: &AcceptedEvent) -> Result<()> {
        let message = RetryMessage {
            version: RetryMessage::VERSION,
            delivery_id: delivery.id.clone(),
            subscription_id: delivery.subscription_id.clone(),
            attempt: delivery.attempt_count + 1,
            due_at: Utc::now(),
            event: event.event.clone(),
            ordering_key: event.ordering_key.clone(),
            pool: None,
        };
        let value = message.encode()?;
        let due = message.due_header();
        let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: HEADER_DUE_AT,
            value: Some(due.as_str()),
        });
        let record = FutureRecord::to(&self.manual_retries)
            .key(&delivery.id)
            .payload(&value)
            .headers(headers);
        self.send_acknowledged(record, &format!("the retry of delivery {}", delivery.id))
            .await
    }
}

impl KafkaPublisher {
    /// Sends `record` and waits for Kafka's acknowledgement of `what`. `message.timeout.ms`
    /// (the request timeout) bounds the delivery report; the outer timeout (plus grace) bounds
    /// everything else, such as waiting for room in a full local queue.
    async fn send_acknowledged<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        what: &str,
    ) -> Result<()>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let sent = tokio::time::timeout(
            self.request_timeout + REPORT_GRACE,
            self.producer.send(record, self.request_timeout),
        )
        .await;
        match sent {
            Ok(Ok(_delivery)) => Ok(()),
            Ok(Err((error, _message))) => Err(Error::storage(error)),
            Err(_elapsed) => Err(unavailable(format!(
                "Kafka did not acknowledge {what} within {:?}",
                self.request_timeout
            ))),
        }
    }
}
