//! Restoring a backup into an empty data directory (docs/OPERATIONS.md,
//! backup and restore).
//!
//! It sits above both halves of the store because it sets both: the state
//! machine through a snapshot install, and the Raft vote through the log
//! store, which alone writes the vote.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;

use openraft::Vote;
use veritrail_core::Hash;

use crate::error::{Result, StoreError};
use crate::log_store::LogStore;
use crate::snapshot::{Snapshots, install, read_meta};

/// What [`restore`] put in place.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub tree_size: u64,
    pub root: Hash,
    pub last_log_index: u64,
    /// The members the backup names, `(id, addr, voter)`: the restored node
    /// expects to find them there.
    pub members: Vec<(u64, String, bool)>,
}

/// Restores a backup into an empty store (docs/OPERATIONS.md): the entries and
/// checkpoints, checked as a received snapshot is, and the Raft state the backup
/// stands at (applied index, membership). The vote is set to the backup's last
/// term, so that the next election starts past every term the log holds.
pub(crate) fn restore(
    snapshots: &Snapshots,
    backup_path: &Path,
    node_id: u64,
) -> Result<RestoreReport> {
    let shared = &snapshots.shared;
    {
        let state = shared.state();
        let vote = LogStore::stored_vote(shared)?;
        if state.tail.size > 0 || state.last_applied.is_some() || vote.is_some() {
            return Err(StoreError::Snapshot(format!(
                "the data directory already holds a node's state ({} entries): restore \
                 only into an empty one",
                state.tail.size
            )));
        }
    }
    let mut file = File::open(backup_path)
        .map_err(|e| StoreError::io(format!("opening {}", backup_path.display()), e))?;
    let (origin, meta) = read_meta(&mut file)?;
    if origin != shared.origin {
        return Err(StoreError::Snapshot(format!(
            "the backup is of log {origin:?}, this node is configured for {:?}",
            shared.origin
        )));
    }
    let Some(last) = meta.last_log_id else {
        return Err(StoreError::Snapshot(
            "the backup stands before the first Raft entry: nothing to restore".into(),
        ));
    };
    let membership = meta.last_membership.membership();
    if membership.get_node(&node_id).is_none() {
        let ids: Vec<u64> = membership.nodes().map(|(id, _)| *id).collect();
        return Err(StoreError::Snapshot(format!(
            "node {node_id} is not a member of the backup's cluster (members {ids:?}): restore \
             the members, then add new nodes as usual"
        )));
    }
    install(snapshots, &meta, file)?;
    let vote = Vote::new(last.leader_id.term, last.leader_id.node_id);
    LogStore::write_vote(shared, &vote)?;
    let state = shared.state();
    let membership = meta.last_membership.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, node)| (*id, node.addr.clone(), voters.contains(id)))
        .collect();
    Ok(RestoreReport {
        tree_size: state.tail.size,
        root: state.tail.root(),
        last_log_index: last.index,
        members,
    })
}
