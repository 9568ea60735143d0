//! [`KafkaDispatcher`]: the delivery engine of a cluster (`kolbak dispatcher --pool NAME`).
//! One consumer in the pool's consumer group reads the events topic and every retry tier:
//!
//! - **Concurrency**: each record is handled in its own task, at most `max_in_flight` at once.
//!   At capacity a partition is paused at its next record rather than the loop waiting for a
//!   slot: the loop never stops polling, so it stays well within `max.poll.interval.ms` however
//!   long deliveries (or a Cassandra outage) take.
//! - **Commits**: manual, per partition up to the highest contiguous finished offset
//!   ([`OffsetTracker`]), every second, on revoke (cooperative-sticky rebalancing) and at
//!   shutdown. A crash redelivers what was unfinished; the [`RecordHandler`] makes that
//!   harmless.
//! - **Retry tiers**: a tier record that is not due yet pauses its partition and seeks back
//!   to it; the partition resumes when the record is due. Nothing sleeps in the poll loop.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use kolbak_core::kafka::rdkafka::config::ClientConfig;
use kolbak_core::kafka::rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use kolbak_core::kafka::rdkafka::message::{Headers, Message, OwnedMessage};
use kolbak_core::kafka::rdkafka::producer::Producer;
use kolbak_core::kafka::rdkafka::{Offset, TopicPartitionList};
use kolbak_core::kafka::{
    HEADER_DUE_AT, KafkaConfig, KafkaTopics, KolbakClientContext, RetryMessage, SourceRecord,
};
use kolbak_core::telemetry::MetricsRegistry;
use kolbak_core::{DeliveryLog, Error as CoreError, EventArchive, Registry};
use tokio::sync::{RwLock, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::attempt_runner::AttemptRunner;
use crate::config::DispatcherConfig;
use crate::consumer_context::{PoolContext, Trackers, lock};
use crate::endpoint_lanes::EndpointLanes;
use crate::error::{Error, Result};
use crate::health_reporter::HealthReporter;
use crate::metrics::DispatcherMetrics;
use crate::pool_config::PoolConfig;
use crate::record_handler::RecordHandler;
use crate::sender::WebhookSender;
use crate::stall_watch::{ConsumerProgress, PartitionKey, StallWatch, Verdict};
use crate::subscription_cache::SubscriptionCache;

/// How often finished offsets are committed.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// Pause after a failure to reach Kafka or the registry at start.
const START_RETRY: Duration = Duration::from_secs(1);
/// Longest a seek of a paused partition may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the stall watch waits for the broker to tell where a partition's log ends.
const END_OFFSET_TIMEOUT: Duration = Duration::from_secs(10);

/// The storage a Kafka dispatcher works with.
pub struct KafkaDispatcherParts {
    /// Subscriptions.
    pub registry: Arc<dyn Registry>,
    /// Where deliveries and attempts are recorded.
    pub log: Arc<dyn DeliveryLog>,
    /// Where fanned-out events are kept for manual retries (the Cassandra log).
    pub archive: Arc<dyn EventArchive>,
    /// Where the dispatcher's metrics are registered.
    pub metrics: MetricsRegistry,
}

/// A record handled by a task, reported back so its offset can be committed.
struct Finished {
    key: PartitionKey,
    generation: u64,
    offset: i64,
}

/// The delivery engine on Kafka.
pub struct KafkaDispatcher {
    config: DispatcherConfig,
    kafka: KafkaConfig,
    pool: String,
    refresh: Duration,
    session_timeout: Duration,
    lag_interval: Duration,
    stall_timeout: Duration,
    health_interval: Duration,
    registry: Arc<dyn Registry>,
    archive: Arc<dyn EventArchive>,
    runner: Arc<AttemptRunner>,
    metrics: DispatcherMetrics,
}

impl KafkaDispatcher {
    /// A dispatcher of `pool`'s consumer group; fails when the configuration cannot make an
    /// HTTP client or retry schedule.
    pub fn new(
        config: DispatcherConfig,
        kafka: KafkaConfig,
        pool: PoolConfig,
        parts: KafkaDispatcherParts,
    ) -> Result<Self> {
        let metrics = DispatcherMetrics::register(&parts.metrics);
        let runner = AttemptRunner {
            registry: parts.registry.clone(),
            log: parts.log,
            sender: WebhookSender::new(&config)?,
            schedule: config.schedule()?,
            metrics: metrics.clone(),
            health: Some(Arc::new(HealthReporter::default())),
        };
        Ok(Self {
            config,
            kafka,
            pool: pool.pool,
            refresh: pool.subscription_refresh,
            session_timeout: pool.kafka_session_timeout,
            lag_interval: pool.consumer_lag_interval,
            stall_timeout: pool.consumer_stall_timeout,
            health_interval: pool.health_report_interval,
            registry: parts.registry,
            archive: parts.archive,
            runner: Arc::new(runner),
            metrics,
        })
    }

    /// The consumer group of this dispatcher's pool.
    pub fn group_id(&self) -> String {
        format!("{}pool.{}", self.kafka.kafka_topic_prefix, self.pool)
    }

    /// Consumes until `shutdown` resolves, then lets the records in flight finish (up to the
    /// delivery timeout), commits, and leaves the group.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        let tiers = self.runner.schedule.delays().to_vec();
        let topics = tokio::select! {
            topics = ensure_topics(&self.kafka, &tiers) => topics,
            () = &mut shutdown => return Ok(()),
        };
        let cache = tokio::select! {
            cache = load_subscriptions(self.registry.clone()) => Arc::new(RwLock::new(cache)),
            () = &mut shutdown => return Ok(()),
        };
        let refresher = tokio::spawn(refresh_subscriptions(cache.clone(), self.refresh));
        let health_reporter = self.runner.health.clone().map(|health| {
            tokio::spawn(health.run(
                self.registry.clone(),
                self.runner.log.clone(),
                self.health_interval,
            ))
        });
        let producer = self
            .kafka
            .producer_config()
            .create_with_context(KolbakClientContext)
            .map_err(|e| {
                Error::Storage(CoreError::Configuration(format!(
                    "cannot create the Kafka producer: {e}"
                )))
            })?;
        let handler = Arc::new(RecordHandler {
            runner: self.runner.clone(),
            subscriptions: cache,
            producer,
            topics: topics.clone(),
            metrics: self.metrics.clone(),
            pool: self.pool.clone(),
            archive: self.archive.clone(),
            lanes: Arc::new(EndpointLanes::new(
                self.config.max_in_flight_per_subscription,
                self.config.rate_limit_per_subscription,
            )),
        });
        let trackers = Arc::new(Mutex::new(Trackers::default()));
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
        // Everything but the dead letters, which are for people and other tools.
        let consumed: Vec<&str> = topics
            .all()
            .into_iter()
            .filter(|t| *t != topics.dead_letters)
            .collect();
        let mut consumer = self.subscribed_consumer(&trackers, &progress_tx, &consumed)?;
        tracing::info!(
            group = %self.group_id(),
            topics = %consumed.join(","),
            max_in_flight = self.config.max_in_flight,
            "kafka dispatcher consuming"
        );

        let slots = Arc::new(Semaphore::new(self.config.max_in_flight));
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
        let mut tasks = JoinSet::new();
        // Tier partitions waiting for their head record to be due.
        let mut paused: HashMap<PartitionKey, Instant> = HashMap::new();
        // Partitions paused because every slot was taken.
        let mut full: HashSet<PartitionKey> = HashSet::new();
        let mut commit_tick = tokio::time::interval(COMMIT_INTERVAL);
        let mut stall_watch = StallWatch::new(self.stall_timeout);
        let (end_tx, mut end_rx) = mpsc::unbounded_channel::<(PartitionKey, i64, i64)>();
        loop {
            let mut stalled = None;
            let next_resume = paused.values().min().copied();
            tokio::select! {
                () = &mut shutdown => break,
                Some(finished) = done_rx.recv() => {
                    lock(&trackers).finish(&finished.key, finished.generation, finished.offset);
                    resume_all(&consumer, &mut full);
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = commit_tick.tick() => commit(&consumer, &trackers, CommitMode::Async),
                Some(progress) = progress_rx.recv() => {
                    let held = |key: &PartitionKey| paused.contains_key(key) || full.contains(key);
                    match stall_watch.observe(&progress, Instant::now(), held) {
                        Verdict::Fine => {}
                        Verdict::Stalled(stall) => stalled = Some(stall),
                        Verdict::Check(partitions) => {
                            ask_end_offsets(&handler, partitions, end_tx.clone());
                        }
                    }
                }
                Some((key, position, end)) = end_rx.recv() => {
                    let held = |key: &PartitionKey| paused.contains_key(key) || full.contains(key);
                    stalled = stall_watch.confirm(&key, position, end, held);
                }
                () = tokio::time::sleep_until(next_resume.unwrap_or_else(Instant::now)), if next_resume.is_some() => {
                    resume_due(&consumer, &mut paused);
                }
                message = consumer.recv() => {
                    let message = match message {
                        Ok(message) => message.detach(),
                        Err(error) => {
                            // Connection trouble; the client context logged it already.
                            tracing::debug!(%error, "Kafka consumer error");
                            continue;
                        }
                    };
                    let key = (message.topic().to_owned(), message.partition());
                    // A record put back (below) counts as in flight until it is read again and
                    // finished, so no commit passes it even if the seek back failed.
                    if paused.contains_key(&key) || full.contains(&key) {
                        // Fetched before the pause took effect; it comes again after the seek.
                        lock(&trackers).start(&key, message.offset());
                        continue;
                    }
                    let is_event = message.topic() == topics.events;
                    if !is_event && let Some(wait) = not_due_for(&message) {
                        lock(&trackers).start(&key, message.offset());
                        if pause_at(&consumer, &message) {
                            paused.insert(key, Instant::now() + wait);
                        }
                        continue;
                    }
                    // At capacity: pause the partition at this record instead of waiting for a
                    // slot, so the loop keeps polling (and the member stays in the group however
                    // long deliveries take); resumed when a record finishes.
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        lock(&trackers).start(&key, message.offset());
                        if pause_at(&consumer, &message) {
                            full.insert(key);
                        }
                        continue;
                    };
                    let generation = lock(&trackers).start(&key, message.offset());
                    // Taken here, in offset order, for ordered subscriptions.
                    let turn = is_event.then(|| handler.lanes.partition_ticket(&key.0, key.1));
                    let handler = handler.clone();
                    let done = done_tx.clone();
                    tasks.spawn(async move {
                        let offset = message.offset();
                        let source = SourceRecord {
                            topic: key.0.clone(),
                            partition: key.1,
                            offset,
                        };
                        let value = message.payload().unwrap_or_default();
                        match turn {
                            Some(turn) => handler.handle_event(source, value, turn).await,
                            None => handler.handle_retry(source, value).await,
                        }
                        drop(permit);
                        let _ = done.send(Finished { key, generation, offset });
                    });
                }
            }
            if let Some(stall) = stalled {
                tracing::warn!(%stall, "Kafka consumer stuck; replacing it");
                self.metrics.consumer_restart();
                match self.subscribed_consumer(&trackers, &progress_tx, &consumed) {
                    Ok(successor) => {
                        let stuck = std::mem::replace(&mut consumer, successor);
                        // The successor reads every unfinished record again from the committed
                        // offsets, in a fresh group membership; nothing it pauses is paused yet.
                        stuck.context().retire();
                        lock(&trackers).clear();
                        paused.clear();
                        full.clear();
                        stall_watch.reset();
                        close_in_background(stuck);
                    }
                    Err(error) => tracing::error!(%error, "cannot replace the Kafka consumer"),
                }
            }
        }

        tracing::info!(
            in_flight = tasks.len(),
            "kafka dispatcher stopping; finishing records in flight"
        );
        let grace = self.config.delivery_timeout + Duration::from_secs(5);
        if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!("records still in flight at shutdown were cut off; they are read again");
            tasks.abort_all();
        }
        while let Ok(finished) = done_rx.try_recv() {
            lock(&trackers).finish(&finished.key, finished.generation, finished.offset);
        }
        commit(&consumer, &trackers, CommitMode::Sync);
        refresher.abort();
        if let Some(task) = health_reporter {
            task.abort();
        }
        if let Some(health) = &self.runner.health {
            health
                .report(self.registry.as_ref(), self.runner.log.as_ref())
                .await;
        }
        // Leaving the group (and joining librdkafka's threads) blocks: not on the runtime.
        tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        })
        .await
        .map_err(|e| Error::Storage(CoreError::storage(e)))?;
        tracing::info!("kafka dispatcher stopped");
        Ok(())
    }

    /// A consumer of the pool's group, subscribed to `topics`, sharing `trackers`.
    fn subscribed_consumer(
        &self,
        trackers: &Arc<Mutex<Trackers>>,
        progress: &mpsc::UnboundedSender<ConsumerProgress>,
        topics: &[&str],
    ) -> Result<StreamConsumer<PoolContext>> {
        let context = PoolContext::new(trackers.clone(), self.metrics.clone(), progress.clone());
        let consumer: StreamConsumer<PoolContext> = self
            .consumer_config()
            .create_with_context(context)
            .map_err(|e| {
                Error::Storage(CoreError::Configuration(format!(
                    "cannot create the Kafka consumer: {e}"
                )))
            })?;
        consumer
            .subscribe(topics)
            .map_err(|e| Error::Storage(CoreError::storage(e)))?;
        Ok(consumer)
    }

    fn consumer_config(&self) -> ClientConfig {
        let mut config = self.kafka.client_config();
        config
            .set("group.id", self.group_id())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set(
                "session.timeout.ms",
                self.session_timeout.as_millis().to_string(),
            )
            .set(
                "statistics.interval.ms",
                self.lag_interval.as_millis().to_string(),
            );
        config
    }
}

