//! [`StallWatch`]: notices a Kafka consumer that stopped reading although records wait for
//! it, or whose group membership is stuck, so the dispatcher can replace it (a fresh client,
//! group membership and assignment) instead of idling until someone restarts it. Consumers built on librdkafka have
//! been reported not to resume fetching after a broker restart; this bounds how long such a
//! stall lasts.
//!
//! Fed a [`ConsumerProgress`] taken from librdkafka's statistics every
//! `KOLBAK_CONSUMER_LAG_INTERVAL`. Two things count as a stall:
//! - a partition this consumer is assigned and has not paused itself, whose read position has
//!   not moved for the timeout although the broker holds records past it. The statistics'
//!   end offset comes from fetch responses, so it goes stale exactly when fetching stops:
//!   when it shows nothing waiting, the watch asks for the broker's end offset
//!   ([`Verdict::Check`]) and the dispatcher confirms with [`StallWatch::confirm`];
//! - a group membership that has not been steady for the timeout while a broker is reachable
//!   (seen after a broker restart: the assignment lost, and no rejoin). In a pool every member
//!   answers a rebalance from its poll loop at once and a dead member is dropped after the
//!   session timeout, so a rebalance that takes longer than twice the session timeout (the
//!   least the stall timeout may be) is stuck.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use kolbak_core::kafka::rdkafka::statistics::{Partition, Statistics};
use tokio::time::Instant;

/// A partition of a topic.
pub type PartitionKey = (String, i32);

/// Where one assigned partition's reading stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProgress {
    /// The next offset the application will be handed.
    pub position: i64,
    /// The offset the next record written will get (for `read_committed`, the last stable one).
    pub end: i64,
    /// librdkafka's fetch state (`active`, `offset-query`, `validate-epoch-wait`, ...).
    pub fetch_state: String,
}

/// What one statistics report says about this consumer's reading.
#[derive(Debug, Clone, Default)]
pub struct ConsumerProgress {
    /// The partitions this consumer is assigned whose position and end are known.
    pub partitions: HashMap<PartitionKey, PartitionProgress>,
    /// The group membership's join state (`steady` once assigned), when reported.
    pub join_state: Option<String>,
    /// Whether any broker connection is up.
    pub broker_up: bool,
}

impl ConsumerProgress {
    /// Takes what the watch needs out of a statistics report.
    pub fn from_statistics(statistics: &Statistics) -> Self {
        let partitions = statistics
            .topics
            .iter()
            .flat_map(|(topic, t)| {
                t.partitions.values().filter_map(move |partition| {
                    progress(partition).map(|p| ((topic.clone(), partition.partition), p))
                })
            })
            .collect();
        Self {
            partitions,
            join_state: statistics.cgrp.as_ref().map(|g| g.join_state.clone()),
            broker_up: statistics.brokers.values().any(|b| b.state == "UP"),
        }
    }
}

/// An assigned partition's progress; `None` for partitions of other members, for librdkafka's
/// internal partition, and while the offsets are unknown.
fn progress(partition: &Partition) -> Option<PartitionProgress> {
    if partition.partition < 0 || !partition.desired {
        return None;
    }
    // Before the first record is handed over the position is the committed offset, or the
    // log's start for a group that never committed (`auto.offset.reset=earliest`).
    let position = [
        partition.app_offset,
        partition.committed_offset,
        partition.lo_offset,
    ]
    .into_iter()
    .find(|offset| *offset >= 0)?;
    let end = if partition.ls_offset >= 0 {
        partition.ls_offset
    } else {
        partition.hi_offset
    };
    (end >= 0).then(|| PartitionProgress {
        position,
        end,
        fetch_state: partition.fetch_state.clone(),
    })
}

/// Why the consumer is considered stuck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stall {
    /// Partitions with records waiting whose position did not move for the timeout.
    Partitions(Vec<(PartitionKey, PartitionProgress)>),
    /// The group membership was not steady for the timeout.
    Group {
        /// The join state it was in.
        join_state: String,
    },
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stall::Partitions(partitions) => {
                let described: Vec<String> = partitions
                    .iter()
                    .map(|((topic, partition), p)| {
                        format!(
                            "{topic}[{partition}] at {} of {} (fetch state {})",
                            p.position, p.end, p.fetch_state
                        )
                    })
                    .collect();
                write!(f, "no progress on {}", described.join(", "))
            }
            Stall::Group { join_state } => {
                write!(f, "group membership stuck in join state {join_state}")
            }
        }
    }
}

/// What a statistics report says about the consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Reading, or nothing to read.
    Fine,
    /// Stuck: the consumer should start over.
    Stalled(Stall),
    /// These partitions' positions have not moved for the timeout and the statistics show
    /// nothing waiting: ask the broker for their end offsets and [`StallWatch::confirm`].
    Check(Vec<(PartitionKey, i64)>),
}

