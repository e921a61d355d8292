//! Offline check of a data directory: recompute everything from the entries and
//! compare it with what is stored.
//!
//! Checks, entry by entry in seq order: the entry decodes and carries its key's
//! seq; it links to the entry before it; time never goes backwards; its hash is
//! the stored Merkle leaf; every Merkle node it completes equals the stored node;
//! the idempotency index and the three field indexes point at it. Then: the tail
//! record matches the recomputed tail; no index or node points past the log; and
//! every recorded checkpoint matches the recomputed root, head and timestamp at its
//! size. That last check catches even a suffix rewritten with consistently
//! recomputed hashes and nodes, as long as a checkpoint covers it.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use rocksdb::IteratorMode;
use veritrail_core::merkle::{Frontier, NodeId};
use veritrail_core::note::SignedNote;
use veritrail_core::{ChainVerifier, Checkpoint, entry_hash};

use crate::db::{
    CF_BY_FIELD, CF_CHECKPOINTS, CF_ENTRIES, CF_EVENT_IDS, CF_MERKLE, CF_RAFT_LOG, CF_RAFT_META,
    CF_SM_META, Db, Field, KEY_ORIGIN, KEY_SNAPSHOT, KEY_TAIL, event_id_key, field_key,
    merkle_key_ending_at, merkle_node_of, read_u64_key,
};
use crate::error::{Result, StoreError};
use crate::shared::{DB_DIR, SNAPSHOT_DIR};
use crate::snapshot::{SnapshotRecord, verify_digest};
use crate::tail::Tail;

/// Most problems one run collects before it stops looking.
pub const FSCK_PROBLEMS_MAX: usize = 100;
/// How often, in entries, [`fsck_with_progress`] reports its progress.
pub const FSCK_PROGRESS_EVERY: u64 = 100_000;

/// What kind of inconsistency was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProblemKind {
    /// An entry's bytes do not decode.
    EntryUndecodable,
    /// No entry is stored at a seq inside the log.
    EntryMissing,
    /// The entry stored under a seq carries another seq.
    SeqMismatch,
    /// An entry's `prev_hash` is not the hash of the entry before it.
    ChainBroken,
    /// An entry's timestamp is older than the one before it.
    TimestampBackwards,
    /// An entry's event signature (format version 2) does not verify.
    EventSignatureInvalid,
    /// The tail record disagrees with the entries.
    TailMismatch,
    /// A stored Merkle node (leaf or interior) differs from the recomputed one.
    MerkleNodeMismatch,
    /// A Merkle node that should exist is missing, or one exists past the log.
    MerkleNodeMissing,
    /// The idempotency index disagrees with the entries.
    EventIdIndexMismatch,
    /// The source, actor or action index disagrees with the entries.
    FieldIndexMismatch,
    /// A recorded checkpoint disagrees with the entries.
    CheckpointMismatch,
    /// The current snapshot names entries the log does not hold, or its file
    /// (what lagging followers are sent) fails its digest.
    SnapshotCorrupt,
    /// A Raft log entry does not decode, or is stored under another index:
    /// the node would refuse to start on it.
    RaftLogCorrupt,
}

/// One inconsistency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The first sequence number concerned, when one can be named.
    pub seq: Option<u64>,
    pub kind: ProblemKind,
    pub detail: String,
}

/// The result of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    pub origin: String,
    /// Entries read.
    pub entries: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Problems in seq order (those without a seq last), and for one seq the
    /// kinds in the order of [`ProblemKind`]: causes before consequences. At most
    /// [`FSCK_PROBLEMS_MAX`].
    pub problems: Vec<Problem>,
    /// The WAL is damaged past its last whole synced write, as a power cut
    /// leaves it (the damage RocksDB reported). The node replays up to the
    /// damage at its next start and loses nothing synced; the checks ran on
    /// that replay. `veritraild fsck` still reports it as damage.
    pub torn_wal: Option<String>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first inconsistency by sequence number.
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }
}

struct Collector {
    problems: Vec<Problem>,
}

impl Collector {
    fn add(&mut self, seq: Option<u64>, kind: ProblemKind, detail: impl Into<String>) {
        if self.problems.len() < FSCK_PROBLEMS_MAX {
            self.problems.push(Problem {
                seq,
                kind,
                detail: detail.into(),
            });
        }
    }

    fn full(&self) -> bool {
        self.problems.len() >= FSCK_PROBLEMS_MAX
    }
}

/// Checks the data directory `dir` of a stopped node.
pub fn fsck(dir: &Path) -> Result<FsckReport> {
    fsck_with_progress(dir, &mut |_, _| {})
}

/// The file RocksDB locks while a node has the data directory `dir` open.
pub fn lock_file(dir: &Path) -> std::path::PathBuf {
    dir.join(DB_DIR).join("LOCK")
}