/// Leaves the group and frees a replaced consumer on a thread of its own, not waited for: a
/// stuck client may never finish closing, and that must hold up neither the loop nor shutdown.
fn close_in_background(consumer: StreamConsumer<PoolContext>) {
    let closing = std::thread::Builder::new()
        .name("kafka-consumer-close".to_owned())
        .spawn(move || {
            consumer.unsubscribe();
            drop(consumer);
            tracing::info!("replaced Kafka consumer closed");
        });
    if let Err(error) = closing {
        tracing::warn!(%error, "cannot start a thread to close the replaced Kafka consumer");
    }
}

/// Asks the broker where each partition's log ends, through the producer's connections (not
/// the consumer's, which may be the stuck part), and sends `(partition, position, end)` back.
fn ask_end_offsets(
    handler: &Arc<RecordHandler>,
    partitions: Vec<(PartitionKey, i64)>,
    answers: mpsc::UnboundedSender<(PartitionKey, i64, i64)>,
) {
    let handler = handler.clone();
    // A metadata request blocks: not on the runtime.
    tokio::task::spawn_blocking(move || {
        for (key, position) in partitions {
            match handler
                .producer
                .client()
                .fetch_watermarks(&key.0, key.1, END_OFFSET_TIMEOUT)
            {
                Ok((_, end)) => {
                    tracing::debug!(topic = %key.0, partition = key.1, position, end, "end offset checked");
                    let _ = answers.send((key, position, end));
                }
                Err(error) => {
                    tracing::debug!(%error, topic = %key.0, partition = key.1, "cannot read the end offset");
                }
            }
        }
    });
}

