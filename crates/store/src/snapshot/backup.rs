//! Online backups: a snapshot-format file of everything this node applied, as
//! of one applied index, that `veritraild restore` installs into an empty node.

use std::fs::File;
use std::io::{Seek, SeekFrom};

use veritrail_core::Hash;

use super::format::{io, write_file};
use super::point::current_point;
use crate::error::Result;
use crate::shared::Shared;

/// A backup: a snapshot file of everything applied, open for reading, already
/// unlinked (nothing is left behind whatever happens to the reader).
#[derive(Debug)]
pub struct Backup {
    pub file: File,
    /// Bytes in the file.
    pub bytes: u64,
    /// Entries in the backup, and their Merkle root.
    pub tree_size: u64,
    pub root: Hash,
    /// The Raft log index the backup stands at.
    pub last_log_index: u64,
}

/// Writes a backup of this node's state (docs/OPERATIONS.md, backup and
/// restore): the snapshot format, consistent as of one applied index, without
/// touching openraft's own snapshots.
pub(crate) fn backup(shared: &Shared) -> Result<Backup> {
    let record = {
        let _apply = shared.lock_apply();
        current_point(shared, "backup-")
    };
    let (path, mut file, root) = write_file(shared, &record)?;
    std::fs::remove_file(&path).map_err(io("removing", &path))?;
    file.seek(SeekFrom::Start(0))
        .map_err(io("rewinding", &path))?;
    let bytes = file.metadata().map_err(io("sizing", &path))?.len();
    Ok(Backup {
        file,
        bytes,
        tree_size: record.size,
        root,
        last_log_index: record.meta.last_log_id.map_or(0, |l| l.index),
    })
}
