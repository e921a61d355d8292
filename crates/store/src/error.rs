//! The one error type of `veritrail-store`.

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};

/// Everything that can go wrong in storage.
///
/// Callers split these in two: [`StoreError::is_fatal`] errors mean this node's
/// disk can no longer be trusted (it must stop serving and signing); the others
/// are answers to a bad request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// RocksDB failed: I/O, a checksum mismatch in its own files, a full disk.
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),

    /// A filesystem operation outside RocksDB (snapshot files) failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },

    /// Stored bytes did not decode or contradicted each other.
    #[error("stored data is corrupt ({location}): {detail}")]
    Corrupt { location: String, detail: String },

    /// The data directory's stored state disagrees with itself; the node refuses
    /// to open it. `seq` names the entry concerned where there is one.
    #[error("integrity check failed on open{}: {detail}; run fsck on the data directory", seq.map(|s| format!(" at seq {s}")).unwrap_or_default())]
    Integrity { seq: Option<u64>, detail: String },

    /// A write would have broken the log: an entry at the wrong seq, off the
    /// chain, or back in time. A bug, caught before anything was written; the
    /// apply that carried it fails, and the node stops.
    #[error(
        "refusing to write entry {seq}, which would break the log: {detail}; nothing was written"
    )]
    WouldBreakLog { seq: u64, detail: String },

    /// The data directory belongs to another log.
    #[error("data directory holds log {found:?}, but this node is configured for {expected:?}")]
    WrongOrigin { expected: String, found: String },

    /// A request named something outside the log (a seq past the end, a tree size
    /// larger than the tree).
    #[error("{0}")]
    OutOfRange(String),

    /// The data directory was written by a later release, in a format this one
    /// does not read: opening it, let alone writing into it, could damage it.
    #[error(
        "{path} holds data format {found}, written by a later release; this release reads \
         formats up to {known}. Run the later release (docs/OPERATIONS.md, what an upgrade \
         may rely on)"
    )]
    NewerFormat {
        path: String,
        found: u64,
        known: u64,
    },

    /// A request was malformed (reversed range, zero limit).
    #[error("{0}")]
    InvalidArgument(String),

    /// An incoming snapshot is not a valid extension of this node's log.
    #[error("snapshot rejected: {0}")]
    Snapshot(String),

    /// A core invariant failed (a proof could not be built, a record is malformed).
    #[error(transparent)]
    Core(#[from] veritrail_core::Error),

    /// The blocking task running a RocksDB call panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(String),
}

impl StoreError {
    pub(crate) fn corrupt(location: impl Into<String>, detail: impl ToString) -> Self {
        StoreError::Corrupt {
            location: location.into(),
            detail: detail.to_string(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether this error means the node's storage is unusable (as opposed to a
    /// request that asked for something invalid).
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            StoreError::OutOfRange(_) | StoreError::InvalidArgument(_)
        )
    }

    /// Converts to openraft's error. Any error from a storage trait method makes
    /// openraft stop the node, which is the right answer to a broken disk.
    pub(crate) fn into_raft(
        self,
        subject: ErrorSubject<u64>,
        verb: ErrorVerb,
    ) -> StorageError<u64> {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }
}

/// The result type of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
