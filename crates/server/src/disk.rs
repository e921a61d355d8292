//! The disk under the data directory: a reserve of free space below which the
//! node takes no new entries (issue #18, item 3).
//!
//! Raft cannot survive a write that fails: openraft stops the node on a storage
//! error (and the node then stops its process, `background::run_fatal_watch`),
//! and a node whose disk fills in the middle of a batch would stop with it. So
//! a node stops taking entries while it still has room: when the free space of
//! the data directory's file system is below `disk.reserve_bytes`,
//!
//! - as leader, new appends get `RESOURCE_EXHAUSTED` with a message that names
//!   the disk, and nothing of them is written (appends forwarded by a follower
//!   too: the leader's disk decides);
//! - as follower, the leader's `AppendEntries` carrying entries and its
//!   snapshots are refused, `RESOURCE_EXHAUSTED`; the leader backs off and
//!   retries (network.rs), and commits on the members that have room. Empty
//!   `AppendEntries` (heartbeats, commit index) are not refused, but openraft
//!   sends none to a member while it backs off from it, so they arrive only
//!   between refusals: the node applies what it holds as the commit index
//!   reaches it. It stands for no election while short
//!   (`Node::refresh_elections`): it misses heartbeats while the leader
//!   backs off, and would otherwise raise its term for nothing.
//!
//! What is already in the log, applying it, checkpoints and snapshots of this
//! node's own go on in the reserve. Once space is freed the node takes entries
//! again by itself, and a follower catches up. The free space is measured
//! every second; status (`Status.disk`) and the metric
//! `veritrail_disk_reserve_reached` show it, and the transitions are logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{NodeError, NodeResult};
use crate::node::Node;

/// How often the free space is measured.
pub const DISK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The last measure of the data directory's free space.
#[derive(Debug)]
pub struct DiskRoom {
    free: AtomicU64,
    reserve: u64,
}

impl DiskRoom {
    pub fn new(reserve: u64) -> Self {
        DiskRoom {
            // Until the first measure, assume room: the node checks at start.
            free: AtomicU64::new(u64::MAX),
            reserve,
        }
    }

    /// Why appends are refused now, or `None` while the disk has room.
    pub fn short(&self) -> Option<String> {
        let free = self.free.load(Ordering::Relaxed);
        (self.reserve > 0 && free < self.reserve).then(|| {
            format!(
                "the data directory's disk has {} MiB free, below the reserve of {} MiB \
                 (disk.reserve_bytes): this node takes no new entries until space is freed",
                free >> 20,
                self.reserve >> 20
            )
        })
    }

    fn set_free(&self, free: u64) {
        self.free.store(free, Ordering::Relaxed);
    }
}

/// Free bytes for this user on the file system of `dir`.
pub fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let fs = rustix::fs::statvfs(dir)?;
    Ok(fs.f_bavail.saturating_mul(fs.f_frsize))
}

/// Measures the free space every [`DISK_CHECK_EVERY`], keeping the reserve's
/// verdict, its metric and the free-space gauge current.
pub async fn run_disk_watch(node: Arc<Node>) {
    let mut ticker = tokio::time::interval(DISK_CHECK_EVERY);
    let mut was_short = false;
    loop {
        ticker.tick().await;
        let dir = node.config.data_dir.clone();
        let free = match tokio::task::spawn_blocking(move || free_bytes(&dir)).await {
            Ok(Ok(free)) => free,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "measuring the data directory's free space");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "measuring the data directory's free space");
                continue;
            }
        };
        node.disk.set_free(free);
        node.metrics.data_dir_free_bytes.set(free as i64);
        let short = node.disk.short();
        node.metrics
            .disk_reserve_reached
            .set(i64::from(short.is_some()));
        if short.is_some() != was_short {
            node.refresh_elections();
        }
        match (&short, was_short) {
            (Some(why), false) => tracing::error!("disk: {why}"),
            (None, true) => {
                tracing::info!("disk: free space is above the reserve again; entries are taken")
            }
            _ => {}
        }
        was_short = short.is_some();
    }
}

impl Node {
    /// Refuses new entries (an append, or the leader's entries for this
    /// follower) while the disk is below its reserve.
    pub(crate) fn disk_room(&self) -> NodeResult<()> {
        match self.disk.short() {
            Some(why) => Err(NodeError::ResourceExhausted(why)),
            None => Ok(()),
        }
    }
}
