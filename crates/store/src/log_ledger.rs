//! What each Raft log entry this node holds weighs, and when it arrived: the
//! leader's measure of how far behind a follower is, in bytes and in time as
//! well as in entries.
//!
//! The ledger mirrors the `raft_log` column family in memory: one small record
//! per held entry (index, running byte total, arrival time), kept in step by
//! the log store's append, truncate and purge, so it is as long as the Raft
//! log, which snapshots keep short. At open it is seeded from the stored log;
//! entries found there count as arrived at open, so after a restart a lag's
//! age is at most the time since the restart until those entries are matched.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Held {
    index: u64,
    bytes: u64,
    /// Bytes of this entry and every entry recorded before it.
    total_bytes: u64,
    arrived: Instant,
}

/// How far a member is behind this node's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lag {
    /// Raft entries past the member's matched index (some may be purged
    /// here already: the member then needs a snapshot).
    pub entries: u64,
    /// Their stored size. When the member is behind the oldest held entry
    /// (purged, or before a restart), only the held entries are counted.
    pub bytes: u64,
    /// How long ago the oldest of them arrived here.
    pub age: Duration,
}

/// The ledger. Cheap to share behind the store's `Arc`.
#[derive(Debug, Default)]
pub struct LogLedger {
    held: Mutex<VecDeque<Held>>,
}

impl LogLedger {
    fn held(&self) -> MutexGuard<'_, VecDeque<Held>> {
        // Every method leaves the deque consistent between two statements.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records entries written to the log (in index order), replacing any held
    /// at the same or later indexes (a follower's log overwritten by a new
    /// leader). The log store calls this after each synced append.
    pub fn appended(&self, entries: impl IntoIterator<Item = (u64, u64)>, at: Instant) {
        let mut held = self.held();
        for (index, bytes) in entries {
            while held.back().is_some_and(|h| h.index >= index) {
                held.pop_back();
            }
            // A gap (entries installed by snapshot) restarts the count.
            if held.back().is_some_and(|h| h.index + 1 != index) {
                held.clear();
            }
            let total_bytes = held.back().map_or(0, |h| h.total_bytes) + bytes;
            held.push_back(Held {
                index,
                bytes,
                total_bytes,
                arrived: at,
            });
        }
    }

    /// Forgets entries from `index` on (the log was truncated there).
    pub(crate) fn truncated(&self, index: u64) {
        let mut held = self.held();
        while held.back().is_some_and(|h| h.index >= index) {
            held.pop_back();
        }
    }

    /// Forgets entries up to and including `index` (the log was purged).
    pub(crate) fn purged(&self, index: u64) {
        let mut held = self.held();
        while held.front().is_some_and(|h| h.index <= index) {
            held.pop_front();
        }
    }

    /// How far a member whose log matches this one up to `matched` (an index;
    /// `None` for nothing) is behind, as of `now`.
    pub fn behind(&self, matched: Option<u64>, now: Instant) -> Lag {
        let held = self.held();
        let (Some(first), Some(last)) = (held.front(), held.back()) else {
            return Lag::default();
        };
        let next = matched.map_or(0, |m| m.saturating_add(1));
        if next > last.index {
            return Lag::default();
        }
        // Indexes are contiguous, so the first entry the member lacks is found
        // by its distance from the front.
        let missing = if next <= first.index {
            *first
        } else {
            held[(next - first.index) as usize]
        };
        let before = if next <= first.index {
            first.total_bytes - first.bytes
        } else {
            held[(next - first.index - 1) as usize].total_bytes
        };
        Lag {
            entries: last.index - next + 1,
            bytes: last.total_bytes - before,
            age: now.saturating_duration_since(missing.arrived),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(indexes: std::ops::RangeInclusive<u64>, at: Instant) -> LogLedger {
        let l = LogLedger::default();
        l.appended(indexes.map(|i| (i, 10 * i)), at);
        l
    }

    #[test]
    fn lag_counts_entries_bytes_and_age_of_the_first_missing() {
        let t0 = Instant::now();
        let l = ledger(1..=3, t0);
        l.appended([(4, 40)], t0 + Duration::from_secs(5));
        let now = t0 + Duration::from_secs(7);
        assert_eq!(l.behind(Some(4), now), Lag::default());
        assert_eq!(
            l.behind(Some(3), now),
            Lag {
                entries: 1,
                bytes: 40,
                age: Duration::from_secs(2)
            }
        );
        assert_eq!(
            l.behind(Some(1), now),
            Lag {
                entries: 3,
                bytes: 90,
                age: Duration::from_secs(7)
            }
        );
        assert_eq!(l.behind(Some(0), now).entries, 4);
        assert_eq!(l.behind(Some(0), now).bytes, 100);
        // Nothing matched: indexes start at 0, which this ledger never held.
        assert_eq!(l.behind(None, now).entries, 5);
    }

    #[test]
    fn purged_and_truncated_entries_leave_the_count() {
        let t0 = Instant::now();
        let l = ledger(1..=10, t0);
        l.purged(5);
        // Behind the oldest held entry: the held entries are what is counted.
        assert_eq!(l.behind(Some(2), t0).entries, 8);
        assert_eq!(
            l.behind(Some(2), t0).bytes,
            (6..=10).map(|i| 10 * i).sum::<u64>()
        );
        l.truncated(9);
        assert_eq!(l.behind(Some(5), t0).entries, 3);
        // A new leader's entries replace the follower's from index 8 on.
        l.appended([(8, 1), (9, 1)], t0);
        assert_eq!(l.behind(Some(7), t0).bytes, 2);
    }

    #[test]
    fn a_gap_restarts_the_ledger() {
        let t0 = Instant::now();
        let l = ledger(1..=3, t0);
        l.appended([(100, 7)], t0);
        assert_eq!(l.behind(Some(99), t0).bytes, 7);
        assert_eq!(l.behind(Some(3), t0).entries, 97);
        assert_eq!(l.behind(Some(3), t0).bytes, 7);
    }
}
