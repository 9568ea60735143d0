//! The dispatcher's Prometheus metrics: attempts by outcome, attempt latency, deliveries in
//! flight, the queue's backlogs, and (Kafka) dead letters, repeated records and consumer lag.

use std::collections::BTreeMap;

use kolbak_core::QueueDepth;
use kolbak_core::telemetry::MetricsRegistry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Labels of the attempts counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `success`, `retry`, `failed` (dead-lettered) or `abandoned` (subscription gone).
    pub outcome: &'static str,
}

/// Labels of the backlog gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BacklogLabels {
    /// `events` (not yet fanned out), `pending` (first attempt due) or `retrying`.
    pub kind: &'static str,
}

/// Labels of the dead-letter counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    /// `undecodable` (poison record) or `delivery_failed`.
    pub kind: &'static str,
}

/// Labels of the consumer-lag gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// The Kafka topic, e.g. `kolbak.events` or `kolbak.retry.30s`.
    pub topic: String,
}

/// Metrics the dispatcher records.
#[derive(Clone)]
pub struct DispatcherMetrics {
    attempts: Family<OutcomeLabels, Counter>,
    latency: Histogram,
    in_flight: Gauge,
    backlog: Family<BacklogLabels, Gauge>,
    dead_letters: Family<DeadLetterLabels, Counter>,
    repeats: Counter,
    consumer_lag: Family<TopicLabels, Gauge>,
    consumer_restarts: Counter,
}

impl DispatcherMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &MetricsRegistry) -> Self {
        let metrics = Self {
            attempts: Family::default(),
            latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            in_flight: Gauge::default(),
            backlog: Family::default(),
            dead_letters: Family::default(),
            repeats: Counter::default(),
            consumer_lag: Family::default(),
            consumer_restarts: Counter::default(),
        };
        registry.register(|r| {
            r.register(
                "delivery_attempts",
                "Delivery attempts by what they led to",
                metrics.attempts.clone(),
            );
            r.register(
                "delivery_duration_seconds",
                "Time from request start to response (or error), in seconds",
                metrics.latency.clone(),
            );
            r.register(
                "deliveries_in_flight",
                "Delivery attempts in progress",
                metrics.in_flight.clone(),
            );
            r.register(
                "queue_backlog",
                "Work waiting in the queue: events to fan out, deliveries pending or retrying",
                metrics.backlog.clone(),
            );
            r.register(
                "dead_letters",
                "Records written to the Kafka dead-letter topic, by kind",
                metrics.dead_letters.clone(),
            );
            r.register(
                "repeated_records",
                "Kafka records skipped because their delivery was already made (redelivery \
                 after a crash or rebalance)",
                metrics.repeats.clone(),
            );
            r.register(
                "kafka_consumer_lag",
                "Records of this process's partitions not yet finished and committed, by topic \
                 (on a retry tier this includes retries not due yet)",
                metrics.consumer_lag.clone(),
            );
            r.register(
                "kafka_consumer_restarts",
                "Times the Kafka consumer was replaced because it stopped reading although \
                 records waited for it, or its group membership was stuck",
                metrics.consumer_restarts.clone(),
            );
        });
        metrics
    }

    /// Counts one attempt (or abandonment) and, for real attempts, its latency.
    pub fn attempt(&self, outcome: &'static str, seconds: Option<f64>) {
        self.attempts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        if let Some(seconds) = seconds {
            self.latency.observe(seconds);
        }
    }

    /// Counts one record written to the dead-letter topic.
    pub fn dead_letter(&self, kind: &'static str) {
        self.dead_letters
            .get_or_create(&DeadLetterLabels { kind })
            .inc();
    }

    /// Counts one record skipped as a repeat.
    pub fn repeat(&self) {
        self.repeats.inc();
    }

    /// Sets the in-flight gauge.
    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the backlog gauges.
    pub fn set_backlog(&self, depth: QueueDepth) {
        for (kind, value) in [
            ("events", depth.events),
            ("pending", depth.pending),
            ("retrying", depth.retrying),
        ] {
            self.backlog
                .get_or_create(&BacklogLabels { kind })
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    /// Counts one replacement of a stuck consumer.
    pub fn consumer_restart(&self) {
        self.consumer_restarts.inc();
    }

    /// Sets the consumer-lag gauge of each topic in `lag`.
    pub fn set_consumer_lag(&self, lag: &BTreeMap<String, i64>) {
        for (topic, records) in lag {
            self.consumer_lag
                .get_or_create(&TopicLabels {
                    topic: topic.clone(),
                })
                .set(*records);
        }
    }
}