/// Remembers since when each partition's position has not moved.
#[derive(Debug)]
pub struct StallWatch {
    timeout: Duration,
    /// A partition's position and since when it has been there.
    unmoved: HashMap<PartitionKey, (i64, Instant)>,
    /// Since when the membership has not been steady (while a broker was reachable).
    unsteady_since: Option<Instant>,
}

impl StallWatch {
    /// A watch that calls a partition stalled after `timeout` without progress.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            unmoved: HashMap::new(),
            unsteady_since: None,
        }
    }

    /// Takes in a report made at `now`; `held` tells the partitions the dispatcher paused
    /// itself (retries not due, no free slot), which are not expected to move.
    pub fn observe(
        &mut self,
        progress: &ConsumerProgress,
        now: Instant,
        held: impl Fn(&PartitionKey) -> bool,
    ) -> Verdict {
        self.unmoved
            .retain(|key, _| progress.partitions.contains_key(key) && !held(key));
        let mut stalled = Vec::new();
        let mut check = Vec::new();
        for (key, partition) in &progress.partitions {
            if held(key) {
                continue;
            }
            match self.unmoved.get_mut(key) {
                Some((position, since)) if *position == partition.position => {
                    if now.duration_since(*since) < self.timeout {
                        continue;
                    }
                    if partition.end > partition.position {
                        stalled.push((key.clone(), partition.clone()));
                    } else {
                        // Checked at most once per timeout.
                        *since = now;
                        check.push((key.clone(), partition.position));
                    }
                }
                _ => {
                    self.unmoved.insert(key.clone(), (partition.position, now));
                }
            }
        }
        if !stalled.is_empty() {
            stalled.sort_by(|a, b| a.0.cmp(&b.0));
            return Verdict::Stalled(Stall::Partitions(stalled));
        }
        match &progress.join_state {
            Some(state) if state != "steady" && progress.broker_up => {
                let since = *self.unsteady_since.get_or_insert(now);
                if now.duration_since(since) >= self.timeout {
                    return Verdict::Stalled(Stall::Group {
                        join_state: state.clone(),
                    });
                }
            }
            _ => self.unsteady_since = None,
        }
        if check.is_empty() {
            Verdict::Fine
        } else {
            check.sort();
            Verdict::Check(check)
        }
    }

    /// The broker's answer to a [`Verdict::Check`]: a stall when the partition is still at
    /// `position` (and not held) while the broker's log ends past it.
    pub fn confirm(
        &self,
        key: &PartitionKey,
        position: i64,
        end: i64,
        held: impl Fn(&PartitionKey) -> bool,
    ) -> Option<Stall> {
        let unmoved = self.unmoved.get(key).is_some_and(|(p, _)| *p == position);
        (unmoved && end > position && !held(key)).then(|| {
            let progress = PartitionProgress {
                position,
                end,
                fetch_state: "unknown (end offset asked of the broker)".to_owned(),
            };
            Stall::Partitions(vec![(key.clone(), progress)])
        })
    }

    /// Forgets everything, after the consumer was made to start over.
    pub fn reset(&mut self) {
        self.unmoved.clear();
        self.unsteady_since = None;
    }
}

#[cfg(test)]
mod tests {
    use kolbak_core::kafka::rdkafka::statistics::{Broker, ConsumerGroup, Topic};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(60);

    fn key(partition: i32) -> PartitionKey {
        ("kolbak.events".to_owned(), partition)
    }

    fn report(partitions: &[(i32, i64, i64)]) -> ConsumerProgress {
        ConsumerProgress {
            partitions: partitions
                .iter()
                .map(|(p, position, end)| {
                    let progress = PartitionProgress {
                        position: *position,
                        end: *end,
                        fetch_state: "active".to_owned(),
                    };
                    (key(*p), progress)
                })
                .collect(),
            join_state: Some("steady".to_owned()),
            broker_up: true,
        }
    }

    fn nothing_held(_: &PartitionKey) -> bool {
        false
    }

    fn stalled_partitions(verdict: Verdict) -> Vec<PartitionKey> {
        match verdict {
            Verdict::Stalled(Stall::Partitions(partitions)) => {
                partitions.into_iter().map(|(key, _)| key).collect()
            }
            other => panic!("expected stalled partitions, got {other:?}"),
        }
    }

