//! The snapshot point: which entries the current snapshot holds, recorded in
//! `sm_meta/snapshot_point` and kept in memory, and the rules for moving it.
//!
//! The current point lives here, beside the only code that changes it (build
//! and install), rather than in the shared state: the shared state is below
//! the snapshots, which use it, and must not need them back.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::SnapshotMeta;
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::db::{CF_SM_META, KEY_SNAPSHOT, KEY_SNAPSHOT_V1, to_postcard};
use crate::error::Result;
use crate::shared::Shared;
use crate::types::NodeInfo;

/// The current snapshot: a point of the append-only log, not a copy of it.
///
/// Entries never change once applied, so the state as of `meta.last_log_id` is
/// the first `size` entries (plus the checkpoints recorded for sizes up to
/// `size`), and recording a snapshot costs one small synced write whatever the
/// log's size. The file a follower is sent is written only when one is needed
/// (`snapshot::SnapshotFile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotRecord {
    pub meta: SnapshotMeta<u64, NodeInfo>,
    /// Entries in the snapshot.
    pub size: u64,
}

impl SnapshotRecord {
    /// The name of the snapshot's file in the snapshot directory, once written.
    pub(crate) fn file_name(&self) -> String {
        format!("{}.snap", self.meta.snapshot_id)
    }
}

/// The current snapshot point of one store, and the lock its files are
/// written under. Cheap to share: the state machine, its snapshot files and
/// the reader hold it behind an `Arc`.
#[derive(Debug)]
pub(crate) struct Snapshots {
    pub shared: Arc<Shared>,
    /// Changed only by build and install, which hold the apply lock: that
    /// makes `record_current`'s compare-then-write one step.
    current: Mutex<Option<SnapshotRecord>>,
    /// Serializes the writing of snapshot files, so that two followers
    /// needing the same snapshot share one file.
    files: Mutex<()>,
}

impl Snapshots {
    /// Loads the current point of the store `shared` opened, drops the record
    /// earlier versions kept, and removes every snapshot file but the current
    /// one's.
    pub(crate) fn open(shared: Arc<Shared>) -> Result<Self> {
        let current: Option<SnapshotRecord> = shared.db.get_postcard(CF_SM_META, KEY_SNAPSHOT)?;
        if shared.db.get(CF_SM_META, KEY_SNAPSHOT_V1)?.is_some() {
            // Written by versions that copied the log into a file at every
            // snapshot. Dropping the record only makes openraft build a new one.
            let mut batch = WriteBatch::default();
            batch.delete_cf(shared.db.cf(CF_SM_META), KEY_SNAPSHOT_V1);
            shared.db.write_synced(batch)?;
        }
        remove_stale_files(&shared.snapshot_dir(), current.as_ref());
        Ok(Snapshots {
            shared,
            current: Mutex::new(current),
            files: Mutex::new(()),
        })
    }

    /// The current snapshot point, if one was recorded.
    pub(crate) fn current(&self) -> Option<SnapshotRecord> {
        self.lock_current().clone()
    }

    fn lock_current(&self) -> MutexGuard<'_, Option<SnapshotRecord>> {
        // Only whole values are stored under this lock, so a panic elsewhere
        // while holding it leaves the last one stored.
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn lock_files(&self) -> MutexGuard<'_, ()> {
        self.files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Records a snapshot of everything applied so far as the current one.
pub(crate) fn build(snapshots: &Snapshots) -> Result<SnapshotRecord> {
    let _apply = snapshots.shared.lock_apply();
    let record = current_point(&snapshots.shared, "");
    record_current(snapshots, &record, WriteBatch::default())?;
    tracing::info!(snapshot = %record.meta.snapshot_id, entries = record.size, "snapshot recorded");
    Ok(record)
}

/// The applied point of the log, named uniquely. The caller holds the apply lock.
pub(crate) fn current_point(shared: &Shared, prefix: &str) -> SnapshotRecord {
    let state = shared.state();
    let unique = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    SnapshotRecord {
        meta: SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id: format!(
                "{prefix}{}-{}-{unique:x}",
                state.last_applied.map_or(0, |l| l.index),
                state.tail.size
            ),
        },
        size: state.tail.size,
    }
}

/// Makes `record` the current snapshot, in one synced write with `batch`,
/// unless the current one is newer (a snapshot never moves backwards: openraft
/// may have purged its log up to the newer one). The caller holds the apply
/// lock. Files of other snapshots are removed.
pub(crate) fn record_current(
    snapshots: &Snapshots,
    record: &SnapshotRecord,
    mut batch: WriteBatch,
) -> Result<()> {
    let shared = &snapshots.shared;
    let newer = snapshots
        .lock_current()
        .as_ref()
        .is_none_or(|current| record.meta.last_log_id >= current.meta.last_log_id);
    if newer {
        batch.put_cf(shared.db.cf(CF_SM_META), KEY_SNAPSHOT, to_postcard(record));
    }
    shared.db.write_synced(batch)?;
    if newer {
        *snapshots.lock_current() = Some(record.clone());
        remove_other_files(shared, &record.file_name());
    }
    Ok(())
}

/// Removes written snapshot files other than `keep`. A reader still holding
/// one open keeps reading it: the name goes, the data stays until closed.
fn remove_other_files(shared: &Shared, keep: &str) {
    let dir = shared.snapshot_dir();
    let Ok(listing) = std::fs::read_dir(&dir) else {
        return;
    };
    for item in listing.flatten() {
        let name = item.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".snap")
            && name != keep
            && let Err(e) = std::fs::remove_file(item.path())
        {
            tracing::warn!(file = %item.path().display(), error = %e, "could not remove an earlier snapshot file");
        }
    }
}

/// Removes snapshot files other than the current one's: leftovers of a write or a
/// transfer that a crash interrupted, and files of earlier snapshots.
fn remove_stale_files(dir: &Path, current: Option<&SnapshotRecord>) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    for item in listing.flatten() {
        let name = item.file_name();
        if current.is_some_and(|c| name.to_string_lossy() == c.file_name()) {
            continue;
        }
        if let Err(e) = std::fs::remove_file(item.path()) {
            tracing::warn!(file = %item.path().display(), error = %e, "could not remove stale snapshot file");
        }
    }
}
