//! Reads: entries by seq and by event id, filtered scans, roots, proofs and
//! checkpoints. All calls block on RocksDB; async callers run them on a blocking
//! thread.

use std::sync::Arc;

use rocksdb::{DB, DBRawIteratorWithThreadMode};
use veritrail_core::merkle::{self, Frontier, NodeId, NodeSource};
use veritrail_core::{Checkpoint, Hash, entry_hash};

use crate::db::{
    CF_BY_FIELD, CF_CHECKPOINTS, CF_ENTRIES, CF_EVENT_IDS, Field, event_id_key, field_prefix,
    read_u64_key, u64_key,
};
use crate::error::{Result, StoreError};
use crate::shared::Shared;
use crate::snapshot::{Backup, Snapshots, backup};
use crate::stored::{DbNodes, StoredEntry, checkpoint_at, stored_entry};
use crate::tail::Tail;

/// A filtered scan over a seq range: the core's, which the SDK builds too.
/// Here `limit` is the most entries in one page.
pub use veritrail_core::ScanQuery;

/// Entries read at once by a scan that checks entries (see
/// `AuditReader::scan_checking_entries`).
pub const SCAN_READ_CHUNK: usize = 64;
/// Entries a scan that checks entries reads for one page, at most.
pub const SCAN_EXAMINE_MAX: usize = 4096;

/// One page of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    pub entries: Vec<StoredEntry>,
    /// Where to continue: `Some(seq)` when the page was cut by its limit, or
    /// by the work one page may do.
    pub next_seq: Option<u64>,
}

/// What [`AuditReader::verify_range`] found and what
/// [`AuditReader::inclusion_proof_with_root`] serves: the core's types, which
/// the SDK checks too.
pub use veritrail_core::{InclusionProof, RangeReport};

/// [`DbNodes`] that also fetches one leaf with the first batch it reads.
struct WithLeaf<'a> {
    nodes: DbNodes<'a>,
    leaf_id: NodeId,
    leaf: std::cell::Cell<Option<Hash>>,
}

impl NodeSource for WithLeaf<'_> {
    type Error = StoreError;

    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>> {
        if self.leaf.get().is_some() {
            return self.nodes.nodes(ids);
        }
        let mut with_leaf = Vec::with_capacity(ids.len() + 1);
        with_leaf.extend_from_slice(ids);
        with_leaf.push(self.leaf_id);
        let mut hashes = self.nodes.nodes(&with_leaf)?;
        self.leaf.set(hashes.pop());
        Ok(hashes)
    }
}

/// Read access to the audit log. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditReader {
    pub(crate) shared: Arc<Shared>,
    pub(crate) snapshots: Arc<Snapshots>,
}