    #[test]
    fn a_partition_with_records_waiting_and_no_progress_is_a_stall() {
        let mut watch = StallWatch::new(TIMEOUT);
        let t0 = Instant::now();
        let stuck = report(&[(0, 10, 15), (1, 4, 4)]);
        assert_eq!(watch.observe(&stuck, t0, nothing_held), Verdict::Fine);
        let later = t0 + Duration::from_secs(59);
        assert_eq!(watch.observe(&stuck, later, nothing_held), Verdict::Fine);
        let verdict = watch.observe(&stuck, t0 + TIMEOUT, nothing_held);
        let shown = match &verdict {
            Verdict::Stalled(stall) => stall.to_string(),
            other => panic!("expected a stall, got {other:?}"),
        };
        assert!(shown.contains("kolbak.events[0] at 10 of 15"), "{shown}");
        assert_eq!(stalled_partitions(verdict), vec![key(0)]);
    }

    #[test]
    fn progress_restarts_the_clock() {
        let mut watch = StallWatch::new(TIMEOUT);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let fine = |watch: &mut StallWatch, report: ConsumerProgress, s: u64| {
            assert_eq!(
                watch.observe(&report, at(s), nothing_held),
                Verdict::Fine,
                "at {s}s"
            );
        };
        fine(&mut watch, report(&[(0, 10, 15)]), 0);
        // Moving, however slowly.
        fine(&mut watch, report(&[(0, 11, 20)]), 50);
        fine(&mut watch, report(&[(0, 12, 20)]), 100);
        fine(&mut watch, report(&[(0, 12, 20)]), 159);
        assert_eq!(
            stalled_partitions(watch.observe(&report(&[(0, 12, 20)]), at(160), nothing_held)),
            vec![key(0)]
        );
    }

    #[test]
    fn a_caught_up_partition_is_checked_with_the_broker_once_per_timeout() {
        let mut watch = StallWatch::new(TIMEOUT);
        let t0 = Instant::now();
        let idle = report(&[(0, 20, 20)]);
        assert_eq!(watch.observe(&idle, t0, nothing_held), Verdict::Fine);
        let checked = t0 + TIMEOUT;
        assert_eq!(
            watch.observe(&idle, checked, nothing_held),
            Verdict::Check(vec![(key(0), 20)])
        );
        // The statistics' end may be stale: the broker's answer decides.
        assert_eq!(watch.confirm(&key(0), 20, 20, nothing_held), None);
        let stall = watch.confirm(&key(0), 20, 27, nothing_held);
        let shown = stall.map(|s| s.to_string()).unwrap_or_default();
        assert!(shown.contains("kolbak.events[0] at 20 of 27"), "{shown}");
        // Not asked again until another timeout has passed.
        let soon = checked + Duration::from_secs(30);
        assert_eq!(watch.observe(&idle, soon, nothing_held), Verdict::Fine);
        assert_eq!(
            watch.observe(&idle, checked + TIMEOUT, nothing_held),
            Verdict::Check(vec![(key(0), 20)])
        );
        // An answer about a position the partition has left behind is no stall.
        let moved = report(&[(0, 21, 21)]);
        assert_eq!(
            watch.observe(&moved, checked + TIMEOUT, nothing_held),
            Verdict::Fine
        );
        assert_eq!(watch.confirm(&key(0), 20, 27, nothing_held), None);
    }

    #[test]
    fn partitions_the_dispatcher_paused_itself_are_not_stalls() {
        let mut watch = StallWatch::new(TIMEOUT);
        let t0 = Instant::now();
        let held = |k: &PartitionKey| *k == key(0);
        let waiting = report(&[(0, 10, 15)]);
        assert_eq!(watch.observe(&waiting, t0, held), Verdict::Fine);
        assert_eq!(
            watch.observe(&waiting, t0 + TIMEOUT * 3, held),
            Verdict::Fine
        );
        assert_eq!(watch.confirm(&key(0), 10, 15, held), None);
        // Resumed: it gets the whole timeout from now.
        let resumed = t0 + TIMEOUT * 4;
        assert_eq!(
            watch.observe(&waiting, resumed, nothing_held),
            Verdict::Fine
        );
        assert_eq!(
            stalled_partitions(watch.observe(&waiting, resumed + TIMEOUT, nothing_held)),
            vec![key(0)]
        );
    }

    #[test]
    fn a_partition_that_moved_away_and_back_starts_over() {
        let mut watch = StallWatch::new(TIMEOUT);
        let t0 = Instant::now();
        let waiting = report(&[(0, 10, 15)]);
        assert_eq!(watch.observe(&waiting, t0, nothing_held), Verdict::Fine);
        // Revoked in between, assigned again.
        let back = t0 + TIMEOUT;
        assert_eq!(
            watch.observe(&report(&[]), back, nothing_held),
            Verdict::Fine
        );
        assert_eq!(watch.observe(&waiting, back, nothing_held), Verdict::Fine);
        let almost = back + TIMEOUT - Duration::from_secs(1);
        assert_eq!(watch.observe(&waiting, almost, nothing_held), Verdict::Fine);
        // After a reset the clock starts over too.
        watch.reset();
        assert_eq!(
            watch.observe(&waiting, back + TIMEOUT, nothing_held),
            Verdict::Fine
        );
        assert_eq!(
            stalled_partitions(watch.observe(&waiting, back + TIMEOUT * 2, nothing_held)),
            vec![key(0)]
        );
    }

