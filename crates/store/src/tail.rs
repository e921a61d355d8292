//! The tail: what the state machine needs to append the next entry.
//!
//! Size, chain head, last timestamp and Merkle frontier are all derivable from the
//! entries, but recomputing them on every start would read the whole log. They are
//! stored in one record, written in the same batch as the entries they summarize,
//! and checked against the entries and Merkle nodes when the store opens.

use veritrail_core::merkle::{Frontier, NodeSource};
use veritrail_core::{Checkpoint, Entry, Hash, genesis_hash};

use crate::db::{CF_ENTRIES, Db, u64_key};
use crate::error::{Result, StoreError};
use crate::stored::DbNodes;

/// The state machine's position: everything needed to append the next entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// Number of entries; the next entry's seq.
    pub size: u64,
    /// Hash of entry `size - 1`, or the genesis hash: the next entry's `prev_hash`.
    pub head: Hash,
    /// Timestamp of entry `size - 1`, or 0.
    pub last_timestamp_ns: u64,
    /// Merkle frontier of the first `size` entries.
    pub frontier: Frontier,
}

impl Tail {
    /// The tail of the empty log named `origin`.
    pub fn empty(origin: &str) -> Self {
        Tail {
            size: 0,
            head: genesis_hash(origin),
            last_timestamp_ns: 0,
            frontier: Frontier::new(),
        }
    }

    /// The Merkle root of the log at this tail.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The checkpoint body of the log at this tail.
    pub fn checkpoint(&self, origin: &str) -> Checkpoint {
        Checkpoint {
            origin: origin.to_owned(),
            size: self.size,
            root: self.root(),
            head: self.head,
            timestamp_ns: self.last_timestamp_ns,
        }
    }

    /// `size u64 | head [32] | last_timestamp_ns u64 | count u8 | count × [32]`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let nodes = self.frontier.nodes();
        let mut out = Vec::with_capacity(8 + 32 + 8 + 1 + 32 * nodes.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(&self.last_timestamp_ns.to_be_bytes());
        out.push(nodes.len() as u8);
        for node in nodes {
            out.extend_from_slice(node.as_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| StoreError::corrupt("sm_meta/tail", why);
        if bytes.len() < 49 {
            return Err(bad("record too short"));
        }
        let size = u64::from_be_bytes(bytes[0..8].try_into().map_err(|_| bad("size"))?);
        let head = Hash::from_slice(&bytes[8..40])?;
        let last_timestamp_ns =
            u64::from_be_bytes(bytes[40..48].try_into().map_err(|_| bad("time"))?);
        let count = bytes[48] as usize;
        if bytes.len() != 49 + 32 * count {
            return Err(bad("frontier length does not match its count"));
        }
        let nodes = bytes[49..]
            .chunks_exact(32)
            .map(Hash::from_slice)
            .collect::<Result<Vec<_>, _>>()?;
        let frontier = Frontier::from_parts(size, nodes).map_err(|e| bad(&e.to_string()))?;
        Ok(Tail {
            size,
            head,
            last_timestamp_ns,
            frontier,
        })
    }

    /// Checks the tail against what it summarizes: the last entry, the absence of
    /// any entry past it, and the stored Merkle nodes its frontier repeats. Cheap
    /// (a handful of reads), so it runs on every open.
    pub(crate) fn verify_against(&self, db: &Db) -> Result<()> {
        let integrity = |seq: Option<u64>, detail: String| StoreError::Integrity { seq, detail };
        if db.get(CF_ENTRIES, &u64_key(self.size))?.is_some() {
            return Err(integrity(
                Some(self.size),
                format!(
                    "an entry exists at seq {} but the tail says the log holds {} entries",
                    self.size, self.size
                ),
            ));
        }
        if let Some(last) = self.size.checked_sub(1) {
            let bytes = db.get(CF_ENTRIES, &u64_key(last))?.ok_or_else(|| {
                integrity(
                    Some(last),
                    format!(
                        "the tail says {} entries but entry {last} is missing",
                        self.size
                    ),
                )
            })?;
            let entry = Entry::decode(&bytes)
                .map_err(|e| integrity(Some(last), format!("last entry does not decode: {e}")))?;
            if entry.seq != last {
                return Err(integrity(
                    Some(last),
                    format!("last entry carries seq {}", entry.seq),
                ));
            }
            if veritrail_core::entry_hash(&bytes) != self.head {
                return Err(integrity(
                    Some(last),
                    "last entry's hash is not the stored chain head".into(),
                ));
            }
            if entry.timestamp_ns != self.last_timestamp_ns {
                return Err(integrity(
                    Some(last),
                    "last entry's timestamp is not the stored one".into(),
                ));
            }
        }
        let ids = Frontier::node_ids(self.size);
        let stored = DbNodes::new(db).nodes(&ids)?;
        if stored.as_slice() != self.frontier.nodes() {
            return Err(integrity(
                None,
                format!(
                    "the stored Merkle nodes of size {} differ from the tail's frontier",
                    self.size
                ),
            ));
        }
        Ok(())
    }
}
