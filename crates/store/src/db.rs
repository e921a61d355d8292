//! The RocksDB database: column families, key layout, options, and the few
//! primitives (synced writes, typed reads) every other module uses.
//!
//! # Layout
//!
//! All integers are big-endian so that byte order is numeric order.
//!
//! | column family | key | value | written by |
//! |---|---|---|---|
//! | `raft_log`  | Raft index `u64` | postcard `openraft::Entry<TypeConfig>` | log store: append (synced), truncate (synced), purge |
//! | `raft_meta` | `b"vote"` | postcard `Vote` | log store only: `save_vote`, and restore through it (synced) |
//! |             | `b"committed"` | postcard `Option<LogId>` | `save_committed` (not synced: a hint) |
//! |             | `b"last_purged"` | postcard `LogId` | `purge`, in the same batch as the deletion |
//! | `entries`   | seq `u64` | canonical entry bytes (docs/FORMAT.md) | apply, snapshot install |
//! | `event_ids` | `u16` source length, source, event_id | seq `u64` | apply, install |
//! | `by_field`  | field tag `u8` (1 source, 2 actor, 3 action), `u16` value length, value, seq `u64` | empty | apply, install |
//! | `merkle_nodes` | last leaf `u64`, level `u8` | 32-byte hash of the perfect subtree | apply, install |
//! | `checkpoints` | tree size `u64` | signed note text, all signatures gathered | apply of `Command::Checkpoint` |
//! | `sm_meta`   | `b"format_version"` | `u64`: [`DATA_FORMAT_VERSION`] of the release that last opened it; absent in 0.1.0's | open |
//! |             | `b"origin"` | the log's origin, UTF-8 | first open |
//! |             | `b"last_applied"` | postcard `Option<LogId>` | apply, install |
//! |             | `b"membership"` | postcard `StoredMembership` | apply, install |
//! |             | `b"tail"` | [`crate::tail::Tail`] encoding | apply, install |
//! |             | `b"snapshot_point"` | postcard `SnapshotRecord` (meta and tree size) | snapshot build, install |
//!
//! Everything the state machine writes for one apply call (entries, indexes,
//! Merkle nodes, tail, last applied) goes into one write batch: either all of
//! it is on disk or none of it is. Raft log appends, votes, purges and
//! snapshot records are written synced; apply's batch is not, because the
//! Raft log it derives from is synced first, shares the WAL, and is purged only
//! behind a synced snapshot record (see `apply::Batch::commit`).

use std::path::Path;

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB,
    DBCompressionType, Options, WriteBatch, WriteOptions,
};

use crate::error::{Result, StoreError};

pub(crate) const CF_RAFT_LOG: &str = "raft_log";
pub(crate) const CF_RAFT_META: &str = "raft_meta";
pub(crate) const CF_ENTRIES: &str = "entries";
pub(crate) const CF_EVENT_IDS: &str = "event_ids";
pub(crate) const CF_BY_FIELD: &str = "by_field";
/// Merkle nodes keyed by the last leaf they cover, then level: the order in
/// which apply completes them, so the keys only ever grow and RocksDB moves
/// their files down the levels without rewriting them.
pub(crate) const CF_MERKLE: &str = "merkle_nodes";
/// The Merkle column family of earlier versions, keyed by level then index.
/// New nodes landed in every level's key range at once, so each compaction
/// rewrote most of the family (1.8 GB written for 0.3 GB flushed at 2.6
/// million entries). An open moves it into [`CF_MERKLE`] and drops it.
const CF_MERKLE_V1: &str = "merkle";
pub(crate) const CF_CHECKPOINTS: &str = "checkpoints";
pub(crate) const CF_SM_META: &str = "sm_meta";

const ALL_CFS: [&str; 8] = [
    CF_RAFT_LOG,
    CF_RAFT_META,
    CF_ENTRIES,
    CF_EVENT_IDS,
    CF_BY_FIELD,
    CF_MERKLE,
    CF_CHECKPOINTS,
    CF_SM_META,
];

