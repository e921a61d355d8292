//! State shared by the log store, the state machine, snapshots and readers:
//! the database, the data directory, and the state machine's in-memory
//! position. The current snapshot point lives in the snapshot layer above,
//! which uses this one: what is shared here must not depend on snapshots.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::{LogId, StoredMembership};
use tokio::sync::watch;

use crate::db::{CF_SM_META, Db, DbTuning, KEY_LAST_APPLIED, KEY_MEMBERSHIP, KEY_ORIGIN, KEY_TAIL};
use crate::error::{Result, StoreError};
use crate::log_ledger::LogLedger;
use crate::tail::Tail;
use crate::types::NodeInfo;

/// Where snapshot files live, relative to the data directory.
pub(crate) const SNAPSHOT_DIR: &str = "snapshots";
/// Where RocksDB lives, relative to the data directory.
pub(crate) const DB_DIR: &str = "db";

/// What the state machine has applied, as of its last write.
#[derive(Debug, Clone)]
pub(crate) struct SmState {
    pub last_applied: Option<LogId<u64>>,
    pub membership: StoredMembership<u64, NodeInfo>,
    pub tail: Tail,
}

/// Configuration of a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The log's origin (docs/FORMAT.md section 5). Fixed at the first open; a
    /// data directory never changes log.
    pub origin: String,
    pub tuning: DbTuning,
    /// Most bytes of stored Raft entries that one read for replication
    /// returns (at least one entry, whatever its size): the upper bound of one
    /// `AppendEntries` message, so that a backlog of large entries is sent in
    /// pieces that fit the replication deadline (issue #22).
    pub append_entries_max_bytes: u64,
}

/// The default of [`StoreConfig::append_entries_max_bytes`].
pub const APPEND_ENTRIES_MAX_BYTES: u64 = 1 << 20;

impl StoreConfig {
    pub fn new(origin: impl Into<String>) -> Self {
        StoreConfig {
            origin: origin.into(),
            tuning: DbTuning::default(),
            append_entries_max_bytes: APPEND_ENTRIES_MAX_BYTES,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub db: Db,
    pub origin: String,
    pub dir: PathBuf,
    state: Mutex<SmState>,
    /// Serializes writers of state-machine data (apply, install) with snapshot
    /// builders taking a consistent view.
    pub apply_lock: Mutex<()>,
    /// The tree size, for readers that follow the log as it grows.
    pub size_tx: watch::Sender<u64>,
    /// Size and arrival time of each held Raft log entry.
    pub ledger: Arc<LogLedger>,
    /// See [`StoreConfig::append_entries_max_bytes`].
    pub append_entries_max_bytes: u64,
}

impl Shared {
    pub(crate) fn open(dir: &Path, config: &StoreConfig) -> Result<Self> {
        veritrail_core::checkpoint::validate_origin(&config.origin)?;
        let mut created = false;
        for sub in [DB_DIR, SNAPSHOT_DIR] {
            let path = dir.join(sub);
            if !path.exists() {
                std::fs::create_dir_all(&path)
                    .map_err(|e| StoreError::io(format!("creating {}", path.display()), e))?;
                created = true;
            }
        }
        // RocksDB syncs the names inside `db/`, but `db/` itself is a name in
        // the data directory: until that directory is synced, a power cut can
        // take the whole database with it, synced writes and all (the fault
        // file system of the power-cut tests did).
        if created {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| {
                    StoreError::io(format!("syncing the directory {}", dir.display()), e)
                })?;
        }
        let db = Db::open(&dir.join(DB_DIR), &config.tuning)?;
        match db.get(CF_SM_META, KEY_ORIGIN)? {
            Some(found) if found != config.origin.as_bytes() => {
                return Err(StoreError::WrongOrigin {
                    expected: config.origin.clone(),
                    found: String::from_utf8_lossy(&found).into_owned(),
                });
            }
            Some(_) => {}
            None => {
                let mut batch = rocksdb::WriteBatch::default();
                batch.put_cf(db.cf(CF_SM_META), KEY_ORIGIN, config.origin.as_bytes());
                db.write_synced(batch)?;
            }
        }
        let last_applied = db.get_postcard(CF_SM_META, KEY_LAST_APPLIED)?.flatten();
        let membership = db
            .get_postcard(CF_SM_META, KEY_MEMBERSHIP)?
            .unwrap_or_default();
        let tail = match db.get(CF_SM_META, KEY_TAIL)? {
            Some(bytes) => Tail::decode(&bytes)?,
            None => Tail::empty(&config.origin),
        };
        tail.verify_against(&db)?;
        let ledger = Arc::new(LogLedger::default());
        ledger.appended(db.raft_log_sizes()?, std::time::Instant::now());
        let (size_tx, _) = watch::channel(tail.size);
        Ok(Shared {
            db,
            origin: config.origin.clone(),
            dir: dir.to_path_buf(),
            state: Mutex::new(SmState {
                last_applied,
                membership,
                tail,
            }),
            apply_lock: Mutex::new(()),
            size_tx,
            ledger,
            append_entries_max_bytes: config.append_entries_max_bytes.max(1),
        })
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, SmState> {
        // A panic while holding this lock happens only inside our own code between
        // two field assignments; the state is still the last written one.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn lock_apply(&self) -> MutexGuard<'_, ()> {
        self.apply_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn snapshot_dir(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_DIR)
    }
}

/// Runs blocking RocksDB work on tokio's blocking pool, off the async workers.
pub(crate) async fn blocking<T, F>(shared: &std::sync::Arc<Shared>, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Shared) -> Result<T> + Send + 'static,
{
    let shared = std::sync::Arc::clone(shared);
    tokio::task::spawn_blocking(move || work(&shared))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}
