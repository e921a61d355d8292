//! Snapshots of an append-only log, streamed through files so that memory stays
//! bounded whatever the log's size.
//!
//! # File format (version 1)
//!
//! ```text
//! "VTSNAP01"                         8-byte magic
//! u32 length, postcard SnapshotHeader
//! size × (u32 length, canonical entry bytes)      entries 0 .. size, in order
//! repeated (0x01, u64 tree size, u32 length, signed note)   recorded checkpoints
//! 0x00                               end of checkpoints
//! 32 bytes                           SHA-256 of every byte before it
//! ```
//!
//! Only entries and checkpoints travel: indexes, Merkle nodes and the tail are
//! recomputed on install. That also re-verifies the chain: an installing node
//! accepts only entries that extend its own log, and it checks that its own log is
//! a prefix of the snapshot. A committed history never changes, so a snapshot that
//! disagrees with the local prefix means one copy is corrupt, and install refuses.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftSnapshotBuilder, Snapshot};
use openraft::{ErrorSubject, ErrorVerb, SnapshotMeta, StorageError};
use rocksdb::{IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use veritrail_core::note::SignedNote;
use veritrail_core::{Checkpoint, Entry, FORMAT_ENTRY_MAX_BYTES, Hash, entry_hash};

use crate::apply::Batch;
use crate::db::{
    CF_CHECKPOINTS, CF_ENTRIES, CF_SM_META, KEY_LAST_APPLIED, KEY_MEMBERSHIP, KEY_SNAPSHOT,
    read_u64_key, to_postcard,
};
use crate::error::{Result, StoreError};
use crate::shared::{Shared, SnapshotRecord, blocking};
use crate::types::{NodeInfo, TypeConfig};

const MAGIC: &[u8; 8] = b"VTSNAP01";
const HEADER_MAX_BYTES: u32 = 1 << 20;
const NOTE_MAX_BYTES: u32 = veritrail_core::note::NOTE_MAX_BYTES as u32;
/// Entries written per RocksDB batch during install: bounds install's memory.
const INSTALL_BATCH_ENTRIES: u64 = 4096;

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotHeader {
    origin: String,
    meta: SnapshotMeta<u64, NodeInfo>,
    size: u64,
    root: [u8; 32],
    head: [u8; 32],
    last_timestamp_ns: u64,
}

/// Builds snapshots on a consistent view of the state machine.
#[derive(Debug)]
pub struct SnapshotBuilder {
    pub(crate) shared: Arc<Shared>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let record = blocking(&self.shared, build)
            .await
            .map_err(|e| e.into_raft(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
        open_snapshot(&self.shared, &record)
            .await
            .map_err(|e| e.into_raft(ErrorSubject::Snapshot(None), ErrorVerb::Read))
    }
}

/// Opens the file of a recorded snapshot for openraft to send.
pub(crate) async fn open_snapshot(
    shared: &Shared,
    record: &SnapshotRecord,
) -> Result<Snapshot<TypeConfig>> {
    let path = shared.snapshot_dir().join(&record.file);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| StoreError::io(format!("opening snapshot {}", path.display()), e))?;
    Ok(Snapshot {
        meta: record.meta.clone(),
        snapshot: Box::new(file),
    })
}

fn io(context: &str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = format!("{context} {}", path.display());
    move |e| StoreError::io(context, e)
}

/// Writes a snapshot of everything applied so far and makes it the current one.
fn build(shared: &Shared) -> Result<SnapshotRecord> {
    let written = write_file(shared, "")?;
    let name = format!("{}.snap", written.meta.snapshot_id);
    make_current(shared, &written.path, &name, &written.meta, None)?;
    tracing::info!(snapshot = %written.meta.snapshot_id, entries = written.size, "snapshot built");
    Ok(SnapshotRecord {
        meta: written.meta,
        file: name,
    })
}

/// A snapshot file written and synced, not yet anybody's current snapshot.
struct WrittenSnapshot {
    path: std::path::PathBuf,
    meta: SnapshotMeta<u64, NodeInfo>,
    size: u64,
    root: Hash,
}

/// Writes a snapshot of everything applied so far into the snapshot directory,
/// under a temporary name starting with `prefix`.
fn write_file(shared: &Shared, prefix: &str) -> Result<WrittenSnapshot> {
    // The apply lock makes the state copy and the RocksDB view agree.
    let (state, view) = {
        let _apply = shared.lock_apply();
        (shared.state().clone(), shared.db.raw().snapshot())
    };
    let tail = &state.tail;
    let unique = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let id = format!(
        "{}-{}-{unique:x}",
        state.last_applied.map_or(0, |l| l.index),
        tail.size
    );
    let meta = SnapshotMeta {
        last_log_id: state.last_applied,
        last_membership: state.membership.clone(),
        snapshot_id: id.clone(),
    };
    let header = SnapshotHeader {
        origin: shared.origin.clone(),
        meta: meta.clone(),
        size: tail.size,
        root: tail.root().0,
        head: tail.head.0,
        last_timestamp_ns: tail.last_timestamp_ns,
    };
    let dir = shared.snapshot_dir();
    let tmp = dir.join(format!("{prefix}{id}.snap.tmp"));
    let file = File::create(&tmp).map_err(io("creating", &tmp))?;
    let mut out = HashingWriter::new(BufWriter::new(file));
    out.write_all(MAGIC).map_err(io("writing", &tmp))?;
    write_chunk(&mut out, &to_postcard(&header)).map_err(io("writing", &tmp))?;
    let mut expected = 0u64;
    for item in view.iterator_cf(shared.db.cf(CF_ENTRIES), IteratorMode::Start) {
        let (key, value) = item?;
        if expected == tail.size {
            break;
        }
        let seq = read_u64_key(&key, CF_ENTRIES)?;
        if seq != expected {
            return Err(StoreError::corrupt(
                CF_ENTRIES,
                format!("entry {expected} is missing (found {seq})"),
            ));
        }
        write_chunk(&mut out, &value).map_err(io("writing", &tmp))?;
        expected += 1;
    }
    if expected != tail.size {
        return Err(StoreError::corrupt(
            CF_ENTRIES,
            format!("log ends at {expected}, the tail says {}", tail.size),
        ));
    }
    for item in view.iterator_cf(shared.db.cf(CF_CHECKPOINTS), IteratorMode::Start) {
        let (key, note) = item?;
        let size = read_u64_key(&key, CF_CHECKPOINTS)?;
        if size > tail.size {
            break;
        }
        out.write_all(&[1]).map_err(io("writing", &tmp))?;
        out.write_all(&size.to_be_bytes())
            .map_err(io("writing", &tmp))?;
        write_chunk(&mut out, &note).map_err(io("writing", &tmp))?;
    }
    out.write_all(&[0]).map_err(io("writing", &tmp))?;
    let digest = out.hasher.clone().finalize();
    out.write_all(&digest).map_err(io("writing", &tmp))?;
    let file = out
        .inner
        .into_inner()
        .map_err(|e| StoreError::io(format!("flushing {}", tmp.display()), e.into_error()))?;
    file.sync_all().map_err(io("syncing", &tmp))?;
    drop(view);
    Ok(WrittenSnapshot {
        path: tmp,
        meta,
        size: tail.size,
        root: tail.root(),
    })
}

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
    let written = write_file(shared, "backup-")?;
    let file = File::open(&written.path).map_err(io("opening", &written.path))?;
    std::fs::remove_file(&written.path).map_err(io("removing", &written.path))?;
    let bytes = file.metadata().map_err(io("sizing", &written.path))?.len();
    Ok(Backup {
        file,
        bytes,
        tree_size: written.size,
        root: written.root,
        last_log_index: written.meta.last_log_id.map_or(0, |l| l.index),
    })
}

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
pub(crate) fn restore(shared: &Shared, backup_path: &Path, node_id: u64) -> Result<RestoreReport> {
    {
        let state = shared.state();
        let vote: Option<openraft::Vote<u64>> = shared
            .db
            .get_postcard(crate::db::CF_RAFT_META, crate::db::KEY_VOTE)?;
        if state.tail.size > 0 || state.last_applied.is_some() || vote.is_some() {
            return Err(StoreError::Snapshot(format!(
                "the data directory already holds a node's state ({} entries): restore \
                 only into an empty one",
                state.tail.size
            )));
        }
    }
    let mut file = File::open(backup_path).map_err(io("opening", backup_path))?;
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
    install(shared, &meta, file)?;
    let vote = openraft::Vote::new(last.leader_id.term, last.leader_id.node_id);
    let mut batch = WriteBatch::default();
    batch.put_cf(
        shared.db.cf(crate::db::CF_RAFT_META),
        crate::db::KEY_VOTE,
        to_postcard(&vote),
    );
    shared.db.write_synced(batch)?;
    let state = shared.state();
    let membership = meta.last_membership.membership();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
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

/// Reads the header of a snapshot or backup file, after checking its digest.
pub(crate) fn read_meta(file: &mut File) -> Result<(String, SnapshotMeta<u64, NodeInfo>)> {
    verify_digest(file, &mut std::io::sink())?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| StoreError::io("seeking the snapshot", e))?;
    let header = read_header(&mut BufReader::new(&*file))?;
    Ok((header.origin, header.meta))
}