/// The version of this layout and of the postcard records in it (the Raft
/// log's entries, the vote, the state machine's records). Pinned by the golden
/// fixtures in `testdata/formats` and by the 0.1.0 data directory of the
/// upgrade test. A release that changes any of them raises it, keeps reading
/// every earlier version, and converts on open; a release meeting a later
/// version refuses to open the directory ([`StoreError::NewerFormat`]).
pub const DATA_FORMAT_VERSION: u64 = 1;

pub(crate) const KEY_FORMAT_VERSION: &[u8] = b"format_version";
pub(crate) const KEY_VOTE: &[u8] = b"vote";
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
pub(crate) const KEY_LAST_PURGED: &[u8] = b"last_purged";
pub(crate) const KEY_ORIGIN: &[u8] = b"origin";
pub(crate) const KEY_LAST_APPLIED: &[u8] = b"last_applied";
pub(crate) const KEY_MEMBERSHIP: &[u8] = b"membership";
pub(crate) const KEY_TAIL: &[u8] = b"tail";
pub(crate) const KEY_SNAPSHOT: &[u8] = b"snapshot_point";
/// In `raft_meta`, followed by a big-endian count: the marker of a synced
/// write. Each synced write puts its own and deletes its predecessor's, so a
/// database holds one (see `Db::open` on a torn WAL).
pub(crate) const KEY_SYNCED_WRITE_PREFIX: &[u8] = b"synced_write/";
/// The snapshot record of earlier versions (meta and a file name); removed on open.
pub(crate) const KEY_SNAPSHOT_V1: &[u8] = b"snapshot";

/// Field tags of the `by_field` index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Field {
    Source = 1,
    Actor = 2,
    Action = 3,
}

/// Memory RocksDB may use, in bytes. Sized so that a node holding a million
/// entries stays well under 256 MiB resident (docs/BENCHMARKS.md).
#[derive(Debug, Clone)]
pub struct DbTuning {
    /// Shared block cache for all column families.
    pub block_cache_bytes: usize,
    /// Total memtable budget across column families.
    pub write_buffer_total_bytes: usize,
}

impl Default for DbTuning {
    fn default() -> Self {
        DbTuning {
            block_cache_bytes: 32 << 20,
            write_buffer_total_bytes: 48 << 20,
        }
    }
}

/// Called with the duration of each synced write (`Store::observe_synced_writes`).
pub type SyncObserver = Box<dyn Fn(std::time::Duration) + Send + Sync>;

/// The open database.
pub(crate) struct Db {
    db: DB,
    /// Told how long each synced write took, once one is installed.
    on_sync: std::sync::OnceLock<SyncObserver>,
    /// The number of the next synced write; held while one is written, so
    /// that the numbers follow the WAL's order.
    synced_writes: std::sync::Mutex<u64>,
    /// Opened read-only on a WAL torn after its last sync: the damage, and
    /// the view is the replay up to it (what the node will keep).
    pub(crate) torn_wal: Option<String>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("db", &self.db)
            .field("on_sync", &self.on_sync.get().is_some())
            .finish()
    }
}

