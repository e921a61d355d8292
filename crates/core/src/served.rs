//! What a node serves and a client checks, as plain values: an entry with its
//! canonical bytes, a co-signed checkpoint, inclusion and consistency proofs
//! with the roots they claim, and a node's report on a range of its own log.
//!
//! They live in the core so that both ends share them: `veritrail-proto`
//! converts them to and from the wire, and nothing else does. None of them is
//! trusted because a node sent it; each says how it is checked.

use crate::entry::Entry;
use crate::error::Error;
use crate::hash::Hash;
use crate::merkle;

/// An entry read from the log, decoded from its canonical bytes (never from the
/// convenience fields beside them on the wire) and checked against the hash it
/// came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub entry: Entry,
    pub hash: Hash,
    /// The canonical bytes: what is hashed, and what an evidence bundle carries.
    pub canonical: Vec<u8>,
}

impl LogEntry {
    pub fn seq(&self) -> u64 {
        self.entry.seq
    }
}

/// A co-signed checkpoint as a node serves it. Unverified: its signatures are
/// checked against trusted keys by a [`crate::checkpoint::CheckpointVerifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub tree_size: u64,
    pub root: Hash,
    /// The C2SP signed note (docs/FORMAT.md sections 5 and 6).
    pub note: String,
}

/// An RFC 6962 inclusion proof as a node serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub seq: u64,
    pub tree_size: u64,
    pub leaf: Hash,
    pub proof: Vec<Hash>,
    /// The root the node claims for `tree_size`.
    pub root: Hash,
}

impl InclusionProof {
    /// Checks the proof against a root the caller trusts; the root the node
    /// claims proves nothing by itself.
    pub fn verify(&self, trusted_root: &Hash) -> Result<(), Error> {
        merkle::verify_inclusion(
            self.seq,
            self.tree_size,
            &self.leaf,
            &self.proof,
            trusted_root,
        )
    }
}

/// An RFC 6962 consistency proof as a node serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub from_size: u64,
    pub to_size: u64,
    pub proof: Vec<Hash>,
    /// The roots the node claims for the two sizes.
    pub from_root: Hash,
    pub to_root: Hash,
}

impl ConsistencyProof {
    /// Checks the proof between two roots the caller trusts; the roots the node
    /// claims prove nothing by themselves.
    pub fn verify(&self, from_root: &Hash, to_root: &Hash) -> Result<(), Error> {
        merkle::verify_consistency(
            self.from_size,
            self.to_size,
            from_root,
            to_root,
            &self.proof,
        )
    }
}

/// What a node found recomputing a range of its own log. It is the node's own
/// word: useful to an operator, worth nothing to an auditor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RangeReport {
    pub ok: bool,
    pub entries_checked: u64,
    pub first_bad_seq: Option<u64>,
    pub problem: String,
    pub root: Hash,
}