/// Reads the magic and the header at the start of a snapshot file.
fn read_header(input: &mut impl Read) -> Result<SnapshotHeader> {
    let mut magic = [0u8; 8];
    read_exact(input, &mut magic)?;
    if &magic != MAGIC {
        return Err(StoreError::Snapshot(
            "not a Veritrail snapshot (bad magic)".into(),
        ));
    }
    postcard::from_bytes(&read_chunk(input, HEADER_MAX_BYTES)?)
        .map_err(|e| StoreError::Snapshot(format!("header does not decode: {e}")))
}

/// Renames a finished snapshot file into place, records it (synced, together
/// with `extra` state-machine writes when installing), and removes the previous one.
fn make_current(
    shared: &Shared,
    tmp: &Path,
    name: &str,
    meta: &SnapshotMeta<u64, NodeInfo>,
    extra: Option<WriteBatch>,
) -> Result<()> {
    let dir = shared.snapshot_dir();
    let path = dir.join(name);
    std::fs::rename(tmp, &path).map_err(io("renaming", tmp))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", &dir))?;
    let record = SnapshotRecord {
        meta: meta.clone(),
        file: name.to_owned(),
    };
    let mut batch = extra.unwrap_or_default();
    batch.put_cf(shared.db.cf(CF_SM_META), KEY_SNAPSHOT, to_postcard(&record));
    shared.db.write_synced(batch)?;
    let previous = shared.state().snapshot.replace(record);
    if let Some(previous) = previous.filter(|p| p.file != name) {
        let old = dir.join(&previous.file);
        if let Err(e) = std::fs::remove_file(&old) {
            tracing::warn!(file = %old.display(), error = %e, "could not remove the previous snapshot");
        }
    }
    Ok(())
}