/// [`fsck`], telling `progress` how many entries it checked and how many there
/// are, every [`FSCK_PROGRESS_EVERY`] entries and at the end.
pub fn fsck_with_progress(dir: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<FsckReport> {
    let db = Db::open_read_only(&dir.join(DB_DIR))?;
    let total = match db
        .raw()
        .iterator_cf(db.cf(CF_ENTRIES), IteratorMode::End)
        .next()
    {
        Some(item) => read_u64_key(&item?.0, CF_ENTRIES)? + 1,
        None => 0,
    };
    let origin = db
        .get(CF_SM_META, KEY_ORIGIN)?
        .map(|o| String::from_utf8_lossy(&o).into_owned())
        .ok_or_else(|| {
            StoreError::corrupt("sm_meta/origin", "missing: not a Veritrail data directory")
        })?;
    let mut found = Collector {
        problems: Vec::new(),
    };

    // Checkpoint sizes first, so the scan can note the state at each of them.
    let mut checkpoints: BTreeMap<u64, (String, Option<Checkpoint>)> = BTreeMap::new();
    for item in db
        .raw()
        .iterator_cf(db.cf(CF_CHECKPOINTS), IteratorMode::Start)
    {
        let (key, value) = item?;
        let size = read_u64_key(&key, CF_CHECKPOINTS)?;
        checkpoints.insert(size, (String::from_utf8_lossy(&value).into_owned(), None));
    }
    if let Some(entry) = checkpoints.get_mut(&0) {
        entry.1 = Some(Checkpoint::empty(&origin));
    }

    let mut chain = ChainVerifier::from_genesis(&origin);
    let mut frontier = Frontier::new();
    // Recomputed nodes that differ from the stored ones. A node whose child
    // differs differs too; only the lowest such node is reported, as the cause.
    let mut tainted: HashSet<NodeId> = HashSet::new();
    let mut expected = 0u64;
    for item in db.raw().iterator_cf(db.cf(CF_ENTRIES), IteratorMode::Start) {
        if found.full() {
            break;
        }
        let (key, bytes) = item?;
        let seq = read_u64_key(&key, CF_ENTRIES)?;
        if seq != expected {
            found.add(
                Some(expected),
                ProblemKind::EntryMissing,
                format!("entries {expected} to {} are missing", seq - 1),
            );
            // Go on from the entry found, without its predecessor's hash.
            chain = ChainVerifier::resume(&origin, seq, None, None, None)?;
            frontier = Frontier::new();
            expected = seq;
        }
        let hash = entry_hash(&bytes);
        match chain.push(&bytes) {
            Ok(entry) => {
                check_indexes(&db, &entry, &mut found)?;
            }
            Err(veritrail_core::Error::ChainBroken { seq, fault }) => {
                found.add(Some(seq), chain_fault_kind(&fault), fault.to_string());
                // Resume after the bad entry as if it were right, to find more.
                chain = ChainVerifier::resume(&origin, seq + 1, Some(hash), None, None)?;
            }
            Err(other) => return Err(other.into()),
        }
        // The Merkle nodes: recomputed from entry hashes, compared with stored.
        if frontier.size() == seq {
            let mut mismatches = Vec::new();
            frontier.push(hash, |id, node| mismatches.push((id, *node)));
            for (id, node) in mismatches {
                let derived = id.level > 0
                    && (tainted.contains(&NodeId::new(id.level - 1, id.index * 2))
                        || tainted.contains(&NodeId::new(id.level - 1, id.index * 2 + 1)));
                match db.get(CF_MERKLE, &merkle_key_ending_at(seq, id.level))? {
                    None => {
                        tainted.insert(id);
                        found.add(
                            Some(seq),
                            ProblemKind::MerkleNodeMissing,
                            format!("node level {} index {} is missing", id.level, id.index),
                        );
                    }
                    Some(stored) if stored.as_slice() != node.as_bytes() => {
                        tainted.insert(id);
                        if derived {
                            continue;
                        }
                        let (first, what) = if id.level == 0 {
                            (
                                seq,
                                "the entry's hash differs from its stored Merkle leaf".to_owned(),
                            )
                        } else {
                            (
                                id.first_leaf(),
                                format!(
                                    "stored Merkle node level {} index {} (entries {} to {}) differs from the one recomputed from its children",
                                    id.level,
                                    id.index,
                                    id.first_leaf(),
                                    id.end_leaf() - 1
                                ),
                            )
                        };
                        found.add(Some(first), ProblemKind::MerkleNodeMismatch, what);
                    }
                    Some(_) => {}
                }
            }
            if let Some((_, computed)) = checkpoints.get_mut(&(seq + 1)) {
                *computed = Some(Checkpoint {
                    origin: origin.clone(),
                    size: seq + 1,
                    root: frontier.root(),
                    head: hash,
                    timestamp_ns: chain.last_timestamp_ns().unwrap_or(0),
                });
            }
        }
        expected += 1;
        if expected.is_multiple_of(FSCK_PROGRESS_EVERY) {
            progress(expected, total);
        }
    }
    progress(expected, total);

    // The tail record against the recomputed tail.
    match db.get(CF_SM_META, KEY_TAIL)? {
        None if expected > 0 => {
            found.add(None, ProblemKind::TailMismatch, "tail record is missing")
        }
        None => {}
        Some(bytes) => match Tail::decode(&bytes) {
            Err(e) => found.add(None, ProblemKind::TailMismatch, e.to_string()),
            Ok(tail) => {
                if tail.size != expected {
                    found.add(
                        Some(tail.size.min(expected)),
                        ProblemKind::TailMismatch,
                        format!(
                            "the tail says {} entries, the log holds {expected}",
                            tail.size
                        ),
                    );
                } else if frontier.size() == expected
                    && (tail.frontier != frontier || Some(tail.head) != chain.head())
                {
                    found.add(
                        None,
                        ProblemKind::TailMismatch,
                        "the tail's head or frontier differs from the recomputed one",
                    );
                }
            }
        },
    }

    // Nothing indexed past the end of the log.
    count_beyond(&db, expected, &mut found)?;

    // Recorded checkpoints against the recomputed state.
    let mut last_good = 0u64;
    let mut checked = 0u64;
    for (size, (note, computed)) in &checkpoints {
        checked += 1;
        let stated = SignedNote::parse(note)
            .map_err(|e| e.to_string())
            .and_then(|n| Checkpoint::parse(n.text()).map_err(|e| e.to_string()));
        match (stated, computed) {
            (Err(e), _) => found.add(
                None,
                ProblemKind::CheckpointMismatch,
                format!("checkpoint at size {size} does not parse: {e}"),
            ),
            (Ok(_), None) => found.add(
                Some(expected),
                ProblemKind::CheckpointMismatch,
                format!("a checkpoint covers size {size}, but the log holds {expected} entries"),
            ),
            (Ok(stated), Some(computed)) if &stated != computed => {
                // When an entry-level problem inside the range explains the
                // mismatch, it is the cause and is listed first; otherwise the
                // checkpoint is the only witness, and names the range.
                let explained = found
                    .problems
                    .iter()
                    .any(|p| p.seq.is_some_and(|s| s >= last_good && s < *size));
                found.add(
                    (!explained).then_some(last_good),
                    ProblemKind::CheckpointMismatch,
                    format!(
                        "the checkpoint at size {size} states root {}, the entries give {}: entries from seq {last_good} to {} were altered",
                        stated.root,
                        computed.root,
                        size - 1
                    ),
                )
            }
            (Ok(_), Some(_)) => last_good = *size,
        }
    }

    check_snapshot(dir, &db, expected, &mut found)?;
    check_raft_log(&db, &mut found)?;

    let mut problems = found.problems;
    problems.sort_by_key(|p| (p.seq.is_none(), p.seq, p.kind));
    Ok(FsckReport {
        origin,
        entries: expected,
        checkpoints: checked,
        problems,
        torn_wal: db.torn_wal.clone(),
    })
}

/// The Raft log and the records beside it, which a node reads when it opens:
/// every entry must decode under its index, and every record of the Raft and
/// state-machine metadata must read (RocksDB checks each block it reads, so a
/// damaged table holding them fails here as it fails the node's start: the
/// chaos suite found `fsck` passing a node that refused to start on such a
/// table).
fn check_raft_log(db: &Db, found: &mut Collector) -> Result<()> {
    for item in db
        .raw()
        .iterator_cf(db.cf(CF_RAFT_LOG), IteratorMode::Start)
    {
        let (key, value) = item?;
        if let Err(e) = crate::log_store::decode_entry(&key, &value) {
            found.add(None, ProblemKind::RaftLogCorrupt, e.to_string());
        }
    }
    for cf in [CF_RAFT_META, CF_SM_META] {
        for item in db.raw().iterator_cf(db.cf(cf), IteratorMode::Start) {
            item?;
        }
    }
    Ok(())
}

/// The current snapshot is sent to followers that lag behind the purged log: it
/// must name entries this node holds, and its file, once written, must pass its
/// digest (a damaged one would leave followers unable to catch up).
fn check_snapshot(dir: &Path, db: &Db, entries: u64, found: &mut Collector) -> Result<()> {
    let Some(record): Option<SnapshotRecord> = db.get_postcard(CF_SM_META, KEY_SNAPSHOT)? else {
        return Ok(());
    };
    if record.size > entries {
        found.add(
            Some(entries),
            ProblemKind::SnapshotCorrupt,
            format!(
                "the current snapshot {} holds {} entries, the log only {entries}",
                record.meta.snapshot_id, record.size
            ),
        );
    }
    let path = dir.join(SNAPSHOT_DIR).join(record.file_name());
    let checked = match std::fs::File::open(&path) {
        // Not written yet: it is written when a follower first needs it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(StoreError::io(format!("opening {}", path.display()), e)),
        Ok(mut file) => verify_digest(&mut file, &mut std::io::sink()),
    };
    if let Err(e) = checked {
        found.add(
            None,
            ProblemKind::SnapshotCorrupt,
            format!("the current snapshot's file {}: {e}", record.file_name()),
        );
    }
    Ok(())
}

fn check_indexes(db: &Db, entry: &veritrail_core::Entry, found: &mut Collector) -> Result<()> {
    let e = &entry.event;
    let seq = entry.seq;
    match db.get(CF_EVENT_IDS, &event_id_key(&e.source, &e.event_id))? {
        Some(v) if read_u64_key(&v, CF_EVENT_IDS).ok() == Some(seq) => {}
        Some(v) => found.add(
            Some(seq),
            ProblemKind::EventIdIndexMismatch,
            format!(
                "({}, {}) is indexed at seq {:?}",
                e.source,
                e.event_id,
                read_u64_key(&v, CF_EVENT_IDS).ok()
            ),
        ),
        None => found.add(
            Some(seq),
            ProblemKind::EventIdIndexMismatch,
            format!("({}, {}) is not indexed", e.source, e.event_id),
        ),
    }
    for (field, value) in [
        (Field::Source, &e.source),
        (Field::Actor, &e.actor),
        (Field::Action, &e.action),
    ] {
        if db
            .get(CF_BY_FIELD, &field_key(field, value, seq))?
            .is_none()
        {
            found.add(
                Some(seq),
                ProblemKind::FieldIndexMismatch,
                format!("{field:?} {value:?} is not indexed"),
            );
        }
    }
    Ok(())
}

/// Index entries and Merkle nodes that point at or past `size`.
fn count_beyond(db: &Db, size: u64, found: &mut Collector) -> Result<()> {
    for item in db
        .raw()
        .iterator_cf(db.cf(CF_EVENT_IDS), IteratorMode::Start)
    {
        let (key, value) = item?;
        let seq = read_u64_key(&value, CF_EVENT_IDS)?;
        if seq >= size {
            found.add(
                Some(size),
                ProblemKind::EventIdIndexMismatch,
                format!(
                    "idempotency key {:?} points at seq {seq}, past the end of the log",
                    String::from_utf8_lossy(&key)
                ),
            );
        }
    }
    for item in db
        .raw()
        .iterator_cf(db.cf(CF_BY_FIELD), IteratorMode::Start)
    {
        let (key, _) = item?;
        let seq = key
            .len()
            .checked_sub(8)
            .map(|at| read_u64_key(&key[at..], CF_BY_FIELD))
            .transpose()?;
        if seq.is_none_or(|s| s >= size) {
            found.add(
                Some(size),
                ProblemKind::FieldIndexMismatch,
                format!("field index entry for seq {seq:?} is past the end of the log"),
            );
        }
    }
    for item in db.raw().iterator_cf(db.cf(CF_MERKLE), IteratorMode::Start) {
        let (key, _) = item?;
        let Some((level, index)) = merkle_node_of(&key) else {
            found.add(None, ProblemKind::MerkleNodeMissing, "malformed Merkle key");
            continue;
        };
        // The last leaf it covers (cannot overflow: the key held it).
        let last = (index << level) | ((1u64 << level) - 1);
        let end = last.saturating_add(1);
        if end > size {
            found.add(
                Some(size),
                ProblemKind::MerkleNodeMissing,
                format!(
                    "Merkle node level {level} index {index} covers entries past the end of the log"
                ),
            );
        }
    }
    Ok(())
}

/// The fsck kind of a chain fault.
fn chain_fault_kind(fault: &veritrail_core::chain::ChainFault) -> ProblemKind {
    use veritrail_core::chain::ChainFault;
    match fault {
        ChainFault::Undecodable { .. } => ProblemKind::EntryUndecodable,
        ChainFault::SeqMismatch { .. } => ProblemKind::SeqMismatch,
        ChainFault::PrevHashMismatch { .. } => ProblemKind::ChainBroken,
        ChainFault::TimestampBackwards { .. } => ProblemKind::TimestampBackwards,
        ChainFault::BadEventSignature { .. } => ProblemKind::EventSignatureInvalid,
    }
}
