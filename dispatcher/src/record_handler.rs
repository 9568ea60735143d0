//! [`RecordHandler`]: what the Kafka dispatcher does with one record — an accepted event
//! (match subscriptions, create or find their deliveries, attempt them) or a retry record
//! (attempt the delivery again) — and where each attempt's outcome goes: done, a retry tier
//! ([`RetryMessage`]) or the dead-letter topic ([`DeadLetter`]).
//!
//! Every step is idempotent, because a record is processed again after a crash or rebalance
//! (offsets are committed only past finished records):
//! - an event finds the deliveries it created last time in the delivery log; finished ones are
//!   skipped, ones never attempted are attempted, retrying ones are handed to their tier again;
//! - a retry record whose delivery is already past its attempt number is dropped as a repeat.
//!
//! Hand-offs and dead letters are produced before the record counts as finished, and a
//! produce is retried until Kafka acknowledges it: nothing accepted is dropped.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use kolbak_core::event::AcceptedEvent;
use kolbak_core::id::new_id;
use kolbak_core::kafka::rdkafka::message::{Header, OwnedHeaders};
use kolbak_core::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use kolbak_core::kafka::{
    DeadLetter, DeadLetterKind, HEADER_DEAD_LETTER_KIND, HEADER_DUE_AT, KafkaTopics,
    KolbakClientContext, QueuedMessage, RetryMessage, SourceRecord,
};
use kolbak_core::registry::MAX_PAGE_LIMIT;
use kolbak_core::{
    AttemptOutcome, Delivery, DeliveryLog, EventArchive, Ordering, Page, PlannedDelivery,
    Subscription,
};
use tokio::sync::RwLock;

use crate::attempt_runner::{AttemptRunner, retry_storage};
use crate::endpoint_lanes::{EndpointLanes, Ticket};
use crate::metrics::DispatcherMetrics;
use crate::subscription_cache::SubscriptionCache;

/// How long one produce may wait for its acknowledgement before it is tried again.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Processes records; shared by every record task of one dispatcher.
pub struct RecordHandler {
    /// Makes and records attempts.
    pub runner: Arc<AttemptRunner>,
    /// Subscriptions, kept current by the dispatcher.
    pub subscriptions: Arc<RwLock<SubscriptionCache>>,
    /// Produces hand-offs and dead letters.
    pub producer: FutureProducer<KolbakClientContext>,
    /// Topic names.
    pub topics: KafkaTopics,
    /// Metrics.
    pub metrics: DispatcherMetrics,
    /// The DispatcherPool this dispatcher delivers for: every pool's consumer group reads every
    /// event, and each delivers only to the subscriptions that name it.
    pub pool: String,
    /// Per-endpoint limits and order.
    pub lanes: Arc<EndpointLanes>,
    /// Where fanned-out events are kept, so a delivery can be sent again on request.
    pub archive: Arc<dyn EventArchive>,
}

impl RecordHandler {
    fn log(&self) -> &dyn DeliveryLog {
        self.runner.log.as_ref()
    }

