//! Whether this node's view of the log is current, or behind the cluster's.
//!
//! A node cut off from its peers, or one that replication left behind, still
//! answers from its own store. Its answers are true of the log up to where it
//! got, but presented as "the latest" they mislead: an auditor took a stale
//! checkpoint for the current one, an export stopped short without a word, and
//! a tail waited for minutes on entries that never came (issue #23, item 3).
//! So a node knows when it is behind, says so in its status, refuses reads that
//! must be current (linearizable ones, the latest checkpoint) at once instead of
//! timing out, and ends its tails so that clients resume on another node.
//!
//! # When a node is behind
//!
//! For `stale_after` (three times the longest election timeout, so that an
//! election in progress does not count) one of these has held:
//!
//! - a follower, learner or candidate has admitted no message from a leader
//!   (a leader sends a heartbeat every `raft.heartbeat_ms`);
//! - a follower has not applied up to a commit index a leader announced to it;
//! - a leader has not heard from a quorum (it may have been deposed on the
//!   other side of a partition).

use std::time::Duration;

use openraft::ServerState;

use crate::node::Node;

impl Node {
    /// How long a node may go without news from its leader, or without
    /// applying what the leader committed, before it counts as behind.
    pub fn stale_after(&self) -> Duration {
        Duration::from_millis(3 * self.config.raft.election_timeout_max_ms)
    }

    /// Why this node's view may be behind the cluster's, or `None` when it is
    /// current as far as it can tell.
    pub fn behind(&self) -> Option<String> {
        let stale_after = self.stale_after();
        let (state, quorum_ack_ms, applied) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            (
                m.state,
                m.millis_since_quorum_ack,
                m.last_applied.map(|l| l.index),
            )
        };
        if state == ServerState::Leader {
            return quorum_ack_ms
                .map(Duration::from_millis)
                .filter(|since| *since > stale_after)
                .map(|since| {
                    format!(
                        "it leads, but has not heard from a quorum for {:.1} s",
                        since.as_secs_f64()
                    )
                });
        }
        let quiet = self
            .senders
            .since_led()
            .unwrap_or_else(|| self.senders.started.elapsed());
        if quiet > stale_after {
            return Some(format!(
                "it has not heard from a leader for {:.1} s",
                quiet.as_secs_f64()
            ));
        }
        let mut target = self
            .senders
            .target
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match *target {
            Some((_, commit)) if applied.is_some_and(|a| a >= commit) => {
                *target = None;
                None
            }
            Some((since, commit)) if since.elapsed() > stale_after => Some(format!(
                "it has applied the Raft log up to index {}, short of index {commit} that \
                 the leader committed {:.1} s ago",
                applied.map_or("-".to_owned(), |a| a.to_string()),
                since.elapsed().as_secs_f64()
            )),
            _ => None,
        }
    }
}
