//! Kolbak's delivery engine: consumes accepted events, matches subscriptions, signs and sends
//! webhooks, classifies responses, schedules retries and dead letters, and logs every attempt.
//!
//! The building blocks, each self-contained:
//! - [`signature`]: Standard Webhooks signing and the three `webhook-*` headers.
//! - [`forbidden_address`] and [`target_guard`]: the SSRF guard — which addresses are refused,
//!   enforced in the HTTP client's DNS resolver and on IP-literal URLs.
//! - [`sender`]: [`WebhookSender`], one pooled HTTP client that POSTs a signed event and
//!   records an [`AttemptResult`] ([`attempt`]), with [`retry_after`] parsing.
//! - [`classify`](mod@classify): success, retryable or permanent (and `410 Gone` deactivation).
//! - [`retry_schedule`]: delays, jitter and `Retry-After` clamping.
//! - [`config`]: [`DispatcherConfig`], the `KOLBAK_*` settings of the engine.
//!
//! And the engine that drives them:
//! - [`engine`]: [`Dispatcher`], the control loop — fan-out, due deliveries, limits, wake-ups.
//! - [`attempt_runner`]: one attempt from event to durable log record.
//! - [`subscription_cache`]: subscriptions in memory, kept current from the registry.
//! - [`metrics`]: attempts by outcome, latency, in flight, backlogs.
//!
//! And its cluster counterpart on Kafka:
//! - [`kafka_dispatcher`]: [`KafkaDispatcher`], the consumer of a pool's group — concurrency,
//!   commits, retry-tier pauses; [`pool_config`]: its [`PoolConfig`].
//! - [`consumer_lag`]: how far the group is behind on each topic, from librdkafka's statistics.
//! - [`record_handler`]: what happens to one record, idempotently.
//! - [`offset_tracker`]: the highest contiguous finished offset of a partition.
//! - [`endpoint_lanes`]: per-subscription in-flight and rate limits, and ordered delivery.
//! - [`health_reporter`]: delivery health copied into the subscription objects, throttled.

pub mod attempt;
pub mod attempt_runner;
pub mod classify;
pub mod config;
pub mod consumer_context;
pub mod consumer_lag;
pub mod endpoint_lanes;
pub mod engine;
pub mod error;
pub mod forbidden_address;
pub mod health_reporter;
pub mod kafka_dispatcher;
pub mod metrics;
pub mod offset_tracker;
pub mod pool_config;
pub mod record_handler;
pub mod retry_after;
pub mod retry_schedule;
pub mod sender;
pub mod signature;
pub mod stall_watch;
pub mod subscription_cache;
pub mod target_guard;

#[cfg(test)]
mod official_verifier_tests;
#[cfg(test)]
mod test_support;

pub use attempt::{AttemptError, AttemptErrorKind, AttemptResult};
pub use classify::{Outcome, classify, classify_error, classify_status};
pub use config::{DispatcherConfig, MAX_RESPONSE_BODY_BYTES};
pub use engine::{Dispatcher, DispatcherParts};
pub use error::{Error, Result};
pub use forbidden_address::{ForbiddenRange, forbidden_range, is_forbidden};
pub use kafka_dispatcher::{KafkaDispatcher, KafkaDispatcherParts};
pub use pool_config::PoolConfig;
pub use retry_after::parse_retry_after;
pub use retry_schedule::{DEFAULT_RETRY_DELAYS, RetrySchedule};
pub use sender::{USER_AGENT, WebhookSender, encode_body};
pub use signature::{SignedHeaders, sign};
pub use target_guard::{GuardedResolver, check_url};
