//! The snapshot file format (version 1), written for followers and backups and
//! read back by install, restore and fsck.
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
use std::path::{Path, PathBuf};

use openraft::SnapshotMeta;
use rocksdb::IteratorMode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use veritrail_core::Hash;

use super::point::SnapshotRecord;
use crate::db::{CF_CHECKPOINTS, CF_ENTRIES, read_u64_key, to_postcard};
use crate::error::{Result, StoreError};
use crate::shared::Shared;
use crate::stored::checkpoint_at;
use crate::types::NodeInfo;

const MAGIC: &[u8; 8] = b"VTSNAP01";
const HEADER_MAX_BYTES: u32 = 1 << 20;
/// The longest signed note a file may carry.
pub(super) const NOTE_MAX_BYTES: u32 = veritrail_core::note::NOTE_MAX_BYTES as u32;

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SnapshotHeader {
    pub(super) origin: String,
    pub(super) meta: SnapshotMeta<u64, NodeInfo>,
    pub(super) size: u64,
    pub(super) root: [u8; 32],
    pub(super) head: [u8; 32],
    pub(super) last_timestamp_ns: u64,
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

pub(super) fn io(context: &str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = format!("{context} {}", path.display());
    move |e| StoreError::io(context, e)
}

/// Writes the file of `record` into the snapshot directory under a temporary
/// name, synced, and returns that name, the file (open for reading and
/// writing, positioned at its end) and the snapshot's root. Entries never
/// change once applied, so the first `record.size` of the live database are
/// the snapshot's.
pub(super) fn write_file(
    shared: &Shared,
    record: &SnapshotRecord,
) -> Result<(PathBuf, File, Hash)> {
    let size = record.size;
    let at = checkpoint_at(&shared.db, &shared.origin, size)?;
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

/// Reads the header of a snapshot or backup file, after checking its digest.
pub(crate) fn read_meta(file: &mut File) -> Result<(String, SnapshotMeta<u64, NodeInfo>)> {
    verify_digest(file, &mut std::io::sink())?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| StoreError::io("seeking the snapshot", e))?;
    let header = read_header(&mut BufReader::new(&*file))?;
    Ok((header.origin, header.meta))
}

/// Reads the magic and the header at the start of a snapshot file.
pub(super) fn read_header(input: &mut impl Read) -> Result<SnapshotHeader> {
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

/// Checks the SHA-256 at the end of a snapshot file against every byte before
/// it, copying what it reads to `copy` on the way: a transfer or a disk that
/// damaged the file must be caught before any of it is trusted.
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

pub(super) fn read_exact(input: &mut impl Read, buf: &mut [u8]) -> Result<()> {
    input
        .read_exact(buf)
        .map_err(|e| StoreError::Snapshot(format!("file ends early: {e}")))
}

pub(super) fn read_chunk(input: &mut impl Read, max_bytes: u32) -> Result<Vec<u8>> {
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