impl Db {
    /// Opens (or creates) the database.
    ///
    /// # A WAL torn by a power cut
    ///
    /// RocksDB is asked to refuse a WAL damaged anywhere but in its very last
    /// record (`TolerateCorruptedTailRecords`): replaying up to the damage
    /// and opening on what came before would be a node that quietly forgot
    /// synced writes. But a power cut can keep some pages of the records
    /// written after the last sync and lose others, and that damage is not
    /// always the last record (the power-cut tests met it). Nothing synced is
    /// lost in it, except the one synced write whose sync never returned.
    ///
    /// So on damage the node looks twice, read-only: replaying up to the
    /// damage (`PointInTime`), and replaying every record that is whole
    /// (`SkipAnyCorruptedRecord`). Each synced write puts a marker of its own
    /// and deletes its predecessor's (`KEY_SYNCED_WRITE_PREFIX`), so the
    /// second view holds two markers exactly when a synced write past the
    /// damage is itself damaged: synced data is lost, and the node refuses to
    /// open, having changed nothing. Otherwise every synced write past the
    /// damage is whole, and the node keeps them: it saves a copy of the WAL
    /// beside the database, replays up to the damage, writes back the Raft log
    /// entries, vote and commit index that lay past it (synced), and says so.
    /// What lay past it besides is apply's work, which the Raft log rebuilds.
    ///
    /// What this cannot tell: damage to the very last synced write, with
    /// nothing synced after it, looks like the write a power cut interrupted,
    /// and that one write is not kept.
    pub(crate) fn open(path: &Path, tuning: &DbTuning) -> Result<Self> {
        match Self::open_with(
            path,
            tuning,
            rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords,
        ) {
            Err(StoreError::Rocks(e)) if e.kind() == rocksdb::ErrorKind::Corruption => {
                Self::recover_torn_wal(path, tuning, e)
            }
            other => other,
        }
    }

    fn recover_torn_wal(path: &Path, tuning: &DbTuning, damage: rocksdb::Error) -> Result<Self> {
        let past = past_the_damage(path, &damage)?;
        let saved = save_wal_files(path)
            .map_err(|e| StoreError::io("saving a copy of the damaged WAL", e))?;
        let db = Self::open_with(path, tuning, rocksdb::DBRecoveryMode::PointInTime)?;
        let mut batch = WriteBatch::default();
        for (key, value) in &past.raft_log {
            batch.put_cf(db.cf(CF_RAFT_LOG), key, value);
        }
        for (key, value) in &past.raft_meta {
            batch.put_cf(db.cf(CF_RAFT_META), key, value);
        }
        db.write_synced(batch)?;
        tracing::warn!(
            damage = %damage,
            raft_entries_kept = past.raft_log.len(),
            copy = %saved.display(),
            "the write-ahead log was torn after its last synced write (a power cut): \
             replayed up to the damage and kept the synced writes past it; nothing synced was lost"
        );
        Ok(db)
    }

