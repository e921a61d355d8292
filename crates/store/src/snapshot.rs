//! Snapshots of an append-only log.
//!
//! A committed entry never changes, so the state machine as of a Raft index is
//! simply its first `size` entries. Building a snapshot therefore copies
//! nothing: it records that point ([`SnapshotRecord`]) in one small synced
//! write, whatever the log's size, and openraft can purge its log up to it.
//! The bytes a lagging follower needs are written to a file only when the
//! leader first reads them ([`SnapshotFile`]), streamed so that memory stays
//! bounded, and kept for the next follower until a newer snapshot is recorded.
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
//!
//! The checkpoints in a file are those recorded for tree sizes up to the
//! snapshot's size when the file is written, which may include some recorded
//! after the snapshot's Raft index. Recording a checkpoint merges signatures
//! into the note already there, so the follower replaying those later Raft
//! entries ends with the same notes as every other node.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftSnapshotBuilder, Snapshot};
use openraft::{ErrorSubject, ErrorVerb, SnapshotMeta, StorageError};
use rocksdb::{IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
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

/// A header with every field set, for the golden bytes of the file format.
#[cfg(test)]
pub(crate) fn golden_header(
    meta: SnapshotMeta<u64, NodeInfo>,
) -> impl serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug {
    SnapshotHeader {
        origin: "golden.example/log".into(),
        meta,
        size: 1234,
        root: [0x44; 32],
        head: [0x55; 32],
        last_timestamp_ns: 1_767_225_600_000_000_099,
    }
}

/// Builds snapshots: records the applied point of the log.
#[derive(Debug)]
pub struct SnapshotBuilder {
    pub(crate) shared: Arc<Shared>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let record = blocking(&self.shared, build)
            .await
            .map_err(|e| e.into_raft(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
        Ok(SnapshotFile::snapshot(&self.shared, record))
    }
}

/// Records a snapshot of everything applied so far as the current one.
fn build(shared: &Shared) -> Result<SnapshotRecord> {
    let _apply = shared.lock_apply();
    let record = current_point(shared, "");
    record_current(shared, &record, WriteBatch::default())?;
    tracing::info!(snapshot = %record.meta.snapshot_id, entries = record.size, "snapshot recorded");
    Ok(record)
}

/// The applied point of the log, named uniquely. The caller holds the apply lock.
fn current_point(shared: &Shared, prefix: &str) -> SnapshotRecord {
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
fn record_current(shared: &Shared, record: &SnapshotRecord, mut batch: WriteBatch) -> Result<()> {
    let newer = shared
        .state()
        .snapshot
        .as_ref()
        .is_none_or(|current| record.meta.last_log_id >= current.meta.last_log_id);
    if newer {
        batch.put_cf(shared.db.cf(CF_SM_META), KEY_SNAPSHOT, to_postcard(record));
    }
    shared.db.write_synced(batch)?;
    if newer {
        shared.state().snapshot = Some(record.clone());
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

/// The file of `record`, written now unless an earlier reader already did.
fn file_of(shared: &Shared, record: &SnapshotRecord) -> Result<File> {
    let _files = shared.lock_snapshot_files();
    let path = shared.snapshot_dir().join(record.file_name());
    match File::open(&path) {
        Ok(file) => return Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(format!("opening {}", path.display()), e)),
    }
    let started = std::time::Instant::now();
    // The handle is kept from the write: a newer snapshot recorded meanwhile
    // removes the name (`record_current` runs under the apply lock only, never
    // waiting for a file write), and an open file outlives its name.
    let (tmp, mut file, _) = write_file(shared, record)?;
    file.seek(SeekFrom::Start(0))
        .map_err(io("rewinding", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("renaming", &tmp))?;
    let dir = shared.snapshot_dir();
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", &dir))?;
    let still_current = shared
        .state()
        .snapshot
        .as_ref()
        .is_some_and(|current| current.meta.snapshot_id == record.meta.snapshot_id);
    if !still_current {
        // A newer snapshot was recorded meanwhile: this one's file is only for
        // the reader that asked for it.
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(StoreError::io(format!("removing {}", path.display()), e));
        }
    }
    tracing::info!(
        snapshot = %record.meta.snapshot_id,
        entries = record.size,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "snapshot file written"
    );
    Ok(file)
}

/// Snapshot data as openraft moves it: a file, written when first read.
///
/// A snapshot openraft receives is a fresh file from the start. A snapshot
/// this node built or holds only names a point of the log; openraft asks for
/// it when it starts (for its metadata alone) and when a follower lags behind
/// the purged log. Only the second reads the data, so only then is the file
/// written, on a blocking thread, while the first poll waits for it.
#[derive(Debug)]
pub struct SnapshotFile {
    state: FileState,
    /// A seek asked for before the file existed, made once it does.
    pending_seek: Option<SeekFrom>,
}

#[derive(Debug)]
enum FileState {
    Unwritten(Arc<Shared>, SnapshotRecord),
    Writing(tokio::task::JoinHandle<Result<File>>),
    Ready(tokio::fs::File),
    /// Writing the file failed; every later poll says so again.
    Failed(String),
}

impl SnapshotFile {
    /// A snapshot whose file is written when first read.
    pub(crate) fn snapshot(shared: &Arc<Shared>, record: SnapshotRecord) -> Snapshot<TypeConfig> {
        Snapshot {
            meta: record.meta.clone(),
            snapshot: Box::new(SnapshotFile {
                state: FileState::Unwritten(Arc::clone(shared), record),
                pending_seek: None,
            }),
        }
    }

    /// Writes the file now if it is not written yet, and hands it over.
    pub async fn into_std(mut self) -> std::io::Result<File> {
        std::future::poll_fn(|cx| self.poll_file(cx)).await?;
        match self.state {
            FileState::Ready(file) => Ok(file.into_std().await),
            _ => Err(not_ready()),
        }
    }

    /// Polls until the file exists, and starts any seek asked for before.
    fn poll_file(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            let next = match &mut self.state {
                FileState::Unwritten(shared, record) => {
                    let (shared, record) = (Arc::clone(shared), record.clone());
                    FileState::Writing(tokio::task::spawn_blocking(move || {
                        file_of(&shared, &record)
                    }))
                }
                FileState::Writing(task) => match ready!(Pin::new(task).poll(cx)) {
                    Ok(Ok(file)) => FileState::Ready(tokio::fs::File::from_std(file)),
                    Ok(Err(e)) => FileState::Failed(e.to_string()),
                    Err(e) => FileState::Failed(format!("writing the snapshot file: {e}")),
                },
                FileState::Failed(reason) => {
                    return Poll::Ready(Err(std::io::Error::other(reason.clone())));
                }
                FileState::Ready(file) => {
                    if let Some(position) = self.pending_seek.take() {
                        Pin::new(file).start_seek(position)?;
                    }
                    return Poll::Ready(Ok(()));
                }
            };
            self.state = next;
        }
    }

    /// The file, once [`Self::poll_file`] returned ready.
    fn ready_file(&mut self) -> std::io::Result<Pin<&mut tokio::fs::File>> {
        match &mut self.state {
            FileState::Ready(file) => Ok(Pin::new(file)),
            _ => Err(not_ready()),
        }
    }
}

fn not_ready() -> std::io::Error {
    std::io::Error::other("the snapshot file is not written yet")
}

impl From<tokio::fs::File> for SnapshotFile {
    fn from(file: tokio::fs::File) -> Self {
        SnapshotFile {
            state: FileState::Ready(file),
            pending_seek: None,
        }
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let seeking = this.pending_seek.is_some();
        ready!(this.poll_file(cx))?;
        if seeking {
            ready!(this.ready_file()?.poll_complete(cx))?;
        }
        this.ready_file()?.poll_read(cx, buf)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> std::io::Result<()> {
        let this = self.get_mut();
        match &mut this.state {
            FileState::Ready(file) => Pin::new(file).start_seek(position),
            _ => {
                this.pending_seek = Some(position);
                Ok(())
            }
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        let this = self.get_mut();
        ready!(this.poll_file(cx))?;
        this.ready_file()?.poll_complete(cx)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().state {
            FileState::Ready(file) => Pin::new(file).poll_write(cx, buf),
            _ => Poll::Ready(Err(read_only())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().state {
            FileState::Ready(file) => Pin::new(file).poll_flush(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().state {
            FileState::Ready(file) => Pin::new(file).poll_shutdown(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
}

fn read_only() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        "a snapshot this node recorded is read-only",
    )
}

fn io(context: &str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = format!("{context} {}", path.display());
    move |e| StoreError::io(context, e)
}

/// Writes the file of `record` into the snapshot directory under a temporary
/// name, synced, and returns that name, the file (open for reading and
/// writing, positioned at its end) and the snapshot's root. Entries never
/// change once applied, so the first `record.size` of the live database are
/// the snapshot's.
fn write_file(
    shared: &Shared,
    record: &SnapshotRecord,
) -> Result<(std::path::PathBuf, File, Hash)> {
    let size = record.size;
    let at = crate::stored::checkpoint_at(&shared.db, &shared.origin, size)?;
    let header = SnapshotHeader {
        origin: shared.origin.clone(),
        meta: record.meta.clone(),
        size,
        root: at.root.0,
        head: at.head.0,
        last_timestamp_ns: at.timestamp_ns,
    };
    let tmp = shared
        .snapshot_dir()
        .join(format!("{}.tmp", record.file_name()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io("creating", &tmp))?;
    let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    out.write_all(MAGIC).map_err(io("writing", &tmp))?;
    write_chunk(&mut out, &to_postcard(&header)).map_err(io("writing", &tmp))?;
    let mut expected = 0u64;
    let db = shared.db.raw();
    for item in db.iterator_cf(shared.db.cf(CF_ENTRIES), IteratorMode::Start) {
        if expected == size {
            break;
        }
        let (key, value) = item?;
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
    if expected != size {
        return Err(StoreError::corrupt(
            CF_ENTRIES,
            format!("log ends at {expected}, the snapshot needs {size}"),
        ));
    }
    for item in db.iterator_cf(shared.db.cf(CF_CHECKPOINTS), IteratorMode::Start) {
        let (key, note) = item?;
        let checkpoint_size = read_u64_key(&key, CF_CHECKPOINTS)?;
        if checkpoint_size > size {
            break;
        }
        out.write_all(&[1]).map_err(io("writing", &tmp))?;
        out.write_all(&checkpoint_size.to_be_bytes())
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
    Ok((tmp, file, at.root))
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
/// the entries it lacks, records the checkpoints, and records the snapshot as
/// the current one (its point; the received file is not kept).
pub(crate) fn install(
    shared: &Shared,
    meta: &SnapshotMeta<u64, NodeInfo>,
    mut file: File,
) -> Result<()> {
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
        let ours = crate::stored::checkpoint_at(&shared.db, &shared.origin, header.size)?;
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
    let record = SnapshotRecord {
        meta: meta.clone(),
        size: header.size,
    };
    record_current(shared, &record, extra)?;
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
