//! How far a pool's consumer group is behind, per topic: the records of this process's
//! partitions that are on the broker but not yet committed as finished. Read from the
//! statistics librdkafka emits every `statistics.interval.ms`, so measuring costs no request
//! of its own.
//!
//! Lag on the events topic is work not yet fanned out and delivered; lag on a retry tier also
//! counts retries that are simply not due yet, so a tier's lag is its queue, not a fault.

use std::collections::BTreeMap;

use kolbak_core::kafka::rdkafka::statistics::{Partition, Statistics};

/// Records behind on each topic the client knows, summed over the partitions this process is
/// assigned: 0 for a topic none of whose partitions it holds (after a rebalance took them),
/// so a gauge never keeps a number for partitions that moved elsewhere.
pub fn consumer_lag(statistics: &Statistics) -> BTreeMap<String, i64> {
    statistics
        .topics
        .iter()
        .map(|(name, topic)| {
            let behind = topic.partitions.values().filter_map(partition_lag).sum();
            (name.clone(), behind)
        })
        .collect()
}

/// One partition's lag; `None` for librdkafka's internal unassigned partition (-1), for
/// partitions this process does not consume, and while the high watermark is unknown.
fn partition_lag(partition: &Partition) -> Option<i64> {
    let consumed = partition.desired || partition.fetch_state == "active";
    if partition.partition < 0 || !consumed || partition.hi_offset < 0 {
        return None;
    }
    // A group that never committed on this partition starts at the log's beginning
    // (`auto.offset.reset=earliest`), so everything still on the broker is behind.
    let done = if partition.committed_offset >= 0 {
        partition.committed_offset
    } else {
        partition.lo_offset.max(0)
    };
    Some((partition.hi_offset - done).max(0))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use kolbak_core::kafka::rdkafka::statistics::Topic;

    use super::*;

    fn partition(id: i32, lo: i64, hi: i64, committed: i64, desired: bool) -> Partition {
        Partition {
            partition: id,
            desired,
            fetch_state: if desired { "active" } else { "none" }.to_owned(),
            lo_offset: lo,
            hi_offset: hi,
            committed_offset: committed,
            ..Partition::default()
        }
    }

    fn statistics(topics: &[(&str, Vec<Partition>)]) -> Statistics {
        let topics = topics
            .iter()
            .map(|(name, partitions)| {
                let topic = Topic {
                    topic: (*name).to_owned(),
                    partitions: partitions
                        .iter()
                        .map(|p| (p.partition, p.clone()))
                        .collect::<HashMap<_, _>>(),
                    ..Topic::default()
                };
                ((*name).to_owned(), topic)
            })
            .collect();
        Statistics {
            topics,
            ..Statistics::default()
        }
    }

    #[test]
    fn lag_is_uncommitted_records_of_assigned_partitions() {
        let stats = statistics(&[
            (
                "kolbak.events",
                vec![
                    partition(0, 0, 100, 40, true),
                    // Never committed: all that is still retained is behind.
                    partition(1, 10, 25, -1001, true),
                    // Another member's partition.
                    partition(2, 0, 500, 3, false),
                    // librdkafka's internal "unassigned" partition.
                    partition(-1, -1, -1, -1001, false),
                ],
            ),
            (
                "kolbak.retry.30s",
                vec![
                    partition(0, 0, 7, 7, true),
                    partition(1, 0, -1, -1001, true),
                ],
            ),
            ("kolbak.retry.5m", vec![partition(0, 0, 9, -1001, false)]),
        ]);
        let lag = consumer_lag(&stats);
        assert_eq!(lag.get("kolbak.events"), Some(&(60 + 15)));
        assert_eq!(lag.get("kolbak.retry.30s"), Some(&0));
        assert_eq!(
            lag.get("kolbak.retry.5m"),
            Some(&0),
            "not ours: nothing behind here"
        );
    }

    #[test]
    fn a_commit_past_the_watermark_is_no_negative_lag() {
        let stats = statistics(&[("t", vec![partition(0, 0, 5, 6, true)])]);
        assert_eq!(consumer_lag(&stats).get("t"), Some(&0));
    }
}