    /// Handles a record of the events topic; returns once its outcome is durable. `turn` is
    /// the record's place in its partition (taken in offset order): ordered subscriptions get
    /// the partition's records in that order.
    pub async fn handle_event(&self, source: SourceRecord, value: &[u8], turn: Ticket) {
        let message = match QueuedMessage::decode(value) {
            Ok(message) => message,
            Err(error) => return self.undecodable(source, value, &error.to_string()).await,
        };
        let accepted_at = message.accepted_at;
        let event = message.into_accepted();
        let mut matching = self.subscriptions.read().await.matching(&event.event.event);
        matching.retain(|subscription| subscription.pool == self.pool);
        if matching.is_empty() {
            return;
        }
        let page = Page {
            limit: MAX_PAGE_LIMIT,
            offset: 0,
        };
        let existing = retry_storage("read deliveries of event", || {
            self.log().list_event_deliveries(&event.event.id, page)
        })
        .await
        .items;
        let now = Utc::now();
        let max_attempts = self.runner.schedule.max_attempts();
        let mut created = Vec::new();
        let mut attempts = Vec::new();
        let mut hand_offs = Vec::new();
        for subscription in matching {
            match existing
                .iter()
                .find(|d| d.subscription_id == subscription.id)
            {
                None => {
                    let plan = PlannedDelivery {
                        id: new_id(),
                        subscription_id: subscription.id.clone(),
                        max_attempts,
                        ordered: subscription.ordering == Ordering::Ordered,
                    };
                    let delivery = Delivery::planned(&plan, &event.event.id, now);
                    created.push(delivery.clone());
                    attempts.push((delivery, subscription));
                }
                Some(delivery) if delivery.status.is_final() => self.metrics.repeat(),
                Some(delivery) if delivery.attempt_count == 0 => {
                    attempts.push((delivery.clone(), subscription));
                }
                // Ordered deliveries retry in place (see `attempt_in_order`): carry on.
                Some(delivery) if subscription.ordering == Ordering::Ordered => {
                    self.metrics.repeat();
                    attempts.push((delivery.clone(), subscription));
                }
                Some(delivery) => {
                    // Retrying: the hand-off may have been lost with the crash that brought this
                    // record back. Hand it off again; the tier drops whichever copy comes second.
                    self.metrics.repeat();
                    hand_offs.push(delivery.clone());
                }
            }
        }
        if !created.is_empty() {
            // Before the deliveries exist, so every delivery that can be retried on request
            // finds its event.
            retry_storage("archive event", || {
                self.archive.archive_event(&event, accepted_at)
            })
            .await;
            retry_storage("record deliveries", || {
                self.log().record_deliveries(&created)
            })
            .await;
            // Another dispatcher handling a copy of this event may have claimed a pair first
            // (the log keeps one delivery per event and subscription): attempt only ours.
            let stored = retry_storage("read deliveries of event", || {
                self.log().list_event_deliveries(&event.event.id, page)
            })
            .await
            .items;
            attempts.retain(|(delivery, _)| {
                let theirs = stored
                    .iter()
                    .any(|d| d.subscription_id == delivery.subscription_id && d.id != delivery.id);
                if theirs {
                    self.metrics.repeat();
                }
                !theirs
            });
        }
        for delivery in hand_offs {
            let due = delivery.next_attempt_at.unwrap_or(now);
            self.hand_off(&delivery, delivery.attempt_count + 1, due, &event)
                .await;
        }
        // Take a place in each ordered subscription's order while this record has its
        // partition turn, then let the partition's next record go.
        turn.wait().await;
        let (ordered, unordered): (Vec<_>, Vec<_>) = attempts
            .into_iter()
            .partition(|(_, subscription)| subscription.ordering == Ordering::Ordered);
        let ordered: Vec<_> = ordered
            .into_iter()
            .map(|(delivery, subscription)| {
                let ticket = self.lanes.lane(&subscription).order_ticket();
                (delivery, subscription, ticket)
            })
            .collect();
        drop(turn);
        let unordered = join_all(
            unordered
                .iter()
                .map(|(delivery, subscription)| self.attempt(delivery, subscription, &event)),
        );
        let ordered = join_all(ordered.into_iter().map(|(delivery, subscription, ticket)| {
            let event = &event;
            async move {
                ticket.wait().await;
                self.attempt_in_order(delivery, &subscription, event).await;
            }
        }));
        futures::join!(unordered, ordered);
    }

    /// Delivers to an ordered subscription, retrying in place (not through the tiers, which
    /// would let later events overtake this one) until it succeeds or fails for good; the
    /// caller holds the subscription's turn meanwhile.
    async fn attempt_in_order(
        &self,
        mut delivery: Delivery,
        subscription: &Subscription,
        event: &AcceptedEvent,
    ) {
        loop {
            let permit = self.lanes.lane(subscription).admit().await;
            let outcome = self.runner.attempt(&delivery, subscription, event).await;
            drop(permit);
            match outcome {
                AttemptOutcome::Success => return,
                AttemptOutcome::Fail => {
                    return self
                        .dead_letter_failed(&delivery, subscription, event)
                        .await;
                }
                AttemptOutcome::RetryAt(due) => {
                    let wait = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                    tokio::time::sleep(wait).await;
                    let current =
                        retry_storage("read delivery", || self.log().get_delivery(&delivery.id))
                            .await;
                    match current {
                        Some(current) if !current.status.is_final() => delivery = current,
                        _ => return,
                    }
                }
            }
        }
    }