/// Removes received files (`incoming-*.part`), which openraft hands to install
/// and never deletes. openraft receives one snapshot at a time and restarts an
/// interrupted transfer, so none is needed once an install has returned. (When
/// the store opens, every file but the current snapshot is removed anyway.)
pub(crate) fn remove_received_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let received = name.starts_with("incoming-") && name.ends_with(".part");
        if received && let Err(e) = std::fs::remove_file(entry.path()) {
            tracing::warn!(file = %entry.path().display(), error = %e, "could not remove a snapshot leftover");
        }
    }
}

/// A fresh file for openraft to write an incoming snapshot into.
pub(crate) async fn begin_receiving(shared: &Shared) -> Result<tokio::fs::File> {
    let unique = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = shared
        .snapshot_dir()
        .join(format!("incoming-{unique:x}.part"));
    tokio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .map_err(|e| StoreError::io(format!("creating {}", path.display()), e))
}

/// Installs a received snapshot: verifies the file, extends the local log with
/// the entries it lacks, records the checkpoints, and makes the file current.
pub(crate) fn install(
    shared: &Shared,
    meta: &SnapshotMeta<u64, NodeInfo>,
    mut file: File,
) -> Result<()> {
    let _apply = shared.lock_apply();
    let dir = shared.snapshot_dir();
    let name = format!("{}.snap", meta.snapshot_id);
    let tmp = dir.join(format!("{}.snap.tmp", meta.snapshot_id));

    // Pass 1: check the whole file's digest, keeping a copy as our own snapshot.
    file.seek(SeekFrom::Start(0))
        .map_err(|e| StoreError::io("seeking the incoming snapshot", e))?;
    let copy = File::create(&tmp).map_err(io("creating", &tmp))?;
    verify_digest(&mut file, &mut BufWriter::new(&copy))?;
    copy.sync_all().map_err(io("syncing", &tmp))?;

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
        batch.write_entry(entry, &bytes, hash);
        if batch.tail.size.is_multiple_of(INSTALL_BATCH_ENTRIES) {
            batch.flush()?;
            let mut state = shared.state();
            state.tail = batch.tail.clone();
            shared.size_tx.send_replace(state.tail.size);
        }
    }
    if header.size < local.size && header.size > 0 {
        let ours = crate::reader::checkpoint_at(&shared.db, &shared.origin, header.size)?;
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
    extra.put_cf(
        shared.db.cf(CF_SM_META),
        crate::db::KEY_TAIL,
        batch.tail.encode(),
    );
    make_current(shared, &tmp, &name, meta, Some(extra))?;
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

pub(crate) fn verify_digest(input: &mut File, copy: &mut impl Write) -> Result<()> {
    let len = input
        .seek(SeekFrom::End(0))
        .map_err(|e| StoreError::io("sizing the snapshot", e))?;
    if len < (MAGIC.len() + 32) as u64 {
        return Err(StoreError::Snapshot(format!(
            "file of {len} bytes is too short"
        )));
    }
    input
        .seek(SeekFrom::Start(0))
        .map_err(|e| StoreError::io("seeking the snapshot", e))?;
    let mut body = BufReader::new(input.take(len - 32));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = body
            .read(&mut buf)
            .map_err(|e| StoreError::io("reading the snapshot", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        copy.write_all(&buf[..n])
            .map_err(|e| StoreError::io("copying the snapshot", e))?;
    }
    let input = body.into_inner().into_inner();
    let mut stored = [0u8; 32];
    input
        .read_exact(&mut stored)
        .map_err(|e| StoreError::io("reading the snapshot digest", e))?;
    copy.write_all(&stored)
        .map_err(|e| StoreError::io("copying the snapshot", e))?;
    copy.flush()
        .map_err(|e| StoreError::io("copying the snapshot", e))?;
    if Hash(hasher.finalize().into()) != Hash(stored) {
        return Err(StoreError::Snapshot(
            "file digest does not match: the transfer corrupted it".into(),
        ));
    }
    Ok(())
}

fn read_exact(input: &mut impl Read, buf: &mut [u8]) -> Result<()> {
    input
        .read_exact(buf)
        .map_err(|e| StoreError::Snapshot(format!("file ends early: {e}")))
}

fn read_chunk(input: &mut impl Read, max_bytes: u32) -> Result<Vec<u8>> {
    let mut len = [0u8; 4];
    read_exact(input, &mut len)?;
    let len = u32::from_be_bytes(len);
    if len > max_bytes {
        return Err(StoreError::Snapshot(format!(
            "record of {len} bytes exceeds the limit of {max_bytes}"
        )));
    }
    let mut buf = vec![0u8; len as usize];
    read_exact(input, &mut buf)?;
    Ok(buf)
}

fn write_chunk(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(&(bytes.len() as u32).to_be_bytes())?;
    out.write_all(bytes)
}

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
