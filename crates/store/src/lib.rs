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
//! [`AuditReader`] serves reads and proofs; [`fsck`] checks a data directory
//! offline. The key layout is documented in `db.rs`.
//!
//! **Architecture invariant:** this is the only crate that knows RocksDB. Every
//! RocksDB call made on behalf of an async caller runs on a blocking thread.
//!
//! **Architecture invariant:** apply depends only on the committed entries and the
//! state before them, so every replica holds byte-identical entries and roots.

mod apply;
mod db;
mod error;
pub mod fsck;
#[cfg(test)]
mod golden;
mod log_ledger;
mod log_store;
mod reader;
mod shared;
mod snapshot;
mod state_machine;
mod stored;
mod tail;
mod types;

use std::path::Path;
use std::sync::Arc;

pub use db::DbTuning;
pub use error::{Result, StoreError};
pub use fsck::{FsckReport, Problem, ProblemKind, fsck};
pub use log_ledger::{Lag, LogLedger};
pub use log_store::LogStore;
pub use reader::{AuditReader, InclusionProof, RangeReport, ScanPage, ScanQuery};
pub use shared::{APPEND_ENTRIES_MAX_BYTES, StoreConfig};
pub use snapshot::{Backup, RestoreReport, SnapshotBuilder, SnapshotFile};
pub use state_machine::StateMachine;
pub use stored::StoredEntry;
pub use tail::Tail;
pub use types::{
    AppendReceipt, AppendRequest, CheckpointRecord, Command, CommandResponse, NodeInfo, Proposal,
    Rejection, RejectionKind, RequestOutcome, TypeConfig,
};

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
        let shared = Arc::new(shared::Shared::open(dir, config)?);
        Ok(Store {
            log: LogStore {
                shared: Arc::clone(&shared),
            },
            state_machine: StateMachine {
                shared: Arc::clone(&shared),
            },
            reader: AuditReader { shared },
        })
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
    let shared = shared::Shared::open(dir, config)?;
    snapshot::restore(&shared, backup, node_id)
}