/// Commits every partition's finished offsets that moved.
fn commit(consumer: &StreamConsumer<PoolContext>, trackers: &Mutex<Trackers>, mode: CommitMode) {
    let commits = lock(trackers).take_commits(None);
    if commits.count() == 0 {
        return;
    }
    if let Err(error) = consumer.commit(&commits, mode) {
        tracing::warn!(%error, "offset commit failed; those records may be repeated after a restart");
    }
}

/// How long until the retry record is due; `None` when it is due now (or its due time cannot
/// be read, in which case the handler decides).
fn not_due_for(message: &OwnedMessage) -> Option<Duration> {
    let due = message
        .headers()
        .and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == HEADER_DUE_AT)
                .and_then(|h| h.value)
                .and_then(RetryMessage::parse_due_header)
        })
        .or_else(|| {
            RetryMessage::decode(message.payload().unwrap_or_default())
                .ok()
                .map(|m| m.due_at)
        })?;
    (due - Utc::now()).to_std().ok().filter(|d| !d.is_zero())
}

/// Pauses the record's partition and seeks back to the record, so it is read again once the
/// partition resumes. `false` when the pause failed. Either way the caller keeps the record in
/// flight, so commits stop short of it until it is read again (at the latest after a
/// rebalance or restart).
fn pause_at(consumer: &StreamConsumer<PoolContext>, message: &OwnedMessage) -> bool {
    let mut list = TopicPartitionList::new();
    list.add_partition(message.topic(), message.partition());
    if let Err(error) = consumer.pause(&list) {
        tracing::warn!(%error, topic = message.topic(), "cannot pause a partition");
        return false;
    }
    if let Err(error) = consumer.seek(
        message.topic(),
        message.partition(),
        Offset::Offset(message.offset()),
        SEEK_TIMEOUT,
    ) {
        tracing::warn!(%error, topic = message.topic(), "cannot seek a paused partition");
    }
    true
}

