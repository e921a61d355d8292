//! `veritrail-store`: Veritrail's durable storage on RocksDB.
//!
//! One RocksDB database per node holds both halves of what Raft needs:
//!
//! - the **Raft log** ([`LogStore`], openraft's `RaftLogStorage`): proposals as the
//!   leader ordered them, synced before they count toward a commit;
//! - the **audit state machine** ([`StateMachine`], openraft's `RaftStateMachine`):
//!   the audit log itself, built by applying committed proposals
//!   deterministically: canonical entries, the hash chain, every perfect Merkle
//!   node, the idempotency index and the field indexes, plus co-signed checkpoints.
//!
//! [`AuditReader`] serves reads and proofs, and [`AsyncReader`] serves them to
//! async callers; [`fsck`] checks a data directory offline. The key layout is
//! documented in `db.rs`.
//!
//! **Architecture invariant:** this is the only crate that knows RocksDB. Every
//! RocksDB call made on behalf of an async caller runs on a blocking thread:
//! openraft's through the log store and the state machine, everyone else's
//! through [`AsyncReader`].
//!
//! **Architecture invariant:** apply depends only on the committed entries and the
//! state before them, so every replica holds byte-identical entries and roots.
//!
//! # Layers
//!
//! The modules read bottom-up: each uses only the modules listed before it,
//! never one after it, and a folder counts as one module. When two modules
//! seem to need each other, a lower one is missing. `tests/layers.rs` checks
//! this list against the code.
//!
//! 1. `error`: the crate's one error type.
//! 2. `vote_file`: the vote's copy outside the database, which a repair keeps.
//! 3. `db`: RocksDB itself, the column families and the key layout.
//! 4. `types`: what a Raft entry carries and what applying it answers; plain data.
//! 5. `log_ledger`: size and arrival time of each held Raft entry, in memory.
//! 6. `stored`: stored entries and the Merkle nodes over them (`DbNodes`).
//! 7. `tail`: the state machine's position, checked against `stored` on open.
//! 8. `shared`: the open database, the data directory and the applied position.
//! 9. `apply`: deterministic apply, into one write batch per call.
//! 10. `snapshot/`: the snapshot point, the file format, openraft's snapshot
//!     data, install and backup.
//! 11. `type_config`: openraft's type configuration, which names the snapshot data.
//! 12. `log_store`: the Raft log, and the vote (written nowhere else; it keeps the copy).
//! 13. `state_machine`: the state machine and its snapshot builder, for openraft.
//! 14. `reader`: reads and proofs.
//! 15. `async_reader`: the same reads for async callers, on tokio's blocking pool.
//! 16. `fsck`: the offline check of a stopped node's directory.
//! 17. `restore`: a backup into an empty directory (state machine and vote).
//! 18. `aside`: a damaged directory's state moved aside, for a repair.
//!
//! `golden` (tests only) pins the formats of every layer from above them all,
//! and this file assembles the handles.

mod apply;
mod aside;
mod async_reader;
mod db;
mod error;
pub mod fsck;
#[cfg(test)]
mod golden;
mod log_ledger;
mod log_store;
mod reader;
mod restore;
mod shared;
mod snapshot;
mod state_machine;
mod stored;
mod tail;
mod type_config;
mod types;
mod vote_file;

use std::path::Path;
use std::sync::Arc;

pub use aside::{SetAside, set_aside};
pub use async_reader::AsyncReader;
pub use db::{DATA_FORMAT_VERSION, DbTuning, SyncObserver};
pub use error::{Result, StoreError};
pub use fsck::{
    FSCK_PROGRESS_EVERY, FsckReport, Problem, ProblemKind, fsck, fsck_with_progress, lock_file,
};
pub use log_ledger::{Lag, LogLedger};
pub use log_store::LogStore;
pub use reader::{AuditReader, InclusionProof, RangeReport, ScanPage, ScanQuery};
pub use restore::RestoreReport;
pub use shared::{APPEND_ENTRIES_MAX_BYTES, StoreConfig};
pub use snapshot::{Backup, SnapshotFile};
pub use state_machine::{SnapshotBuilder, StateMachine};
pub use stored::StoredEntry;
pub use tail::Tail;
pub use type_config::TypeConfig;
pub use types::{
    AppendReceipt, AppendRequest, CheckpointRecord, Command, CommandResponse, NodeInfo, Proposal,
    Rejection, RejectionKind, RequestOutcome, SignedProposal, SignedRequest,
};
pub use vote_file::{VOTE_FILE, read as saved_vote};

use shared::Shared;
use snapshot::Snapshots;

/// An open store: the three handles over one database.
#[derive(Debug, Clone)]
pub struct Store {
    pub log: LogStore,
    pub state_machine: StateMachine,
    pub reader: AuditReader,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    ///
    /// Refuses to open a directory of another log, or one whose stored tail
    /// disagrees with its entries and Merkle nodes; the error says where.
    pub fn open(dir: &Path, config: &StoreConfig) -> Result<Store> {
        let shared = Arc::new(Shared::open(dir, config)?);
        LogStore::reconcile_vote(&shared)?;
        let snapshots = Arc::new(Snapshots::open(Arc::clone(&shared))?);
        Ok(Store {
            log: LogStore {
                shared: Arc::clone(&shared),
            },
            state_machine: StateMachine {
                shared: Arc::clone(&shared),
                snapshots: Arc::clone(&snapshots),
            },
            reader: AuditReader { shared, snapshots },
        })
    }
}

impl Store {
    /// Calls `observer` with the duration of every synced write from now on:
    /// each Raft log append, vote and applied batch waits for its WAL fsync,
    /// so this is what the disk's sync latency costs every commit. The
    /// server feeds it to a histogram.
    pub fn observe_synced_writes(&self, observer: SyncObserver) {
        self.log.shared.db.observe_synced_writes(observer);
    }
}

/// Restores the backup file `backup` into `dir` for node `node_id`. `dir` must
/// hold no node state yet (a node key may already be there), and the node must
/// be a member in the backup. The node started on `dir` afterwards stands where
/// the backup stood, as a member of the backup's membership.
pub fn restore(
    dir: &Path,
    config: &StoreConfig,
    backup: &Path,
    node_id: u64,
) -> Result<RestoreReport> {
    let shared = Arc::new(Shared::open(dir, config)?);
    let snapshots = Snapshots::open(shared)?;
    restore::restore(&snapshots, backup, node_id)
}
