//! [`PoolContext`]: what a dispatcher's Kafka consumer does inside librdkafka's callbacks —
//! commits the finished offsets of partitions being revoked before they go, makes failed
//! commits again, and passes each statistics report on (consumer lag, stall watch) — and the
//! [`Trackers`] of finished offsets it shares with the poll loop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use kolbak_core::kafka::KolbakClientContext;
use kolbak_core::kafka::rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance,
};
use kolbak_core::kafka::rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use tokio::sync::mpsc;

use crate::consumer_lag::consumer_lag;
use crate::metrics::DispatcherMetrics;
use crate::offset_tracker::OffsetTracker;
use crate::stall_watch::{ConsumerProgress, PartitionKey};

/// The trackers of the partitions this consumer owns; each carries the generation it was
/// created in, so a task finishing after its partition was revoked (and perhaps assigned
/// again) cannot mark the new owner's record finished.
#[derive(Default)]
pub struct Trackers {
    partitions: HashMap<PartitionKey, (u64, OffsetTracker)>,
    generation: u64,
}

impl Trackers {
    /// Notes a record started; returns the generation of its partition's tracker.
    pub fn start(&mut self, key: &PartitionKey, offset: i64) -> u64 {
        if !self.partitions.contains_key(key) {
            self.generation += 1;
            self.partitions
                .insert(key.clone(), (self.generation, OffsetTracker::default()));
        }
        match self.partitions.get_mut(key) {
            Some((generation, tracker)) => {
                tracker.start(offset);
                *generation
            }
            None => 0,
        }
    }

    /// Notes a record of `generation` finished (ignored when the partition moved since).
    pub fn finish(&mut self, key: &PartitionKey, generation: u64, offset: i64) {
        if let Some((current, tracker)) = self.partitions.get_mut(key)
            && *current == generation
        {
            tracker.finish(offset);
        }
    }

    /// Offers the offsets of a failed commit again at the next [`Trackers::take_commits`].
    fn commit_failed(&mut self, offsets: &TopicPartitionList) {
        for element in offsets.elements() {
            let key = (element.topic().to_owned(), element.partition());
            if let (Some((_, tracker)), Offset::Offset(offset)) =
                (self.partitions.get_mut(&key), element.offset())
            {
                tracker.commit_failed(offset);
            }
        }
    }

    /// Forgets every partition, when the consumer is replaced: records still in flight finish
    /// into nothing (their generation is gone), and the successor reads them again.
    pub fn clear(&mut self) {
        self.partitions.clear();
    }

    /// The offsets to commit for `keys` (all partitions when `None`).
    pub fn take_commits(&mut self, keys: Option<&[PartitionKey]>) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (key, (_, tracker)) in self.partitions.iter_mut() {
            if keys.is_some_and(|keys| !keys.contains(key)) {
                continue;
            }
            if let Some(offset) = tracker.take_commit() {
                // Only fails for an offset out of range, which a tracker never yields.
                let _ = list.add_partition_offset(&key.0, key.1, Offset::Offset(offset));
            }
        }
        list
    }
}

/// Commits the finished offsets of partitions being revoked before they go, offers failed
/// commits again, and turns librdkafka's statistics into the consumer-lag gauge and the stall
/// watch's progress reports.
pub struct PoolContext {
    /// The trackers of the consumer's partitions.
    pub trackers: Arc<Mutex<Trackers>>,
    /// Where the consumer lag goes.
    pub metrics: DispatcherMetrics,
    /// Where each statistics report's progress goes, for the [`crate::stall_watch`].
    pub progress: mpsc::UnboundedSender<ConsumerProgress>,
    /// Set when the consumer is replaced: from then on its callbacks leave the trackers, the
    /// gauges and the stall watch to its successor.
    retired: AtomicBool,
}

impl PoolContext {
    /// A context for a new consumer.
    pub fn new(
        trackers: Arc<Mutex<Trackers>>,
        metrics: DispatcherMetrics,
        progress: mpsc::UnboundedSender<ConsumerProgress>,
    ) -> Self {
        Self {
            trackers,
            metrics,
            progress,
            retired: AtomicBool::new(false),
        }
    }

    /// Stops this context's callbacks from touching the trackers, the gauges and the stall
    /// watch, once a successor has taken over.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }
}

impl ClientContext for PoolContext {
    fn log(
        &self,
        level: kolbak_core::kafka::rdkafka::config::RDKafkaLogLevel,
        facility: &str,
        message: &str,
    ) {
        KolbakClientContext.log(level, facility, message);
    }

    fn error(&self, error: kolbak_core::kafka::rdkafka::error::KafkaError, reason: &str) {
        KolbakClientContext.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        if self.is_retired() {
            return;
        }
        self.metrics.set_consumer_lag(&consumer_lag(&statistics));
        // The dispatcher only stops listening when it stops.
        let _ = self
            .progress
            .send(ConsumerProgress::from_statistics(&statistics));
    }
}

impl ConsumerContext for PoolContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        if self.is_retired() {
            return;
        }
        let keys: Vec<PartitionKey> = revoked
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let commits = {
            let mut trackers = self.trackers.lock().unwrap_or_else(PoisonError::into_inner);
            let commits = trackers.take_commits(Some(&keys));
            for key in &keys {
                trackers.partitions.remove(key);
            }
            commits
        };
        // Lost partitions (the member's session expired, e.g. while the broker was away) may
        // already belong to another member: a commit for them is refused, and waiting for that
        // answer inside the rebalance would hold up consuming. The new owner repeats the
        // unfinished records instead, which the handler makes harmless.
        if consumer.assignment_lost() {
            tracing::warn!(
                partitions = keys.len(),
                "partitions lost; their progress is not committed"
            );
            return;
        }
        if commits.count() > 0
            && let Err(error) = consumer.commit(&commits, CommitMode::Sync)
        {
            tracing::warn!(%error, "commit on revoke failed; the new owner repeats some records");
        }
        tracing::info!(partitions = keys.len(), "partitions revoked");
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            tracing::info!(partitions = assigned.count(), "partitions assigned");
        }
    }

    /// A failed commit (e.g. while the group coordinator is away) is made again at the next
    /// commit tick rather than forgotten, so a rebalance or restart repeats as little as
    /// possible.
    fn commit_callback(
        &self,
        result: kolbak_core::kafka::rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        if let Err(error) = result
            && !self.is_retired()
        {
            tracing::debug!(%error, partitions = offsets.count(), "offset commit failed; retrying");
            lock(&self.trackers).commit_failed(offsets);
        }
    }
}

/// The trackers, even if a task panicked holding them (they stay consistent).
pub fn lock(trackers: &Mutex<Trackers>) -> std::sync::MutexGuard<'_, Trackers> {
    trackers.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_partitions_late_finish_does_not_touch_its_next_owner() {
        let mut trackers = Trackers::default();
        let key = ("kolbak.events".to_owned(), 0);
        let old = trackers.start(&key, 5);
        // Revoked, then assigned again: offset 5 is read anew.
        trackers.partitions.remove(&key);
        let new = trackers.start(&key, 5);
        assert_ne!(old, new);
        trackers.finish(&key, old, 5);
        assert_eq!(trackers.take_commits(None).count(), 1);
        let committed = trackers
            .partitions
            .get(&key)
            .and_then(|(_, t)| t.committable());
        assert_eq!(committed, Some(5), "5 is still in flight for the new owner");
        trackers.finish(&key, new, 5);
        let list = trackers.take_commits(None);
        let offset = list.elements().first().map(|e| e.offset());
        assert_eq!(offset, Some(Offset::Offset(6)));
    }
}