/// Resumes every partition paused for capacity.
fn resume_all(consumer: &StreamConsumer<PoolContext>, full: &mut HashSet<PartitionKey>) {
    if full.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for key in full.drain() {
        list.add_partition(&key.0, key.1);
    }
    // A partition revoked meanwhile cannot be resumed; its new owner reads it.
    if let Err(error) = consumer.resume(&list) {
        tracing::debug!(%error, "resume of partitions paused for capacity failed");
    }
}

/// Resumes the paused partitions whose head record is due.
fn resume_due(consumer: &StreamConsumer<PoolContext>, paused: &mut HashMap<PartitionKey, Instant>) {
    let now = Instant::now();
    let due: Vec<PartitionKey> = paused
        .iter()
        .filter(|(_, at)| **at <= now)
        .map(|(key, _)| key.clone())
        .collect();
    let mut list = TopicPartitionList::new();
    for key in due {
        paused.remove(&key);
        list.add_partition(&key.0, key.1);
    }
    // A partition revoked meanwhile cannot be resumed; its new owner reads it.
    if let Err(error) = consumer.resume(&list) {
        tracing::debug!(%error, "resume of retry tier partitions failed");
    }
}

/// Creates the missing topics, retrying while Kafka is unreachable.
async fn ensure_topics(kafka: &KafkaConfig, tiers: &[Duration]) -> KafkaTopics {
    loop {
        match KafkaTopics::ensure(kafka, tiers).await {
            Ok(topics) => return topics,
            Err(error) => {
                tracing::warn!(%error, "cannot reach Kafka to check the topics; retrying");
                tokio::time::sleep(START_RETRY).await;
            }
        }
    }
}

/// Loads the subscriptions, retrying while the registry is unavailable.
async fn load_subscriptions(registry: Arc<dyn Registry>) -> SubscriptionCache {
    loop {
        match SubscriptionCache::load(registry.clone()).await {
            Ok(cache) => return cache,
            Err(error) => {
                tracing::warn!(%error, "cannot load subscriptions; retrying");
                tokio::time::sleep(START_RETRY).await;
            }
        }
    }
}

/// Applies the registry's changes every 100 ms and re-reads everything every `refresh`.
async fn refresh_subscriptions(cache: Arc<RwLock<SubscriptionCache>>, refresh: Duration) {
    let mut last_reload = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100).min(refresh)).await;
        let mut cache = cache.write().await;
        let result = if last_reload.elapsed() >= refresh {
            last_reload = Instant::now();
            cache.reload().await
        } else {
            cache.sync().await
        };
        if let Err(error) = result {
            tracing::warn!(%error, "cannot refresh subscriptions");
        }
    }
}