impl AuditReader {
    /// Writes a consistent backup of everything this node applied (blocking:
    /// it reads the whole log).
    pub fn backup(&self) -> Result<Backup> {
        backup(&self.shared)
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// The state machine's tail as of its last apply.
    pub fn tail(&self) -> Tail {
        self.shared.state().tail.clone()
    }

    /// Entries in the current snapshot: the Raft log before it may be purged.
    pub fn snapshot_size(&self) -> Option<u64> {
        self.snapshots.current().map(|s| s.size)
    }

    /// Follows the tree size as entries are applied.
    pub fn watch_size(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.size_tx.subscribe()
    }

    /// The entry at `seq`, if the log holds it.
    pub fn entry(&self, seq: u64) -> Result<Option<StoredEntry>> {
        match self.shared.db.get(CF_ENTRIES, &u64_key(seq))? {
            None => Ok(None),
            Some(bytes) => stored_entry(seq, bytes).map(Some),
        }
    }

    /// The seq holding `(source, event_id)`, if any.
    pub fn seq_of(&self, source: &str, event_id: &str) -> Result<Option<u64>> {
        match self
            .shared
            .db
            .get(CF_EVENT_IDS, &event_id_key(source, event_id))?
        {
            None => Ok(None),
            Some(bytes) => read_u64_key(&bytes, CF_EVENT_IDS).map(Some),
        }
    }

    /// The entry holding `(source, event_id)`, if any.
    pub fn entry_by_event_id(&self, source: &str, event_id: &str) -> Result<Option<StoredEntry>> {
        match self.seq_of(source, event_id)? {
            None => Ok(None),
            Some(seq) => {
                let entry = self.entry(seq)?.ok_or_else(|| {
                    StoreError::corrupt(
                        CF_EVENT_IDS,
                        format!("({source}, {event_id}) points at missing seq {seq}"),
                    )
                })?;
                Ok(Some(entry))
            }
        }
    }

    /// A page of entries matching `query`, in seq order.
    ///
    /// The time range narrows the seq range by binary search (timestamps never
    /// decrease with seq). Field filters walk the `by_field` index, intersecting
    /// several filters by leapfrogging their iterators, so a narrow filter reads
    /// only the entries it returns.
    pub fn scan(&self, query: &ScanQuery) -> Result<ScanPage> {
        if query.limit == 0 {
            return Err(StoreError::InvalidArgument(
                "scan limit must be at least 1".into(),
            ));
        }
        // Equal on 64-bit targets; elsewhere a page too large to index could
        // not be held in memory anyway.
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let size = self.tail().size;
        let mut lo = query.from_seq;
        let mut hi = query.to_seq.unwrap_or(size).min(size);
        if let Some(to) = query.to_seq
            && to < query.from_seq
        {
            return Err(StoreError::InvalidArgument(format!(
                "scan range is reversed: from seq {} to seq {to}",
                query.from_seq
            )));
        }
        if let (Some(since), Some(until)) = (query.since_ns, query.until_ns)
            && until < since
        {
            return Err(StoreError::InvalidArgument(format!(
                "time range is reversed: since {since} ns until {until} ns"
            )));
        }
        if let Some(since) = query.since_ns {
            lo = lo.max(self.first_seq_at_or_after(since, size)?);
        }
        if let Some(until) = query.until_ns {
            hi = hi.min(self.first_seq_at_or_after(until, size)?);
        }
        let mut filters = Vec::new();
        if let Some(v) = &query.source {
            filters.push(field_prefix(Field::Source, v));
        }
        if let Some(v) = &query.actor {
            filters.push(field_prefix(Field::Actor, v));
        }
        if let Some(v) = &query.action {
            filters.push(field_prefix(Field::Action, v));
        }
        if query.resource.is_some() || query.outcome.is_some() || query.principal.is_some() {
            return self.scan_checking_entries(query, &filters, lo, hi, limit);
        }
        let seqs = if filters.is_empty() {
            (lo..hi).take(limit.saturating_add(1)).collect()
        } else {
            self.leapfrog(&filters, lo, hi, limit.saturating_add(1))?
        };
        let next_seq = if seqs.len() > limit {
            Some(seqs[limit])
        } else {
            None
        };
        let mut entries = Vec::with_capacity(seqs.len().min(limit));
        let cf = self.shared.db.cf(CF_ENTRIES);
        let keys: Vec<_> = seqs.iter().take(limit).map(|s| (cf, u64_key(*s))).collect();
        for (seq, value) in seqs.iter().zip(self.shared.db.raw().multi_get_cf(keys)) {
            let bytes = value?.ok_or_else(|| {
                StoreError::corrupt(format!("entries/{seq}"), "indexed entry is missing")
            })?;
            entries.push(stored_entry(*seq, bytes)?);
        }
        Ok(ScanPage { entries, next_seq })
    }

    /// A page for a query that filters on fields without an index (resource,
    /// outcome, principal): the candidates the indexed filters and ranges
    /// select are read [`SCAN_READ_CHUNK`] at a time and checked. At most
    /// [`SCAN_EXAMINE_MAX`] are read per page, so that a selective filter over
    /// a long range answers in pages of bounded work: a page may then hold
    /// fewer entries than the limit, even none, with `next_seq` saying where
    /// to go on.
    fn scan_checking_entries(
        &self,
        query: &ScanQuery,
        filters: &[Vec<u8>],
        lo: u64,
        hi: u64,
        limit: usize,
    ) -> Result<ScanPage> {
        let matches = |e: &StoredEntry| {
            let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
            is(&query.resource, &e.entry.event.resource)
                && is(&query.outcome, &e.entry.event.outcome)
                && is(&query.principal, &e.entry.principal)
        };
        let mut entries = Vec::new();
        let mut from = lo;
        let mut examined = 0usize;
        while from < hi && examined < SCAN_EXAMINE_MAX {
            let want = SCAN_READ_CHUNK.min(SCAN_EXAMINE_MAX - examined);
            let seqs: Vec<u64> = if filters.is_empty() {
                (from..hi).take(want).collect()
            } else {
                self.leapfrog(filters, from, hi, want)?
            };
            let Some(&last) = seqs.last() else {
                break;
            };
            examined += seqs.len();
            let cf = self.shared.db.cf(CF_ENTRIES);
            let keys: Vec<_> = seqs.iter().map(|s| (cf, u64_key(*s))).collect();
            for (seq, value) in seqs.iter().zip(self.shared.db.raw().multi_get_cf(keys)) {
                let bytes = value?.ok_or_else(|| {
                    StoreError::corrupt(format!("entries/{seq}"), "indexed entry is missing")
                })?;
                let entry = stored_entry(*seq, bytes)?;
                if !matches(&entry) {
                    continue;
                }
                if entries.len() == limit {
                    return Ok(ScanPage {
                        entries,
                        next_seq: Some(*seq),
                    });
                }
                entries.push(entry);
            }
            from = last + 1;
        }
        let next_seq = (from < hi && examined >= SCAN_EXAMINE_MAX).then_some(from);
        Ok(ScanPage { entries, next_seq })
    }

    /// Seqs in `[lo, hi)` present under every prefix, at most `max` of them.
    /// An iterator that stops on a read error is an error, never the end of
    /// the index: a scan must not answer a shorter list than the log holds.
    fn leapfrog(&self, prefixes: &[Vec<u8>], lo: u64, hi: u64, max: usize) -> Result<Vec<u64>> {
        let db = self.shared.db.raw();
        let cf = self.shared.db.cf(CF_BY_FIELD);
        let mut iters: Vec<DBRawIteratorWithThreadMode<'_, DB>> =
            prefixes.iter().map(|_| db.raw_iterator_cf(cf)).collect();
        let mut found = Vec::new();
        let mut candidate = lo;
        'search: while candidate < hi && found.len() < max {
            let mut highest = candidate;
            for (prefix, it) in prefixes.iter().zip(iters.iter_mut()) {
                let mut key = prefix.clone();
                key.extend_from_slice(&candidate.to_be_bytes());
                it.seek(&key);
                let seq = match it.key() {
                    Some(k) if k.len() == prefix.len() + 8 && k.starts_with(prefix) => {
                        u64::from_be_bytes(k[prefix.len()..].try_into().unwrap_or([0xff; 8]))
                    }
                    _ => {
                        it.status()?;
                        break 'search;
                    }
                };
                highest = highest.max(seq);
            }
            if highest == candidate {
                found.push(candidate);
                candidate += 1;
            } else {
                candidate = highest;
            }
        }
        Ok(found)
    }