    #[test]
    fn an_unsteady_membership_is_a_stall_only_with_a_broker_up() {
        let mut watch = StallWatch::new(TIMEOUT);
        let t0 = Instant::now();
        let mut joining = report(&[]);
        joining.join_state = Some("wait-join".to_owned());
        let limit = TIMEOUT;
        assert_eq!(watch.observe(&joining, t0, nothing_held), Verdict::Fine);
        let almost = t0 + limit - Duration::from_secs(1);
        assert_eq!(watch.observe(&joining, almost, nothing_held), Verdict::Fine);
        // The broker went away meanwhile: the clock restarts once it is back.
        let mut broker_down = joining.clone();
        broker_down.broker_up = false;
        assert_eq!(
            watch.observe(&broker_down, t0 + limit, nothing_held),
            Verdict::Fine
        );
        let back = t0 + limit * 2;
        assert_eq!(watch.observe(&joining, back, nothing_held), Verdict::Fine);
        assert_eq!(
            watch.observe(&joining, back + limit, nothing_held),
            Verdict::Stalled(Stall::Group {
                join_state: "wait-join".to_owned()
            })
        );
    }

    #[test]
    fn a_membership_stuck_handing_its_partitions_over_is_a_stall_after_the_timeout() {
        let mut watch = StallWatch::new(TIMEOUT);
        let t0 = Instant::now();
        let mut unassigning = report(&[]);
        unassigning.join_state = Some("wait-incr-unassign-to-complete".to_owned());
        assert_eq!(watch.observe(&unassigning, t0, nothing_held), Verdict::Fine);
        let almost = t0 + TIMEOUT - Duration::from_secs(1);
        assert_eq!(
            watch.observe(&unassigning, almost, nothing_held),
            Verdict::Fine
        );
        assert_eq!(
            watch.observe(&unassigning, t0 + TIMEOUT, nothing_held),
            Verdict::Stalled(Stall::Group {
                join_state: "wait-incr-unassign-to-complete".to_owned()
            })
        );
        // Steady in between starts the clock over.
        watch.reset();
        assert_eq!(watch.observe(&unassigning, t0, nothing_held), Verdict::Fine);
        let steady = report(&[]);
        assert_eq!(watch.observe(&steady, almost, nothing_held), Verdict::Fine);
        assert_eq!(
            watch.observe(&unassigning, t0 + TIMEOUT, nothing_held),
            Verdict::Fine
        );
    }

    #[test]
    fn progress_is_read_from_librdkafka_statistics() {
        let partition = |id: i32, desired: bool, app: i64, committed: i64, lo: i64| Partition {
            partition: id,
            desired,
            fetch_state: "active".to_owned(),
            app_offset: app,
            committed_offset: committed,
            lo_offset: lo,
            hi_offset: 40,
            ls_offset: 30,
            ..Partition::default()
        };
        let topic = Topic {
            topic: "kolbak.events".to_owned(),
            partitions: [
                (0, partition(0, true, 12, 10, 0)),
                // Nothing handed over yet: from the committed offset.
                (1, partition(1, true, -1001, 10, 0)),
                // Never committed: from the log's start.
                (2, partition(2, true, -1001, -1001, 3)),
                // Another member's.
                (3, partition(3, false, 5, 5, 0)),
                (-1, partition(-1, false, -1, -1, -1)),
            ]
            .into_iter()
            .collect(),
            ..Topic::default()
        };
        let statistics = Statistics {
            topics: [("kolbak.events".to_owned(), topic)].into_iter().collect(),
            cgrp: Some(ConsumerGroup {
                join_state: "steady".to_owned(),
                ..ConsumerGroup::default()
            }),
            brokers: [(
                "127.0.0.1:9092/1".to_owned(),
                Broker {
                    state: "UP".to_owned(),
                    ..Broker::default()
                },
            )]
            .into_iter()
            .collect(),
            ..Statistics::default()
        };
        let progress = ConsumerProgress::from_statistics(&statistics);
        let position = |p: i32| {
            progress
                .partitions
                .get(&key(p))
                .map(|p| (p.position, p.end))
        };
        assert_eq!(
            position(0),
            Some((12, 30)),
            "read_committed ends at the stable offset"
        );
        assert_eq!(position(1), Some((10, 30)));
        assert_eq!(position(2), Some((3, 30)));
        assert_eq!(position(3), None);
        assert_eq!(progress.partitions.len(), 3);
        assert_eq!(progress.join_state.as_deref(), Some("steady"));
        assert!(progress.broker_up);
    }
}
