//! Installing a received snapshot: its entries extend the local log, checked
//! as they go, and its point becomes the current one.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};

use openraft::SnapshotMeta;
use veritrail_core::note::SignedNote;
use veritrail_core::{Checkpoint, Entry, FORMAT_ENTRY_MAX_BYTES, entry_hash};

use super::format::{NOTE_MAX_BYTES, read_chunk, read_exact, read_header, verify_digest};
use super::point::{SnapshotRecord, Snapshots, record_current};
use crate::apply::Batch;
use crate::db::{CF_SM_META, KEY_LAST_APPLIED, KEY_MEMBERSHIP, KEY_TAIL, to_postcard};
use crate::error::{Result, StoreError};
use crate::stored::checkpoint_at;
use crate::types::NodeInfo;

/// Entries written per RocksDB batch during install: bounds install's memory.
const INSTALL_BATCH_ENTRIES: u64 = 4096;

/// Installs a received snapshot: verifies the file, extends the local log with
/// the entries it lacks, records the checkpoints, and records the snapshot as
/// the current one (its point; the received file is not kept).
pub(crate) fn install(
    snapshots: &Snapshots,
    meta: &SnapshotMeta<u64, NodeInfo>,
    mut file: File,
) -> Result<()> {
    let shared = &snapshots.shared;
    let _apply = shared.lock_apply();

    // Pass 1: check the whole file's digest.
    verify_digest(&mut file, &mut std::io::sink())?;

    // Pass 2: apply.
    file.seek(SeekFrom::Start(0))
        .map_err(|e| StoreError::io("seeking the incoming snapshot", e))?;
    let mut input = BufReader::new(file);
    let header = read_header(&mut input)?;
    if header.origin != shared.origin {
        return Err(StoreError::Snapshot(format!(
            "snapshot is of log {:?}, this node holds {:?}",
            header.origin, shared.origin
        )));
    }
    if header.meta.snapshot_id != meta.snapshot_id || header.meta.last_log_id != meta.last_log_id {
        return Err(StoreError::Snapshot(
            "the file's metadata is not the snapshot's".into(),
        ));
    }
    let local = shared.state().tail.clone();
    let mut batch = Batch::new(&shared.db, &shared.origin, local.clone());
    for seq in 0..header.size {
        let bytes = read_chunk(&mut input, FORMAT_ENTRY_MAX_BYTES as u32)?;
        if seq < local.size {
            // Our own entries must be a prefix of the snapshot's. Equal hashes at
            // the last one we hold imply equal entries before it.
            if seq + 1 == local.size && entry_hash(&bytes) != local.head {
                return Err(StoreError::Snapshot(format!(
                    "entry {seq} differs from this node's: the snapshot is of a different history"
                )));
            }
            continue;
        }
        let entry =
            Entry::decode(&bytes).map_err(|e| StoreError::Snapshot(format!("entry {seq}: {e}")))?;
        let hash = entry_hash(&bytes);
        let tail = &batch.tail;
        if entry.seq != seq
            || entry.prev_hash != tail.head
            || entry.timestamp_ns < tail.last_timestamp_ns
        {
            return Err(StoreError::Snapshot(format!(
                "entry {seq} does not extend the log before it"
            )));
        }
        batch.write_entry(entry, &bytes, hash)?;
        if batch.tail.size.is_multiple_of(INSTALL_BATCH_ENTRIES) {
            batch.flush()?;
            let mut state = shared.state();
            state.tail = batch.tail.clone();
            shared.size_tx.send_replace(state.tail.size);
        }
    }
    if header.size < local.size && header.size > 0 {
        let ours = checkpoint_at(&shared.db, &shared.origin, header.size)?;
        if ours.head.0 != header.head {
            return Err(StoreError::Snapshot(format!(
                "the snapshot's entry {} differs from this node's",
                header.size - 1
            )));
        }
    } else if batch.tail.root().0 != header.root || batch.tail.head.0 != header.head {
        return Err(StoreError::Snapshot(
            "the entries do not give the root and head the header states".into(),
        ));
    }
    batch.flush()?;
    loop {
        let mut tag = [0u8; 1];
        read_exact(&mut input, &mut tag)?;
        match tag[0] {
            0 => break,
            1 => {
                let mut size = [0u8; 8];
                read_exact(&mut input, &mut size)?;
                let size = u64::from_be_bytes(size);
                let note = String::from_utf8(read_chunk(&mut input, NOTE_MAX_BYTES)?)
                    .map_err(|_| StoreError::Snapshot(format!("checkpoint {size} is not UTF-8")))?;
                record_checkpoint(&mut batch, size, &note)?;
            }
            other => return Err(StoreError::Snapshot(format!("unknown record tag {other}"))),
        }
    }
    // Never move the applied position backwards: a snapshot older than what this
    // node applied only confirms its prefix.
    let current_applied = shared.state().last_applied;
    let (applied, membership) = if meta.last_log_id > current_applied {
        (meta.last_log_id, meta.last_membership.clone())
    } else {
        let state = shared.state();
        (state.last_applied, state.membership.clone())
    };
    let mut extra = std::mem::take(&mut batch.batch);
    extra.put_cf(
        shared.db.cf(CF_SM_META),
        KEY_LAST_APPLIED,
        to_postcard(&applied),
    );
    extra.put_cf(
        shared.db.cf(CF_SM_META),
        KEY_MEMBERSHIP,
        to_postcard(&membership),
    );
    extra.put_cf(shared.db.cf(CF_SM_META), KEY_TAIL, batch.tail.encode());
    let record = SnapshotRecord {
        meta: meta.clone(),
        size: header.size,
    };
    record_current(snapshots, &record, extra)?;
    let mut state = shared.state();
    state.last_applied = applied;
    state.membership = membership;
    state.tail = batch.tail.clone();
    shared.size_tx.send_replace(state.tail.size);
    tracing::info!(snapshot = %meta.snapshot_id, entries = state.tail.size, "snapshot installed");
    Ok(())
}

/// Records a checkpoint carried by a snapshot after checking it against the
/// entries. Its signatures were checked when the sender applied it.
fn record_checkpoint(batch: &mut Batch<'_>, size: u64, note: &str) -> Result<()> {
    if size > batch.tail.size {
        return Err(StoreError::Snapshot(format!(
            "checkpoint {size} is beyond the snapshot's entries"
        )));
    }
    let parsed = SignedNote::parse(note)
        .map_err(|e| StoreError::Snapshot(format!("checkpoint {size}: {e}")))?;
    let checkpoint = Checkpoint::parse(parsed.text())
        .map_err(|e| StoreError::Snapshot(format!("checkpoint {size}: {e}")))?;
    if checkpoint != batch.checkpoint_at(size)? {
        return Err(StoreError::Snapshot(format!(
            "checkpoint {size} does not match the entries"
        )));
    }
    batch.put_checkpoint(size, note);
    Ok(())
}