    fn open_with(
        path: &Path,
        tuning: &DbTuning,
        recovery: rocksdb::DBRecoveryMode,
    ) -> Result<Self> {
        let cache = Cache::new_lru_cache(tuning.block_cache_bytes);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_db_write_buffer_size(tuning.write_buffer_total_bytes);
        db_opts.set_keep_log_file_num(4);
        // Bounded WAL: older memtables are flushed rather than replayed at length.
        db_opts.set_max_total_wal_size(64 << 20);
        // Raft appends, votes and snapshot records are synced, and apply's
        // writes between them are rebuilt from the Raft log, so after a crash
        // only the records after the last sync can be torn. See `open`.
        db_opts.set_wal_recovery_mode(recovery);

        let cfs = ALL_CFS.iter().map(|name| {
            let mut opts = Options::default();
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            // A bloom filter saves a disk read per lookup of a key that is not
            // there: the idempotency check, which mostly misses. Elsewhere
            // reads find their key or scan ranges, and building filters on
            // every flush and compaction would be work for nothing.
            if *name == CF_EVENT_IDS {
                table.set_bloom_filter(10.0, false);
            }
            // Index and filter blocks live in the block cache, so memory stays
            // bounded, in partitions of about 4 KiB behind a small pinned top
            // level. Whole-table blocks instead (about 1 MiB of filter per
            // million keys) thrash a cache this size: under load, reloading and
            // checksumming them took a seventh of the node's CPU.
            table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
            table.set_partition_filters(true);
            table.set_metadata_block_size(4096);
            table.set_cache_index_and_filter_blocks(true);
            table.set_cache_index_and_filter_blocks_with_high_priority(true);
            table.set_pin_top_level_index_and_filter(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            opts.set_block_based_table_factory(&table);
            // The indexes take keys in no particular order, so each flush
            // overlaps older files and compaction rewrites them: larger
            // memtables mean fewer, larger flushes and fewer rewrites.
            opts.set_write_buffer_size(match *name {
                CF_ENTRIES | CF_RAFT_LOG | CF_BY_FIELD | CF_EVENT_IDS => 16 << 20,
                _ => 4 << 20,
            });
            // Hashes and random event ids do not compress; text does.
            opts.set_compression_type(match *name {
                CF_MERKLE | CF_EVENT_IDS => DBCompressionType::None,
                _ => DBCompressionType::Lz4,
            });
            ColumnFamilyDescriptor::new(*name, opts)
        });
        let legacy = DB::list_cf(&db_opts, path)
            .unwrap_or_default()
            .iter()
            .any(|name| name == CF_MERKLE_V1);
        let cfs: Vec<_> = cfs
            .chain(legacy.then(|| ColumnFamilyDescriptor::new(CF_MERKLE_V1, Options::default())))
            .collect();
        let mut db = DB::open_cf_descriptors(&db_opts, path, cfs)?;
        // Before anything is converted or written: a later release's data
        // is left exactly as it was.
        let found = stored_format_version(&db, path)?;
        if legacy {
            migrate_merkle_v1(&mut db)?;
        }
        if found != Some(DATA_FORMAT_VERSION) {
            let sm_meta = db
                .cf_handle(CF_SM_META)
                .unwrap_or_else(|| panic!("column family {CF_SM_META} exists after open"));
            let mut batch = WriteBatch::default();
            batch.put_cf(
                sm_meta,
                KEY_FORMAT_VERSION,
                DATA_FORMAT_VERSION.to_be_bytes(),
            );
            let mut sync = WriteOptions::default();
            sync.set_sync(true);
            db.write_opt(batch, &sync)?;
        }
        let synced_writes = std::sync::Mutex::new(synced_writes(&db)?);
        Ok(Db {
            db,
            on_sync: std::sync::OnceLock::new(),
            synced_writes,
            torn_wal: None,
        })
    }

    /// Opens an existing database without writing to it, for offline checks.
    pub(crate) fn open_read_only(path: &Path) -> Result<Self> {
        let mut opts = Options::default();
        // As strict as a node opening its own data (see `open`): with RocksDB's
        // default, a damaged WAL record would end the replay quietly there and
        // fsck would check, and pass, a shorter log than the disk held.
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        if DB::list_cf(&opts, path)
            .unwrap_or_default()
            .iter()
            .any(|name| name == CF_MERKLE_V1)
        {
            return Err(StoreError::InvalidArgument(format!(
                "{} was written by an earlier version: start the node once to convert it, \
                 stop it, then check it",
                path.display()
            )));
        }
        let (db, torn_wal) = match DB::open_cf_for_read_only(&opts, path, ALL_CFS, false) {
            Ok(db) => (db, None),
            // A WAL torn after its last sync (a power cut): the node replays
            // up to the damage at its next start, so check what that keeps.
            Err(e) if e.kind() == rocksdb::ErrorKind::Corruption => {
                past_the_damage(path, &e)?;
                opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
                let db = DB::open_cf_for_read_only(&opts, path, ALL_CFS, false)?;
                (db, Some(e.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        stored_format_version(&db, path)?;
        let synced_writes = std::sync::Mutex::new(synced_writes(&db)?);
        Ok(Db {
            db,
            on_sync: std::sync::OnceLock::new(),
            synced_writes,
            torn_wal,
        })
    }

    pub(crate) fn cf(&self, name: &'static str) -> &ColumnFamily {
        // Every column family is created at open; a missing handle is a bug here,
        // not a disk problem.
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} exists after open"))
    }

    pub(crate) fn raw(&self) -> &DB {
        &self.db
    }

    /// Writes a batch and waits for it to reach the disk (WAL fsync). The
    /// batch also records the count of synced writes (see `open`).
    pub(crate) fn write_synced(&self, mut batch: WriteBatch) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        let started = std::time::Instant::now();
        let mut count = self.synced_writes.lock().unwrap_or_else(|p| p.into_inner());
        let marker = |n: u64| [KEY_SYNCED_WRITE_PREFIX, &u64_key(n)].concat();
        batch.delete_cf(self.cf(CF_RAFT_META), marker(*count));
        batch.put_cf(self.cf(CF_RAFT_META), marker(*count + 1), []);
        self.db.write_opt(batch, &opts)?;
        *count += 1;
        drop(count);
        if let Some(observe) = self.on_sync.get() {
            observe(started.elapsed());
        }
        Ok(())
    }

    /// Installs the observer of synced writes; a second one is ignored.
    pub(crate) fn observe_synced_writes(&self, observer: SyncObserver) {
        let _ = self.on_sync.set(observer);
    }

    /// Writes a batch to the WAL without waiting for the disk: the next synced
    /// write persists it (the WAL is one sequence). Only for data that is a hint
    /// or that the synced Raft log rebuilds.
    pub(crate) fn write_unsynced(&self, batch: WriteBatch) -> Result<()> {
        self.db.write(batch)?;
        Ok(())
    }

    /// Index and stored size of every entry of the Raft log, in order.
    pub(crate) fn raft_log_sizes(&self) -> Result<Vec<(u64, u64)>> {
        let mut it = self.db.raw_iterator_cf(self.cf(CF_RAFT_LOG));
        it.seek_to_first();
        let mut sizes = Vec::new();
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            sizes.push((read_u64_key(key, CF_RAFT_LOG)?, value.len() as u64));
            it.next();
        }
        it.status()?;
        Ok(sizes)
    }

    pub(crate) fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    pub(crate) fn get_postcard<T: serde::de::DeserializeOwned>(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<T>> {
        match self.get(cf, key)? {
            None => Ok(None),
            Some(bytes) => postcard::from_bytes(&bytes).map(Some).map_err(|e| {
                StoreError::corrupt(format!("{cf}/{}", String::from_utf8_lossy(key)), e)
            }),
        }
    }
}

/// What a WAL replay up to its damage would leave out that must be kept.
#[derive(Debug, Default)]
struct PastTheDamage {
    /// Raft log entries past the replay's last one, in order (key, value).
    raft_log: Vec<(Vec<u8>, Vec<u8>)>,
    /// The vote and commit index, where they differ from the replay's.
    raft_meta: Vec<(&'static [u8], Vec<u8>)>,
}

/// Whether the WAL damage `damage` of the database at `path` spares every
/// synced write (see `Db::open`), looking only, read-only; and what a replay
/// up to the damage would leave out of them. An integrity error when a synced
/// write past the damage is itself damaged.
fn past_the_damage(path: &Path, damage: &rocksdb::Error) -> Result<PastTheDamage> {
    let refused = |detail: String| StoreError::Integrity { seq: None, detail };
    let read_only = |mode: rocksdb::DBRecoveryMode| -> Result<DB> {
        let mut opts = Options::default();
        opts.set_wal_recovery_mode(mode);
        DB::open_cf_for_read_only(&opts, path, ALL_CFS, false).map_err(|e| {
            refused(format!(
                "{damage}; and reading around the damage failed: {e}"
            ))
        })
    };
    let (replay_last, replay_meta) = {
        let db = read_only(rocksdb::DBRecoveryMode::PointInTime)?;
        let log = db
            .cf_handle(CF_RAFT_LOG)
            .ok_or_else(|| refused("no Raft log".into()))?;
        let last = match db.iterator_cf(log, rocksdb::IteratorMode::End).next() {
            Some(item) => Some(read_u64_key(&item?.0, CF_RAFT_LOG)?),
            None => None,
        };
        let meta = db
            .cf_handle(CF_RAFT_META)
            .ok_or_else(|| refused("no Raft metadata".into()))?;
        (
            last,
            [db.get_cf(meta, KEY_VOTE)?, db.get_cf(meta, KEY_COMMITTED)?],
        )
    };
    let whole = read_only(rocksdb::DBRecoveryMode::SkipAnyCorruptedRecord)?;
    let markers = synced_write_markers(&whole)?;
    if markers.len() > 1 {
        return Err(refused(format!(
            "the write-ahead log is damaged ({damage}), and so is a synced write past the damage \
             (synced writes {markers:?} are each missing their successor); replaying around it \
             would forget synced writes, so nothing was changed. Replace this node \
             (docs/OPERATIONS.md, section 8)"
        )));
    }
    let mut past = PastTheDamage::default();
    let log = whole
        .cf_handle(CF_RAFT_LOG)
        .ok_or_else(|| refused("no Raft log".into()))?;
    let from = replay_last.map_or(0, |l| l + 1);
    let start = u64_key(from);
    let mut expected = None;
    for item in whole.iterator_cf(
        log,
        rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
    ) {
        let (key, value) = item?;
        let index = read_u64_key(&key, CF_RAFT_LOG)?;
        // After the replay's last entry, the next ones follow without a gap
        // (a Raft log with none yet may start anywhere, after a snapshot).
        let first_allowed = expected.or(replay_last.map(|l| l + 1));
        if first_allowed.is_some_and(|want| index != want) {
            return Err(refused(format!(
                "the write-ahead log is damaged ({damage}), and the Raft log past the damage \
                 has a gap before index {index}; nothing was changed. Replace this node \
                 (docs/OPERATIONS.md, section 8)"
            )));
        }
        expected = Some(index + 1);
        past.raft_log.push((key.to_vec(), value.to_vec()));
    }
    let meta = whole
        .cf_handle(CF_RAFT_META)
        .ok_or_else(|| refused("no Raft metadata".into()))?;
    for (key, replayed) in [KEY_VOTE, KEY_COMMITTED].into_iter().zip(replay_meta) {
        if let Some(value) = whole.get_cf(meta, key)?
            && Some(&value) != replayed.as_ref()
        {
            past.raft_meta.push((key, value));
        }
    }
    Ok(past)
}

/// The markers of synced writes a database holds: one, or none before the
/// first; more only where a synced write is missing (see `Db::open`).
fn synced_write_markers(db: &DB) -> Result<Vec<u64>> {
    let Some(cf) = db.cf_handle(CF_RAFT_META) else {
        return Ok(Vec::new());
    };
    let mut markers = Vec::new();
    for item in db.prefix_iterator_cf(cf, KEY_SYNCED_WRITE_PREFIX) {
        let (key, _) = item?;
        let Some(count) = key.strip_prefix(KEY_SYNCED_WRITE_PREFIX) else {
            break;
        };
        markers.push(read_u64_key(count, CF_RAFT_META)?);
    }
    Ok(markers)
}

/// The count of the last synced write a database holds (0 before the first).
fn synced_writes(db: &DB) -> Result<u64> {
    Ok(synced_write_markers(db)?.into_iter().max().unwrap_or(0))
}

/// Copies the WAL files of the database at `path` into a new directory beside
/// it, `wal-damaged-<unix seconds>`, and returns that directory.
fn save_wal_files(path: &Path) -> std::io::Result<std::path::PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let parent = path.parent().unwrap_or(path);
    let saved = parent.join(format!("wal-damaged-{secs}"));
    std::fs::create_dir_all(&saved)?;
    for file in std::fs::read_dir(path)? {
        let file = file?;
        if file.path().extension().is_some_and(|e| e == "log") {
            std::fs::copy(file.path(), saved.join(file.file_name()))?;
        }
    }
    Ok(saved)
}

/// Serializes a value with postcard. Our types always serialize.
/// The data format a directory records (`None` for a new one, or one of
/// 0.1.0's, which did not record it: both are version 1), refused when it is
/// later than this release reads.
fn stored_format_version(db: &DB, path: &Path) -> Result<Option<u64>> {
    let Some(sm_meta) = db.cf_handle(CF_SM_META) else {
        return Ok(None);
    };
    let Some(bytes) = db.get_cf(sm_meta, KEY_FORMAT_VERSION)? else {
        return Ok(None);
    };
    let found = <[u8; 8]>::try_from(bytes.as_slice())
        .map(u64::from_be_bytes)
        .map_err(|_| {
            StoreError::corrupt(
                "sm_meta/format_version",
                format!("{} bytes, expected 8", bytes.len()),
            )
        })?;
    if found > DATA_FORMAT_VERSION {
        return Err(StoreError::NewerFormat {
            path: path.display().to_string(),
            found,
            known: DATA_FORMAT_VERSION,
        });
    }
    Ok(Some(found))
}

pub(crate) fn to_postcard<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).unwrap_or_else(|e| panic!("postcard serialization cannot fail: {e}"))
}

pub(crate) fn u64_key(value: u64) -> [u8; 8] {
    value.to_be_bytes()
}

pub(crate) fn read_u64_key(key: &[u8], cf: &str) -> Result<u64> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::corrupt(cf, format!("key of {} bytes, expected 8", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

/// `event_ids` key: `u16` source length, source, event id.
pub(crate) fn event_id_key(source: &str, event_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + source.len() + event_id.len());
    key.extend_from_slice(&(source.len() as u16).to_be_bytes());
    key.extend_from_slice(source.as_bytes());
    key.extend_from_slice(event_id.as_bytes());
    key
}

/// `by_field` prefix for one field value: tag, `u16` length, value.
pub(crate) fn field_prefix(field: Field, value: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(3 + value.len() + 8);
    key.push(field as u8);
    key.extend_from_slice(&(value.len() as u16).to_be_bytes());
    key.extend_from_slice(value.as_bytes());
    key
}

/// `by_field` key: the prefix followed by the seq.
pub(crate) fn field_key(field: Field, value: &str, seq: u64) -> Vec<u8> {
    let mut key = field_prefix(field, value);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `merkle_nodes` key of the node at `level`, `index`: the last leaf it
/// covers, then its level. `None` for a node past the largest possible tree.
pub(crate) fn merkle_key(level: u8, index: u64) -> Option<[u8; 9]> {
    let span = 1u64.checked_shl(u32::from(level))?;
    let last = index.checked_mul(span)?.checked_add(span - 1)?;
    Some(merkle_key_ending_at(last, level))
}

/// `merkle_nodes` key of the node at `level` whose last leaf is `last`: what
/// appending leaf `last` completes.
pub(crate) fn merkle_key_ending_at(last: u64, level: u8) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[..8].copy_from_slice(&last.to_be_bytes());
    key[8] = level;
    key
}

/// The node a `merkle_nodes` key names: `(level, index)`, or `None` when the
/// key is malformed.
pub(crate) fn merkle_node_of(key: &[u8]) -> Option<(u8, u64)> {
    let (last, rest) = key.split_first_chunk::<8>()?;
    let &[level] = rest else {
        return None;
    };
    let last = u64::from_be_bytes(*last);
    // A node covers an aligned run of 2^level leaves: the low `level` bits of
    // its last leaf are all ones.
    let low = 1u64.checked_shl(u32::from(level))?.wrapping_sub(1);
    (last & low == low).then_some((level, last >> level))
}

/// Moves the nodes of an earlier version's `merkle` family into
/// `merkle_nodes`, then drops it. Interrupted, it starts over at the next
/// open: the old family goes only after every node is written, synced.
fn migrate_merkle_v1(db: &mut DB) -> Result<()> {
    let started = std::time::Instant::now();
    let mut moved = 0u64;
    {
        let old = db
            .cf_handle(CF_MERKLE_V1)
            .ok_or_else(|| StoreError::corrupt(CF_MERKLE_V1, "listed but not opened"))?;
        let new = db
            .cf_handle(CF_MERKLE)
            .ok_or_else(|| StoreError::corrupt(CF_MERKLE, "not opened"))?;
        let mut batch = WriteBatch::default();
        for item in db.iterator_cf(old, rocksdb::IteratorMode::Start) {
            let (key, value) = item?;
            let Some((&level, index)) = key.split_first() else {
                return Err(StoreError::corrupt(CF_MERKLE_V1, "empty key"));
            };
            let index = read_u64_key(index, CF_MERKLE_V1)?;
            let key = merkle_key(level, index).ok_or_else(|| {
                StoreError::corrupt(
                    CF_MERKLE_V1,
                    format!("node {level}/{index} is out of range"),
                )
            })?;
            batch.put_cf(new, key, value);
            moved += 1;
            if batch.len() >= 65_536 {
                db.write(std::mem::take(&mut batch))?;
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        db.write_opt(batch, &opts)?;
    }
    db.drop_cf(CF_MERKLE_V1)?;
    tracing::info!(
        nodes = moved,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Merkle nodes moved to the append-ordered layout"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(path: &Path) -> Option<u64> {
        let db = Db::open_read_only(path).expect("open read-only");
        stored_format_version(&db.db, path).expect("a version this release reads")
    }

    /// A new directory, like one of 0.1.0 (which recorded no version), is
    /// version 1 and is marked so on open. A directory of a later format is
    /// refused by a writable open and by fsck's read-only one, by name, and
    /// left as it was: a downgrade fails at once with nothing changed.
    #[test]
    fn a_directory_of_a_later_format_is_refused_and_left_unchanged() {
        let dir = tempfile::TempDir::new().expect("dir");
        drop(Db::open(dir.path(), &DbTuning::default()).expect("open"));
        assert_eq!(stored(dir.path()), Some(DATA_FORMAT_VERSION));

        {
            let db = Db::open(dir.path(), &DbTuning::default()).expect("open");
            let mut batch = WriteBatch::default();
            batch.delete_cf(db.cf(CF_SM_META), KEY_FORMAT_VERSION);
            db.write_synced(batch).expect("write");
        }
        assert_eq!(stored(dir.path()), None, "as 0.1.0 left it");
        drop(Db::open(dir.path(), &DbTuning::default()).expect("a 0.1.0 directory opens"));
        assert_eq!(stored(dir.path()), Some(DATA_FORMAT_VERSION));

        let later = DATA_FORMAT_VERSION + 1;
        {
            let db = Db::open(dir.path(), &DbTuning::default()).expect("open");
            let mut batch = WriteBatch::default();
            batch.put_cf(db.cf(CF_SM_META), KEY_FORMAT_VERSION, later.to_be_bytes());
            db.write_synced(batch).expect("write");
        }
        for refused in [
            Db::open(dir.path(), &DbTuning::default()).map(drop),
            Db::open_read_only(dir.path()).map(drop),
        ] {
            let error = refused.expect_err("a later format");
            assert!(
                matches!(error, StoreError::NewerFormat { found, known, .. }
                    if found == later && known == DATA_FORMAT_VERSION),
                "{error:?}"
            );
            let message = error.to_string();
            assert!(
                message.contains(&format!("data format {later}"))
                    && message.contains(&format!("up to {DATA_FORMAT_VERSION}")),
                "{message}"
            );
        }
        let raw = DB::open_cf_for_read_only(&Options::default(), dir.path(), ALL_CFS, false)
            .expect("raw open");
        let value = raw
            .get_cf(raw.cf_handle(CF_SM_META).expect("cf"), KEY_FORMAT_VERSION)
            .expect("read");
        assert_eq!(value, Some(later.to_be_bytes().to_vec()), "left unchanged");
    }
}
