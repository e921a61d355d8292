//! The incremental frontier: the state needed to append leaves and know the root.

use super::{NodeId, empty_root, fold_right, node_hash};
use crate::{Error, Hash};

/// The roots of the perfect subtrees that make up a tree of `size` leaves, left to
/// right, largest first: one per set bit of `size`, so never more than 64.
///
/// Appending a leaf merges equal-sized neighbours like a binary counter carrying,
/// and reports every perfect node it completes so a store can persist them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Frontier::default()
    }

    /// Rebuilds a frontier from its parts, checking that the number of hashes
    /// matches `size`.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Result<Self, Error> {
        let expected = size.count_ones() as usize;
        if nodes.len() != expected {
            return Err(Error::FrontierShape {
                size,
                expected,
                found: nodes.len(),
            });
        }
        Ok(Frontier { size, nodes })
    }

    /// The perfect nodes that form the frontier at `size`, left to right. Reading
    /// them from a [`super::NodeSource`] and calling [`Frontier::from_parts`]
    /// restores the frontier of any past size.
    pub fn node_ids(size: u64) -> Vec<NodeId> {
        super::range_nodes(0, size)
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The frontier's hashes, left to right.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends a leaf hash. `on_node` sees every perfect node this completes, the
    /// leaf itself first, then each parent up the carry chain.
    pub fn push(&mut self, leaf: Hash, mut on_node: impl FnMut(NodeId, &Hash)) {
        let mut id = NodeId::new(0, self.size);
        let mut hash = leaf;
        on_node(id, &hash);
        // Each trailing one bit of the old size is a finished left sibling waiting
        // on the frontier for this new right sibling.
        let mut carry = self.size;
        while carry & 1 == 1 {
            let Some(left) = self.nodes.pop() else {
                unreachable!("frontier holds one node per set bit of its size")
            };
            hash = node_hash(&left, &hash);
            id = NodeId::new(id.level + 1, id.index >> 1);
            on_node(id, &hash);
            carry >>= 1;
        }
        self.nodes.push(hash);
        self.size += 1;
    }

    /// The RFC 6962 root of the tree so far.
    pub fn root(&self) -> Hash {
        fold_right(&self.nodes).unwrap_or_else(empty_root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hash, reference};

    #[test]
    fn push_reports_nodes_and_tracks_root() {
        let leaves: Vec<Hash> = (0u32..37).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), empty_root());
        let mut reported = Vec::new();
        for (i, leaf) in leaves.iter().enumerate() {
            frontier.push(*leaf, |id, h| reported.push((id, *h)));
            assert_eq!(frontier.root(), reference::root(&leaves[..=i]));
            assert_eq!(
                frontier.nodes().len(),
                frontier.size().count_ones() as usize
            );
        }
        // Every perfect node of a 37-leaf tree is reported exactly once.
        let expected: usize = (0..8).map(|level| (37u64 >> level) as usize).sum();
        assert_eq!(reported.len(), expected);
        for (id, hash) in reported {
            let span = &leaves[id.first_leaf() as usize..id.end_leaf() as usize];
            assert_eq!(hash, reference::root(span), "{id:?}");
        }
    }

    #[test]
    fn from_parts_checks_shape() {
        assert!(Frontier::from_parts(3, vec![Hash::ZERO]).is_err());
        assert!(Frontier::from_parts(3, vec![Hash::ZERO, Hash::ZERO]).is_ok());
    }
}
