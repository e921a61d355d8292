//! How far each member is behind the leader, and which members are stuck
//! (issue #22): a follower that stops advancing costs the cluster its fault
//! tolerance without any append failing, so the leader measures every
//! member's lag, shows it in status and metrics, and says so in its log when
//! one stops moving.
//!
//! Lag is counted from the leader's log: the Raft entries past the member's
//! matched index, their stored bytes, and the age of the oldest of them
//! ([`veritrail_store::LogLedger`]). A member is *stuck* when it has been
//! behind without its matched index moving for `raft.replication_stuck_after_ms`;
//! the reason given is what the network layer last saw of its messages
//! ([`crate::network::ReplicationHealth`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::{RaftMetrics, ServerState};
use veritrail_store::{LogLedger, NodeInfo};

use crate::network::ReplicationHealth;

/// One member's replication, as the leader sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberLag {
    /// The last Raft index the member is known to hold.
    pub matched: Option<u64>,
    pub entries: u64,
    pub bytes: u64,
    pub age: Duration,
    /// Behind without moving for longer than the stuck bound.
    pub stuck: bool,
    /// Why replication is not moving, when the network layer knows.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    matched: Option<u64>,
    /// Since when `matched` has not moved while the member was behind.
    since: Instant,
    /// Whether the log last said this member is stuck.
    reported_stuck: bool,
}

/// The leader's view of its members' replication. Shared by the status call,
/// the metrics and the monitor task.
#[derive(Debug)]
pub struct Replication {
    ledger: Arc<LogLedger>,
    health: ReplicationHealth,
    stuck_after: Duration,
    progress: Mutex<BTreeMap<u64, Progress>>,
}

impl Replication {
    pub fn new(ledger: Arc<LogLedger>, health: ReplicationHealth, stuck_after: Duration) -> Self {
        Replication {
            ledger,
            health,
            stuck_after,
            progress: Mutex::default(),
        }
    }

    /// Every member's lag as of `now`; empty unless this node leads. With
    /// `report`, also returns the members whose stuck state changed since
    /// the last report, and counts them as reported.
    fn observe(
        &self,
        metrics: &RaftMetrics<u64, NodeInfo>,
        now: Instant,
        report: bool,
    ) -> (BTreeMap<u64, MemberLag>, Vec<(u64, MemberLag)>) {
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        let replication = match (&metrics.state, &metrics.replication) {
            (ServerState::Leader, Some(replication)) => replication,
            _ => {
                progress.clear();
                return (BTreeMap::new(), Vec::new());
            }
        };
        progress.retain(|id, _| replication.contains_key(id));
        let mut lags = BTreeMap::new();
        let mut changed = Vec::new();
        for (id, matched) in replication {
            if *id == metrics.id {
                continue;
            }
            let matched = matched.map(|l| l.index);
            let lag = self.ledger.behind(matched, now);
            let p = progress.entry(*id).or_insert(Progress {
                matched,
                since: now,
                reported_stuck: false,
            });
            if p.matched != matched || lag.entries == 0 {
                p.matched = matched;
                p.since = now;
            }
            let stuck =
                lag.entries > 0 && now.saturating_duration_since(p.since) >= self.stuck_after;
            let member = MemberLag {
                matched,
                entries: lag.entries,
                bytes: lag.bytes,
                age: lag.age,
                stuck,
                reason: self.health.get(*id).and_then(|h| h.reason(now)),
            };
            if report && stuck != p.reported_stuck {
                p.reported_stuck = stuck;
                changed.push((*id, member.clone()));
            }
            lags.insert(*id, member);
        }
        (lags, changed)
    }

    /// Every member's lag now (leader only; empty elsewhere).
    pub fn lags(&self, metrics: &RaftMetrics<u64, NodeInfo>) -> BTreeMap<u64, MemberLag> {
        self.observe(metrics, Instant::now(), false).0
    }

    /// One round of the monitor: the lags, with a log line for each member
    /// that became stuck (once) or moved again.
    pub fn tick(&self, metrics: &RaftMetrics<u64, NodeInfo>) -> BTreeMap<u64, MemberLag> {
        let (lags, changed) = self.observe(metrics, Instant::now(), true);
        for (id, lag) in changed {
            if lag.stuck {
                tracing::warn!(
                    target = id,
                    matched = ?lag.matched,
                    lag_entries = lag.entries,
                    lag_bytes = lag.bytes,
                    lag_ms = lag.age.as_millis() as u64,
                    stuck_after_ms = self.stuck_after.as_millis() as u64,
                    reason = lag.reason.as_deref().unwrap_or("unknown: no message has failed"),
                    "replication stuck: node {id} has not advanced for {} s while {} entries behind",
                    self.stuck_after.as_secs(),
                    lag.entries
                );
            } else {
                tracing::info!(
                    target = id,
                    matched = ?lag.matched,
                    lag_entries = lag.entries,
                    "replication to node {id} is moving again"
                );
            }
        }
        lags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId};

    fn leader_metrics(matched: &[(u64, Option<u64>)]) -> RaftMetrics<u64, NodeInfo> {
        let mut m = RaftMetrics::new_initial(1);
        m.state = ServerState::Leader;
        m.replication = Some(
            matched
                .iter()
                .map(|(id, i)| (*id, i.map(|i| LogId::new(CommittedLeaderId::new(1, 1), i))))
                .collect(),
        );
        m
    }

    #[test]
    fn a_member_that_stops_moving_while_behind_is_stuck_once() {
        let ledger = Arc::new(LogLedger::default());
        let r = Replication::new(
            Arc::clone(&ledger),
            ReplicationHealth::default(),
            Duration::from_secs(5),
        );
        let t0 = Instant::now();
        ledger.appended((1..=10).map(|i| (i, 100)), t0);
        let metrics = leader_metrics(&[(1, Some(10)), (2, Some(10)), (3, Some(4))]);
        let (lags, changed) = r.observe(&metrics, t0, true);
        assert!(changed.is_empty());
        assert!(!lags.contains_key(&1), "the leader is not its own member");
        assert_eq!(
            lags[&2],
            MemberLag {
                matched: Some(10),
                ..MemberLag::default()
            }
        );
        assert_eq!((lags[&3].entries, lags[&3].bytes), (6, 600));
        assert!(!lags[&3].stuck);

        // Node 3 does not move for the bound: stuck, reported once.
        let later = t0 + Duration::from_secs(6);
        let (lags, changed) = r.observe(&metrics, later, true);
        assert!(lags[&3].stuck && !lags[&2].stuck);
        assert_eq!(lags[&3].age, Duration::from_secs(6));
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].0, 3);
        assert!(
            r.observe(&metrics, later + Duration::from_secs(1), true)
                .1
                .is_empty()
        );

        // It moves: no longer stuck, reported once.
        let moved = leader_metrics(&[(1, Some(10)), (2, Some(10)), (3, Some(7))]);
        let (lags, changed) = r.observe(&moved, later + Duration::from_secs(2), true);
        assert!(!lags[&3].stuck);
        assert_eq!(changed.len(), 1);

        // Not leader: nothing to report.
        let mut follower = metrics.clone();
        follower.state = ServerState::Follower;
        assert!(r.observe(&follower, t0, true).0.is_empty());
    }
}