    /// The first seq whose timestamp is at least `t`, or `size` if none is.
    fn first_seq_at_or_after(&self, t: u64, size: u64) -> Result<u64> {
        let (mut lo, mut hi) = (0u64, size);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let entry = self
                .entry(mid)?
                .ok_or_else(|| StoreError::corrupt(format!("entries/{mid}"), "missing"))?;
            if entry.entry.timestamp_ns < t {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Recomputes entries `[from, to)` (the end of the log when `to` is `None`):
    /// each decodes, carries its seq, links to the one before, keeps time
    /// monotonic, and hashes to its stored Merkle leaf. Stops at the first problem.
    pub fn verify_range(&self, from: u64, to: Option<u64>) -> Result<RangeReport> {
        let size = self.tail().size;
        let to = to.unwrap_or(size);
        if from > to {
            return Err(StoreError::InvalidArgument(format!(
                "range is reversed: from seq {from} to seq {to}"
            )));
        }
        if to > size {
            return Err(StoreError::OutOfRange(format!(
                "seq {to} is beyond the log, which holds {size} entries"
            )));
        }
        let (head, last_ts) = match from.checked_sub(1) {
            None => (veritrail_core::genesis_hash(&self.shared.origin), None),
            Some(prev) => {
                let entry = self
                    .entry(prev)?
                    .ok_or_else(|| StoreError::corrupt(format!("entries/{prev}"), "missing"))?;
                (entry.hash, Some(entry.entry.timestamp_ns))
            }
        };
        let mut chain = veritrail_core::ChainVerifier::resume(
            &self.shared.origin,
            from,
            Some(head),
            last_ts,
            None,
        )?;
        let db = self.shared.db.raw();
        let mut it = db.raw_iterator_cf(self.shared.db.cf(CF_ENTRIES));
        it.seek(u64_key(from));
        let nodes = DbNodes::new(&self.shared.db);
        let mut checked = 0;
        let fail = |seq: u64, checked: u64, problem: String| -> Result<RangeReport> {
            Ok(RangeReport {
                ok: false,
                entries_checked: checked,
                first_bad_seq: Some(seq),
                problem,
                root: self.root_at(to)?,
            })
        };
        for seq in from..to {
            let bytes = match (it.key(), it.value()) {
                (Some(k), Some(v)) if read_u64_key(k, CF_ENTRIES)? == seq => v.to_vec(),
                _ => {
                    it.status()?;
                    return fail(seq, checked, "entry is missing".into());
                }
            };
            if let Err(e) = chain.push(&bytes) {
                return fail(seq, checked, e.to_string());
            }
            let leaf = nodes.nodes(&[NodeId::new(0, seq)])?[0];
            if leaf != entry_hash(&bytes) {
                return fail(
                    seq,
                    checked,
                    "the entry's hash differs from its stored Merkle leaf".into(),
                );
            }
            checked += 1;
            it.next();
        }
        Ok(RangeReport {
            ok: true,
            entries_checked: checked,
            first_bad_seq: None,
            problem: String::new(),
            root: self.root_at(to)?,
        })
    }

    fn check_size(&self, size: u64) -> Result<u64> {
        let current = self.tail().size;
        if size > current {
            return Err(StoreError::OutOfRange(format!(
                "tree size {size} is beyond the log, which holds {current} entries"
            )));
        }
        Ok(current)
    }

    /// The Merkle root at `size`.
    pub fn root_at(&self, size: u64) -> Result<Hash> {
        self.check_size(size)?;
        merkle::root_at(&DbNodes::new(&self.shared.db), size)
    }

    /// The Merkle frontier of the tree of `size` entries: the roots of the perfect
    /// subtrees that tile it, largest first. Stored nodes only: O(log n) reads.
    pub fn frontier_at(&self, size: u64) -> Result<Vec<Hash>> {
        self.check_size(size)?;
        DbNodes::new(&self.shared.db).nodes(&Frontier::node_ids(size))
    }

    /// The hashes of a C2SP tlog-tiles hash tile: `width` perfect nodes of
    /// height `8 * level` (leaf hashes at level 0), from node `index * 256`
    /// on, all of them complete in the log this node holds (`OutOfRange`
    /// otherwise). Tiles are immutable: once served, their bytes never change.
    pub fn tile_hashes(&self, level: u8, index: u64, width: u16) -> Result<Vec<Hash>> {
        let height = u32::from(level) * 8;
        let out_of_range = || {
            StoreError::OutOfRange(format!(
                "tile {level}/{index} of width {width} is beyond the log, which holds {} entries",
                self.tail().size
            ))
        };
        if width == 0 || width > 256 || height > 63 {
            return Err(out_of_range());
        }
        let first = index.checked_mul(256).ok_or_else(out_of_range)?;
        let end = first
            .checked_add(u64::from(width))
            .ok_or_else(out_of_range)?;
        // Every node must cover leaves the log holds: end << height <= size.
        if end > (self.tail().size >> height) {
            return Err(out_of_range());
        }
        let ids: Vec<NodeId> = (first..end).map(|i| NodeId::new(height as u8, i)).collect();
        DbNodes::new(&self.shared.db).nodes(&ids)
    }

    /// The entries of a C2SP tlog-tiles entry bundle: `width` of them from
    /// seq `index * 256` on, each as its canonical bytes (whose leaf hash is
    /// the level-0 tile's hash at the same place), all of them held by this
    /// node (`OutOfRange` otherwise). Like tiles, bundles never change.
    pub fn entry_bundle(&self, index: u64, width: u16) -> Result<Vec<StoredEntry>> {
        let out_of_range = || {
            StoreError::OutOfRange(format!(
                "entry bundle {index} of width {width} is beyond the log, which holds {} entries",
                self.tail().size
            ))
        };
        if width == 0 || width > 256 {
            return Err(out_of_range());
        }
        let first = index.checked_mul(256).ok_or_else(out_of_range)?;
        let end = first
            .checked_add(u64::from(width))
            .ok_or_else(out_of_range)?;
        if end > self.tail().size {
            return Err(out_of_range());
        }
        let cf = self.shared.db.cf(CF_ENTRIES);
        let keys: Vec<_> = (first..end).map(|s| (cf, u64_key(s))).collect();
        (first..end)
            .zip(self.shared.db.raw().multi_get_cf(keys))
            .map(|(seq, value)| {
                let bytes = value?.ok_or_else(|| {
                    StoreError::corrupt(format!("entries/{seq}"), "a held entry is missing")
                })?;
                stored_entry(seq, bytes)
            })
            .collect()
    }

    /// The inclusion proof of entry `seq` in the tree of `size` entries.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>> {
        self.check_size(size)?;
        if seq >= size {
            return Err(StoreError::OutOfRange(format!(
                "seq {seq} is not inside a tree of size {size}"
            )));
        }
        merkle::inclusion_proof(&DbNodes::new(&self.shared.db), seq, size)
    }

    /// The inclusion proof of entry `seq` in the tree of `size` entries, with
    /// the entry's leaf hash and the tree's root: what an auditor is sent.
    /// The proof's nodes and the leaf come from one multi-get, and the root is
    /// folded from them (about 20 hashes at a million entries) rather than read.
    pub fn inclusion_proof_with_root(&self, seq: u64, size: u64) -> Result<InclusionProof> {
        self.check_size(size)?;
        if seq >= size {
            return Err(StoreError::OutOfRange(format!(
                "seq {seq} is not inside a tree of size {size}"
            )));
        }
        let source = WithLeaf {
            nodes: DbNodes::new(&self.shared.db),
            leaf_id: NodeId::new(0, seq),
            leaf: std::cell::Cell::new(None),
        };
        let proof = merkle::inclusion_proof(&source, seq, size)?;
        let leaf = match source.leaf.get() {
            Some(leaf) => leaf,
            // A tree of one leaf has an empty proof: nothing was fetched.
            None => source.nodes.nodes(&[source.leaf_id])?[0],
        };
        let root = merkle::root_from_inclusion_proof(seq, size, &leaf, &proof)
            .map_err(|e| StoreError::corrupt(format!("merkle proof of {seq} at {size}"), e))?;
        Ok(InclusionProof {
            seq,
            tree_size: size,
            leaf,
            proof,
            root,
        })
    }

    /// The consistency proof from `from_size` to `to_size`.
    pub fn consistency_proof(&self, from_size: u64, to_size: u64) -> Result<Vec<Hash>> {
        self.check_size(to_size)?;
        if from_size > to_size {
            return Err(StoreError::InvalidArgument(format!(
                "consistency proof sizes are reversed: from {from_size} to {to_size}"
            )));
        }
        merkle::consistency_proof(&DbNodes::new(&self.shared.db), from_size, to_size)
    }

    /// The checkpoint body of the log at `size`, computed from this node's state.
    pub fn checkpoint_at(&self, size: u64) -> Result<Checkpoint> {
        self.check_size(size)?;
        checkpoint_at(&self.shared.db, &self.shared.origin, size)
    }

    /// The signed note recorded for `size`, if a checkpoint of that size was
    /// recorded.
    pub fn signed_checkpoint(&self, size: u64) -> Result<Option<String>> {
        self.shared
            .db
            .get(CF_CHECKPOINTS, &u64_key(size))?
            .map(|b| {
                String::from_utf8(b)
                    .map_err(|e| StoreError::corrupt(format!("checkpoints/{size}"), e))
            })
            .transpose()
    }

    /// The recorded checkpoint of the largest size, as `(size, signed note)`.
    pub fn latest_signed_checkpoint(&self) -> Result<Option<(u64, String)>> {
        let db = self.shared.db.raw();
        let mut it = db.raw_iterator_cf(self.shared.db.cf(CF_CHECKPOINTS));
        it.seek_to_last();
        match (it.key(), it.value()) {
            (Some(k), Some(v)) => {
                let size = read_u64_key(k, CF_CHECKPOINTS)?;
                let note = String::from_utf8(v.to_vec())
                    .map_err(|e| StoreError::corrupt(format!("checkpoints/{size}"), e))?;
                Ok(Some((size, note)))
            }
            _ => {
                it.status()?;
                Ok(None)
            }
        }
    }
}