    /// Handles a due record of a retry tier; returns once its outcome is durable.
    pub async fn handle_retry(&self, source: SourceRecord, value: &[u8]) {
        let message = match RetryMessage::decode(value) {
            Ok(message) => message,
            Err(error) => return self.undecodable(source, value, &error.to_string()).await,
        };
        if !self.owns_retry(&message).await {
            return;
        }
        let found = retry_storage("read delivery", || {
            self.log().get_delivery(&message.delivery_id)
        })
        .await;
        let event = message.accepted_event();
        let Some(delivery) = found else {
            let reason = "the delivery log has no record of this delivery";
            tracing::warn!(delivery_id = %message.delivery_id, reason, "retry record dead-lettered");
            return self
                .dead_letter_delivery(
                    Some(source),
                    &message.delivery_id,
                    &message.subscription_id,
                    &event,
                    reason,
                )
                .await;
        };
        if delivery.status.is_final() || delivery.attempt_count + 1 != message.attempt {
            self.metrics.repeat();
            return;
        }
        let subscription = self
            .subscriptions
            .read()
            .await
            .get(&delivery.subscription_id);
        let reason = match subscription {
            // Another pool's retry: its own dispatchers read the same tier.
            Some(subscription) if subscription.pool != self.pool => return,
            Some(subscription) if subscription.is_active => {
                return self.attempt(&delivery, &subscription, &event).await;
            }
            Some(_) => "the subscription is inactive",
            None => "the subscription was deleted",
        };
        self.runner.abandon(&delivery, reason).await;
        self.dead_letter_delivery(
            Some(source),
            &delivery.id,
            &delivery.subscription_id,
            &event,
            reason,
        )
        .await;
    }

    /// Whether this pool acts on a retry record: the pool its subscription is in now or, when
    /// the subscription is gone, the pool that handed it off (so it is dead-lettered once, not
    /// once per pool). Decided before any storage is read: other pools' records cost nothing.
    async fn owns_retry(&self, message: &RetryMessage) -> bool {
        let subscriptions = self.subscriptions.read().await;
        match subscriptions.get(&message.subscription_id) {
            Some(subscription) => subscription.pool == self.pool,
            None => message.pool.as_ref().is_none_or(|pool| *pool == self.pool),
        }
    }

    /// One attempt, then its outcome routed: a retry tier, the dead-letter topic, or done.
    async fn attempt(
        &self,
        delivery: &Delivery,
        subscription: &Subscription,
        event: &AcceptedEvent,
    ) {
        let permit = self.lanes.lane(subscription).admit().await;
        let outcome = self.runner.attempt(delivery, subscription, event).await;
        drop(permit);
        match outcome {
            AttemptOutcome::Success => {}
            AttemptOutcome::RetryAt(due) => {
                self.hand_off(delivery, delivery.attempt_count + 2, due, event)
                    .await;
            }
            AttemptOutcome::Fail => self.dead_letter_failed(delivery, subscription, event).await,
        }
    }

    /// Dead-letters a delivery whose last attempt failed it for good, with that attempt's error.
    async fn dead_letter_failed(
        &self,
        delivery: &Delivery,
        subscription: &Subscription,
        event: &AcceptedEvent,
    ) {
        let last = retry_storage("read delivery", || self.log().get_delivery(&delivery.id)).await;
        let reason = last
            .and_then(|d| {
                d.last_error
                    .or_else(|| d.last_response_code.map(|c| format!("HTTP {c}")))
            })
            .unwrap_or_else(|| "the delivery failed".to_owned());
        self.dead_letter_delivery(None, &delivery.id, &subscription.id, event, &reason)
            .await;
    }

