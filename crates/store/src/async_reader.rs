//! [`AsyncReader`]: the reader for async callers.
//!
//! Every read of [`AuditReader`] blocks on RocksDB, and a blocked tokio worker
//! stalls every task queued behind it. The crate's invariant is that RocksDB
//! calls made for an async caller run on tokio's blocking pool; this facade
//! keeps it here, once, instead of at each call site of the server.

use tokio::sync::watch;
use veritrail_core::{Checkpoint, Hash};

use crate::error::{Result, StoreError};
use crate::reader::{AuditReader, InclusionProof, RangeReport, ScanPage, ScanQuery};
use crate::snapshot::Backup;
use crate::stored::StoredEntry;
use crate::tail::Tail;

/// The reads of [`AuditReader`] as futures that run on tokio's blocking pool.
/// Cheap to clone; clones share the database.
///
/// Each method has the name, arguments and result of the blocking method it
/// runs, errors included. A future dropped before it completes does not stop
/// its read: the blocking thread finishes it and the result is discarded.
/// Reads answered from memory (the origin, the tail, the snapshot size, the
/// size watch) are not futures: they never touch RocksDB.
#[derive(Debug, Clone)]
pub struct AsyncReader {
    reader: AuditReader,
}

impl From<AuditReader> for AsyncReader {
    fn from(reader: AuditReader) -> Self {
        AsyncReader { reader }
    }
}

impl AsyncReader {
    /// The async facade of `reader`.
    pub fn new(reader: AuditReader) -> Self {
        AsyncReader { reader }
    }

    /// The blocking reader underneath, for code that already runs on a
    /// blocking thread.
    pub fn blocking(&self) -> &AuditReader {
        &self.reader
    }

    /// Runs `read` on tokio's blocking pool with the blocking reader: for
    /// several reads that belong together, in one trip to the pool. A panic in
    /// `read` becomes [`StoreError::Task`].
    pub async fn read<T, F>(&self, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&AuditReader) -> Result<T> + Send + 'static,
    {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || read(&reader))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// See [`AuditReader::origin`].
    pub fn origin(&self) -> &str {
        self.reader.origin()
    }

    /// See [`AuditReader::tail`].
    pub fn tail(&self) -> Tail {
        self.reader.tail()
    }

    /// See [`AuditReader::snapshot_size`].
    pub fn snapshot_size(&self) -> Option<u64> {
        self.reader.snapshot_size()
    }

    /// See [`AuditReader::watch_size`].
    pub fn watch_size(&self) -> watch::Receiver<u64> {
        self.reader.watch_size()
    }

    /// See [`AuditReader::backup`]: it reads the whole log.
    pub async fn backup(&self) -> Result<Backup> {
        self.read(AuditReader::backup).await
    }

    /// See [`AuditReader::entry`].
    pub async fn entry(&self, seq: u64) -> Result<Option<StoredEntry>> {
        self.read(move |r| r.entry(seq)).await
    }

    /// See [`AuditReader::seq_of`].
    pub async fn seq_of(&self, source: &str, event_id: &str) -> Result<Option<u64>> {
        let (source, event_id) = (source.to_owned(), event_id.to_owned());
        self.read(move |r| r.seq_of(&source, &event_id)).await
    }

    /// See [`AuditReader::entry_by_event_id`].
    pub async fn entry_by_event_id(
        &self,
        source: &str,
        event_id: &str,
    ) -> Result<Option<StoredEntry>> {
        let (source, event_id) = (source.to_owned(), event_id.to_owned());
        self.read(move |r| r.entry_by_event_id(&source, &event_id))
            .await
    }

    /// See [`AuditReader::scan`].
    pub async fn scan(&self, query: &ScanQuery) -> Result<ScanPage> {
        let query = query.clone();
        self.read(move |r| r.scan(&query)).await
    }

    /// See [`AuditReader::verify_range`].
    pub async fn verify_range(&self, from: u64, to: Option<u64>) -> Result<RangeReport> {
        self.read(move |r| r.verify_range(from, to)).await
    }

    /// See [`AuditReader::root_at`].
    pub async fn root_at(&self, size: u64) -> Result<Hash> {
        self.read(move |r| r.root_at(size)).await
    }

    /// See [`AuditReader::frontier_at`].
    pub async fn frontier_at(&self, size: u64) -> Result<Vec<Hash>> {
        self.read(move |r| r.frontier_at(size)).await
    }

    /// See [`AuditReader::tile_hashes`].
    pub async fn tile_hashes(&self, level: u8, index: u64, width: u16) -> Result<Vec<Hash>> {
        self.read(move |r| r.tile_hashes(level, index, width)).await
    }

    /// See [`AuditReader::entry_bundle`].
    pub async fn entry_bundle(&self, index: u64, width: u16) -> Result<Vec<StoredEntry>> {
        self.read(move |r| r.entry_bundle(index, width)).await
    }

    /// See [`AuditReader::inclusion_proof`].
    pub async fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>> {
        self.read(move |r| r.inclusion_proof(seq, size)).await
    }

    /// See [`AuditReader::inclusion_proof_with_root`].
    pub async fn inclusion_proof_with_root(&self, seq: u64, size: u64) -> Result<InclusionProof> {
        self.read(move |r| r.inclusion_proof_with_root(seq, size))
            .await
    }

    /// See [`AuditReader::consistency_proof`].
    pub async fn consistency_proof(&self, from_size: u64, to_size: u64) -> Result<Vec<Hash>> {
        self.read(move |r| r.consistency_proof(from_size, to_size))
            .await
    }

    /// See [`AuditReader::checkpoint_at`].
    pub async fn checkpoint_at(&self, size: u64) -> Result<Checkpoint> {
        self.read(move |r| r.checkpoint_at(size)).await
    }

    /// See [`AuditReader::signed_checkpoint`].
    pub async fn signed_checkpoint(&self, size: u64) -> Result<Option<String>> {
        self.read(move |r| r.signed_checkpoint(size)).await
    }

    /// See [`AuditReader::latest_signed_checkpoint`].
    pub async fn latest_signed_checkpoint(&self) -> Result<Option<(u64, String)>> {
        self.read(AuditReader::latest_signed_checkpoint).await
    }
}
