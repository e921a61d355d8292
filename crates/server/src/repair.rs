//! Self-repair (issue #18, item 7): a node whose data fails its checks on
//! open moves it aside, rejoins empty under its own identity, and receives the
//! log again from the others, while the cluster keeps its quorum.
//!
//! # What the repaired node keeps, and why it must not vote until it holds
//! # its leader's log
//!
//! It keeps its vote: the store writes every vote a second time outside the
//! database (`veritrail_store`'s `vote_file`), and the emptied database takes
//! it back on open. A repair without that copy is refused (`begin`): a node
//! that forgot its vote could vote twice in a term, or take entries from the
//! leader of a term it had already left (say it had voted in term 7, and the
//! leader of term 6, cut off, reached it first), and let that leader commit
//! what term 7's leader overwrites.
//!
//! It loses its log. Say entry `e` was committed on {A, C} of {A, B, C}
//! while B lagged, and C then lost its data. If C, empty, voted for B while
//! A was down, B would lead without `e`, and `e`, acknowledged, would be
//! gone. So while it repairs, the node
//!
//! - grants no vote (`peer_service` declines every request), stands for no
//!   election (openraft's `enable_elect` off), takes no leadership transfer,
//!   and initializes no cluster;
//! - accepts a leader's entries (rule 2 of `senders.rs`: a node that holds no
//!   log takes the first leader that replicates to it, under the vote it
//!   kept), which are real: it syncs them before acknowledging them, as any
//!   follower does.
//!
//! It is done once it has applied an entry of its leader's current term. A
//! leader's first entry in its term commits only after every entry before it,
//! and a leader's log holds every committed entry (Raft's leader
//! completeness, which needed no vote of this node's since it lost its
//! data): so the node then holds every entry it could have acknowledged
//! before. Then it removes the marker and votes again.
//!
//! A marker file, `repairing` in the data directory, is written and synced
//! before anything is moved and removed only when the repair is done: a node
//! that stops halfway, or any time before it is done, repairs on at its next
//! start, and never votes from an empty log it did not know was empty. Two
//! voters of three repairing at once leave no majority able to elect a leader:
//! the cluster waits for a person rather than risk history.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::node::Node;

/// The marker's name in the data directory.
pub const MARKER: &str = "repairing";

/// Whether this node is repairing: set from the marker at start, cleared
/// once the repair is done.
#[derive(Debug, Default)]
pub struct Repair {
    active: AtomicBool,
    /// Serializes `Node::refresh_elections`, so that the last caller's
    /// verdict, made from the latest state, is the one in force.
    pub(crate) elections: std::sync::Mutex<()>,
}

impl Repair {
    /// The state the data directory's marker says. A marker that cannot be
    /// looked for (an I/O error) is an error: taking it for absent would let
    /// a node vote from a log it does not know is empty.
    pub fn load(data_dir: &Path) -> Result<Self, String> {
        let marker = data_dir.join(MARKER);
        let active = marker
            .try_exists()
            .map_err(|e| format!("looking for {}: {e}", marker.display()))?;
        Ok(Repair {
            active: AtomicBool::new(active),
            elections: std::sync::Mutex::new(()),
        })
    }

    /// True while the node may not vote or stand for election.
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }
}

/// Starts a repair of the stopped node's data directory `data_dir`: checks
/// that the node's vote can be carried over (`veritrail_store` keeps it in a
/// file of its own), writes and syncs the marker with `reason`, then moves
/// the state aside (`veritrail_store::set_aside`). Returns where it went.
pub fn begin(data_dir: &Path, reason: &str) -> Result<PathBuf, String> {
    match veritrail_store::saved_vote(data_dir) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(format!(
                "not repairing: {} holds no copy of this node's Raft vote (a node that never \
                 voted on this release); an empty node under its old id could vote twice. \
                 Replace it under a new id (docs/OPERATIONS.md section 4)",
                data_dir.display()
            ));
        }
        Err(e) => {
            return Err(format!(
                "not repairing: {e}; an empty node under its old id could vote twice. Replace \
                 it under a new id (docs/OPERATIONS.md section 4)"
            ));
        }
    }
    crate::keys::write_durably(
        &data_dir.join(MARKER),
        &format!(
            "This node's data failed its checks and was moved aside; the node takes no part \
             in elections until it holds its leader's log again (docs/OPERATIONS.md section \
             8).\nreason: {reason}\n"
        ),
    )?;
    let aside = veritrail_store::set_aside(data_dir, reason)
        .map_err(|e| format!("moving the damaged data aside: {e}"))?;
    Ok(aside.dir)
}

/// How often the repair's progress is checked.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// How often a repair that waits says so.
const SAY_EVERY: Duration = Duration::from_secs(10);

/// Finishes the repair once the node has applied an entry of its leader's
/// term: removes the marker, and lets the node vote and stand again.
pub async fn run_repair_watch(node: Arc<Node>) {
    if !node.repair.active() {
        return;
    }
    node.metrics.repairing.set(1);
    let mut every = tokio::time::interval(CHECK_EVERY);
    let mut said = tokio::time::Instant::now();
    loop {
        every.tick().await;
        let m = node.raft_metrics();
        let done = m.current_leader.is_some_and(|l| l != node.id)
            && m.last_applied
                .is_some_and(|applied| applied.leader_id.term == m.current_term);
        if !done {
            if said.elapsed() >= SAY_EVERY {
                said = tokio::time::Instant::now();
                tracing::warn!(
                    leader = ?m.current_leader,
                    applied = ?m.last_applied.map(|l| l.index),
                    "repairing: waiting to hold the leader's log; this node does not vote yet"
                );
            }
            continue;
        }
        let dir = node.config.data_dir.clone();
        let removed = tokio::task::spawn_blocking(move || {
            std::fs::remove_file(dir.join(MARKER))
                .map_err(|e| format!("removing {}: {e}", dir.join(MARKER).display()))?;
            crate::keys::sync_dir(&dir)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(e) = removed {
            // Still repairing, and says so at the next start too: safe.
            tracing::error!(error = %e, "repair: cannot remove the marker; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        node.repair.active.store(false, Ordering::Release);
        node.refresh_elections();
        node.metrics.repairing.set(0);
        tracing::info!(
            applied = ?m.last_applied.map(|l| l.index),
            term = m.current_term,
            "repair done: this node holds its leader's log and votes again"
        );
        return;
    }
}
