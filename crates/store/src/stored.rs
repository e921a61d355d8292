//! Stored entries and the perfect Merkle nodes over them, read straight from
//! the database: the lowest layer of reads, shared by apply, the tail check on
//! open, snapshots and the reader, so that each decodes and checks stored
//! bytes the same way.

use veritrail_core::merkle::{self, NodeId, NodeSource};
use veritrail_core::{Checkpoint, Entry, Hash, entry_hash};

use crate::db::{CF_ENTRIES, CF_MERKLE, Db, merkle_key, u64_key};
use crate::error::{Result, StoreError};

/// An entry as stored and served: the core's [`LogEntry`], decoded, with its
/// canonical bytes and hash.
pub use veritrail_core::LogEntry as StoredEntry;

/// The entry stored under `seq`, decoded and checked to carry that seq.
pub(crate) fn stored_entry(seq: u64, canonical: Vec<u8>) -> Result<StoredEntry> {
    let entry =
        Entry::decode(&canonical).map_err(|e| StoreError::corrupt(format!("entries/{seq}"), e))?;
    if entry.seq != seq {
        return Err(StoreError::corrupt(
            format!("entries/{seq}"),
            format!("entry carries seq {}", entry.seq),
        ));
    }
    let hash = entry_hash(&canonical);
    Ok(StoredEntry {
        entry,
        hash,
        canonical,
    })
}

/// Reads perfect Merkle nodes from the `merkle` column family, all of a proof's
/// nodes in one multi-get.
#[derive(Debug)]
pub(crate) struct DbNodes<'a> {
    db: &'a Db,
}

impl<'a> DbNodes<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        DbNodes { db }
    }
}

impl NodeSource for DbNodes<'_> {
    type Error = StoreError;

    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>> {
        let cf = self.db.cf(CF_MERKLE);
        let keys = ids
            .iter()
            .map(|id| {
                merkle_key(id.level, id.index)
                    .map(|key| (cf, key))
                    .ok_or_else(|| {
                        StoreError::OutOfRange(format!("no Merkle node {}/{}", id.level, id.index))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let values = self.db.raw().multi_get_cf(keys);
        ids.iter()
            .zip(values)
            .map(|(id, value)| {
                let location = || format!("merkle/{}/{}", id.level, id.index);
                let bytes =
                    value?.ok_or_else(|| StoreError::corrupt(location(), "node is missing"))?;
                Hash::from_slice(&bytes).map_err(|e| StoreError::corrupt(location(), e))
            })
            .collect()
    }
}

/// The checkpoint body at `size` from stored nodes and entries. The caller has
/// checked that the log holds `size` entries.
pub(crate) fn checkpoint_at(db: &Db, origin: &str, size: u64) -> Result<Checkpoint> {
    let root = merkle::root_at(&DbNodes::new(db), size)?;
    let (head, timestamp_ns) = match size.checked_sub(1) {
        None => (veritrail_core::genesis_hash(origin), 0),
        Some(last) => {
            let bytes = db
                .get(CF_ENTRIES, &u64_key(last))?
                .ok_or_else(|| StoreError::corrupt(format!("entries/{last}"), "missing"))?;
            let entry = stored_entry(last, bytes)?;
            (entry.hash, entry.entry.timestamp_ns)
        }
    };
    Ok(Checkpoint {
        origin: origin.to_owned(),
        size,
        root,
        head,
        timestamp_ns,
    })
}
