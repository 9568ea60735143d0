//! [`OffsetTracker`]: which offset of one Kafka partition may be committed while its records
//! are processed concurrently and finish out of order — the highest contiguous completed
//! offset, so a restart never skips a record that was still in flight.

use std::collections::BTreeSet;

/// Records started and finished on one partition.
#[derive(Debug, Default, Clone)]
pub struct OffsetTracker {
    /// Started, not yet finished.
    in_flight: BTreeSet<i64>,
    /// Highest offset started.
    highest: Option<i64>,
    /// The last offset handed out by [`OffsetTracker::take_commit`].
    committed: Option<i64>,
}

impl OffsetTracker {
    /// Notes that the record at `offset` is being processed.
    pub fn start(&mut self, offset: i64) {
        self.in_flight.insert(offset);
        self.highest = Some(self.highest.map_or(offset, |h| h.max(offset)));
    }

    /// Notes that the record at `offset` is done (delivered, handed off or dead-lettered).
    pub fn finish(&mut self, offset: i64) {
        self.in_flight.remove(&offset);
    }

    /// Records still in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The offset to commit (Kafka's convention: the next record to read): the oldest record
    /// still in flight, else one past the highest started. `None` before anything started.
    pub fn committable(&self) -> Option<i64> {
        match self.in_flight.first() {
            Some(oldest) => Some(*oldest),
            None => self.highest.map(|h| h + 1),
        }
    }

    /// [`OffsetTracker::committable`] when it moved since the last call, else `None`.
    pub fn take_commit(&mut self) -> Option<i64> {
        let next = self.committable()?;
        if self.committed.is_some_and(|c| c >= next) {
            return None;
        }
        self.committed = Some(next);
        Some(next)
    }

    /// Notes that the commit of `offset` (from [`OffsetTracker::take_commit`]) failed, so the
    /// next call offers the committable offset again. A failure of an older commit, after a
    /// newer one was handed out, changes nothing: the newer one covers it.
    pub fn commit_failed(&mut self, offset: i64) {
        if self.committed == Some(offset) {
            self.committed = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_up_to_the_oldest_record_in_flight() {
        let mut tracker = OffsetTracker::default();
        assert_eq!(tracker.committable(), None);
        for offset in 10..15 {
            tracker.start(offset);
        }
        assert_eq!(tracker.take_commit(), Some(10));
        tracker.finish(11);
        tracker.finish(13);
        assert_eq!(tracker.take_commit(), None, "10 is still in flight");
        tracker.finish(10);
        assert_eq!(tracker.take_commit(), Some(12));
        tracker.finish(12);
        tracker.finish(14);
        assert_eq!(tracker.in_flight(), 0);
        assert_eq!(tracker.take_commit(), Some(15));
        assert_eq!(tracker.take_commit(), None);
    }

    #[test]
    fn a_failed_commit_is_offered_again() {
        let mut tracker = OffsetTracker::default();
        tracker.start(0);
        tracker.finish(0);
        assert_eq!(tracker.take_commit(), Some(1));
        tracker.commit_failed(1);
        assert_eq!(tracker.take_commit(), Some(1), "offered again");
        tracker.start(1);
        tracker.finish(1);
        assert_eq!(tracker.take_commit(), Some(2));
        // The answer to the commit of 1 came late: 2 is out already and covers it.
        tracker.commit_failed(1);
        assert_eq!(tracker.take_commit(), None);
    }

    #[test]
    fn gaps_in_offsets_do_not_hold_commits_back() {
        // Compaction and transaction markers leave offsets that are never delivered.
        let mut tracker = OffsetTracker::default();
        tracker.start(3);
        tracker.start(7);
        tracker.finish(3);
        assert_eq!(tracker.committable(), Some(7));
        tracker.finish(7);
        assert_eq!(tracker.committable(), Some(8));
    }

    #[test]
    fn a_record_started_again_after_a_seek_is_tracked_once() {
        let mut tracker = OffsetTracker::default();
        tracker.start(5);
        tracker.finish(5);
        // A tier partition sought back to 6 delivers 6 again later.
        tracker.start(6);
        tracker.start(6);
        tracker.finish(6);
        assert_eq!(tracker.committable(), Some(7));
    }
}