    /// Produces the retry record of `delivery`'s attempt number `attempt`, due at `due`, to
    /// the tier that fits its delay.
    async fn hand_off(
        &self,
        delivery: &Delivery,
        attempt: u32,
        due: DateTime<Utc>,
        event: &AcceptedEvent,
    ) {
        let delay = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        let Some(tier) = self.topics.tier_for(delay) else {
            // No tiers means no retries were configured; the schedule would not have asked.
            tracing::error!(delivery_id = %delivery.id, "no retry tier topic; dead-lettering");
            return self
                .dead_letter_delivery(
                    None,
                    &delivery.id,
                    &delivery.subscription_id,
                    event,
                    "no retry tier is configured",
                )
                .await;
        };
        let message = RetryMessage {
            version: RetryMessage::VERSION,
            delivery_id: delivery.id.clone(),
            subscription_id: delivery.subscription_id.clone(),
            attempt,
            due_at: due,
            event: event.event.clone(),
            ordering_key: event.ordering_key.clone(),
            pool: Some(self.pool.clone()),
        };
        let value = match message.encode() {
            Ok(value) => value,
            Err(error) => {
                tracing::error!(%error, delivery_id = %delivery.id, "retry record cannot be encoded");
                return;
            }
        };
        let due_header = message.due_header();
        self.produce(tier, &delivery.id, &value, HEADER_DUE_AT, &due_header)
            .await;
    }

    /// Dead-letters a record nobody can read.
    async fn undecodable(&self, source: SourceRecord, value: &[u8], reason: &str) {
        tracing::warn!(
            topic = %source.topic,
            partition = source.partition,
            offset = source.offset,
            reason,
            "undecodable record dead-lettered"
        );
        let key = format!("{}/{}/{}", source.topic, source.partition, source.offset);
        let letter = DeadLetter {
            version: DeadLetter::VERSION,
            kind: DeadLetterKind::Undecodable,
            reason: reason.to_owned(),
            at: Utc::now(),
            source: Some(source),
            delivery_id: None,
            subscription_id: None,
            event: None,
            original: Some(String::from_utf8_lossy(value).into_owned()),
        };
        self.write_dead_letter(&key, &letter).await;
    }

    /// Dead-letters a delivery that failed for good (its log record says so already).
    async fn dead_letter_delivery(
        &self,
        source: Option<SourceRecord>,
        delivery_id: &str,
        subscription_id: &str,
        event: &AcceptedEvent,
        reason: &str,
    ) {
        let letter = DeadLetter {
            version: DeadLetter::VERSION,
            kind: DeadLetterKind::DeliveryFailed,
            reason: reason.to_owned(),
            at: Utc::now(),
            source,
            delivery_id: Some(delivery_id.to_owned()),
            subscription_id: Some(subscription_id.to_owned()),
            event: Some(event.event.clone()),
            original: None,
        };
        self.write_dead_letter(delivery_id, &letter).await;
    }

    async fn write_dead_letter(&self, key: &str, letter: &DeadLetter) {
        let value = match letter.encode() {
            Ok(value) => value,
            Err(error) => {
                tracing::error!(%error, "dead letter cannot be encoded");
                return;
            }
        };
        self.produce(
            &self.topics.dead_letters,
            key,
            &value,
            HEADER_DEAD_LETTER_KIND,
            letter.kind.as_str(),
        )
        .await;
        self.metrics.dead_letter(letter.kind.as_str());
    }

    /// Produces one record, retrying until Kafka acknowledges it: a hand-off or dead letter
    /// must be stored before the record it comes from counts as finished.
    async fn produce(
        &self,
        topic: &str,
        key: &str,
        value: &[u8],
        header: &str,
        header_value: &str,
    ) {
        retry_storage("produce to Kafka", || async {
            let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
                key: header,
                value: Some(header_value),
            });
            let record = FutureRecord::to(topic)
                .key(key)
                .payload(value)
                .headers(headers);
            self.producer
                .send(record, PRODUCE_TIMEOUT)
                .await
                .map(|_| ())
                .map_err(|(error, _)| kolbak_core::Error::storage(error))
        })
        .await;
    }
}
