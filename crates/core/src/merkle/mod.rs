//! The RFC 6962 (RFC 9162 section 2.1) Merkle tree over the log's entries.
//!
//! Storage-agnostic by design. The tree is described by its *perfect nodes*: the
//! hash of every complete, aligned subtree of `2^level` leaves, addressed by
//! [`NodeId`]. Such a node never changes once its last leaf is appended, so a store
//! can write it once and keep it. Every root, inclusion proof and consistency proof
//! of any tree size is assembled from O(log n) of them: the proof code first plans
//! which nodes it needs, asks a [`NodeSource`] for all of them at once (one batched
//! read for a database), and then combines them.

mod frontier;
mod memory;
mod proof;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tile_paths {
    #[test]
    fn indexes_are_spelt_as_tile_paths() {
        use super::tile_index_path as p;
        assert_eq!(p(0), "000");
        assert_eq!(p(5), "005");
        assert_eq!(p(1000), "x001/000");
        assert_eq!(p(1_234_067), "x001/x234/067");
    }
}
mod verify;

pub use frontier::Frontier;
pub use memory::MemoryTree;
pub use proof::{consistency_proof, inclusion_proof, range_nodes, root_at};
pub use verify::{root_from_inclusion_proof, verify_consistency, verify_inclusion};

/// `<N>` as a C2SP tlog-tiles path spells it: three-digit groups, `x` before all but
/// the last (1234067 is `x001/x234/067`).
pub fn tile_index_path(mut n: u64) -> String {
    let mut groups = Vec::new();
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(i, g)| {
            if i == last {
                format!("{g:03}")
            } else {
                format!("x{g:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

use crate::Hash;

/// Prefix of a leaf hash, RFC 6962 section 2.1.
pub const LEAF_PREFIX: u8 = 0x00;
/// Prefix of an interior node hash, RFC 6962 section 2.1.
pub const NODE_PREFIX: u8 = 0x01;

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    Hash::digest_parts(&[&[LEAF_PREFIX], data])
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::digest_parts(&[&[NODE_PREFIX], left.as_bytes(), right.as_bytes()])
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Hash::digest_parts(&[])
}

/// A perfect node: the root of the complete subtree over leaves
/// `[index << level, (index + 1) << level)`. Level 0 nodes are leaf hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    pub fn new(level: u8, index: u64) -> Self {
        NodeId { level, index }
    }

    /// The first leaf the node covers.
    pub fn first_leaf(&self) -> u64 {
        self.index << self.level
    }

    /// One past the last leaf the node covers.
    pub fn end_leaf(&self) -> u64 {
        (self.index + 1) << self.level
    }
}

/// Where the proof code reads perfect node hashes from: a database, or memory.
///
/// The proof code only asks for nodes whose whole subtree lies inside the tree size
/// it was given, so a source never has to compute anything, only look up.
pub trait NodeSource {
    /// The source's own error. Argument errors found by the proof code (an index
    /// outside the tree, reversed sizes) are converted into it.
    type Error: From<crate::Error>;

    /// The hashes of `ids`, in the same order.
    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error>;
}

/// Folds a left-to-right list of adjacent subtree roots, largest first, into the
/// root of the range they cover: `h0 . (h1 . (... . hk))`. This is the shape
/// RFC 6962 gives a range whose size is not a power of two.
pub(crate) fn fold_right(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(
        rest.iter()
            .rev()
            .fold(*last, |acc, left| node_hash(left, &acc)),
    )
}

/// The largest power of two strictly smaller than `n`; `n` must be at least 2.
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_matches_transparency_dev_vectors() {
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            leaf_hash(b"").to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            leaf_hash(b"L123456").to_hex(),
            "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
        );
        // HashChildren("N123", "N456") hashes the raw strings as children.
        let digest = Hash::digest_parts(&[&[NODE_PREFIX], b"N123", b"N456"]);
        assert_eq!(
            digest.to_hex(),
            "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
        );
    }

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }
}
